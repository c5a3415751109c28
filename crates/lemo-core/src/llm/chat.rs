//! The chat protocol every backend speaks: messages in, text out.

use super::LlmError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Standing instructions (the IR, the task, the rules of the answer).
    System,
    /// The orchestrator's command.
    User,
    /// The model's earlier answer.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A JSON schema the answer should follow (structured output), with a short name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerSchema {
    /// Name of the format (`a-z A-Z 0-9 _ -`, at most 64 characters).
    pub name: String,
    /// The JSON schema.
    pub schema: serde_json::Value,
    /// Where the answer is a network: the task's number of classes. A backend that constrains
    /// decoding by a grammar (the local architect) makes the last node the dense layer of this
    /// many logits; the others ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<u32>,
}

/// One request to a chat model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Model name; `None` uses the backend's configured model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature (the paper uses 0 to 1); `None` uses the backend's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Most tokens to generate; `None` uses the backend's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling seed, where the backend supports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Ask for JSON following this schema, where the backend supports it; backends that do not
    /// (or reject it) answer in plain text and the answer is extracted from the prose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<AnswerSchema>,
}

/// Tokens spent on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

impl TokenUsage {
    /// Prompt plus answer.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::Add for TokenUsage {
    type Output = TokenUsage;
    fn add(self, o: TokenUsage) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
        }
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer text (may be empty: the architect turns that into a repair round).
    pub text: String,
    /// Tokens spent, when the server reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// Wall-clock time of the request, retries and waits included, in milliseconds.
    pub latency_ms: u64,
    /// The model that answered, as the server names it.
    pub model: String,
    /// Whether the answer stopped at the token limit (it is then probably cut short).
    #[serde(default)]
    pub truncated: bool,
    /// Whether the answer schema was enforced by the server (false: plain text was asked for,
    /// because no schema was given or the server rejected it).
    #[serde(default)]
    pub structured: bool,
}

/// A chat model: messages in, text out. Implemented by the OpenAI (and OpenAI-compatible) and
/// Gemini backends; implement it to plug in any other model.
///
/// The trait is object safe (`Box<dyn ChatModel>`): `chat` returns a boxed future. Implement
/// it with `Box::pin(async move { ... })`.
pub trait ChatModel: Send + Sync {
    /// Sends one request and waits for the answer (retries and timeouts are the backend's).
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;

    /// A short description for reports, e.g. `openai gpt-4-turbo`. Never contains a key.
    fn describe(&self) -> String;
}

impl<M: ChatModel + ?Sized> ChatModel for Box<M> {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        (**self).chat(request)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<M: ChatModel + ?Sized> ChatModel for std::sync::Arc<M> {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        (**self).chat(request)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}
