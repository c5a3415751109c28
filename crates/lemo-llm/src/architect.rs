//! [`LlmArchitect`]: the [`Architect`] over any [`ChatModel`], with a [`PromptBook`].

use crate::LlmError;
use crate::chat::{AnswerSchema, BoxFuture, ChatModel, ChatRequest, Message};
use crate::prompt::{Feedback, PromptBook, TaskBrief};
use lemo_core::llm::{Architect, Proposal, ProposalKind, read_answer};

/// An architect that asks a chat model, with a [`PromptBook`].
pub struct LlmArchitect<M: ChatModel> {
    model: M,
    prompts: PromptBook,
    schema: serde_json::Value,
    structured_output: bool,
}

impl<M: ChatModel> std::fmt::Debug for LlmArchitect<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmArchitect")
            .field("model", &self.model.describe())
            .field("structured_output", &self.structured_output)
            .finish_non_exhaustive()
    }
}

impl<M: ChatModel> LlmArchitect<M> {
    /// An architect over `model` with the default prompts, asking for the IR's JSON schema.
    pub fn new(model: M) -> Self {
        LlmArchitect {
            model,
            prompts: PromptBook::default(),
            schema: lemo_arch::json_schema(),
            structured_output: true,
        }
    }

    /// Uses these prompt templates.
    pub fn with_prompts(mut self, prompts: PromptBook) -> Self {
        self.prompts = prompts;
        self
    }

    /// Whether to ask the model for JSON following the IR's schema (default true).
    pub fn with_structured_output(mut self, on: bool) -> Self {
        self.structured_output = on;
        self
    }

    /// The chat model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The prompt templates.
    pub fn prompts(&self) -> &PromptBook {
        &self.prompts
    }

    /// The first round's conversation (what [`Architect::propose_initial`] sends).
    pub fn initial_prompt(&self, brief: &TaskBrief) -> Result<Vec<Message>, LlmError> {
        self.prompts.initial(brief, &self.schema)
    }

    /// A later round's conversation (what [`Architect::propose_next`] sends).
    pub fn next_prompt(
        &self,
        brief: &TaskBrief,
        feedback: &Feedback,
    ) -> Result<Vec<Message>, LlmError> {
        self.prompts.next(brief, feedback, &self.schema)
    }

    /// The request this architect sends for `messages`: the run's seed and, with structured
    /// output, the IR's schema and the task's number of classes.
    pub fn request(&self, brief: &TaskBrief, messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages,
            seed: Some(brief.seed),
            schema: self.structured_output.then(|| AnswerSchema {
                name: "lemo_network".into(),
                schema: self.schema.clone(),
                classes: u32::try_from(brief.task.classes).ok(),
            }),
            ..ChatRequest::default()
        }
    }

    async fn ask(
        &self,
        brief: &TaskBrief,
        kind: ProposalKind,
        prompt: Vec<Message>,
    ) -> Result<Proposal, LlmError> {
        let request = self.request(brief, prompt);
        let response = self.model.chat(&request).await?;
        let outcome = read_answer(brief, &response.text, response.truncated);
        if let Err(p) = &outcome {
            tracing::info!(kind = %p.kind, "the architect's answer is not usable; a repair round may follow");
        }
        Ok(Proposal {
            architect: self.model.describe(),
            kind,
            prompt: request.messages,
            raw: response.text,
            usage: response.usage,
            latency_ms: response.latency_ms,
            model: Some(response.model),
            outcome,
        })
    }
}

impl<M: ChatModel> Architect for LlmArchitect<M> {
    fn name(&self) -> String {
        self.model.describe()
    }

    fn propose_initial<'a>(
        &'a self,
        brief: &'a TaskBrief,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let prompt = self.initial_prompt(brief)?;
            self.ask(brief, ProposalKind::Initial, prompt).await
        })
    }

    fn propose_next<'a>(
        &'a self,
        brief: &'a TaskBrief,
        feedback: &'a Feedback,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let prompt = self.next_prompt(brief, feedback)?;
            self.ask(brief, ProposalKind::Next, prompt).await
        })
    }

    fn repair<'a>(
        &'a self,
        brief: &'a TaskBrief,
        failed: &'a Proposal,
        error: &'a str,
    ) -> BoxFuture<'a, Result<Proposal, LlmError>> {
        Box::pin(async move {
            let base = if failed.prompt.is_empty() {
                self.initial_prompt(brief)?
            } else {
                failed.prompt.clone()
            };
            let prompt = self.prompts.repair(brief, &base, &failed.raw, error)?;
            self.ask(brief, ProposalKind::Repair, prompt).await
        })
    }
}
