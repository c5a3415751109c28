//! The architect seam: the [`Architect`] trait, what it proposes ([`Proposal`], [`Design`],
//! [`AnswerProblem`]) and [`read_answer`], which turns a model's text into either.

use super::{BoxFuture, Feedback, LlmError, Message, TaskBrief, TokenUsage};
use lemo_arch::{Analysis, Graph, ValidatedGraph};
use serde::{Deserialize, Serialize};

/// Which question a proposal answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalKind {
    /// The first network for a task.
    Initial,
    /// The next network, after feedback.
    Next,
    /// A corrected network, after an error.
    Repair,
}

/// A usable network: parsed and valid for the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// The network, validated for the task (with its shapes, parameters and costs).
    pub network: ValidatedGraph,
    /// What the reader had to repair in the answer, or what the offline architect did.
    pub notes: Vec<String>,
}

impl Design {
    /// The network's graph.
    pub fn graph(&self) -> &Graph {
        self.network.graph()
    }

    /// Its shapes, parameters and costs for the task.
    pub fn analysis(&self) -> &Analysis {
        self.network.analysis()
    }
}

/// Why an answer gave no usable network. The message is a repair paragraph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerProblem {
    /// A stable name: `empty`, or lemo-arch's error kind (`truncated`, `no_json`, `shape`, ...).
    pub kind: String,
    /// The paragraph for the repair prompt.
    pub message: String,
}

/// One proposal with everything the run journal keeps: the prompt, the raw answer, the cost,
/// and the network or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Which architect answered (e.g. `openai gpt-4-turbo`, `offline (rule-following, no LLM)`).
    pub architect: String,
    /// The question answered.
    pub kind: ProposalKind,
    /// The conversation sent (empty for the offline architect).
    pub prompt: Vec<Message>,
    /// The answer as received (the network as JSON for the offline architect).
    pub raw: String,
    /// Tokens spent, when reported.
    pub usage: Option<TokenUsage>,
    /// Time the answer took, in milliseconds.
    pub latency_ms: u64,
    /// The model that answered, as the server names it.
    pub model: Option<String>,
    /// The network, or the problem to send back in a repair round.
    pub outcome: Result<Design, AnswerProblem>,
}

impl Proposal {
    /// The network, when the answer gave a valid one.
    pub fn design(&self) -> Option<&Design> {
        self.outcome.as_ref().ok()
    }

    /// The problem, when it did not.
    pub fn problem(&self) -> Option<&AnswerProblem> {
        self.outcome.as_ref().err()
    }
}

/// Proposes networks: the first for a task, the next given the expert system's feedback, and a
/// repaired one given an error. Object safe: the orchestrator holds a `Box<dyn Architect>`.
///
/// An unusable answer (empty, cut off, not JSON, not a valid network) is not an error: it is a
/// [`Proposal`] whose outcome is an [`AnswerProblem`], and the orchestrator decides whether to
/// ask for a repair. Errors are for when no answer came at all (network, key, timeout).
pub trait Architect: Send + Sync {
    /// The name shown in every report.
    fn name(&self) -> String;

    /// The first network for the task (the paper's initial command).
    fn propose_initial<'a>(
        &'a self,
        brief: &'a TaskBrief,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>>;

    /// The next network, from the previous one, its metrics and the resolved instructions.
    fn propose_next<'a>(
        &'a self,
        brief: &'a TaskBrief,
        feedback: &'a Feedback,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>>;

    /// A corrected network for a proposal that failed with `error` (its
    /// [`AnswerProblem::message`], or an error found later, e.g. by the trainer).
    fn repair<'a>(
        &'a self,
        brief: &'a TaskBrief,
        failed: &'a Proposal,
        error: &'a str,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>>;
}

impl<A: Architect + ?Sized> Architect for Box<A> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn propose_initial<'a>(
        &'a self,
        brief: &'a TaskBrief,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        (**self).propose_initial(brief)
    }
    fn propose_next<'a>(
        &'a self,
        brief: &'a TaskBrief,
        feedback: &'a Feedback,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        (**self).propose_next(brief, feedback)
    }
    fn repair<'a>(
        &'a self,
        brief: &'a TaskBrief,
        failed: &'a Proposal,
        error: &'a str,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        (**self).repair(brief, failed, error)
    }
}

/// Reads an answer: the network if it parses and validates for the task, else the problem.
/// `truncated` says the model stopped at its token limit.
pub fn read_answer(brief: &TaskBrief, raw: &str, truncated: bool) -> Result<Design, AnswerProblem> {
    if raw.trim().is_empty() {
        return Err(AnswerProblem {
            kind: "empty".into(),
            message: "the answer was empty; reply with the complete network as one JSON object \
                      {\"nodes\": [...]}"
                .into(),
        });
    }
    let parsed = lemo_arch::parse_answer(raw).map_err(|e| AnswerProblem {
        kind: e.kind().to_string(),
        message: if truncated && !e.to_string().contains("truncated") {
            format!("the answer stopped at the token limit, so it is cut off; {e}")
        } else {
            e.to_string()
        },
    })?;
    let network = ValidatedGraph::new(parsed.graph, &brief.task).map_err(|e| AnswerProblem {
        kind: e.kind().to_string(),
        message: e.to_string(),
    })?;
    Ok(Design {
        network,
        notes: parsed.notes,
    })
}
