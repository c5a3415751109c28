//! The `lemo` binary end to end on the embedded digits: exit codes, a kill in the middle of a
//! run then `lemo resume`, and an OpenAI-compatible mock server whose answers include a broken
//! network (a repair round) while the API key never reaches the journal or the report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{digits_config, lemo, run_dir, trace};
use lemo::journal::read_journal;
use lemo::{Event, IterationOutcome, RunHistory};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn arch_check_accepts_valid_and_rejects_invalid_networks() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let good = tmp.path().join("good.json");
    std::fs::write(
        &good,
        r#"Sure! ```json
{"nodes":[{"id":"c","op":"conv2d","filters":8,"kernel":3,"padding":"same"},{"id":"r","op":"relu"},
 {"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}
```"#,
    )?;
    let out = lemo()
        .args(["arch", "check"])
        .arg(&good)
        .args(["--input", "1,8,8"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("canonical hash"), "{text}");

    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"nodes":[{"id":"c","op":"conv2d","filters":8,"kernel":3},{"id":"fc","op":"dense","units":10}]}"#,
    )?;
    let out = lemo().args(["arch", "check"]).arg(&bad).output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fc"));
    Ok(())
}

#[test]
fn bad_config_exits_2_and_names_the_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, digits_config(0, 1, 1))?;
    let out = lemo().arg("discover").arg(&cfg).output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("termination.iterations"));

    std::fs::write(&cfg, "[search]\nepoch = 3\n")?;
    let out = lemo().arg("discover").arg(&cfg).output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("search") && err.contains("epoch"), "{err}");

    let out = lemo()
        .args(["data", "inspect", "cifar10:/nonexistent/cifar"])
        .output()?;
    assert_eq!(out.status.code(), Some(3));
    Ok(())
}

#[test]
fn data_inspect_shows_the_embedded_digits() -> TestResult {
    let out = lemo().args(["data", "inspect", "digits"]).output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("[1, 8, 8]") && text.contains("classes:  10"),
        "{text}"
    );
    Ok(())
}

#[test]
fn killed_run_resumes_without_losing_or_repeating_an_iteration() -> TestResult {
    kill_and_resume(&digits_config(4, 5, 1), false)
}

/// The same with k = 2 candidates per iteration, trained by two `lemo evaluate` worker
/// processes: the loop is killed while iteration 2's jobs run; on resume the finished
/// candidates' results are read, running workers re-attached (or lost ones resubmitted), and
/// no candidate is trained twice.
#[test]
fn killed_run_with_two_worker_processes_resumes_without_training_a_candidate_twice() -> TestResult {
    let config = digits_config(4, 5, 1)
        .replace("[search]\n", "[search]\ncandidates = 2\n")
        .replace(
            "[termination]",
            "[executor]\nkind = \"processes\"\nworkers = 2\n[termination]",
        );
    kill_and_resume(&config, true)
}

/// Runs `config` uninterrupted, then again killed (SIGKILL) once iteration 1 is closed (with
/// `jobs`: once a job of iteration 2 was submitted), resumes it, and compares.
fn kill_and_resume(config: &str, jobs: bool) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("digits.toml");
    std::fs::write(&cfg, config)?;

    // Uninterrupted.
    let out_a = tmp.path().join("a");
    let st = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_a)
        .stdout(Stdio::null())
        .status()?;
    assert!(st.success());
    let a = run_dir(&out_a);

    // Killed once the first iteration is closed, then resumed.
    let out_b = tmp.path().join("b");
    let mut child = lemo()
        .args(["discover", "--quiet"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_b)
        .stdout(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let journal = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no iteration finished"
        );
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended before it could be killed: {st}");
        }
        let found = std::fs::read_dir(&out_b).ok().and_then(|mut d| {
            d.next()
                .and_then(|e| e.ok())
                .map(|e| e.path().join("journal.jsonl"))
        });
        let ready = |t: &str| {
            let closed = t.find("\"iteration_finished\"");
            match (jobs, closed) {
                (false, Some(_)) => true,
                (true, Some(at)) => t[at..].contains("\"job_submitted\""),
                _ => false,
            }
        };
        if let Some(j) = found
            && std::fs::read_to_string(&j).is_ok_and(|t| ready(&t))
        {
            break j;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill()?; // SIGKILL
    child.wait()?;
    let b = run_dir(&out_b);
    let before = RunHistory::load(&journal)?;
    assert!(!before.finished, "killed too late: the run had finished");
    let done_before = before.iterations.len();
    assert!((1..4).contains(&done_before));
    // Candidates whose worker had already written its result when the loop died.
    let finished_at_kill: BTreeSet<String> = std::fs::read_dir(b.join("jobs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".result.json"))
                .collect()
        })
        .unwrap_or_default();

    let st = lemo()
        .args(["resume", "--quiet"])
        .arg(&b)
        .stdout(Stdio::null())
        .status()?;
    assert!(st.success());

    let entries = read_journal::<Event>(&journal)?.entries;
    let closed: Vec<usize> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::IterationFinished { iteration, .. } => Some(*iteration),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        vec![1, 2, 3, 4],
        "each iteration closed exactly once"
    );
    // Same networks per iteration (hashes) and, training being seeded and deterministic on
    // the CPU backend, the same accuracies.
    assert_eq!(trace(&a), trace(&b));
    assert!(b.join("report.md").exists());
    if jobs {
        // Every candidate evaluated exactly once; none whose result existed at the kill was
        // submitted again after the resume.
        let mut evaluated: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut resumed = false;
        for e in &entries {
            match &e.event {
                Event::Evaluated {
                    iteration,
                    candidate,
                    ..
                } => *evaluated.entry((*iteration, *candidate)).or_insert(0) += 1,
                Event::Resumed { .. } => resumed = true,
                Event::JobSubmitted {
                    iteration,
                    candidate,
                    ..
                } if resumed => {
                    let name = format!("i{iteration:03}-c{candidate}.result.json");
                    assert!(
                        !finished_at_kill.contains(&name),
                        "{name} was there at the kill, yet its candidate was submitted again"
                    );
                }
                _ => {}
            }
        }
        assert_eq!(evaluated.len(), 8, "{evaluated:?}");
        assert!(evaluated.values().all(|n| *n == 1), "{evaluated:?}");
        let h = RunHistory::load(&journal)?;
        assert_eq!(h.resumes, 1);
        assert!(h.iterations.iter().all(|r| r.candidates.len() == 2));
    }
    Ok(())
}

/// The `openai` architect against a mock server (needs the `openai` feature, on by default).
#[cfg(feature = "openai")]
mod openai_server {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers of the mock OpenAI server: a broken network first (repair round), then valid ones.
    struct Answers {
        n: AtomicUsize,
    }

    const BROKEN: &str = r#"Here you go: {"nodes":[{"id":"c1","op":"conv2d","filters":8,"kernel":3},{"id":"fc","op":"dense","units":10}]}"#;
    const GOOD: [&str; 2] = [
        r#"```json
{"name":"small","nodes":[{"id":"c1","op":"conv2d","filters":8,"kernel":3,"padding":"same"},{"id":"r1","op":"relu"},{"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}
```"#,
        r#"{"name":"wider","nodes":[{"id":"c1","op":"conv2d","filters":16,"kernel":3,"padding":"same"},{"id":"b1","op":"batch_norm"},{"id":"r1","op":"relu"},{"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}"#,
    ];

    impl wiremock::Respond for Answers {
        fn respond(&self, _request: &wiremock::Request) -> wiremock::ResponseTemplate {
            let i = self.n.fetch_add(1, Ordering::SeqCst);
            let content = if i == 0 { BROKEN } else { GOOD[(i - 1) % 2] };
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": format!("chatcmpl-{i}"),
                "object": "chat.completion",
                "created": 0,
                "model": "mock-architect",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
            }))
        }
    }

    #[test]
    fn openai_compatible_server_with_a_repair_round_and_no_key_leak() -> TestResult {
        use wiremock::matchers::{header, method, path};
        const KEY: &str = "sk-test-DO-NOT-LEAK-4f2a9c";
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let server = rt.block_on(wiremock::MockServer::start());
        rt.block_on(
            wiremock::Mock::given(method("POST"))
                .and(path("/v1/chat/completions"))
                .and(header("authorization", format!("Bearer {KEY}").as_str()))
                .respond_with(Answers {
                    n: AtomicUsize::new(0),
                })
                .mount(&server),
        );

        let tmp = tempfile::tempdir()?;
        let cfg = tmp.path().join("openai.toml");
        let text = digits_config(2, 3, 1).replace(
        "[architect]\nkind = \"offline\"",
        &format!(
            "[architect]\nkind = \"openai\"\nmodel = \"mock-architect\"\nbase_url = \"{}/v1\"\n\
             api_key_env = \"LEMO_TEST_OPENAI_KEY\"\ntemperature = 0.6\n\
             [architect.retry]\ntimeout_ms = 10000\nmax_attempts = 2\ninitial_backoff_ms = 1\nmax_backoff_ms = 2\n",
            server.uri()
        ),
    );
        std::fs::write(&cfg, text)?;
        let out_dir = tmp.path().join("runs");
        let out = lemo()
            .args(["discover", "--quiet"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out_dir)
            .env("LEMO_TEST_OPENAI_KEY", KEY)
            .output()?;
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = run_dir(&out_dir);
        let h = RunHistory::load(&dir.join("journal.jsonl"))?;
        assert_eq!(h.iterations.len(), 2);
        let first = h.iteration(1).unwrap();
        assert_eq!(
            first.repair_rounds(),
            1,
            "the broken answer got one repair round"
        );
        match &first.answers[1] {
            Event::Answer { kind, prompt, .. } => {
                assert_eq!(kind, "repair");
                let text: String = prompt.iter().map(|m| m.content.as_str()).collect();
                assert!(
                    text.contains("fc"),
                    "the repair prompt carries the exact error"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            h.iterations
                .iter()
                .all(|r| matches!(r.outcome, IterationOutcome::Evaluated { .. }))
        );
        assert!(
            h.start
                .as_ref()
                .unwrap()
                .architect
                .contains("mock-architect")
        );

        // The key is nowhere in the run directory, nor in what the command printed.
        let mut stack = vec![dir.clone()];
        let mut files = 0;
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p)? {
                let path = e?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files += 1;
                    let bytes = std::fs::read(&path)?;
                    let hay = String::from_utf8_lossy(&bytes);
                    assert!(!hay.contains(KEY), "{} holds the API key", path.display());
                }
            }
        }
        assert!(files >= 3);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(KEY));
        Ok(())
    }
}
