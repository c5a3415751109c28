//! LeMo-NADe architects: OpenAI, Gemini, OpenAI-compatible local servers and an offline
//! rule-following architect.

mod chat;
mod error;
mod gemini;
mod openai;
mod retry;
mod secret;

pub use chat::{
    AnswerSchema, BoxFuture, ChatModel, ChatRequest, ChatResponse, Message, Role, TokenUsage,
};
pub use error::LlmError;
pub use gemini::{
    GEMINI_BASE_URL, GEMINI_DEFAULT_MODEL, GeminiChat, GeminiConfig, to_gemini_schema,
};
pub use openai::{OPENAI_BASE_URL, OPENAI_DEFAULT_MODEL, OpenAiChat, OpenAiConfig};
pub use retry::RetryPolicy;
pub use secret::{REDACTED, Secret};
