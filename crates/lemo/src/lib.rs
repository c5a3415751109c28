//! LeMo-NADe orchestrator: the discovery loop (Algorithm 1), run journal and resume, reports.
//!
//! ```no_run
//! use lemo::{Discovery, RunConfig};
//!
//! let config = RunConfig::quickstart()?;
//! let summary = Discovery::from_config(config)?.discover()?;
//! println!("report: {}", summary.report_path().display());
//! # Ok::<(), lemo::LemoError>(())
//! ```
//!
//! - [`RunConfig`]: one TOML file for everything (`configs/quickstart.toml` is embedded).
//! - [`Discovery`]: Algorithm 1 over any [`lemo_llm::Architect`], [`lemo_train::Trainer`],
//!   [`lemo_energy::EnergyMeter`] and [`lemo_expert::RuleBook`].
//! - [`journal`] and [`event`]: the crash-safe run journal; [`RunHistory`] rebuilds a run from it.
//! - [`report`] and [`plot`]: the Markdown report and its SVG plots, from the journal alone.
//! - [`job`] and [`executor`]: k candidates per iteration evaluated by `lemo evaluate` workers,
//!   local processes or SLURM jobs (`[executor]`).

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod config;
pub mod discovery;
pub mod event;
pub mod executor;
pub mod history;
pub mod job;
pub mod journal;
pub mod plot;
pub mod report;
pub mod run_dir;

pub use config::{
    ConfigError, ExecutorKind, ExecutorSection, QUICKSTART_TOML, RunConfig, SearchBase,
    SearchSection, SlurmSection,
};
pub use discovery::{
    Discovery, LemoError, Quiet, RunData, RunObserver, RunSummary, build_meter, build_rulebook,
    candidate_seed, derive_seed, load_data, load_split_data, observe,
};
pub use event::{CandidateOutcome, Event, IterationOutcome, StopReason};
pub use executor::{ExecutorError, JobRunner, JobStatus};
pub use history::{CandidateRecord, IterationRecord, JobRecord, RunHistory};
pub use job::{EvaluationJob, EvaluationResult, JOB_FORMAT, JobError, JobOutcome};
pub use report::{Table3Row, baseline_verdict, render_report, search_verdict, write_report};
pub use run_dir::RunDir;
