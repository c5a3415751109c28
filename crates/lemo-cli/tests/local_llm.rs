//! `lemo discover` with the embedded local architect (`--features local`) and a real model,
//! SmolLM2-135M-Instruct (Q4_1 GGUF, put under target/models by `scripts/fetch-model.sh`; or
//! set `LEMO_LOCAL_MODEL`): a 3-iteration discovery on the embedded digits in which every answer
//! is JSON of the IR (the grammar sees to it) and at least one network is trained; and a missing
//! model file, which ends the run with exit code 4 and the path named.
#![cfg(feature = "local")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use lemo::event::AnswerOutcome;
use lemo::journal::read_journal;
use lemo::{Event, RunHistory};

mod common;
use common::{digits_config, lemo, run_dir};

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

/// The CLI tests' digits run, with the local architect.
fn config(model: &Path, iterations: usize) -> String {
    let architect = format!(
        "[architect]\nkind = \"local\"\nmodel_path = {:?}\ntemperature = 0.7\n",
        model.display().to_string()
    );
    let config =
        digits_config(iterations, 7, 1).replace("[architect]\nkind = \"offline\"\n", &architect);
    assert!(config.contains("kind = \"local\""), "{config}");
    config
}

/// Every answer is JSON of the IR (the grammar sees to it) and at least one network is
/// trained (the chain form's grammar gives every answer the shape of a network for the task).
#[test]
fn a_three_iteration_discovery_with_the_local_model_trains_a_network() -> TestResult {
    let (answers, valid, trained) = three_iterations()?;
    assert!(answers >= 3);
    assert!(valid >= 1, "no answer was valid for the task");
    assert!(trained >= 1, "no network was trained");
    Ok(())
}

/// Runs a 3-iteration discovery with the local architect; checks that every answer was JSON of
/// the IR and that the journal is whole; returns (answers, answers valid for the task, networks
/// trained).
fn three_iterations() -> Result<(usize, usize, usize), Box<dyn std::error::Error>> {
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
    let h = RunHistory::load(&journal)?;
    assert_eq!(h.iterations.len(), 3);
    assert!(h.start.as_ref().unwrap().architect.starts_with("local "));
    Ok((answers, valid, trained))
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
