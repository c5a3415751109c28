//! [`ValidatedGraph`]: a network that passed [`Graph::validate`] for a task, carried with its
//! analysis so nothing downstream (trainer, model builder, report) validates it again.

use serde::{Deserialize, Serialize};

use crate::error::ArchError;
use crate::ir::{Analysis, Graph, Task};

/// A graph proven valid for a task, with its [`Analysis`] (resolved inputs, shapes, counts).
///
/// The only ways to build one are [`ValidatedGraph::new`] / [`Graph::validated`] and
/// deserialisation, which validates again; so a trainer or model builder that takes a
/// `&ValidatedGraph` can rely on every rule of [`Graph::validate`] (ids resolved, inputs computed
/// before use, positive sizes, divisible groups, ranges, dense layers on vectors, logits of the
/// task's width, budgets) without re-checking them.
///
/// ```
/// use lemo_arch::{Limits, Task, ValidatedGraph, starter};
///
/// let task = Task { input: [3, 32, 32], classes: 10, limits: Limits::default() };
/// let network = ValidatedGraph::new(starter(&task), &task)?;
/// assert_eq!(network.analysis().params, network.params());
/// # Ok::<(), lemo_arch::ArchError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatedGraph {
    graph: Graph,
    task: Task,
    #[serde(skip)]
    analysis: Analysis,
    #[serde(skip)]
    hash: String,
}

impl ValidatedGraph {
    /// Validates `graph` for `task`; the error is the first problem found (a repair paragraph).
    pub fn new(graph: Graph, task: &Task) -> Result<Self, ArchError> {
        let analysis = graph.validate(task)?;
        Ok(Self {
            hash: graph.canonical_hash(),
            graph,
            task: task.clone(),
            analysis,
        })
    }

    /// The network.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The task it was validated for.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Its shapes and counts for the task.
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    /// Trainable parameters (the trainer allocates exactly these).
    pub fn params(&self) -> u64 {
        self.analysis.params
    }

    /// The canonical hash of the network ([`Graph::canonical_hash`]), computed once at
    /// validation.
    pub fn canonical_hash(&self) -> &str {
        &self.hash
    }

    /// The graph, task and analysis, taken apart.
    pub fn into_parts(self) -> (Graph, Task, Analysis) {
        (self.graph, self.task, self.analysis)
    }
}

impl Graph {
    /// Validates the graph for `task` and keeps it with its analysis ([`ValidatedGraph`]).
    pub fn validated(self, task: &Task) -> Result<ValidatedGraph, ArchError> {
        ValidatedGraph::new(self, task)
    }
}

impl AsRef<Graph> for ValidatedGraph {
    fn as_ref(&self) -> &Graph {
        &self.graph
    }
}

/// What a serialised [`ValidatedGraph`] holds; reading one validates it again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unchecked {
    graph: Graph,
    task: Task,
}

impl<'de> Deserialize<'de> for ValidatedGraph {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let u = Unchecked::deserialize(d)?;
        ValidatedGraph::new(u.graph, &u.task).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, starter};

    fn task() -> Task {
        Task {
            input: [1, 8, 8],
            classes: 10,
            limits: Limits::default(),
        }
    }

    #[test]
    fn round_trips_through_json_and_revalidates() -> Result<(), Box<dyn std::error::Error>> {
        let v = ValidatedGraph::new(starter(&task()), &task())?;
        let json = serde_json::to_string(&v)?;
        let back: ValidatedGraph = serde_json::from_str(&json)?;
        assert_eq!(back, v);
        // The same graph declared for a task it does not fit does not deserialise.
        let mut wrong = serde_json::to_value(&v)?;
        wrong["task"]["classes"] = serde_json::json!(3);
        assert!(serde_json::from_value::<ValidatedGraph>(wrong).is_err());
        Ok(())
    }
}
