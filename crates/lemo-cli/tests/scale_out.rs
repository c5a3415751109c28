//! Scale-out with the `lemo` binary on the embedded digits: k = 2 candidates trained by two
//! pinned worker processes (`lemo evaluate`), a worker that dies without a result, bad job
//! files, bad executor settings, and a SLURM run directory the nodes cannot see (fake SLURM
//! commands). The kill-and-resume test with k = 2 workers is in cli.rs; the tests against a
//! real cluster in slurm.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{digits_config, lemo, run_dir};
use lemo::journal::read_journal;
use lemo::{Event, IterationOutcome, RunHistory};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Writes an executable shell script.
fn script(path: &Path, body: &str) -> TestResult {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(path)
        .status()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn two_candidates_are_trained_by_two_pinned_worker_processes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("k2.toml");
    let text = digits_config(2, 11, 1).replace(
        "[termination]",
        "[executor]\nkind = \"processes\"\nworkers = 2\n[termination]",
    );
    let text = text.replace("[search]\n", "[search]\ncandidates = 2\n");
    std::fs::write(&cfg, text)?;
    let out = tmp.path().join("runs");
    let st = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()?;
    assert!(st.success());
    let dir = run_dir(&out);
    let h = RunHistory::load(&dir.join("journal.jsonl"))?;
    assert!(h.finished);
    assert_eq!(h.iterations.len(), 2);
    assert!(
        h.executor.as_deref().unwrap_or("").contains("taskset"),
        "{:?}",
        h.executor
    );
    let entries = read_journal::<Event>(&dir.join("journal.jsonl"))?.entries;
    let submitted = entries
        .iter()
        .filter(|e| matches!(e.event, Event::JobSubmitted { .. }))
        .count();
    assert!(submitted >= 3, "{submitted} jobs");
    for r in &h.iterations {
        assert_eq!(r.candidates.len(), 2);
        for c in &r.candidates {
            assert!(
                matches!(c.outcome, IterationOutcome::Evaluated { .. }),
                "{:?}",
                c.outcome
            );
            if matches!(
                c.outcome,
                IterationOutcome::Evaluated {
                    reused_from: None,
                    ..
                }
            ) {
                assert_eq!(c.jobs.len(), 1, "{:?}", c.jobs);
                // Each worker had its share of the cores.
                let result = dir
                    .join("jobs")
                    .join(format!("i{:03}-c{}.result.json", r.iteration, c.candidate));
                let r = lemo::job::read_result(&result)?;
                let cores = std::thread::available_parallelism()?.get();
                if cores >= 2 {
                    assert!(r.threads <= cores.div_ceil(2), "{} threads", r.threads);
                }
            }
        }
    }
    let report = std::fs::read_to_string(dir.join("report.md"))?;
    assert!(report.contains("## Candidates") && report.contains("processes"));
    Ok(())
}

#[test]
fn a_worker_that_dies_without_a_result_is_a_failed_candidate() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let worker = tmp.path().join("dying-worker.sh");
    script(&worker, "echo 'worker: out of luck' >&2\nexit 3")?;
    let cfg = tmp.path().join("dying.toml");
    let text = digits_config(1, 2, 1)
        .replace(
            "[termination]",
            &format!(
                "[executor]\nkind = \"processes\"\nworker = {:?}\n[termination]",
                worker.display().to_string()
            ),
        )
        .replace("[search]\n", "[search]\ncandidates = 2\n");
    std::fs::write(&cfg, text)?;
    let out = tmp.path().join("runs");
    let st = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()?;
    assert!(st.success(), "the search goes on past failed candidates");
    let dir = run_dir(&out);
    let h = RunHistory::load(&dir.join("journal.jsonl"))?;
    assert!(h.finished);
    let r = &h.iterations[0];
    assert!(matches!(r.outcome, IterationOutcome::Failed { .. }));
    for c in &r.candidates {
        match &c.outcome {
            IterationOutcome::Failed { error, .. } => {
                assert!(
                    error.contains("without a result") && error.contains("out of luck"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let failed = read_journal::<Event>(&dir.join("journal.jsonl"))?
        .entries
        .iter()
        .filter(|e| matches!(e.event, Event::CandidateFailed { .. }))
        .count();
    assert_eq!(failed, 2);
    Ok(())
}

#[test]
fn evaluate_refuses_corrupt_and_foreign_job_files() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let job = tmp.path().join("job.json");
    let result = tmp.path().join("result.json");
    for (text, expect) in [
        ("{\"format\": 1, \"iteration\": ", "not a valid job file"),
        ("{\"format\": 7, \"iteration\": 1}", "format 7"),
        ("{\"format\": 1, \"graph\": 3}", "not a valid job file"),
    ] {
        std::fs::write(&job, text)?;
        let out = lemo().arg("evaluate").arg(&job).arg(&result).output()?;
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect) && err.contains("job.json"), "{err}");
        assert!(!result.exists(), "no result for a job that was not run");
    }
    let out = lemo()
        .arg("evaluate")
        .arg(tmp.path().join("missing.json"))
        .arg(&result)
        .output()?;
    assert_eq!(out.status.code(), Some(6));
    Ok(())
}

#[test]
fn bad_executor_settings_exit_2_and_name_the_problem() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("bad.toml");
    for (section, expect) in [
        ("[executor]\nkind = \"ray\"\n", "executor.kind"),
        (
            "[executor]\nkind = \"processes\"\nworkers = 0\n",
            "executor.workers",
        ),
        ("[search]\ncandidates = 0\n", "search.candidates"),
        (
            "[executor]\nkind = \"slurm\"\n[executor.slurm]\nbin_dir = \"/nonexistent/slurm/bin\"\n",
            "sbatch",
        ),
    ] {
        let text = if section.starts_with("[search]") {
            digits_config(1, 1, 1).replace("[search]\n", section)
        } else {
            digits_config(1, 1, 1).replace("[termination]", &format!("{section}[termination]"))
        };
        std::fs::write(&cfg, text)?;
        let out = lemo()
            .args(["discover", "--quiet"])
            .arg(&cfg)
            .arg("--out")
            .arg(tmp.path().join("runs"))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{section}: {err}");
        assert!(err.contains(expect), "{section}: {err}");
    }
    Ok(())
}

#[test]
fn a_run_directory_the_nodes_cannot_see_is_refused_at_start() -> TestResult {
    // A "cluster" whose jobs complete without running anything here: the probe job's file
    // never appears in the run directory.
    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("fake-slurm");
    std::fs::create_dir(&bin)?;
    script(&bin.join("sbatch"), "echo 4242")?;
    script(&bin.join("squeue"), "exit 0")?;
    script(&bin.join("sacct"), "echo '4242|COMPLETED|0:0'")?;
    script(&bin.join("scancel"), "exit 0")?;
    let cfg = tmp.path().join("slurm.toml");
    let text = digits_config(1, 1, 1).replace(
        "[termination]",
        &format!(
            "[executor]\nkind = \"slurm\"\n[executor.slurm]\nbin_dir = {:?}\npoll_interval = 0.2\n[termination]",
            bin.display().to_string()
        ),
    );
    std::fs::write(&cfg, text)?;
    let out = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(tmp.path().join("runs"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not visible on the compute nodes") && err.contains("4242"),
        "{err}"
    );
    Ok(())
}

#[test]
fn ctrl_c_cancels_the_runs_workers_and_resume_finishes_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("k2.toml");
    let text = digits_config(1, 4, 1)
        .replace("epochs = 2\n", "epochs = 60\n")
        .replace("[search]\n", "[search]\ncandidates = 2\n")
        .replace(
            "[termination]",
            "[executor]\nkind = \"processes\"\nworkers = 2\n[termination]",
        );
    std::fs::write(&cfg, text)?;
    let out = tmp.path().join("runs");
    let mut child = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = std::time::Instant::now();
    let journal = loop {
        assert!(started.elapsed() < std::time::Duration::from_secs(120));
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended before Ctrl-C: {st}");
        }
        let j = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("journal.jsonl"));
        if let Some(j) = j
            && std::fs::read_to_string(&j).is_ok_and(|t| t.matches("\"RUNNING\"").count() >= 2)
        {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(st.success());
    let st = child.wait()?;
    assert_eq!(st.code(), Some(130), "interrupted");
    let entries = read_journal::<Event>(&journal)?.entries;
    let workers: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::JobSubmitted { job_id, .. } => Some(job_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(workers.len(), 2);
    for pid in &workers {
        assert!(
            entries.iter().any(|e| matches!(&e.event,
                Event::JobState { job_id, state, note, .. }
                    if job_id == pid && state == "CANCELLED" && note.contains("interrupted"))),
            "job {pid} journalled as cancelled"
        );
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("evaluate"),
            "worker {pid} still runs"
        );
    }
    assert!(!RunHistory::load(&journal)?.finished);

    // The journal is consistent: resume finishes the run, the cancelled jobs submitted again.
    let dir = run_dir(&out);
    let st = lemo()
        .args(["resume", "--quiet"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    assert!(st.success());
    let h = RunHistory::load(&journal)?;
    assert!(h.finished);
    assert!(h.iterations[0].candidates.iter().all(|c| c.jobs.len() == 2));
    Ok(())
}
