//! OpenAI, and every server that speaks its chat-completions protocol (Ollama, llama.cpp's
//! server, vLLM, LM Studio), through async-openai.
//!
//! async-openai's client builds and parses the requests; its HTTP transport is replaced (the
//! crate's `middleware` extension point) by [`RetryingTransport`], which applies this crate's
//! timeout and [`RetryPolicy`] (async-openai's built-in retry has a fixed policy and no jitter).

use crate::LlmError;
use crate::chat::{BoxFuture, ChatModel, ChatRequest, ChatResponse, Role, TokenUsage};
use crate::error::excerpt;
use crate::http;
use crate::openai_config::OpenAiConfig;
use crate::retry::RetryPolicy;
use crate::secret::{Secret, redact};
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const PROVIDER: &str = "openai";

/// Whether a base URL is OpenAI's own service (which needs a key).
fn is_openai_service(base_url: &str) -> bool {
    reqwest13::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.ends_with("api.openai.com")))
        .unwrap_or(false)
}

/// The OpenAI chat backend. Build it with [`OpenAiChat::new`] (key from the environment) or
/// [`OpenAiChat::with_key`].
pub struct OpenAiChat {
    client: async_openai::Client<OpenAIConfig>,
    config: OpenAiConfig,
    base_url: String,
    key: Option<Secret>,
    schema_supported: AtomicBool,
}

impl std::fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("base_url", &self.base_url)
            .field("model", &self.config.model)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl OpenAiChat {
    /// A backend whose key comes from `config.api_key_env`. The key is required for OpenAI's
    /// own service and optional for any other base URL.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let key = Secret::from_env(&[config.api_key_env.as_str()]).map(|(k, _)| k);
        Self::with_key(config, key)
    }

    /// A backend with an explicit key (or none).
    pub fn with_key(config: OpenAiConfig, key: Option<Secret>) -> Result<Self, LlmError> {
        config.retry.validate().map_err(LlmError::Config)?;
        let base_url = config.resolved_base_url();
        reqwest13::Url::parse(&base_url)
            .map_err(|e| LlmError::Config(format!("openai base_url `{base_url}`: {e}")))?;
        let key = key.filter(|k| !k.is_empty());
        if let Some(k) = &key {
            if !k.is_header_safe() {
                return Err(LlmError::Config(format!(
                    "the key in {} contains characters not allowed in an HTTP header",
                    config.api_key_env
                )));
            }
        } else if is_openai_service(&base_url) {
            return Err(LlmError::MissingKey {
                provider: PROVIDER,
                variables: config.api_key_env.clone(),
            });
        }
        let http = reqwest13::Client::builder()
            .timeout(config.retry.timeout())
            .build()
            .map_err(|e| LlmError::Config(format!("HTTP client: {e}")))?;
        let openai_config = OpenAIConfig::new()
            .with_api_base(base_url.clone())
            .with_api_key(
                key.as_ref()
                    .map(|k| k.expose().to_string())
                    .unwrap_or_default(),
            )
            .with_org_id("")
            .with_project_id("");
        let transport = RetryingTransport {
            http,
            policy: config.retry.clone(),
        };
        let client = async_openai::Client::with_config(openai_config).with_http_service(transport);
        Ok(OpenAiChat {
            client,
            config,
            base_url,
            key,
            schema_supported: AtomicBool::new(true),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Whether the server is still believed to accept `response_format: json_schema`.
    pub fn schema_supported(&self) -> bool {
        self.schema_supported.load(Ordering::Relaxed)
    }

    fn build_request(
        &self,
        request: &ChatRequest,
        with_schema: bool,
    ) -> CreateChatCompletionRequest {
        let messages = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestMessage::from(
                    ChatCompletionRequestSystemMessage::from(m.content.as_str()),
                ),
                Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
                Role::Assistant => {
                    ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
                }
            })
            .collect();
        let response_format = match (&request.schema, with_schema) {
            (Some(s), true) => Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: s.name.clone(),
                    schema: s.schema.clone(),
                    // The IR's schema is not in the strict subset (optional fields, tagged ops);
                    // the server then guides generation by it without rejecting it.
                    strict: Some(false),
                },
            }),
            _ => None,
        };
        let mut body = CreateChatCompletionRequest {
            messages,
            model: request
                .model
                .clone()
                .unwrap_or_else(|| self.config.model.clone()),
            temperature: Some(request.temperature.unwrap_or(self.config.temperature)),
            max_completion_tokens: None,
            response_format,
            ..Default::default()
        };
        // `max_tokens` and `seed` are deprecated by OpenAI in favour of
        // `max_completion_tokens` and nothing, but `max_tokens` is what every OpenAI-compatible
        // local server reads, and `seed` is still honoured by them and by OpenAI.
        #[allow(deprecated)]
        {
            body.max_tokens = request.max_tokens.or(self.config.max_tokens);
            body.seed = request.seed.or(self.config.seed).map(|s| s as i64);
        }
        body
    }

    fn map_error(&self, e: OpenAIError, attempts: u32) -> LlmError {
        let key = self.key.as_ref();
        match e {
            OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout {
                provider: PROVIDER,
                timeout_ms: self.config.retry.timeout_ms,
            },
            OpenAIError::Reqwest(e) => LlmError::Connection {
                provider: PROVIDER,
                attempts,
                message: redact(key, &e.to_string()),
            },
            OpenAIError::ApiError(r) => LlmError::Http {
                provider: PROVIDER,
                status: r.status_code.as_u16(),
                attempts,
                message: excerpt(&redact(key, &r.api_error.to_string()), 400),
            },
            OpenAIError::JSONDeserialize(e, body) => LlmError::Malformed {
                provider: PROVIDER,
                message: format!("{e}; body: {}", excerpt(&redact(key, &body), 300)),
            },
            OpenAIError::InvalidArgument(s) => LlmError::Config(redact(key, &s)),
            other => LlmError::Malformed {
                provider: PROVIDER,
                message: redact(key, &other.to_string()),
            },
        }
    }

    async fn chat_once(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let mut with_schema =
            request.schema.is_some() && self.config.structured_output && self.schema_supported();
        let mut attempts_total = 0;
        let response = loop {
            let body = self.build_request(request, with_schema);
            let (result, attempts) = http::counting(self.client.chat().create(body)).await;
            attempts_total += attempts;
            match result {
                Ok(r) => break r,
                Err(OpenAIError::ApiError(r))
                    if with_schema && matches!(r.status_code.as_u16(), 400 | 422 | 501) =>
                {
                    tracing::info!(
                        provider = PROVIDER,
                        status = r.status_code.as_u16(),
                        "server rejected response_format json_schema; using plain text from now on"
                    );
                    self.schema_supported.store(false, Ordering::Relaxed);
                    with_schema = false;
                }
                Err(e) => return Err(self.map_error(e, attempts_total)),
            }
        };
        let choice = response.choices.into_iter().next();
        let truncated = choice
            .as_ref()
            .and_then(|c| c.finish_reason)
            .is_some_and(|f| f == FinishReason::Length);
        let text = choice
            .map(|c| c.message.content.or(c.message.refusal).unwrap_or_default())
            .unwrap_or_default();
        Ok(ChatResponse {
            text,
            usage: response.usage.map(|u| TokenUsage {
                prompt_tokens: u64::from(u.prompt_tokens),
                completion_tokens: u64::from(u.completion_tokens),
            }),
            latency_ms: started.elapsed().as_millis() as u64,
            model: response.model,
            truncated,
            structured: with_schema,
        })
    }
}

impl ChatModel for OpenAiChat {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.chat_once(request))
    }

    fn describe(&self) -> String {
        if is_openai_service(&self.base_url) {
            format!("openai {}", self.config.model)
        } else {
            format!(
                "openai-compatible {} at {}",
                self.config.model, self.base_url
            )
        }
    }
}

/// async-openai's HTTP transport replaced by one with this crate's timeout and retry policy.
#[derive(Clone)]
struct RetryingTransport {
    http: reqwest13::Client,
    policy: RetryPolicy,
}

impl tower::Service<HttpRequestFactory> for RetryingTransport {
    type Response = reqwest13::Response;
    type Error = OpenAIError;
    type Future = BoxFuture<'static, Result<reqwest13::Response, OpenAIError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            http::send(
                &policy,
                PROVIDER,
                || {
                    let factory = factory.clone();
                    let http = http.clone();
                    async move {
                        let request = factory.build().await?;
                        http.execute(request).await.map_err(OpenAIError::Reqwest)
                    }
                },
                |e| matches!(e, OpenAIError::Reqwest(r) if r.is_connect()),
            )
            .await
        })
    }
}
