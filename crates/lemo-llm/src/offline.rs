//! The offline architect: follows the expert system's instructions with lemo-arch's graph
//! edits, without any LLM. Deterministic for a seed; the default when nothing is configured,
//! and the ablation "the rules alone".

use crate::LlmError;
use crate::chat::BoxFuture;
use crate::prompt::{Feedback, TaskBrief, compact_json};
use lemo_arch::{Graph, ValidatedGraph};
use lemo_core::llm::{AnswerProblem, Architect, Design, Proposal, ProposalKind};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The offline architect's name, as every report shows it.
pub const OFFLINE_NAME: &str = "offline (rule-following, no LLM)";

/// Configuration of the offline architect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    /// Most instructions applied per round, strongest first.
    pub max_edits: usize,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { max_edits: 3 }
    }
}

/// Starts from [`lemo_arch::starter`] and applies the resolved instructions (strongest first,
/// at most `max_edits` a round) as [`Graph::apply`] edits, each seeded from the run seed, the
/// round and its rank: the same seed gives the same sequence of networks. Candidate `c` of an
/// iteration ([`TaskBrief::candidate`]) starts at the `c`-th strongest instruction instead, so
/// with `max_edits = 1` and k candidates one iteration compares the k strongest instructions.
#[derive(Debug, Clone, Default)]
pub struct OfflineArchitect {
    config: OfflineConfig,
}

impl OfflineArchitect {
    /// An offline architect.
    pub fn new(config: OfflineConfig) -> Self {
        OfflineArchitect { config }
    }

    fn proposal(
        kind: ProposalKind,
        brief: &TaskBrief,
        graph: Graph,
        notes: Vec<String>,
        started: Instant,
    ) -> Proposal {
        let raw = compact_json(&graph);
        let outcome = match ValidatedGraph::new(graph, &brief.task) {
            Ok(network) => Ok(Design { network, notes }),
            Err(e) => Err(AnswerProblem {
                kind: e.kind().to_string(),
                message: e.to_string(),
            }),
        };
        Proposal {
            architect: OFFLINE_NAME.to_string(),
            kind,
            prompt: Vec::new(),
            raw,
            usage: None,
            latency_ms: started.elapsed().as_millis() as u64,
            model: None,
            outcome,
        }
    }

    /// The next network: the instructions applied in order to the previous network.
    pub fn next_graph(&self, brief: &TaskBrief, feedback: &Feedback) -> (Graph, Vec<String>) {
        let mut graph = feedback.previous.clone();
        let mut notes = Vec::new();
        if let Err(e) = graph.validate(&brief.task) {
            notes.push(format!("the previous network is not valid for the task ({e}); starting over from the starter network"));
            graph = lemo_arch::starter(&brief.task);
        }
        if feedback.command.is_empty() {
            // No rule fired: every threshold is met. Keep searching with a seeded exploratory
            // edit rather than proposing the same network again.
            let before = graph.canonical_hash();
            let seed = mix(brief.seed, u64::from(feedback.round), 0xE4);
            match graph.explore(&brief.task, seed, |g| g.canonical_hash() != before) {
                Ok(Some(edit)) => {
                    notes.push(format!(
                        "no instruction fired: exploratory edit, {}",
                        edit.note
                    ));
                    graph = edit.graph;
                }
                _ => notes.push(
                    "no instructions and no exploratory edit applies: network unchanged"
                        .to_string(),
                ),
            }
        }
        // Candidate c of an iteration starts at the c-th strongest instruction (wrapping), so
        // the candidates of one iteration follow different instructions of the same command.
        let resolved: Vec<_> = feedback.command.instructions().collect();
        let start = brief.candidate.checked_rem(resolved.len()).unwrap_or(0);
        let edits = resolved.len().min(self.config.max_edits);
        let rotated = resolved.iter().cycle().skip(start).take(edits);
        for (rank, &instruction) in rotated.enumerate() {
            let seed = mix(brief.seed, u64::from(feedback.round), rank as u64);
            match graph.apply(instruction, &brief.task, seed) {
                Ok(edit) => {
                    notes.push(edit.note);
                    graph = edit.graph;
                }
                Err(e) => notes.push(format!("{}: not applied ({e})", instruction.code())),
            }
        }
        (graph, notes)
    }
}

/// SplitMix64-style mixing of the run seed, the round and the rank of the instruction.
fn mix(seed: u64, round: u64, rank: u64) -> u64 {
    let mut z =
        seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ rank.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Architect for OfflineArchitect {
    fn name(&self) -> String {
        OFFLINE_NAME.to_string()
    }

    fn propose_initial<'a>(
        &'a self,
        brief: &'a TaskBrief,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let started = Instant::now();
            let graph = lemo_arch::starter(&brief.task);
            let notes = vec!["starter network for the task".to_string()];
            Ok(Self::proposal(
                ProposalKind::Initial,
                brief,
                graph,
                notes,
                started,
            ))
        })
    }

    fn propose_next<'a>(
        &'a self,
        brief: &'a TaskBrief,
        feedback: &'a Feedback,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let started = Instant::now();
            let (graph, notes) = self.next_graph(brief, feedback);
            Ok(Self::proposal(
                ProposalKind::Next,
                brief,
                graph,
                notes,
                started,
            ))
        })
    }

    /// The offline architect's networks always validate (edits that would break the task are
    /// not made), except a starter that no budget admits; a repair gives the starter again.
    /// A repair of a *valid* network is a novelty round (the network was evaluated before): it
    /// answers with a seeded exploratory edit of that network.
    fn repair<'a>(
        &'a self,
        brief: &'a TaskBrief,
        failed: &'a Proposal,
        error: &'a str,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let started = Instant::now();
            let excerpt = crate::error::excerpt(error, 120);
            let explored = failed.design().and_then(|d| {
                let before = d.network.canonical_hash();
                d.graph()
                    .explore(&brief.task, mix(brief.seed, 0x4E0E, 1), |g| {
                        g.canonical_hash() != before
                    })
                    .ok()
                    .flatten()
            });
            let (graph, notes) = match explored {
                Some(edit) => (
                    edit.graph,
                    vec![format!(
                        "novelty round after `{excerpt}`: exploratory edit, {}",
                        edit.note
                    )],
                ),
                None => (
                    lemo_arch::starter(&brief.task),
                    vec![format!("repair after `{excerpt}`: the starter network")],
                ),
            };
            Ok(Self::proposal(
                ProposalKind::Repair,
                brief,
                graph,
                notes,
                started,
            ))
        })
    }
}
