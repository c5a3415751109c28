//! The chat model and architect fakes, and the architect conformance suite.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use lemo_core::arch::{Limits, Task, starter};
use lemo_core::expert::{Command, Instruction};
use lemo_core::llm::{
    AnswerProblem, Architect, BoxFuture, ChatModel, ChatRequest, ChatResponse, Feedback, LlmError,
    Proposal, ProposalKind, TaskBrief, read_answer,
};
use lemo_core::metrics::Observed;

use crate::{ConformanceError, Findings};

/// Runs a future to completion on the calling thread, with the standard library alone. Enough
/// for futures that need no I/O reactor (the fakes, the offline architect); an HTTP backend's
/// future needs its runtime: use [`check_architect_with`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Texts handed out in order, the last one repeated (empty when there are none).
#[derive(Debug, Default)]
struct Script {
    answers: Vec<String>,
    next: AtomicUsize,
}

impl Script {
    fn new<S: Into<String>>(answers: impl IntoIterator<Item = S>) -> Self {
        Self {
            answers: answers.into_iter().map(Into::into).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.answers
            .get(i.min(self.answers.len().saturating_sub(1)))
            .cloned()
            .unwrap_or_default()
    }
}

/// A chat model that answers from a script, in order (the last answer repeated), and records
/// every request it is sent.
#[derive(Debug, Default)]
pub struct ScriptedChat {
    script: Script,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedChat {
    /// A model that answers `answers` in turn (an empty answer when there are none).
    pub fn new<S: Into<String>>(answers: impl IntoIterator<Item = S>) -> Self {
        Self {
            script: Script::new(answers),
            requests: Mutex::default(),
        }
    }

    /// The requests sent so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl ChatModel for ScriptedChat {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            if let Ok(mut r) = self.requests.lock() {
                r.push(request.clone());
            }
            Ok(ChatResponse {
                text: self.script.next(),
                model: "scripted".into(),
                ..ChatResponse::default()
            })
        })
    }

    fn describe(&self) -> String {
        "scripted chat (testkit)".into()
    }
}

/// An architect that answers from a script of texts (IR JSON or prose around it), in order,
/// the last repeated; each answer is read as an LLM's would be ([`read_answer`]).
#[derive(Debug, Default)]
pub struct ScriptedArchitect {
    script: Script,
}

impl ScriptedArchitect {
    /// An architect that answers `answers` in turn.
    pub fn new<S: Into<String>>(answers: impl IntoIterator<Item = S>) -> Self {
        Self {
            script: Script::new(answers),
        }
    }

    fn answer(&self, brief: &TaskBrief, kind: ProposalKind) -> Proposal {
        let raw = self.script.next();
        Proposal {
            architect: "scripted (testkit)".into(),
            kind,
            prompt: Vec::new(),
            outcome: read_answer(brief, &raw, false),
            raw,
            usage: None,
            latency_ms: 0,
            model: None,
        }
    }
}

impl Architect for ScriptedArchitect {
    fn name(&self) -> String {
        "scripted (testkit)".into()
    }
    fn propose_initial<'a>(
        &'a self,
        brief: &'a TaskBrief,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move { Ok(self.answer(brief, ProposalKind::Initial)) })
    }
    fn propose_next<'a>(
        &'a self,
        brief: &'a TaskBrief,
        _feedback: &'a Feedback,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move { Ok(self.answer(brief, ProposalKind::Next)) })
    }
    fn repair<'a>(
        &'a self,
        brief: &'a TaskBrief,
        _failed: &'a Proposal,
        _error: &'a str,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move { Ok(self.answer(brief, ProposalKind::Repair)) })
    }
}

/// How a caller runs an architect's future (`|f| runtime.block_on(f)` for HTTP backends).
pub type Runner<'r> =
    &'r dyn Fn(BoxFuture<'_, Result<Proposal, LlmError>>) -> Result<Proposal, LlmError>;

/// [`check_architect_with`] on the standard-library executor ([`block_on`]).
pub fn check_architect(architect: &dyn Architect) -> Result<(), ConformanceError> {
    check_architect_with(architect, &|f| block_on(f))
}

/// The architect contract, on a CIFAR-sized task, with `run` driving its futures:
///
/// - the name is not empty and names the architect in every proposal;
/// - `propose_initial`, `propose_next` (the starter network, its metrics and an "add a conv
///   layer" command as feedback) and `repair` (an unusable answer and its error) each answer,
///   with the matching [`ProposalKind`];
/// - a proposal's network is validated for the brief's task, and a proposal without one says
///   why in a non-empty repair paragraph;
/// - nothing panics.
pub fn check_architect_with(
    architect: &dyn Architect,
    run: Runner<'_>,
) -> Result<(), ConformanceError> {
    let mut f = Findings::new("architect", architect.name());
    f.expect(!architect.name().trim().is_empty(), || {
        "its name is empty".into()
    });
    let task = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    };
    let brief = TaskBrief {
        dataset: "CIFAR-10".into(),
        task: task.clone(),
        notes: String::new(),
        seed: 7,
        candidate: 0,
    };
    let mut command = Command::new();
    command.add(Instruction::AddConvLayer, 1.0);
    let feedback = Feedback {
        round: 1,
        previous: starter(&task),
        observed: Observed::new(0.6, 0.55, 1e-4, 1e-6, 800.0, 50_000),
        command: command.resolve(),
    };
    let failed = Proposal {
        architect: architect.name(),
        kind: ProposalKind::Initial,
        prompt: Vec::new(),
        raw: "{\"nodes\": [".into(),
        usage: None,
        latency_ms: 0,
        model: None,
        outcome: Err(AnswerProblem {
            kind: "truncated".into(),
            message: "the answer stops in the middle of the JSON".into(),
        }),
    };
    let initial = catch_unwind(AssertUnwindSafe(|| run(architect.propose_initial(&brief))));
    verify(
        &mut f,
        "propose_initial",
        ProposalKind::Initial,
        &task,
        initial,
    );
    let next = catch_unwind(AssertUnwindSafe(|| {
        run(architect.propose_next(&brief, &feedback))
    }));
    verify(&mut f, "propose_next", ProposalKind::Next, &task, next);
    let repaired = catch_unwind(AssertUnwindSafe(|| {
        run(architect.repair(&brief, &failed, "the answer was cut off"))
    }));
    verify(&mut f, "repair", ProposalKind::Repair, &task, repaired);
    f.finish()
}

/// Records what is wrong with one step's answer.
fn verify(
    f: &mut Findings,
    step: &str,
    kind: ProposalKind,
    task: &Task,
    answer: std::thread::Result<Result<Proposal, LlmError>>,
) {
    match answer {
        Err(_) => f.expect(false, || format!("{step} panicked")),
        Ok(Err(e)) => f.expect(false, || format!("{step} failed: {e}")),
        Ok(Ok(p)) => {
            f.expect(p.kind == kind, || {
                format!("{step} answered as {:?}, not {kind:?}", p.kind)
            });
            f.expect(!p.architect.trim().is_empty(), || {
                format!("{step}'s proposal does not name its architect")
            });
            match &p.outcome {
                Ok(d) => f.expect(d.network.task() == task, || {
                    format!("{step}'s network was validated for another task")
                }),
                Err(problem) => f.expect(!problem.message.trim().is_empty(), || {
                    format!("{step} gave no network and no reason")
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = r#"{"nodes":[{"id":"c","op":"conv2d","filters":8,"kernel":3,"padding":"same"},
      {"id":"r","op":"relu"},{"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}"#;

    #[test]
    fn the_scripted_architect_conforms() {
        assert_eq!(check_architect(&ScriptedArchitect::new([NET])), Ok(()));
    }

    #[test]
    fn the_scripted_chat_answers_in_order() {
        let chat = ScriptedChat::new(["a", "b"]);
        let req = ChatRequest::default();
        let texts: Vec<String> = (0..3)
            .map(|_| {
                block_on(chat.chat(&req))
                    .map(|r| r.text)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(texts, ["a", "b", "b"]);
        assert_eq!(chat.requests().len(), 3);
    }
}
