//! What an architect is told: the task ([`TaskBrief`]) and the previous round's outcome
//! ([`Feedback`]).

use lemo_arch::{Graph, Task};
use lemo_expert::ResolvedCommand;
use lemo_metrics::Observed;
use serde::{Deserialize, Serialize};

/// What the architect is asked to design for: the task (input shape, classes, budgets) and how
/// to name it in prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskBrief {
    /// Dataset name as shown to the architect, e.g. `CIFAR-10`.
    pub dataset: String,
    /// Input shape, classes and budgets.
    pub task: Task,
    /// Anything else the user wants the architect to know (target device, ...); may be empty.
    #[serde(default)]
    pub notes: String,
    /// Seed of the run: sent to models that take one, and the offline architect's seed.
    #[serde(default)]
    pub seed: u64,
    /// Which of the iteration's candidates this brief asks for (0: the first). Candidates of one
    /// iteration share the feedback; the offline architect starts candidate `c`'s edits at the
    /// `c`-th strongest instruction, so one iteration compares different instructions.
    #[serde(default)]
    pub candidate: usize,
}

/// What the expert system made of the previous round: the input of
/// [`super::Architect::propose_next`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Round number of the proposal asked for (the initial network is round 0).
    pub round: u32,
    /// The network that was trained last (the one the instructions refer to).
    pub previous: Graph,
    /// What was measured on it.
    pub observed: Observed,
    /// The expert system's resolved instructions (Algorithm 3's output), heaviest first.
    pub command: ResolvedCommand,
}
