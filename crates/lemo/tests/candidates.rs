//! k candidates per iteration (`search.candidates`), in process with the fake trainer: every
//! candidate journalled and in the report, the best by CM chosen, no network trained twice, a
//! k = 1 journal without any candidate field, and a kill in the middle of an iteration resumed
//! without training a finished candidate again.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{discovery, quick_config};
use lemo::journal::read_journal;
use lemo::{Event, IterationOutcome, RunConfig, RunDir, RunHistory};
use lemo_llm::Architect;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn offline(config: &RunConfig) -> Box<dyn Architect> {
    config.architect.build().unwrap()
}

fn cm(o: &IterationOutcome) -> Option<f64> {
    match o {
        IterationOutcome::Evaluated { effectiveness, .. } => Some(effectiveness.cm),
        _ => None,
    }
}

fn hash(o: &IterationOutcome) -> Option<String> {
    match o {
        IterationOutcome::Evaluated { hash, .. } => Some(hash.clone()),
        _ => None,
    }
}

/// One candidate as a trace shows it: iteration, candidate, hash, CM, the chosen candidate.
type TraceRow = (usize, usize, Option<String>, Option<f64>, usize);

/// Per iteration and candidate: (iteration, candidate, hash, CM), and the chosen candidate.
fn trace(h: &RunHistory) -> Vec<TraceRow> {
    h.iterations
        .iter()
        .flat_map(|r| {
            r.candidates.iter().map(move |c| {
                (
                    r.iteration,
                    c.candidate,
                    hash(&c.outcome),
                    cm(&c.outcome),
                    r.chosen,
                )
            })
        })
        .collect()
}

/// Trainings per network hash (evaluations that were not reused).
fn trainings(journal: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in read_journal::<Event>(journal).unwrap().entries {
        if let Event::Evaluated {
            hash,
            reused_from: None,
            ..
        } = e.event
        {
            *out.entry(hash).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn every_candidate_is_journalled_and_the_best_by_cm_is_the_iterations() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(4, tmp.path());
    config.search.candidates = 3;
    let dir = RunDir::new(tmp.path().join("run"));
    let s = discovery(config.clone(), offline(&config)).discover_in(dir.clone())?;
    assert!(s.finished);
    let h = &s.history;
    assert_eq!(h.iterations.len(), 4);
    for r in &h.iterations {
        assert_eq!(r.candidates.len(), 3, "iteration {}", r.iteration);
        // The k networks of an iteration differ (duplicates were replaced).
        let hashes: HashSet<_> = r
            .candidates
            .iter()
            .filter_map(|c| hash(&c.outcome))
            .collect();
        assert_eq!(hashes.len(), 3, "iteration {}: {hashes:?}", r.iteration);
        // The iteration's network is its best candidate by CM (the first on a tie).
        let best = r
            .candidates
            .iter()
            .filter_map(|c| cm(&c.outcome).map(|v| (c.candidate, v)))
            .fold(None, |b: Option<(usize, f64)>, (c, v)| match b {
                Some((_, bv)) if bv >= v => b,
                _ => Some((c, v)),
            })
            .map(|b| b.0);
        assert_eq!(Some(r.chosen), best, "iteration {}", r.iteration);
        assert_eq!(r.outcome, r.candidates[r.chosen].outcome);
        assert!(r.evaluation.is_some());
        assert!(
            r.advice.is_some(),
            "the expert system advised on the chosen one"
        );
    }
    // Every answer names its candidate; each candidate's proposal is settled in the journal.
    let entries = read_journal::<Event>(&dir.journal())?.entries;
    let proposed = entries
        .iter()
        .filter(|e| matches!(e.event, Event::CandidateProposed { .. }))
        .count();
    assert_eq!(proposed, 12);
    let answered: HashSet<(usize, usize)> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Answer {
                iteration,
                candidate,
                ..
            } => Some((*iteration, *candidate)),
            _ => None,
        })
        .collect();
    assert_eq!(answered.len(), 12);
    // No network is trained twice in a run.
    for (hash, n) in trainings(&dir.journal()) {
        assert_eq!(n, 1, "{hash} trained {n} times");
    }
    // The report lists every candidate; the journal alone rebuilds the history.
    let report = std::fs::read_to_string(dir.report())?;
    assert!(report.contains("## Candidates"), "{report}");
    for r in &h.iterations {
        for c in &r.candidates {
            let hash = hash(&c.outcome).unwrap();
            assert!(report.contains(&hash[..10]), "report lacks {hash}");
        }
    }
    assert!(RunHistory::load(&dir.journal())? == s.history);
    Ok(())
}

#[test]
fn first_candidates_one_then_k_candidates_follow_different_instructions() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(3, tmp.path());
    config.search.candidates = 3;
    config.search.first_candidates = Some(1);
    config.architect = lemo_llm::ArchitectConfig::Offline(lemo_llm::OfflineConfig { max_edits: 1 });
    let dir = RunDir::new(tmp.path().join("run"));
    let s = discovery(config.clone(), offline(&config)).discover_in(dir.clone())?;
    let h = &s.history;
    let counts: Vec<usize> = h.iterations.iter().map(|r| r.candidates.len()).collect();
    assert_eq!(counts, [1, 3, 3]);
    // Each later candidate applied one instruction, the c-th strongest of the command.
    let entries = read_journal::<Event>(&dir.journal())?.entries;
    let mut firsts: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for e in &entries {
        if let Event::CandidateProposed {
            iteration,
            candidate,
            outcome: lemo::event::AnswerOutcome::Valid { notes, .. },
            ..
        } = &e.event
        {
            firsts.insert((*iteration, *candidate), notes.join("; "));
        }
    }
    for r in h.iterations.iter().skip(1) {
        let command = r.command.as_ref().unwrap();
        let codes: Vec<&str> = command.instructions().map(|i| i.code()).collect();
        for c in 0..3 {
            let notes = &firsts[&(r.iteration, c)];
            let expected = codes[c % codes.len()];
            assert!(
                notes.starts_with(&format!("{expected}:")),
                "iteration {} candidate {c}: expected {expected}, notes {notes}",
                r.iteration
            );
        }
    }
    // The report's candidates table says what each candidate changed.
    let report = std::fs::read_to_string(dir.report())?;
    for (_, notes) in firsts.iter().skip(1) {
        let head = notes.split(';').next().unwrap_or_default();
        assert!(report.contains(head.trim()), "report lacks `{head}`");
    }
    // The setting survives the journal's config round trip.
    let text = std::fs::read_to_string(dir.config())?;
    assert!(text.contains("first_candidates = 1"), "{text}");
    Ok(())
}

#[test]
fn one_candidate_in_process_writes_no_candidate_fields() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let config = quick_config(3, tmp.path());
    assert_eq!(config.search.candidates, 1);
    let dir = RunDir::new(tmp.path().join("run"));
    discovery(config.clone(), offline(&config)).discover_in(dir.clone())?;
    let text = std::fs::read_to_string(dir.journal())?;
    for key in [
        "\"candidate\"",
        "\"candidates\"",
        "candidate_proposed",
        "job_submitted",
        "executor",
    ] {
        assert!(!text.contains(key), "a k = 1 journal holds {key}");
    }
    let h = RunHistory::load(&dir.journal())?;
    assert!(
        h.iterations
            .iter()
            .all(|r| r.candidates.is_empty() && r.chosen == 0)
    );
    assert!(!std::fs::read_to_string(dir.report())?.contains("## Candidates"));
    Ok(())
}

#[test]
fn a_kill_inside_an_iteration_keeps_its_settled_candidates() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(4, tmp.path());
    config.search.candidates = 3;

    let dir_a = RunDir::new(tmp.path().join("a"));
    let a = discovery(config.clone(), offline(&config)).discover_in(dir_a.clone())?;

    // The same run, "killed" right after the first evaluation of iteration 2: the journal
    // ends there (what a kill -9 at that moment leaves), plus a torn half line.
    let dir_b = RunDir::new(tmp.path().join("b"));
    discovery(config.clone(), offline(&config)).discover_in(dir_b.clone())?;
    let text = std::fs::read_to_string(dir_b.journal())?;
    let mut kept = String::new();
    let mut seen_iteration_2 = false;
    for line in text.lines() {
        kept.push_str(line);
        kept.push('\n');
        seen_iteration_2 |=
            line.contains("\"iteration_started\"") && line.contains("\"iteration\":2");
        if seen_iteration_2 && line.contains("\"type\":\"evaluated\"") {
            break;
        }
    }
    kept.push_str(r#"{"seq":999,"unix_ms":1,"event":{"type":"evalu"#);
    std::fs::write(dir_b.journal(), &kept)?;
    let before = RunHistory::load(&dir_b.journal())?;
    assert_eq!(before.iterations.len(), 1);
    let pending = before.in_progress.clone().unwrap();
    assert_eq!(pending.iteration, 2);
    assert!(pending.resumable());
    let evaluated_before: Vec<usize> = pending
        .candidates
        .iter()
        .filter(|(_, c)| c.evaluated.is_some())
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(evaluated_before.len(), 1);

    let b = discovery(config.clone(), offline(&config)).resume(dir_b.clone())?;
    assert!(b.finished);
    assert_eq!(trace(&a.history), trace(&b.history));
    assert_eq!(
        a.history.final_result.as_ref().map(|f| &f.hash),
        b.history.final_result.as_ref().map(|f| &f.hash)
    );
    // Iteration 2 opened once, each candidate evaluated once, nothing trained twice.
    let entries = read_journal::<Event>(&dir_b.journal())?.entries;
    let opened = entries
        .iter()
        .filter(|e| matches!(e.event, Event::IterationStarted { iteration: 2, .. }))
        .count();
    assert_eq!(opened, 1);
    let mut evaluated = BTreeMap::new();
    for e in &entries {
        if let Event::Evaluated {
            iteration: 2,
            candidate,
            ..
        } = e.event
        {
            *evaluated.entry(candidate).or_insert(0) += 1;
        }
    }
    assert_eq!(
        evaluated.values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    for (hash, n) in trainings(&dir_b.journal()) {
        assert_eq!(n, 1, "{hash} trained {n} times");
    }
    Ok(())
}
