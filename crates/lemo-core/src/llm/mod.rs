//! The LLM seam: a [`ChatModel`] sends messages and returns text; an [`Architect`] proposes
//! networks (over a chat model, or without one). Both return boxed futures, so they are object
//! safe and need no async runtime here: the caller brings one.

mod architect;
mod brief;
mod chat;
mod error;

pub use architect::{AnswerProblem, Architect, Design, Proposal, ProposalKind, read_answer};
pub use brief::{Feedback, TaskBrief};
pub use chat::{
    AnswerSchema, BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, Role, TokenUsage,
};
pub use error::LlmError;
