//! Shared fixtures of the protocol tests.
#![allow(dead_code)]

use lemo_arch::{Limits, Task};
use lemo_expert::{Command, Instruction, ResolvedCommand};
use lemo_llm::{Feedback, RetryPolicy, TaskBrief, compact_json};
use lemo_metrics::Observed;

/// A CIFAR-10-like brief.
pub fn brief() -> TaskBrief {
    TaskBrief {
        dataset: "CIFAR-10".into(),
        task: Task {
            input: [3, 32, 32],
            classes: 10,
            limits: Limits::default(),
        },
        notes: String::new(),
        seed: 42,
        candidate: 0,
    }
}

/// A resolved command of the given instructions, weights descending.
pub fn command(instructions: &[Instruction]) -> ResolvedCommand {
    let mut c = Command::new();
    for (k, i) in instructions.iter().enumerate() {
        c.set(*i, 1.0 - 0.1 * k as f64);
    }
    c.resolve()
}

/// Feedback on the starter network asking for `instructions` (the same as the
/// `render_prompts` example, which writes docs/prompts.md).
pub fn feedback(round: u32, instructions: &[Instruction]) -> Feedback {
    let previous = lemo_arch::starter(&brief().task);
    let params = previous
        .validate(&brief().task)
        .map(|a| a.params)
        .unwrap_or(0);
    Feedback {
        round,
        previous,
        observed: Observed::new(0.62, 0.55, 2.0e-3, 1.0e-5, 9_000.0, params),
        command: command(instructions),
    }
}

/// Tiny waits so that retry tests run in milliseconds.
pub fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        timeout_ms: 5_000,
        max_attempts,
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        max_retry_after_ms: 5_000,
        jitter: 0.0,
    }
}

/// A valid network for the brief, as an LLM would write it.
pub fn network_json() -> String {
    compact_json(&lemo_arch::starter(&brief().task))
}
