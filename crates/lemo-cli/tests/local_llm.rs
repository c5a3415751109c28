//! `lemo discover` with the embedded local architect (`--features local`) and a real model,
//! SmolLM2-135M-Instruct (Q4_1 GGUF, put under target/models by `scripts/fetch-model.sh`; or
//! set `LEMO_LOCAL_MODEL`): a 3-iteration discovery on the embedded digits in which every answer
//! is JSON of the IR (the grammar sees to it) and at least one network is trained; and a missing
//! model file, which ends the run with exit code 4 and the path named.
#![cfg(feature = "local")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lemo::event::AnswerOutcome;
use lemo::journal::read_journal;
use lemo::{Event, RunHistory};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn lemo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lemo"));
    c.env("RUST_LOG", "warn");
    c
}

fn model_path() -> PathBuf {
    std::env::var_os("LEMO_LOCAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

/// The digits run of the CLI tests, with the local architect.
fn config(model: &Path, iterations: usize) -> String {
    format!(
        r#"
[run]
name = "local architect test"
seed = 7
max_repair_rounds = 2
[data]
dataset = {{ kind = "digits" }}
[metrics]
setting = 1
[metrics.thresholds]
ta1 = 0.99
ta2 = 0.98
[architect]
kind = "local"
model_path = {model:?}
temperature = 0.7
[search]
preset = "quick"
epochs = 2
batch_size = 64
learning_rate = 0.003
[final]
preset = "quick"
epochs = 1
batch_size = 64
[termination]
iterations = {iterations}
[energy]
enabled = false
"#,
        model = model.display().to_string()
    )
}

/// The only run directory created under `out`.
fn run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn a_three_iteration_discovery_with_the_local_model_always_gets_json() -> TestResult {
    let model = model_path();
    assert!(
        model.is_file(),
        "{} is missing: run scripts/fetch-model.sh (or set LEMO_LOCAL_MODEL)",
        model.display()
    );
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("local.toml");
    std::fs::write(&cfg, config(&model, 3))?;
    let out_dir = tmp.path().join("runs");
    let out = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .output()?;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = run_dir(&out_dir);
    let journal = dir.join("journal.jsonl");
    let events: Vec<Event> = read_journal::<Event>(&journal)?
        .entries
        .into_iter()
        .map(|e| e.event)
        .collect();
    let mut answers = 0;
    let mut valid = 0;
    for e in &events {
        if let Event::Answer { raw, outcome, .. } = e {
            answers += 1;
            match outcome {
                AnswerOutcome::Valid { .. } => valid += 1,
                AnswerOutcome::Invalid { kind, error } => assert!(
                    !["no_json", "syntax", "truncated", "empty"].contains(&kind.as_str()),
                    "an answer was not JSON of the IR ({kind}: {error}):\n{raw}"
                ),
            }
        }
    }
    let trained = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Evaluated {
                    reused_from: None,
                    ..
                }
            )
        })
        .count();
    eprintln!("{answers} answers, {valid} valid for the task, {trained} networks trained");
    assert!(answers >= 3);
    assert!(trained >= 1, "no network was trained");
    let h = RunHistory::load(&journal)?;
    assert_eq!(h.iterations.len(), 3);
    assert!(h.start.as_ref().unwrap().architect.starts_with("local "));
    Ok(())
}

#[test]
fn a_missing_model_file_exits_4_and_names_the_path() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("no-such-model.gguf");
    let cfg = tmp.path().join("local.toml");
    std::fs::write(&cfg, config(&missing, 1))?;
    let out = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(tmp.path().join("runs"))
        .output()?;
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "stderr: {stderr}"
    );
    Ok(())
}
