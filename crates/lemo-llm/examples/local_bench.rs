//! Measures the local architect on this machine: model load time, prompt and generation speed,
//! and the seconds per proposal, on the digits task's first-round prompt (the figures of
//! docs/llm.md).
//!
//! ```sh
//! scripts/fetch-model.sh
//! cargo run --release -p lemo-llm --features local --example local_bench -- [MODEL.gguf] [RUNS]
//! ```

use lemo_arch::{Limits, Task};
use lemo_llm::{LlmArchitect, LocalChat, LocalConfig, PromptBook, TaskBrief};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model_path = args
        .next()
        .unwrap_or_else(|| lemo_llm::LOCAL_DEFAULT_MODEL_PATH.to_string());
    let runs: u64 = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let chat = LocalChat::load(LocalConfig {
        model_path: model_path.into(),
        ..LocalConfig::default()
    })?;
    println!(
        "model {} loaded in {:.2} s (chat template: {})",
        chat.name(),
        chat.load_seconds(),
        chat.template_source()
    );
    let architect = LlmArchitect::new(chat).with_prompts(PromptBook::chain());
    for seed in 1..=runs {
        let brief = TaskBrief {
            dataset: "digits (8x8 greyscale)".into(),
            task: Task {
                input: [1, 8, 8],
                classes: 10,
                limits: Limits::default(),
            },
            notes: String::new(),
            seed,
            candidate: 0,
        };
        let mut request = architect.request(&brief, architect.initial_prompt(&brief)?);
        request.max_tokens = std::env::var("LEMO_BENCH_MAX_TOKENS")
            .ok()
            .and_then(|v| v.parse().ok());
        if std::env::var_os("LEMO_BENCH_NO_GRAMMAR").is_some() {
            request.schema = None;
        }
        let start = std::time::Instant::now();
        let (answer, t) = architect.model().generate(&request)?;
        let outcome = match lemo_llm::read_answer(&brief, &answer.text, answer.truncated) {
            Ok(d) => format!("valid, {} nodes", d.graph().nodes.len()),
            Err(p) => format!("not usable: {}", p.kind),
        };
        println!(
            "seed {seed}: {:.1} s; prompt {} tokens ({} from the cache), read at {:.0} tokens/s; {} tokens generated at {:.1} tokens/s; {outcome}",
            start.elapsed().as_secs_f64(),
            t.prompt_tokens,
            t.cached_prompt_tokens,
            f64::from(t.prompt_tokens - t.cached_prompt_tokens) / t.prompt_seconds,
            t.generated_tokens,
            f64::from(t.generated_tokens) / t.generate_seconds,
        );
        if seed == 1 {
            println!("{}", answer.text);
        }
    }
    Ok(())
}
