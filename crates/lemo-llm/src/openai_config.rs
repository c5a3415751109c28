//! The OpenAI backend's configuration: in every build, so a run file with `kind = "openai"`
//! parses whether or not the client (`OpenAiChat`, the `openai` feature) is compiled in.

use crate::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

/// OpenAI's own endpoint.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The default model: GPT-4 Turbo, the paper's (it used `gpt-4-1106-preview`).
pub const OPENAI_DEFAULT_MODEL: &str = "gpt-4-turbo";

/// Configuration of the OpenAI (or OpenAI-compatible) backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Model name (`gpt-4-turbo`, `gpt-4o`, or the local server's name, e.g. `qwen2.5-coder:7b`).
    pub model: String,
    /// Server base URL, up to `/v1`. `None`: `$OPENAI_BASE_URL`, else [`OPENAI_BASE_URL`].
    /// Any other server (`http://localhost:11434/v1` for Ollama) needs no key.
    pub base_url: Option<String>,
    /// Environment variable holding the key (never the key itself).
    pub api_key_env: String,
    /// Sampling temperature (the paper: 0, and 0.2 to 1 in its appendix).
    pub temperature: f32,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling seed, sent where the request does not set one.
    pub seed: Option<u64>,
    /// Ask for JSON following the IR's schema (`response_format: json_schema`); when the
    /// server rejects it, the backend falls back to plain text for the rest of the run.
    pub structured_output: bool,
    /// Timeout and retries.
    pub retry: RetryPolicy,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            model: OPENAI_DEFAULT_MODEL.to_string(),
            base_url: None,
            api_key_env: "OPENAI_API_KEY".to_string(),
            temperature: 0.0,
            max_tokens: Some(4096),
            seed: None,
            structured_output: true,
            retry: RetryPolicy::default(),
        }
    }
}

impl OpenAiConfig {
    /// The base URL this configuration talks to.
    pub fn resolved_base_url(&self) -> String {
        self.base_url
            .clone()
            .or_else(|| {
                std::env::var("OPENAI_BASE_URL")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            })
            .unwrap_or_else(|| OPENAI_BASE_URL.to_string())
            .trim()
            .trim_end_matches('/')
            .to_string()
    }
}
