//! LlmArchitect over a ChatModel of one's own, configuration, and the prompts documentation.

mod common;

use common::{brief, feedback, network_json};
use lemo_expert::Instruction;
use lemo_llm::{
    Architect, ArchitectConfig, BoxFuture, ChatModel, ChatRequest, ChatResponse, LlmArchitect,
    LlmError, OfflineConfig, PromptBook, Role, block_on,
};
use std::sync::Mutex;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A chat model of one's own: answers from a script and records the requests.
struct Scripted {
    answers: Mutex<Vec<String>>,
    seen: Mutex<Vec<ChatRequest>>,
}

impl ChatModel for Scripted {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.clone());
            }
            let text = self
                .answers
                .lock()
                .ok()
                .and_then(|mut a| a.pop())
                .unwrap_or_default();
            Ok(ChatResponse {
                text,
                model: "scripted".into(),
                ..ChatResponse::default()
            })
        })
    }

    fn describe(&self) -> String {
        "scripted".into()
    }
}

#[test]
fn a_chat_model_of_ones_own_plugs_in() -> TestResult {
    let model = Scripted {
        // Popped from the end: first a prose answer with a bad network, then a good one.
        answers: Mutex::new(vec![
            network_json(),
            "Here you go: {\"nodes\": [{\"id\": \"g\", \"op\": \"global_avg_pool\"}, {\"id\": \"fc\", \"op\": \"dense\", \"units\": 7}]}".into(),
        ]),
        seen: Mutex::new(Vec::new()),
    };
    let architect = LlmArchitect::new(model);
    let b = brief();
    let first = block_on(architect.propose_initial(&b))?;
    let problem = first
        .problem()
        .ok_or("7 units for 10 classes must be rejected")?;
    assert!(problem.message.contains("10"), "{}", problem.message);
    let fixed = block_on(architect.repair(&b, &first, &problem.message))?;
    assert!(fixed.design().is_some());
    let seen = architect.model().seen.lock().map_err(|_| "poisoned")?;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].seed, Some(42));
    assert!(seen[0].schema.is_some());
    let roles: Vec<Role> = seen[1].messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User]
    );
    Ok(())
}

#[test]
fn custom_templates_are_used() -> TestResult {
    let model = Scripted {
        answers: Mutex::new(vec![network_json()]),
        seen: Mutex::new(Vec::new()),
    };
    let prompts = PromptBook::from_toml_str(
        "system = \"IR: {ir}\"\ninitial = \"Make a tiny net for {dataset}. {task}\"",
    )?;
    let architect = LlmArchitect::new(model)
        .with_prompts(prompts)
        .with_structured_output(false);
    let p = block_on(architect.propose_initial(&brief()))?;
    assert!(p.prompt[0].content.starts_with("IR: The IR:"));
    assert!(
        p.prompt[1]
            .content
            .starts_with("Make a tiny net for CIFAR-10. Input: 3x32x32 images")
    );
    let seen = architect.model().seen.lock().map_err(|_| "poisoned")?;
    assert!(seen[0].schema.is_none());
    Ok(())
}

#[test]
fn architect_config_reads_every_kind_from_toml() -> TestResult {
    let offline = ArchitectConfig::from_toml_str("kind = \"offline\"\nmax_edits = 2")?;
    assert_eq!(
        offline,
        ArchitectConfig::Offline(OfflineConfig { max_edits: 2 })
    );
    let ollama = ArchitectConfig::from_toml_str(
        "kind = \"openai\"\nmodel = \"qwen2.5-coder:7b\"\nbase_url = \"http://localhost:11434/v1\"\ntemperature = 0.6\n[retry]\ntimeout_ms = 600000",
    )?;
    let ArchitectConfig::OpenAi(c) = &ollama else {
        return Err("expected openai".into());
    };
    assert_eq!(c.model, "qwen2.5-coder:7b");
    assert_eq!(c.retry.timeout_ms, 600_000);
    assert_eq!(c.retry.max_attempts, 5, "unset fields keep their defaults");
    // A local server needs no key: building works offline.
    #[cfg(feature = "openai")]
    assert_eq!(
        ollama.build()?.name(),
        "openai-compatible qwen2.5-coder:7b at http://localhost:11434/v1"
    );
    let gemini = ArchitectConfig::from_toml_str(
        "kind = \"gemini\"\nmodel = \"gemini-2.5-pro\"\napi_key_env = [\"LEMO_TEST_NO_SUCH_KEY\"]",
    )?;
    let ArchitectConfig::Gemini(g) = &gemini else {
        return Err("expected gemini".into());
    };
    assert_eq!(g.model, "gemini-2.5-pro");
    #[cfg(feature = "gemini")]
    assert!(matches!(
        gemini.build().err(),
        Some(LlmError::MissingKey { .. })
    ));
    assert!(ArchitectConfig::from_toml_str("kind = \"openai\"\nmodle = \"x\"").is_err());
    assert!(ArchitectConfig::from_toml_str("kind = \"claude\"").is_err());
    Ok(())
}

/// Every `kind` parses in every build; one whose client is not compiled in is a configuration
/// error naming the cargo feature to build with (`--no-default-features` tests that side).
#[test]
fn a_kind_whose_client_is_not_compiled_in_names_its_feature() -> TestResult {
    let cases = [
        (
            "openai",
            "base_url = \"http://localhost:11434/v1\"",
            cfg!(feature = "openai"),
        ),
        (
            "gemini",
            "api_key_env = [\"LEMO_TEST_NO_SUCH_KEY\"]",
            cfg!(feature = "gemini"),
        ),
        (
            "local",
            "model_path = \"no/such/model.gguf\"",
            cfg!(feature = "local"),
        ),
    ];
    for (kind, fields, compiled_in) in cases {
        let config = ArchitectConfig::from_toml_str(&format!("kind = \"{kind}\"\n{fields}"))?;
        let needs_feature = match config.build() {
            Err(LlmError::Config(message)) => message.contains(&format!("`{kind}` feature")),
            // built, or failed for its own reasons (no key, no model file)
            _ => false,
        };
        assert_eq!(needs_feature, !compiled_in, "kind = {kind}");
    }
    Ok(())
}

/// docs/prompts.md shows real rendered prompts: re-render them and compare.
#[test]
fn docs_prompts_md_matches_the_rendered_prompts() -> TestResult {
    let doc = std::fs::read_to_string(
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../docs/prompts.md"),
    )?;
    let architect = LlmArchitect::new(Scripted {
        answers: Mutex::new(Vec::new()),
        seen: Mutex::new(Vec::new()),
    });
    let b = brief();
    let initial = architect.initial_prompt(&b)?;
    let fb = feedback(
        1,
        &[
            Instruction::AddConvLayer,
            Instruction::AddSkipConnection,
            Instruction::AddDropout,
        ],
    );
    let next = architect.next_prompt(&b, &fb)?;
    // The example renders with the prompt book directly: the same text.
    assert_eq!(
        initial,
        PromptBook::default().initial(&b, &lemo_arch::json_schema())?
    );
    for text in [&initial[1].content, &next[1].content] {
        assert!(
            doc.contains(text.as_str()),
            "docs/prompts.md is stale; rerun `cargo run -p lemo-llm --example render_prompts`. Missing:\n{text}"
        );
    }
    let system_head: String = initial[0]
        .content
        .lines()
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(doc.contains(&system_head));
    Ok(())
}
