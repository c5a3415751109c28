//! The crate's error type.

use thiserror::Error;

/// What can go wrong talking to an architect. Messages never contain an API key: every backend
/// passes what it reports through [`crate::Secret::redact_in`].
#[derive(Debug, Error)]
pub enum LlmError {
    /// The backend needs an API key and none of the environment variables holds one.
    #[error(
        "{provider}: no API key; set {variables} (or configure a base URL of a local server that needs none)"
    )]
    MissingKey {
        /// Provider name (`openai`, `gemini`).
        provider: &'static str,
        /// The environment variables looked at, e.g. `OPENAI_API_KEY`.
        variables: String,
    },
    /// The configuration is unusable (bad URL, key with control characters, bad value).
    #[error("invalid architect configuration: {0}")]
    Config(String),
    /// No answer within the per-request timeout.
    #[error("{provider}: no answer within {timeout_ms} ms (request timeout)")]
    Timeout {
        /// Provider name.
        provider: &'static str,
        /// The timeout that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// The server could not be reached, after every attempt.
    #[error("{provider}: connection failed after {attempts} attempt(s): {message}")]
    Connection {
        /// Provider name.
        provider: &'static str,
        /// Attempts made.
        attempts: u32,
        /// What the HTTP client said (redacted).
        message: String,
    },
    /// The server answered with an error status (for 429 and 5xx: after every attempt).
    #[error("{provider}: HTTP {status} after {attempts} attempt(s): {message}")]
    Http {
        /// Provider name.
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The server's error message (redacted, shortened).
        message: String,
    },
    /// The server answered 200 but the body is not the provider's protocol.
    #[error("{provider}: malformed response body: {message}")]
    Malformed {
        /// Provider name.
        provider: &'static str,
        /// What was wrong, with the start of the body (redacted).
        message: String,
    },
    /// A prompt template could not be loaded or rendered.
    #[error("prompt book: {0}")]
    Prompt(String),
    /// The local model could not be loaded or run (missing file, not GGUF, unsupported
    /// architecture, engine failure).
    #[error("local model `{path}`: {message}")]
    Model {
        /// The model file, as configured.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The prompt does not fit the local model's context window.
    #[error(
        "local model: the prompt needs {needed} tokens but the context window holds {context}; \
         raise `context` in [architect] (the model allows up to {trained})"
    )]
    ContextTooSmall {
        /// Tokens the prompt needs (plus one for the answer).
        needed: u32,
        /// The configured context window, in tokens.
        context: u32,
        /// The model's training context, in tokens.
        trained: u32,
    },
}

impl LlmError {
    /// Whether trying the same request again later may succeed (rate limits, server errors,
    /// timeouts, connection failures), as opposed to a configuration or protocol problem.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Timeout { .. } | LlmError::Connection { .. } => true,
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
