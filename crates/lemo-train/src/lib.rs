//! LeMo-NADe trainer: builds a burn model from an IR graph, trains and measures it; dataset loaders.
//!
//! - [`GraphModel`]: a burn module built at run time from any valid `lemo-arch` graph.
//! - [`Trainer`] (the seam) and [`BurnTrainer`] (burn, Flex on CPU by default): the paper's
//!   training recipe ([`TrainConfig`]), then the measurements of an [`Evaluation`].
//! - [`TrainedModel`]: save and load trained weights beside their graph.
//! - [`data`]: datasets, augmentation and batching.
//! - [`kernels`]: lemo-train's CPU convolution, batch-norm and max-pool kernels, plugged into
//!   burn's autodiff on the Flex backend (docs/performance.md).
//! - [`memory`]: the allocator settings that keep training steps from faulting their
//!   activations in afresh.

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub mod data;
pub mod device;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod trainer;
pub mod whiten;

/// The training seam's types live in `lemo-core`; these modules keep their old paths.
pub mod config {
    pub use lemo_core::train::config::*;
}
/// What training and measuring one network reports (`lemo-core`'s types).
pub mod evaluation {
    pub use lemo_core::train::evaluation::*;
}
/// Progress callbacks of a training run (`lemo-core`'s trait).
pub mod observer {
    pub use lemo_core::train::observer::*;
}

pub use device::{BurnDevice, DeviceChoice};
pub use lemo_core::train::{
    AdamSettings, Budget, CurvePrediction, CurveProxy, Decay, EarlyStopping, EpochStats,
    Evaluation, InferenceBench, InferenceReport, NoObserver, OptimizerKind, Plateau, Schedule,
    SgdSettings, Status, TrainConfig, TrainError, TrainObserver, Trainer, Tta,
};
pub use model::{GraphModel, SERIAL_FORWARD_MAX_MACS};
pub use trainer::{BurnTrainer, TrainedModel, evaluate, measure_inference, train_and_measure};

/// The burn version this crate builds on, re-exported so users need no direct dependency.
pub use burn;
