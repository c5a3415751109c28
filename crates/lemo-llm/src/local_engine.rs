//! [`LocalChat`]: a GGUF model run in-process on the CPU by llama.cpp (the `llama-cpp-2`
//! crate), its decoding constrained by a grammar derived from the answer's JSON schema.
//!
//! llama.cpp does the tokenizer (from the GGUF vocabulary), the chat template (from the GGUF
//! metadata), the JSON-schema-to-grammar conversion (`json_schema_to_grammar`, llama.cpp's own
//! converter) and the grammar, nucleus, temperature and seeded sampling. This file only wires
//! them together and turns every failure into an [`LlmError`].

use crate::LlmError;
use crate::chat::{
    AnswerSchema, BoxFuture, ChatModel, ChatRequest, ChatResponse, Role, TokenUsage,
};
use crate::local::{LocalConfig, grammar_schema, shape_network_grammar};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The context window used when the configuration sets none (capped by the model's own).
const DEFAULT_CONTEXT: u32 = 8192;
/// Tokens decoded per llama.cpp batch while reading the prompt.
const PROMPT_BATCH: u32 = 512;

/// llama.cpp's process-wide backend, initialised once (its logs go to `tracing`).
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("llama.cpp backend: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One generation at a time in this process: llama.cpp's worker threads spin while they wait,
/// so two generations sharing the cores (parallel tests, two models) run many times slower
/// than one after the other.
static GENERATING: Mutex<()> = Mutex::new(());

/// Timings of one answer, for the log and the measurements in docs/llm.md.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LocalTimings {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Of those, how many were restored from the previous request's prompt (not read again).
    pub cached_prompt_tokens: u32,
    /// Seconds spent reading the prompt.
    pub prompt_seconds: f64,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Seconds spent generating (sampling under the grammar included).
    pub generate_seconds: f64,
}

/// The model's memory (KV state) after reading the last prompt, kept so that the next request
/// reads only the tokens after the prefix the two share: in a discovery every request starts
/// with the same system prompt (the IR's rules, schema and example: thousands of tokens).
struct PromptCache {
    tokens: Vec<LlamaToken>,
    state: SeqState,
}

/// A GGUF model run in-process by llama.cpp: a [`ChatModel`] for [`crate::LlmArchitect`].
/// Build it with [`LocalChat::load`]; each request gets a fresh context (the prompt's common
/// prefix with the previous request is restored from a cache of its memory, which changes no
/// result), so answers depend only on the request (same messages, schema and seed: same text).
pub struct LocalChat {
    model: LlamaModel,
    config: LocalConfig,
    template: LlamaChatTemplate,
    template_source: &'static str,
    name: String,
    context: u32,
    trained_context: u32,
    threads: i32,
    load_seconds: f64,
    prompt_cache: Mutex<Option<PromptCache>>,
}

impl std::fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChat")
            .field("model_path", &self.config.model_path)
            .field("name", &self.name)
            .field("context", &self.context)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn model_error(path: &Path, message: impl Into<String>) -> LlmError {
    LlmError::Model {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Checks that `path` is a readable GGUF file and returns its `general.architecture`.
fn inspect(path: &Path) -> Result<String, LlmError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        model_error(
            path,
            if e.kind() == std::io::ErrorKind::NotFound {
                "no such file (scripts/fetch-model.sh fetches the small test model)".to_string()
            } else {
                format!("cannot open: {e}")
            },
        )
    })?;
    let mut magic = [0u8; 4];
    let n = file
        .read(&mut magic)
        .map_err(|e| model_error(path, format!("cannot read: {e}")))?;
    if n < 4 || &magic != b"GGUF" {
        return Err(model_error(
            path,
            format!(
                "not a GGUF file (it starts with {:?}, a GGUF file with \"GGUF\")",
                String::from_utf8_lossy(magic.get(..n).unwrap_or(magic.as_slice()))
            ),
        ));
    }
    let gguf = GgufContext::from_file(path)
        .ok_or_else(|| model_error(path, "damaged GGUF file: its header cannot be read"))?;
    let key = gguf.find_key("general.architecture");
    let arch = (key >= 0)
        .then(|| gguf.val_str(key))
        .flatten()
        .ok_or_else(|| model_error(path, "the GGUF metadata names no general.architecture"))?;
    Ok(arch.to_string())
}

impl LocalChat {
    /// Loads the model of `config.model_path`. A missing file, a file that is not GGUF, or an
    /// architecture llama.cpp cannot run is an [`LlmError::Model`] naming the path.
    pub fn load(config: LocalConfig) -> Result<Self, LlmError> {
        config.validate().map_err(LlmError::Config)?;
        let path = config.model_path.clone();
        let arch = inspect(&path)?;
        let backend = backend().map_err(|e| model_error(&path, e))?;
        let start = Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| {
                model_error(
                    &path,
                    format!(
                        "llama.cpp cannot load this model (architecture `{arch}`: not supported by \
                         this llama.cpp, or a damaged file): {e}"
                    ),
                )
            })?;
        let load_seconds = start.elapsed().as_secs_f64();
        let (template, template_source) = match &config.chat_template {
            Some(t) => (
                LlamaChatTemplate::new(t)
                    .map_err(|e| LlmError::Config(format!("local chat_template: {e}")))?,
                "configured",
            ),
            None => match model.chat_template(None) {
                Ok(t) => (t, "GGUF metadata"),
                Err(_) => (
                    LlamaChatTemplate::new("chatml")
                        .map_err(|e| LlmError::Config(format!("chatml template: {e}")))?,
                    "ChatML (the GGUF has none)",
                ),
            },
        };
        let file_name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let name = model
            .meta_val_str("general.name")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(file_name);
        let trained_context = model.n_ctx_train().max(1);
        let context = config
            .context
            .unwrap_or(DEFAULT_CONTEXT.min(trained_context))
            .max(1);
        let threads = config
            .threads
            .map(|t| t as usize)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .clamp(1, 512) as i32;
        tracing::info!(
            path = %path.display(),
            %arch,
            model = %name,
            params = model.n_params(),
            load_seconds,
            context,
            threads,
            template = template_source,
            "local model loaded"
        );
        Ok(LocalChat {
            model,
            config,
            template,
            template_source,
            name,
            context,
            trained_context,
            threads,
            load_seconds,
            prompt_cache: Mutex::new(None),
        })
    }

    /// Seconds [`LocalChat::load`] spent in llama.cpp's model loader.
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// The model's name (GGUF `general.name`, else the file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the chat template came from (`GGUF metadata`, `configured`, or ChatML).
    pub fn template_source(&self) -> &'static str {
        self.template_source
    }

    /// The prompt as the model reads it: the messages through the chat template, the
    /// assistant's turn opened.
    pub fn render_prompt(&self, request: &ChatRequest) -> Result<String, LlmError> {
        let messages = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                LlamaChatMessage::new(role.into(), m.content.clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LlmError::Prompt(format!("a message holds a NUL byte: {e}")))?;
        self.model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| self.error(format!("chat template: {e}")))
    }

    fn error(&self, message: impl Into<String>) -> LlmError {
        model_error(&self.config.model_path, message)
    }

    /// Answers one request synchronously, with its timings.
    pub fn generate(
        &self,
        request: &ChatRequest,
    ) -> Result<(ChatResponse, LocalTimings), LlmError> {
        // A poisoned lock only means another generation panicked; the lock guards no data.
        let _one_at_a_time = GENERATING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = Instant::now();
        let backend = backend().map_err(|e| self.error(e))?;
        let prompt = self.render_prompt(request)?;
        let vocab = self.model.vocab();
        // A template that writes the BOS token itself must not get a second one.
        let bos = vocab.token_to_piece(vocab.bos(), true, None);
        let add_bos = !(bos.is_empty() || prompt.as_bytes().starts_with(&bos));
        let tokens = vocab.tokenize(prompt.as_bytes(), add_bos, true);
        if tokens.is_empty() {
            return Err(LlmError::Prompt("the prompt is empty".into()));
        }
        let n_prompt = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if n_prompt.saturating_add(1) > self.context {
            return Err(LlmError::ContextTooSmall {
                needed: n_prompt.saturating_add(1),
                context: self.context,
                trained: self.trained_context,
            });
        }
        let max_tokens = request
            .max_tokens
            .unwrap_or(self.config.max_tokens)
            .clamp(1, self.context - n_prompt);
        let n_ctx = (n_prompt + max_tokens)
            .next_multiple_of(256)
            .min(self.context);

        let grammar = match &request.schema {
            Some(s) => Some(self.grammar(s)?),
            None => None,
        };
        let mut grammar_sampler = match &grammar {
            Some(g) => Some(
                LlamaSampler::grammar(&self.model, g, "root")
                    .map_err(|e| self.error(format!("grammar: {e}")))?,
            ),
            None => None,
        };
        let mut chain = Vec::new();
        let temperature = request.temperature.unwrap_or(self.config.temperature);
        if temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            let seed = request.seed.or(self.config.seed).unwrap_or(0);
            chain.push(LlamaSampler::top_p(self.config.top_p, 1));
            chain.push(LlamaSampler::temp(temperature));
            chain.push(LlamaSampler::dist((seed ^ (seed >> 32)) as u32));
        }
        let mut sampler = LlamaSampler::chain_simple(chain);

        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(PROMPT_BATCH)
            .with_n_ubatch(PROMPT_BATCH)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = self
            .model
            .new_context(backend, params)
            .map_err(|e| self.error(format!("context of {n_ctx} tokens: {e}")))?;

        // Read the prompt, in batches, after the prefix restored from the cache; logits only
        // for its last token.
        let cached = self.restore_prefix(&mut ctx, &tokens, n_ctx);
        let mut batch = LlamaBatch::new(PROMPT_BATCH as usize, 1);
        let rest = tokens.get(cached..).unwrap_or_default();
        let chunks: Vec<&[LlamaToken]> = rest.chunks(PROMPT_BATCH as usize).collect();
        let mut pos = i32::try_from(cached).unwrap_or(0);
        for (c, chunk) in chunks.iter().enumerate() {
            batch.clear();
            for (i, t) in chunk.iter().enumerate() {
                let last = c + 1 == chunks.len() && i + 1 == chunk.len();
                batch
                    .add(*t, pos, &[0], last)
                    .map_err(|e| self.error(format!("batch: {e}")))?;
                pos += 1;
            }
            ctx.decode(&mut batch)
                .map_err(|e| self.error(format!("reading the prompt: {e}")))?;
        }
        let prompt_seconds = start.elapsed().as_secs_f64();
        self.remember_prompt(&ctx, tokens);

        // Generate until end of generation or `max_tokens`.
        let gen_start = Instant::now();
        let mut text = Vec::new();
        let mut generated = 0u32;
        let mut finished = false;
        while generated < max_tokens {
            let token = self.sample(
                &ctx,
                batch.n_tokens() - 1,
                &mut sampler,
                grammar_sampler.as_mut(),
            )?;
            if vocab.is_eog(token) {
                finished = true;
                break;
            }
            text.extend(vocab.token_to_piece(token, false, None));
            generated += 1;
            batch.clear();
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| self.error(format!("batch: {e}")))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| self.error(format!("generating: {e}")))?;
        }
        let timings = LocalTimings {
            prompt_tokens: n_prompt,
            cached_prompt_tokens: u32::try_from(cached).unwrap_or(u32::MAX),
            prompt_seconds,
            generated_tokens: generated,
            generate_seconds: gen_start.elapsed().as_secs_f64(),
        };
        tracing::info!(
            prompt_tokens = n_prompt,
            cached_prompt_tokens = cached,
            prompt_tokens_per_s = (f64::from(n_prompt) - cached as f64) / prompt_seconds.max(1e-9),
            generated_tokens = generated,
            generated_tokens_per_s = f64::from(generated) / timings.generate_seconds.max(1e-9),
            truncated = !finished,
            "local model answered"
        );
        Ok((
            ChatResponse {
                text: String::from_utf8_lossy(&text).into_owned(),
                usage: Some(TokenUsage {
                    prompt_tokens: u64::from(n_prompt),
                    completion_tokens: u64::from(generated),
                }),
                latency_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                model: self.name.clone(),
                truncated: !finished,
                structured: grammar.is_some(),
            },
            timings,
        ))
    }
}

impl LocalChat {
    /// The grammar of an answer: llama.cpp's converter on [`grammar_schema`], the `nodes`
    /// array given the shape of a network for the task ([`shape_network_grammar`]; where that
    /// fails, a warning and the plain schema's grammar: answers are still JSON of the IR), and
    /// compact whitespace.
    fn grammar(&self, schema: &AnswerSchema) -> Result<String, LlmError> {
        let (form, max_nodes) = (self.config.form, self.config.max_nodes);
        let text = grammar_schema(&schema.schema, max_nodes, form);
        let grammar = llama_cpp_2::json_schema_to_grammar(&text)
            .map_err(|e| self.error(format!("answer schema to grammar: {e}")))?;
        let shaped = shape_network_grammar(&grammar, form, max_nodes, schema.classes)
            .unwrap_or_else(|e| {
                tracing::warn!("the local grammar keeps the schema's shape: {e}");
                grammar
            });
        Ok(compact_whitespace(&shaped))
    }
}

/// The grammar with JSON whitespace limited to one optional space: llama.cpp's converter allows
/// newlines and up to 20 spaces of indentation between tokens, which a small model spends many
/// tokens on. The language of JSON values is unchanged.
fn compact_whitespace(grammar: &str) -> String {
    grammar
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("space ::=") {
                r#"space ::= | " ""#
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl LocalChat {
    /// Restores the cached memory of the prefix `tokens` shares with the previous prompt into
    /// `ctx` and returns its length (0: nothing restored, read the whole prompt). The length is
    /// a whole number of prompt batches, so the rest is read in exactly the batches it would be
    /// read in without the cache (the same arithmetic: the same answer), and the last prompt
    /// token is always read again (its logits start the answer).
    fn restore_prefix(
        &self,
        ctx: &mut LlamaContext<'_>,
        tokens: &[LlamaToken],
        n_ctx: u32,
    ) -> usize {
        let Ok(guard) = self.prompt_cache.lock() else {
            return 0;
        };
        let Some(cache) = guard.as_ref() else {
            return 0;
        };
        let common = cache
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        let batch = PROMPT_BATCH as usize;
        let keep = common.min(tokens.len().saturating_sub(1)) / batch * batch;
        if keep == 0 || cache.tokens.len() > n_ctx as usize {
            return 0;
        }
        let restored = ctx.state_seq_set(&cache.state, 0).is_ok()
            && matches!(
                ctx.clear_kv_cache_seq(Some(0), u32::try_from(keep).ok(), None),
                Ok(true)
            );
        if restored {
            keep
        } else {
            tracing::debug!("prompt cache not restored: reading the whole prompt");
            ctx.clear_kv_cache();
            0
        }
    }

    /// Keeps the memory of the prompt just read for the next request.
    fn remember_prompt(&self, ctx: &LlamaContext<'_>, tokens: Vec<LlamaToken>) {
        let Ok(state) = ctx.state_seq_get(0, LlamaStateSeqFlags::empty()) else {
            return;
        };
        if let Ok(mut guard) = self.prompt_cache.lock() {
            *guard = Some(PromptCache { tokens, state });
        }
    }

    /// One token, as llama.cpp's own common sampler does it: sample without the grammar, check
    /// that one token against the grammar, and only when it is rejected apply the grammar to the
    /// whole vocabulary and sample again (the grammar over ~50k tokens every step is slow).
    fn sample(
        &self,
        ctx: &llama_cpp_2::context::LlamaContext<'_>,
        idx: i32,
        chain: &mut LlamaSampler,
        grammar: Option<&mut LlamaSampler>,
    ) -> Result<LlamaToken, LlmError> {
        let mut candidates = ctx.token_data_array_ith(idx);
        candidates.apply_sampler(chain);
        let mut token = candidates
            .selected_token()
            .ok_or_else(|| self.error("the sampler selected no token"))?;
        if let Some(g) = grammar {
            let mut single =
                LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
            single.apply_sampler(g);
            let allowed = single.data.first().is_some_and(|d| d.logit().is_finite());
            if !allowed {
                let mut candidates = ctx.token_data_array_ith(idx);
                candidates.apply_sampler(g);
                candidates.apply_sampler(chain);
                token = candidates
                    .selected_token()
                    .ok_or_else(|| self.error("the grammar allows no token here"))?;
            }
            g.accept(token);
        }
        chain.accept(token);
        Ok(token)
    }
}

impl ChatModel for LocalChat {
    /// Runs on the calling thread (llama.cpp uses its own worker threads): the future does all
    /// its work when first polled.
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move { self.generate(request).map(|(r, _)| r) })
    }

    fn describe(&self) -> String {
        format!("local {}", self.name)
    }
}
