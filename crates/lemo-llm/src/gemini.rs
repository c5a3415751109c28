//! Gemini, with google-generative-ai-rs's request and response types.
//!
//! The crate's own `Client` is not used for the call: it puts the key in the URL's query
//! string (where proxies and HTTP error messages show it), takes its timeout in whole seconds,
//! hides the `Retry-After` header and has no base-URL constructor. This backend sends the
//! crate's [`Request`] with reqwest to `{base_url}/models/{model}:generateContent`, the key
//! in the `x-goog-api-key` header, under this crate's [`RetryPolicy`](crate::RetryPolicy).

use crate::LlmError;
use crate::chat::{BoxFuture, ChatModel, ChatRequest, ChatResponse, Role, TokenUsage};
use crate::error::excerpt;
use crate::gemini_config::{GeminiConfig, to_gemini_schema};
use crate::http;
use crate::secret::{Secret, redact};
use google_generative_ai_rs::v1::gemini::request::{
    GenerationConfig, Request, SystemInstructionContent, SystemInstructionPart,
};
use google_generative_ai_rs::v1::gemini::response::{GeminiErrorResponse, GeminiResponse};
use google_generative_ai_rs::v1::gemini::{Content, Part, Role as GeminiRole};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const PROVIDER: &str = "gemini";

/// The Gemini chat backend.
pub struct GeminiChat {
    http: reqwest::Client,
    config: GeminiConfig,
    url: String,
    key: Secret,
    schema_supported: AtomicBool,
}

impl std::fmt::Debug for GeminiChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiChat")
            .field("url", &self.url)
            .field("model", &self.config.model)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl GeminiChat {
    /// A backend whose key comes from the first set variable of `config.api_key_env`.
    pub fn new(config: GeminiConfig) -> Result<Self, LlmError> {
        let names: Vec<&str> = config.api_key_env.iter().map(String::as_str).collect();
        match Secret::from_env(&names) {
            Some((key, _)) => Self::with_key(config, key),
            None => Err(LlmError::MissingKey {
                provider: PROVIDER,
                variables: config.api_key_env.join(" or "),
            }),
        }
    }

    /// A backend with an explicit key.
    pub fn with_key(config: GeminiConfig, key: Secret) -> Result<Self, LlmError> {
        config.retry.validate().map_err(LlmError::Config)?;
        if key.is_empty() {
            return Err(LlmError::MissingKey {
                provider: PROVIDER,
                variables: config.api_key_env.join(" or "),
            });
        }
        if !key.is_header_safe() {
            return Err(LlmError::Config(
                "the Gemini key contains characters not allowed in an HTTP header".into(),
            ));
        }
        let base = config.base_url.trim().trim_end_matches('/');
        let url = format!("{base}/models/{}:generateContent", config.model.trim());
        reqwest::Url::parse(&url)
            .map_err(|e| LlmError::Config(format!("gemini url `{url}`: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(config.retry.timeout())
            .build()
            .map_err(|e| LlmError::Config(format!("HTTP client: {e}")))?;
        Ok(GeminiChat {
            http,
            config,
            url,
            key,
            schema_supported: AtomicBool::new(true),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GeminiConfig {
        &self.config
    }

    /// Whether the server is still believed to accept the response schema.
    pub fn schema_supported(&self) -> bool {
        self.schema_supported.load(Ordering::Relaxed)
    }

    /// The request body, with the crate's types. System messages become the system
    /// instruction; assistant messages the `model` role.
    fn build_request(&self, request: &ChatRequest, with_schema: bool) -> Request {
        let text_part = |text: &str| Part {
            text: Some(text.to_string()),
            inline_data: None,
            file_data: None,
            video_metadata: None,
        };
        let mut system = Vec::new();
        let mut contents = Vec::new();
        for m in &request.messages {
            match m.role {
                Role::System => system.push(m.content.as_str()),
                Role::User | Role::Assistant => contents.push(Content {
                    role: if m.role == Role::User {
                        GeminiRole::User
                    } else {
                        GeminiRole::Model
                    },
                    parts: vec![text_part(&m.content)],
                }),
            }
        }
        let structured = request.schema.is_some() && self.config.structured_output;
        let generation_config = GenerationConfig {
            temperature: Some(request.temperature.unwrap_or(self.config.temperature)),
            top_p: None,
            top_k: None,
            candidate_count: None,
            max_output_tokens: request
                .max_tokens
                .or(self.config.max_tokens)
                .map(|t| t.min(i32::MAX as u32) as i32),
            stop_sequences: None,
            response_mime_type: structured.then(|| "application/json".to_string()),
            response_schema: match (&request.schema, structured && with_schema) {
                (Some(s), true) => Some(to_gemini_schema(&s.schema)),
                _ => None,
            },
        };
        let mut out = Request::new(contents, Vec::new(), Vec::new(), Some(generation_config));
        if !system.is_empty() {
            out.set_system_instruction(SystemInstructionContent {
                parts: vec![SystemInstructionPart {
                    text: Some(system.join("\n\n")),
                }],
            });
        }
        out
    }

    async fn post(&self, body: &Request) -> (Result<reqwest::Response, reqwest::Error>, u32) {
        http::counting(http::send(
            &self.config.retry,
            PROVIDER,
            || {
                self.http
                    .post(&self.url)
                    .header("x-goog-api-key", self.key.expose())
                    .json(body)
                    .send()
            },
            reqwest::Error::is_connect,
        ))
        .await
    }

    fn transport_error(&self, e: reqwest::Error, attempts: u32) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                provider: PROVIDER,
                timeout_ms: self.config.retry.timeout_ms,
            }
        } else {
            LlmError::Connection {
                provider: PROVIDER,
                attempts,
                message: self.key.redact_in(&e.without_url().to_string()),
            }
        }
    }

    async fn chat_once(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let mut with_schema = self.schema_supported();
        let mut attempts_total = 0;
        let (status, bytes) = loop {
            let body = self.build_request(request, with_schema);
            let sent_schema = body
                .generation_config
                .as_ref()
                .is_some_and(|g| g.response_schema.is_some());
            let (result, attempts) = self.post(&body).await;
            attempts_total += attempts;
            let response = result.map_err(|e| self.transport_error(e, attempts_total))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(e, attempts_total))?;
            if sent_schema && status == 400 {
                tracing::info!(
                    provider = PROVIDER,
                    "server rejected responseSchema; asking for plain JSON from now on"
                );
                self.schema_supported.store(false, Ordering::Relaxed);
                with_schema = false;
                continue;
            }
            break (status, bytes);
        };
        let body_text = String::from_utf8_lossy(&bytes);
        if !(200..300).contains(&status) {
            let message = match serde_json::from_slice::<GeminiErrorResponse>(&bytes) {
                Ok(GeminiErrorResponse::Error {
                    message, status, ..
                }) => format!("{status}: {message}"),
                Err(_) => body_text.to_string(),
            };
            return Err(LlmError::Http {
                provider: PROVIDER,
                status,
                attempts: attempts_total,
                message: excerpt(&self.key.redact_in(&message), 400),
            });
        }
        let answer = parse_answer(&bytes).ok_or_else(|| LlmError::Malformed {
            provider: PROVIDER,
            message: format!(
                "not a generateContent response; body: {}",
                excerpt(&redact(Some(&self.key), &body_text), 300)
            ),
        })?;
        Ok(ChatResponse {
            text: answer.text,
            usage: answer.usage,
            latency_ms: started.elapsed().as_millis() as u64,
            model: answer.model.unwrap_or_else(|| self.config.model.clone()),
            truncated: answer.truncated,
            structured: request.schema.is_some() && self.config.structured_output && with_schema,
        })
    }
}

impl ChatModel for GeminiChat {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.chat_once(request))
    }

    fn describe(&self) -> String {
        format!("gemini {}", self.config.model)
    }
}

struct Answer {
    text: String,
    usage: Option<TokenUsage>,
    truncated: bool,
    model: Option<String>,
}

/// The first candidate's text. Parsed with the crate's [`GeminiResponse`]; responses it
/// cannot read (newer safety categories, a candidate without content when blocked, missing
/// token counts) are read leniently from the same fields.
fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let model = value
        .get("modelVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Ok(r) = serde_json::from_value::<GeminiResponse>(value.clone()) {
        let first = r.candidates.first();
        let text = first
            .map(|c| {
                c.content
                    .parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Some(Answer {
            text,
            usage: r.usage_metadata.map(|u| TokenUsage {
                prompt_tokens: u.prompt_token_count,
                completion_tokens: u.candidates_token_count,
            }),
            truncated: first
                .and_then(|c| c.finish_reason.as_deref())
                .is_some_and(|f| f == "MAX_TOKENS"),
            model,
        });
    }
    // Lenient reading: must at least look like a generateContent response.
    let object = value.as_object()?;
    if !object.contains_key("candidates") && !object.contains_key("promptFeedback") {
        return None;
    }
    let first = value.get("candidates").and_then(|c| c.get(0));
    let text = first
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default();
    let count = |k: &str| {
        value
            .pointer(&format!("/usageMetadata/{k}"))
            .and_then(Value::as_u64)
    };
    let usage = match (count("promptTokenCount"), count("candidatesTokenCount")) {
        (None, None) => None,
        (p, c) => Some(TokenUsage {
            prompt_tokens: p.unwrap_or(0),
            completion_tokens: c.unwrap_or(0),
        }),
    };
    Some(Answer {
        text,
        usage,
        truncated: first
            .and_then(|c| c.get("finishReason"))
            .and_then(Value::as_str)
            .is_some_and(|f| f == "MAX_TOKENS"),
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parse_reads_answers_the_crate_types_reject() {
        // A safety category the crate's enum does not know, and no usage counts.
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"{\"a\":"},{"text":"1}"}]},
            "finishReason":"MAX_TOKENS","safetyRatings":[{"category":"HARM_CATEGORY_CIVIC_INTEGRITY","probability":"NEGLIGIBLE"}]}],
            "modelVersion":"gemini-x"}"#;
        let a = parse_answer(body).expect("lenient parse");
        assert_eq!(a.text, "{\"a\":1}");
        assert!(a.truncated);
        assert_eq!(a.model.as_deref(), Some("gemini-x"));
        assert!(parse_answer(br#"{"hello": 1}"#).is_none());
        assert!(parse_answer(b"<html>").is_none());
        let blocked =
            parse_answer(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).expect("blocked");
        assert_eq!(blocked.text, "");
    }
}
