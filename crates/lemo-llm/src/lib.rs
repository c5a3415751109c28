//! LeMo-NADe architects: OpenAI, Gemini, OpenAI-compatible local servers and an offline
//! rule-following architect.
//!
//! Two traits are the seams. A [`ChatModel`] sends messages and returns text (with usage and
//! latency): `OpenAiChat` (OpenAI and every OpenAI-compatible server) and `GeminiChat`
//! implement it, with a per-request timeout and retries ([`RetryPolicy`]). An [`Architect`]
//! proposes networks: [`LlmArchitect`] does it over any chat model with a [`PromptBook`];
//! [`OfflineArchitect`] applies the expert system's instructions as graph edits without any
//! LLM. [`ArchitectConfig::build`] picks one from configuration.
//!
//! With the `local` feature, `LocalChat` runs a GGUF model in-process on the CPU (llama.cpp),
//! its decoding constrained to the IR's JSON schema ([`grammar_schema`]): `kind = "local"`.
//!
//! Cargo features, one per client; the configurations ([`OpenAiConfig`], [`GeminiConfig`],
//! [`LocalConfig`]) are in every build, and building an architect whose client is not compiled
//! in is an [`LlmError::Config`] naming the feature:
//!
//! | feature | default | what |
//! |---|---|---|
//! | `openai` | on | `OpenAiChat`, `kind = "openai"` (async-openai, reqwest 0.13) |
//! | `gemini` | on | `GeminiChat`, `kind = "gemini"` (google-generative-ai-rs, reqwest 0.12) |
//! | `local` | off | `LocalChat`, `kind = "local"` (llama.cpp, built from source) |
//!
//! Without `openai` and `gemini` the crate has no HTTP client at all (offline architect, your
//! own [`ChatModel`]s).
//!
//! Both traits return boxed futures, so they are object safe (`Box<dyn Architect>`) and need no
//! `async-trait`; a synchronous caller runs them with [`block_on`].
//!
//! ```
//! use lemo_arch::{Limits, Task};
//! use lemo_llm::{ArchitectConfig, TaskBrief, block_on};
//!
//! let architect = ArchitectConfig::default().build()?; // offline
//! let brief = TaskBrief {
//!     dataset: "CIFAR-10".into(),
//!     task: Task { input: [3, 32, 32], classes: 10, limits: Limits::default() },
//!     notes: String::new(),
//!     seed: 7,
//!     candidate: 0,
//! };
//! let proposal = block_on(architect.propose_initial(&brief))?;
//! assert!(proposal.design().is_some());
//! # Ok::<(), lemo_llm::LlmError>(())
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod architect;
mod chat;
mod config;
mod error;
#[cfg(feature = "gemini")]
mod gemini;
mod gemini_config;
#[cfg(any(feature = "openai", feature = "gemini"))]
mod http;
mod local;
#[cfg(feature = "local")]
mod local_engine;
mod offline;
#[cfg(feature = "openai")]
mod openai;
mod openai_config;
mod prompt;
mod retry;
mod runtime;
mod secret;

pub use architect::LlmArchitect;
pub use chat::{
    AnswerSchema, BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, Role, TokenUsage,
};
pub use config::{ArchitectConfig, block_on};
pub use error::LlmError;
#[cfg(feature = "gemini")]
pub use gemini::GeminiChat;
pub use gemini_config::{GEMINI_BASE_URL, GEMINI_DEFAULT_MODEL, GeminiConfig, to_gemini_schema};
/// The architect seam's trait and types live in `lemo-core` (a third-party backend needs no
/// HTTP client); re-exported here under their old paths.
pub use lemo_core::llm::{AnswerProblem, Architect, Design, Proposal, ProposalKind, read_answer};
pub use local::{
    GRAMMAR_MAX_INPUTS, GRAMMAR_MAX_STRING, LOCAL_DEFAULT_MODEL_PATH, LocalConfig,
    MIN_GRAMMAR_NODES, NetworkForm, grammar_schema, shape_network_grammar,
};
#[cfg(feature = "local")]
pub use local_engine::{LocalChat, LocalTimings};
pub use offline::{OFFLINE_NAME, OfflineArchitect, OfflineConfig};
#[cfg(feature = "openai")]
pub use openai::OpenAiChat;
pub use openai_config::{OPENAI_BASE_URL, OPENAI_DEFAULT_MODEL, OpenAiConfig};
pub use prompt::{
    DEFAULT_INITIAL, DEFAULT_NEXT, DEFAULT_REPAIR, DEFAULT_SYSTEM, Feedback, IR_RULES, PromptBook,
    TaskBrief, compact_json, metrics_text, task_text,
};
pub use retry::RetryPolicy;
pub use runtime::ArchitectRuntime;
pub use secret::{REDACTED, Secret};
