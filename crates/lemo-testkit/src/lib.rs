//! LeMo-NADe's testkit: what an implementation of one of `lemo-core`'s seams needs to test
//! itself, with no deep-learning framework, HTTP client or async runtime in its tree.
//!
//! - Fakes: [`ScoringTrainer`] scores a network without training it (metrics are a pure function
//!   of the network and the seed), [`ScriptedArchitect`] and [`ScriptedChat`] answer from a
//!   script, [`tiny_splits`] makes a small synthetic dataset.
//! - Conformance suites, called from an implementation's own tests: [`check_architect`] (or
//!   [`check_architect_with`] for an architect whose futures need a runtime), [`check_trainer`],
//!   [`check_meter`], [`check_rulebook`]. Each returns every rule the implementation broke, so a
//!   failing test says what to fix.
//!
//! ```
//! use lemo_testkit::{ScoringTrainer, check_trainer};
//!
//! let mut trainer = ScoringTrainer::default();
//! check_trainer(&mut trainer).expect("the fake keeps the trainer contract");
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod architect;
mod data;
mod meter;
mod rulebook;
mod trainer;

pub use architect::{
    Runner, ScriptedArchitect, ScriptedChat, block_on, check_architect, check_architect_with,
};
pub use data::{tiny_splits, tiny_task};
pub use meter::check_meter;
pub use rulebook::check_rulebook;
pub use trainer::{ScoringTrainer, check_trainer};

/// The rules an implementation broke, one line each (empty lists are never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{seam} `{name}` breaks {} rule(s):\n- {}", violations.len(), violations.join("\n- "))]
pub struct ConformanceError {
    /// Which seam was checked (`trainer`, `energy meter`, `rule book`, ...).
    pub seam: &'static str,
    /// The implementation's name.
    pub name: String,
    /// What is wrong, one entry per broken rule.
    pub violations: Vec<String>,
}

/// Collects violations while a suite runs.
pub(crate) struct Findings {
    seam: &'static str,
    name: String,
    violations: Vec<String>,
}

impl Findings {
    pub(crate) fn new(seam: &'static str, name: String) -> Self {
        Self {
            seam,
            name,
            violations: Vec::new(),
        }
    }

    /// Records `message` unless `ok`.
    pub(crate) fn expect(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.violations.push(message());
        }
    }

    /// How many violations so far.
    pub(crate) fn len(&self) -> usize {
        self.violations.len()
    }

    pub(crate) fn finish(self) -> Result<(), ConformanceError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ConformanceError {
                seam: self.seam,
                name: self.name,
                violations: self.violations,
            })
        }
    }
}

/// Whether `v` is a probability (finite, in `[0, 1]`).
pub(crate) fn is_fraction(v: f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}
