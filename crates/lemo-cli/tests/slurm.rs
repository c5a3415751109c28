//! The SLURM executor against a real cluster (`scripts/slurm-local.sh start` makes a one-node
//! one; `scripts/test` starts it): a k = 2 discovery on digits whose candidates are SLURM
//! jobs, and a job `scancel`led mid-run that is resubmitted.
//!
//! Without `sbatch` on the PATH these tests are skipped with a loud message, unless the
//! environment variable `CI` is set: then they fail, so CI cannot pass without the cluster.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{digits_config, lemo, run_dir};
use lemo::journal::read_journal;
use lemo::{Event, IterationOutcome, RunHistory};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether a cluster is there to test against (see the module documentation).
fn cluster() -> bool {
    let sbatch = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()));
    if sbatch {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but sbatch is not on the PATH: the SLURM tests must run in CI \
         (scripts/test starts a one-node cluster with scripts/slurm-local.sh start)"
    );
    eprintln!(
        "\n**********************************************************************\n\
         SKIPPED: the SLURM executor tests need sbatch on the PATH.\n\
         Start a one-node cluster with `scripts/slurm-local.sh start` (root),\n\
         or run `scripts/test`, which does.\n\
         **********************************************************************\n"
    );
    false
}

/// A digits config evaluated through SLURM with `k` candidates.
fn slurm_config(iterations: usize, k: usize, epochs: usize, extra: &str) -> String {
    digits_config(iterations, 21, 1)
        .replace("[search]\n", &format!("[search]\ncandidates = {k}\n"))
        .replace("epochs = 2\n", &format!("epochs = {epochs}\n"))
        .replace(
            "[termination]",
            &format!(
                "[executor]\nkind = \"slurm\"\n[executor.slurm]\ncpus_per_task = 1\n\
                 poll_interval = 0.5\nprobe_timeout = 120.0\n{extra}[termination]"
            ),
        )
}

#[test]
fn two_candidates_per_iteration_through_slurm() -> TestResult {
    if !cluster() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("slurm.toml");
    std::fs::write(&cfg, slurm_config(2, 2, 2, ""))?;
    let out = tmp.path().join("runs");
    let o = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = run_dir(&out);
    let h = RunHistory::load(&dir.join("journal.jsonl"))?;
    assert!(h.finished);
    assert_eq!(h.iterations.len(), 2);
    assert!(h.executor.as_deref().unwrap_or("").starts_with("slurm"));
    let entries = read_journal::<Event>(&dir.join("journal.jsonl"))?.entries;
    let mut ids = Vec::new();
    for e in &entries {
        if let Event::JobSubmitted {
            executor, job_id, ..
        } = &e.event
        {
            assert_eq!(executor, "slurm");
            assert!(job_id.chars().all(|c| c.is_ascii_digit()), "{job_id}");
            ids.push(job_id.clone());
        }
    }
    assert!(ids.len() >= 3, "{ids:?}");
    assert!(
        entries
            .iter()
            .any(|e| matches!(&e.event, Event::JobState { state, .. } if state == "RUNNING" || state == "PENDING")),
        "job states are journalled"
    );
    for r in &h.iterations {
        assert_eq!(r.candidates.len(), 2);
        assert!(
            r.candidates
                .iter()
                .all(|c| matches!(c.outcome, IterationOutcome::Evaluated { .. })),
            "{:?}",
            r.candidates
        );
    }
    Ok(())
}

#[test]
fn a_job_cancelled_mid_run_is_resubmitted() -> TestResult {
    if !cluster() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("slurm.toml");
    // One candidate, long enough to be caught running.
    std::fs::write(&cfg, slurm_config(1, 1, 30, "max_resubmits = 2\n"))?;
    let out = tmp.path().join("runs");
    let mut child = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let cancelled = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no job was seen running"
        );
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended before its job could be cancelled: {st}");
        }
        let running = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("journal.jsonl"))
            .and_then(|j| read_journal::<Event>(&j).ok())
            .and_then(|c| {
                c.entries.iter().find_map(|e| match &e.event {
                    Event::JobState { job_id, state, .. } if state == "RUNNING" => {
                        Some(job_id.clone())
                    }
                    _ => None,
                })
            });
        if let Some(id) = running {
            break id;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let st = Command::new("scancel").arg(&cancelled).status()?;
    assert!(st.success(), "scancel {cancelled}");
    let st = child.wait()?;
    assert!(st.success(), "the run finished after the resubmission");

    let dir = run_dir(&out);
    let entries = read_journal::<Event>(&dir.join("journal.jsonl"))?.entries;
    assert!(
        entries.iter().any(|e| matches!(&e.event,
            Event::JobState { job_id, state, note, .. }
                if *job_id == cancelled && state == "CANCELLED" && note == "resubmitted")),
        "the cancelled job is journalled as resubmitted"
    );
    let attempts: Vec<u32> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::JobSubmitted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    let h = RunHistory::load(&dir.join("journal.jsonl"))?;
    let r = &h.iterations[0];
    assert!(matches!(r.outcome, IterationOutcome::Evaluated { .. }));
    assert_eq!(r.candidates[0].jobs.len(), 2);
    Ok(())
}
