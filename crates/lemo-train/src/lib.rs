//! LeMo-NADe trainer: builds a burn model from an IR graph, trains and measures it; dataset loaders.
//!
//! - [`GraphModel`]: a burn module built at run time from any valid `lemo-arch` graph.
//! - [`Trainer`] (the seam) and [`BurnTrainer`] (burn, Flex on CPU by default): the paper's
//!   training recipe ([`TrainConfig`]), then the measurements of an [`Evaluation`].
//! - [`TrainedModel`]: save and load trained weights beside their graph.
//! - [`data`]: datasets, augmentation and batching.
//! - [`kernels`]: lemo-train's CPU convolution, batch-norm and max-pool kernels, plugged into
//!   burn's autodiff on the Flex backend (docs/performance.md).
pub mod config;
pub mod data;
pub mod device;
mod error;
pub mod evaluation;
pub mod kernels;
pub mod model;
pub mod observer;
pub mod trainer;

pub use config::{AdamSettings, Budget, EarlyStopping, InferenceBench, Plateau, TrainConfig};
pub use device::DeviceChoice;
pub use error::TrainError;
pub use evaluation::{EpochStats, Evaluation, InferenceReport, Status};
pub use model::GraphModel;
pub use observer::{NoObserver, TrainObserver};
pub use trainer::{
    BurnTrainer, TrainedModel, Trainer, evaluate, measure_inference, train_and_measure,
};

/// The burn version this crate builds on, re-exported so users need no direct dependency.
pub use burn;
