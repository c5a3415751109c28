//! LeMo-NADe in Rust: LLM-guided neural architecture discovery for edge devices.
//!
//! This facade re-exports the workspace's crates so that one dependency brings them all.
//! Each crate is usable on its own too.

pub use lemo;
pub use lemo_arch as arch;
pub use lemo_core as core;
pub use lemo_energy as energy;
pub use lemo_expert as expert;
pub use lemo_llm as llm;
pub use lemo_metrics as metrics;
pub use lemo_train as train;
