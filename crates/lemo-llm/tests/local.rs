//! The embedded local architect (`--features local`) with a real model: SmolLM2-135M-Instruct
//! (Q4_1 GGUF), which `scripts/fetch-model.sh` puts under target/models (or set
//! `LEMO_LOCAL_MODEL` to a GGUF file). Also the bad inputs: a missing file, a file that is not
//! GGUF, a GGUF of an architecture llama.cpp does not know, a context too small for the prompt,
//! and an answer cut off at `max_tokens`.
#![cfg(feature = "local")]
#![allow(clippy::unwrap_used)]

use lemo_arch::{Limits, Task};
use lemo_llm::{
    Architect, ArchitectConfig, ChatModel, ChatRequest, LlmArchitect, LlmError, LocalChat,
    LocalConfig, PromptBook, TaskBrief, block_on, read_answer,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn model_path() -> PathBuf {
    std::env::var_os("LEMO_LOCAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR")
                    .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
            )
            .join("../..")
            .join(lemo_llm::LOCAL_DEFAULT_MODEL_PATH)
        })
}

fn config() -> LocalConfig {
    let path = model_path();
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-model.sh (or set LEMO_LOCAL_MODEL)",
        path.display()
    );
    LocalConfig {
        model_path: path,
        ..LocalConfig::default()
    }
}

/// One loaded model for every test of this binary.
fn model() -> &'static LocalChat {
    static MODEL: OnceLock<LocalChat> = OnceLock::new();
    MODEL.get_or_init(|| LocalChat::load(config()).unwrap())
}

fn digits_brief(seed: u64) -> TaskBrief {
    TaskBrief {
        dataset: "digits (8x8 greyscale)".into(),
        task: Task {
            input: [1, 8, 8],
            classes: 10,
            limits: Limits::default(),
        },
        notes: String::new(),
        seed,
        candidate: 0,
    }
}

/// The first round's request, as the configured local architect sends it (the chain form's
/// prompts, the IR's schema, the task's classes).
fn initial_request(seed: u64) -> ChatRequest {
    let architect = LlmArchitect::new(PromptlessModel).with_prompts(PromptBook::chain());
    let brief = digits_brief(seed);
    architect.request(&brief, architect.initial_prompt(&brief).unwrap())
}

/// A model that is never asked: only for building prompts.
struct PromptlessModel;
impl ChatModel for PromptlessModel {
    fn chat<'a>(
        &'a self,
        _: &'a ChatRequest,
    ) -> lemo_llm::BoxFuture<'a, Result<lemo_llm::ChatResponse, LlmError>> {
        Box::pin(async { Err(LlmError::Config("not used".into())) })
    }
    fn describe(&self) -> String {
        "none".into()
    }
}

#[test]
fn answers_parse_as_the_ir_and_the_same_seed_gives_the_same_text() -> TestResult {
    let m = model();
    let request = initial_request(11);
    let (a, timings) = m.generate(&request)?;
    eprintln!(
        "load {:.2} s; prompt {} tokens in {:.2} s; {} tokens generated in {:.2} s:\n{}",
        m.load_seconds(),
        timings.prompt_tokens,
        timings.prompt_seconds,
        timings.generated_tokens,
        timings.generate_seconds,
        a.text
    );
    assert!(a.structured);
    assert!(!a.truncated, "cut off: {}", a.text);
    let parsed = lemo_arch::parse_answer(&a.text)?;
    assert!(!parsed.graph.nodes.is_empty());
    let usage = a.usage.unwrap();
    assert_eq!(usage.prompt_tokens, u64::from(timings.prompt_tokens));

    let b = block_on(m.chat(&request))?;
    assert_eq!(a.text, b.text, "same seed, same answer");
    assert!(m.describe().starts_with("local "));
    Ok(())
}

/// What the chain grammar guarantees, whatever the model: a chain (no `in`, no merge) of
/// feature-map layers, one global pooling, vector layers and the dense layer of 10 logits.
#[test]
fn the_chain_grammar_writes_a_network_of_the_task_s_shape() -> TestResult {
    let brief = digits_brief(1);
    let mut valid = 0;
    for seed in [21, 22, 23] {
        let (answer, _) = model().generate(&initial_request(seed))?;
        let graph = lemo_arch::parse_answer(&answer.text)?.graph;
        let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op.name()).collect();
        let last = graph.nodes.last().ok_or("no nodes")?;
        assert!(matches!(last.op, lemo_arch::Op::Dense { units: 10, .. }));
        assert!(
            graph.nodes.iter().all(|n| n.inputs.is_none()),
            "{}",
            answer.text
        );
        let pools: Vec<usize> = (0..ops.len())
            .filter(|&i| ["global_avg_pool", "flatten"].contains(&ops[i]))
            .collect();
        assert_eq!(pools.len(), 1, "one global pooling: {ops:?}");
        for (i, op) in ops.iter().enumerate() {
            let sig = lemo_arch::op_signature(op).ok_or("unknown op")?;
            assert!(!sig.merge);
            assert!(
                if i < pools[0] {
                    sig.on_map
                } else {
                    sig.on_vector || i == pools[0]
                },
                "{ops:?}"
            );
        }
        match graph.validate(&brief.task) {
            Ok(_) => valid += 1,
            Err(e) => eprintln!("seed {seed}: shaped, but not valid for the task: {e}"),
        }
    }
    eprintln!("{valid} of 3 answers valid for the task");
    Ok(())
}

#[test]
fn the_prompt_cache_saves_reading_and_changes_no_answer() -> TestResult {
    // A model of its own: the shared one's cache is filled by the other tests.
    let chat = LocalChat::load(config())?;
    let request = initial_request(5);
    let (first, t1) = chat.generate(&request)?;
    assert_eq!(
        t1.cached_prompt_tokens, 0,
        "a fresh model has nothing cached"
    );
    let (second, t2) = chat.generate(&request)?;
    assert!(
        t2.cached_prompt_tokens >= 512 && t2.cached_prompt_tokens < t2.prompt_tokens,
        "{t2:?}"
    );
    assert_eq!(
        first.text, second.text,
        "the cache must not change the answer"
    );
    // The next round's request shares the system prompt and the first turn.
    let mut next = request.clone();
    next.messages
        .push(lemo_llm::Message::assistant(first.text.clone()));
    next.messages
        .push(lemo_llm::Message::user("Make the network smaller."));
    let (_, t3) = chat.generate(&next)?;
    assert!(t3.cached_prompt_tokens >= t2.cached_prompt_tokens, "{t3:?}");
    Ok(())
}

#[test]
fn an_answer_cut_off_at_max_tokens_is_truncated_and_goes_to_repair() -> TestResult {
    let mut request = initial_request(3);
    request.max_tokens = Some(6);
    let r = model().generate(&request)?.0;
    assert!(r.truncated);
    assert_eq!(r.usage.unwrap().completion_tokens, 6);
    let problem = read_answer(&digits_brief(3), &r.text, r.truncated).unwrap_err();
    assert_eq!(problem.kind, "truncated", "{}: {problem:?}", r.text);
    Ok(())
}

#[test]
fn a_context_too_small_for_the_prompt_says_how_many_tokens_it_needs() {
    let chat = LocalChat::load(LocalConfig {
        context: Some(64),
        ..config()
    })
    .unwrap();
    let err = chat.generate(&initial_request(1)).unwrap_err();
    let LlmError::ContextTooSmall {
        needed, context, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*context, 64);
    assert!(*needed > 64);
    assert!(err.to_string().contains(&format!("needs {needed} tokens")));
}

#[test]
fn the_architect_built_from_configuration_proposes_a_parsable_network() -> TestResult {
    let cfg = ArchitectConfig::from_toml_str(&format!(
        "kind = \"local\"\nmodel_path = {:?}\ntemperature = 0.7",
        config().model_path
    ))?;
    let architect = cfg.build()?;
    assert!(architect.name().starts_with("local "));
    let p = block_on(architect.propose_initial(&digits_brief(5)))?;
    if let Some(problem) = p.problem() {
        assert!(
            !["no_json", "syntax", "truncated", "empty"].contains(&problem.kind.as_str()),
            "{problem:?}: {}",
            p.raw
        );
    }
    Ok(())
}

fn load_error(path: &Path) -> String {
    let err = LocalChat::load(LocalConfig {
        model_path: path.to_path_buf(),
        ..LocalConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, LlmError::Model { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

#[test]
fn a_missing_model_file_is_an_error_naming_the_path() {
    let text = load_error(Path::new("/nonexistent/dir/model.gguf"));
    assert!(text.contains("no such file"), "{text}");
    // the same through the configuration, as a run builds it
    let cfg = ArchitectConfig::Local(LocalConfig {
        model_path: "/nonexistent/dir/model.gguf".into(),
        ..LocalConfig::default()
    });
    assert!(matches!(cfg.build(), Err(LlmError::Model { .. })));
}

#[test]
fn a_file_that_is_not_gguf_is_an_error() -> TestResult {
    let dir = tempfile_dir()?;
    let path = dir.join("weights.gguf");
    std::fs::write(&path, b"PK\x03\x04 this is a zip, not a model")?;
    let text = load_error(&path);
    assert!(text.contains("not a GGUF file"), "{text}");
    // an empty file, and a GGUF whose header is cut short
    std::fs::write(&path, b"")?;
    assert!(load_error(&path).contains("not a GGUF file"));
    std::fs::write(&path, b"GGUF\x03\x00")?;
    assert!(load_error(&path).contains("damaged"));
    Ok(())
}

#[test]
fn a_gguf_of_an_unknown_architecture_is_an_error_naming_it() -> TestResult {
    // A valid GGUF v3 header with one key, general.architecture = "nonesuch", and no tensors.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes()); // tensors
    bytes.extend(1u64.to_le_bytes()); // metadata keys
    let key = b"general.architecture";
    bytes.extend((key.len() as u64).to_le_bytes());
    bytes.extend(key);
    bytes.extend(8u32.to_le_bytes()); // string
    let value = b"nonesuch";
    bytes.extend((value.len() as u64).to_le_bytes());
    bytes.extend(value);
    let dir = tempfile_dir()?;
    let path = dir.join("nonesuch.gguf");
    std::fs::write(&path, &bytes)?;
    let text = load_error(&path);
    assert!(text.contains("architecture `nonesuch`"), "{text}");
    Ok(())
}

/// A fresh folder under the target directory (this crate has no tempfile dependency).
fn tempfile_dir() -> std::io::Result<PathBuf> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lemo-llm-local-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
