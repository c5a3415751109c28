//! LeMo-NADe's seams: every trait a third party implements to swap one part of the discovery
//! loop, and the plain serde types those traits exchange.
//!
//! | seam | trait | implemented by |
//! |---|---|---|
//! | LLM | [`ChatModel`] | `lemo-llm` (OpenAI-compatible, Gemini, local GGUF) |
//! | architect | [`Architect`] | `lemo-llm` (over any chat model, or offline) |
//! | training | [`Trainer`] (+ [`TrainObserver`]) | `lemo-train` (burn) |
//! | energy | [`EnergyMeter`] (+ [`EnergyWindow`]) | `lemo-energy` (RAPL, NVML, estimates) |
//! | rules | [`RuleBook`] | `lemo-expert` (the paper's, TOML rule sets) |
//! | CM normalisation | [`Normalisation`] | `lemo-metrics` |
//!
//! This crate's dependency tree holds no deep-learning framework, no HTTP client and no async
//! runtime: `cargo tree -p lemo-core` shows only the IR (`lemo-arch`), the metrics
//! (`lemo-metrics`), the instructions (`lemo-expert`) and serde.

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

/// The architecture IR (`lemo-arch`), re-exported so an implementation needs only this crate.
pub use lemo_arch as arch;
/// The instructions and rule books (`lemo-expert`).
pub use lemo_expert as expert;
/// The user-defined and observed metrics (`lemo-metrics`).
pub use lemo_metrics as metrics;

pub mod data;
pub mod energy;
pub mod llm;
pub mod train;

pub use data::{Augmentation, Cutout, Dataset, DatasetError, Normalization, Splits};
pub use energy::{
    Component, ComponentEnergy, EnergyError, EnergyMeter, EnergyReport, EnergyWindow, NoMeter,
    Provenance,
};
pub use lemo_expert::RuleBook;
pub use lemo_metrics::Normalisation;
pub use llm::{
    AnswerProblem, Architect, BoxFuture, ChatModel, ChatRequest, ChatResponse, Design, Feedback,
    LlmError, Message, Proposal, ProposalKind, TaskBrief,
};
pub use train::{
    DeviceChoice, EpochStats, Evaluation, InferenceReport, NoObserver, Status, TrainConfig,
    TrainError, TrainObserver, Trainer,
};
