//! The chat protocol every backend speaks lives in `lemo-core`; re-exported here.

pub use lemo_core::llm::{
    AnswerSchema, BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, Role, TokenUsage,
};
