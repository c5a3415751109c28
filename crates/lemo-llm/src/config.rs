//! [`ArchitectConfig`]: which architect a run uses, chosen by configuration.

use crate::LlmError;
#[cfg(any(feature = "openai", feature = "gemini", feature = "local"))]
use crate::architect::LlmArchitect;
use crate::gemini_config::GeminiConfig;
use crate::local::LocalConfig;
use crate::offline::{OfflineArchitect, OfflineConfig};
use crate::openai_config::OpenAiConfig;
use crate::prompt::PromptBook;
use lemo_core::llm::Architect;
use serde::{Deserialize, Serialize};

/// Which architect to use, as written in a run's configuration (TOML or JSON), tagged by
/// `kind`:
///
/// ```toml
/// kind = "openai"
/// model = "qwen2.5-coder:7b"
/// base_url = "http://localhost:11434/v1"
/// temperature = 0.6
/// ```
///
/// The default is the offline architect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchitectConfig {
    /// The offline, rule-following architect (no LLM, no key).
    Offline(OfflineConfig),
    /// OpenAI or any OpenAI-compatible server (Ollama, llama.cpp, vLLM, LM Studio). Needs the
    /// `openai` feature (on by default); without it, building this architect is an error.
    #[serde(rename = "openai")]
    OpenAi(OpenAiConfig),
    /// Google Gemini. Needs the `gemini` feature (on by default); without it, building this
    /// architect is an error.
    Gemini(GeminiConfig),
    /// A GGUF model run in-process on the CPU (llama.cpp), decoding constrained to the IR's
    /// schema. Needs the `local` feature; without it, building this architect is an error.
    Local(LocalConfig),
}

impl Default for ArchitectConfig {
    fn default() -> Self {
        ArchitectConfig::Offline(OfflineConfig::default())
    }
}

impl ArchitectConfig {
    /// Builds the architect with [`ArchitectConfig::default_prompts`]. Keys come from the
    /// environment.
    pub fn build(&self) -> Result<Box<dyn Architect>, LlmError> {
        self.build_with(self.default_prompts())
    }

    /// The prompt book [`ArchitectConfig::build`] uses: [`PromptBook::chain`] for a local
    /// architect whose grammar writes chains, else [`PromptBook::default`].
    pub fn default_prompts(&self) -> PromptBook {
        match self {
            ArchitectConfig::Local(c)
                if c.structured_output && c.form == crate::NetworkForm::Chain =>
            {
                PromptBook::chain()
            }
            _ => PromptBook::default(),
        }
    }

    /// Builds the architect with these prompts (ignored by the offline architect).
    pub fn build_with(&self, prompts: PromptBook) -> Result<Box<dyn Architect>, LlmError> {
        prompts.check()?;
        Ok(match self {
            ArchitectConfig::Offline(c) => Box::new(OfflineArchitect::new(c.clone())),
            #[cfg(feature = "openai")]
            ArchitectConfig::OpenAi(c) => Box::new(
                LlmArchitect::new(crate::openai::OpenAiChat::new(c.clone())?)
                    .with_prompts(prompts)
                    .with_structured_output(c.structured_output),
            ),
            #[cfg(not(feature = "openai"))]
            ArchitectConfig::OpenAi(c) => {
                c.retry.validate().map_err(LlmError::Config)?;
                return Err(missing_feature("openai"));
            }
            #[cfg(feature = "gemini")]
            ArchitectConfig::Gemini(c) => Box::new(
                LlmArchitect::new(crate::gemini::GeminiChat::new(c.clone())?)
                    .with_prompts(prompts)
                    .with_structured_output(c.structured_output),
            ),
            #[cfg(not(feature = "gemini"))]
            ArchitectConfig::Gemini(c) => {
                c.retry.validate().map_err(LlmError::Config)?;
                return Err(missing_feature("gemini"));
            }
            #[cfg(feature = "local")]
            ArchitectConfig::Local(c) => Box::new(
                LlmArchitect::new(crate::local_engine::LocalChat::load(c.clone())?)
                    .with_prompts(prompts)
                    .with_structured_output(c.structured_output),
            ),
            #[cfg(not(feature = "local"))]
            ArchitectConfig::Local(c) => {
                c.validate().map_err(LlmError::Config)?;
                return Err(missing_feature("local"));
            }
        })
    }

    /// Reads a configuration from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, LlmError> {
        toml::from_str(text).map_err(|e| LlmError::Config(format!("architect TOML: {e}")))
    }
}

/// The error of a configuration whose `kind` needs a cargo feature this build lacks (the
/// feature and the `kind` have the same name).
#[cfg(any(
    not(feature = "openai"),
    not(feature = "gemini"),
    not(feature = "local")
))]
fn missing_feature(feature: &str) -> LlmError {
    LlmError::Config(format!(
        "kind = \"{feature}\" needs the `{feature}` feature: build with \
         `cargo build --release -p lemo-cli --features {feature}` (see docs/llm.md)"
    ))
}

/// Runs an architect's future to completion on a fresh single-threaded runtime, for callers
/// that are not async themselves. Inside an async runtime, `.await` the future instead (this
/// returns a configuration error there rather than panicking).
pub fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, LlmError>>,
) -> Result<T, LlmError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(LlmError::Config(
            "block_on called inside an async runtime; await the architect's future instead".into(),
        ));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LlmError::Config(format!("tokio runtime: {e}")))?
        .block_on(future)
}
