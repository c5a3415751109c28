//! Shared helpers of the `lemo` binary's tests: the command, a small digits config, the run
//! directory and a per-iteration trace.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lemo::{IterationOutcome, RunHistory};

/// The `lemo` binary under test.
pub fn lemo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lemo"));
    c.env("RUST_LOG", "warn");
    c
}

/// A small digits run: no energy metering (so nothing measured steers the expert system), the
/// paper's Table 4 setting 1 (accuracy only), two epochs per candidate.
pub fn digits_config(iterations: usize, seed: u64, final_epochs: usize) -> String {
    format!(
        r#"
[run]
name = "cli test"
seed = {seed}
max_repair_rounds = 2
[data]
dataset = {{ kind = "digits" }}
[metrics]
setting = 1
[metrics.thresholds]
ta1 = 0.99
ta2 = 0.98
[architect]
kind = "offline"
[search]
preset = "quick"
epochs = 2
batch_size = 64
learning_rate = 0.003
[final]
preset = "quick"
epochs = {final_epochs}
batch_size = 64
[termination]
iterations = {iterations}
[energy]
enabled = false
"#
    )
}

/// The only run directory created under `out`.
pub fn run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Per iteration: number, hash, A1, A2.
pub fn trace(dir: &Path) -> Vec<(usize, String, f64, f64)> {
    let h = RunHistory::load(&dir.join("journal.jsonl")).unwrap();
    h.iterations
        .iter()
        .map(|r| match &r.outcome {
            IterationOutcome::Evaluated { hash, observed, .. } => {
                (r.iteration, hash.clone(), observed.a1, observed.a2)
            }
            other => (r.iteration, format!("{other:?}"), 0.0, 0.0),
        })
        .collect()
}
