//! The discovery loop with a deterministic fake trainer: resume equals an uninterrupted run,
//! duplicates reuse results, invalid answers get bounded repair rounds, termination, reports.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{discovery, quick_config};
use lemo::event::AnswerOutcome;
use lemo::journal::{JournalWriter, read_journal};
use lemo::{Event, IterationOutcome, RunConfig, RunDir, RunHistory, StopReason, render_report};
use lemo_llm::Architect;
use lemo_testkit::ScriptedArchitect;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn offline(config: &RunConfig) -> Box<dyn Architect> {
    config.architect.build().unwrap()
}

/// Per iteration: (number, hash or outcome name, A2, CM).
fn trace(h: &RunHistory) -> Vec<(usize, String, f64, f64)> {
    h.iterations
        .iter()
        .map(|r| match &r.outcome {
            IterationOutcome::Evaluated {
                hash,
                observed,
                effectiveness,
                ..
            } => (r.iteration, hash.clone(), observed.a2, effectiveness.cm),
            IterationOutcome::Invalid { .. } => (r.iteration, "invalid".into(), 0.0, 0.0),
            IterationOutcome::Failed { .. } => (r.iteration, "failed".into(), 0.0, 0.0),
        })
        .collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let config = quick_config(5, tmp.path());

    let mut full = discovery(config.clone(), offline(&config));
    let a = full.discover_in(RunDir::new(tmp.path().join("a")))?;
    assert!(a.finished);
    assert_eq!(a.history.iterations.len(), 5);

    // Stop after two iterations, then fake a kill in the middle of iteration 3: its opening
    // event and an answer are synced, and a torn half line follows.
    let dir_b = RunDir::new(tmp.path().join("b"));
    let mut part = discovery(config.clone(), offline(&config)).stop_after(2);
    let b1 = part.discover_in(dir_b.clone())?;
    assert!(!b1.finished);
    assert_eq!(b1.history.iterations.len(), 2);
    {
        let (mut w, _) = JournalWriter::reopen::<Event>(&dir_b.journal())?;
        w.append(&Event::IterationStarted {
            iteration: 3,
            seed: 1,
            command: None,
        })?;
        drop(w);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir_b.journal())?;
        f.write_all(br#"{"seq":99,"unix_ms":1,"event":{"type":"answ"#)?;
    }
    let mut rest = discovery(config.clone(), offline(&config));
    let b = rest.resume(dir_b.clone())?;
    assert!(b.finished);

    // Same networks, same metrics, same best, same final network.
    assert_eq!(trace(&a.history), trace(&b.history));
    assert_eq!(a.history.best_iteration(), b.history.best_iteration());
    let (fa, fb) = (
        a.history.final_result.as_ref().unwrap(),
        b.history.final_result.as_ref().unwrap(),
    );
    assert_eq!(fa.hash, fb.hash);
    assert_eq!(fa.observed, fb.observed);

    // The journal closes each iteration exactly once, in order.
    let entries = read_journal::<Event>(&dir_b.journal())?.entries;
    let closed: Vec<usize> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::IterationFinished { iteration, .. } => Some(*iteration),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![1, 2, 3, 4, 5]);
    assert_eq!(b.history.resumes, 1);

    // Resuming a finished run changes nothing but the report.
    let again = discovery(config.clone(), offline(&config)).resume(dir_b.clone())?;
    assert_eq!(trace(&again.history), trace(&b.history));
    assert_eq!(
        read_journal::<Event>(&dir_b.journal())?.entries.len(),
        entries.len()
    );
    Ok(())
}

#[test]
fn report_is_regenerated_from_the_journal_alone() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let config = quick_config(3, tmp.path());
    let dir = RunDir::new(tmp.path().join("run"));
    let s = discovery(config.clone(), offline(&config)).discover_in(dir.clone())?;
    let written = std::fs::read_to_string(dir.report())?;
    let history = RunHistory::load(&dir.journal())?;
    assert!(
        history == s.history,
        "the journal rebuilds the in-memory history"
    );
    assert_eq!(render_report(&history)?, written);
    for col in [
        "Test accuracy",
        "Number of params",
        "Generating + training runtime (hours)",
        "kWh-PUE",
        "CO2 emission (lbs)",
        "Inferencing FPS",
        "(estimated)",
    ] {
        assert!(written.contains(col), "report lacks {col}");
    }
    for plot in [
        "accuracy.svg",
        "cm.svg",
        "pareto.svg",
        "energy.svg",
        "fps.svg",
    ] {
        let svg = std::fs::read_to_string(dir.plots().join(plot))?;
        assert!(svg.starts_with("<svg"), "{plot}");
        assert!(written.contains(&format!("plots/{plot}")));
    }
    assert!(dir.best().join("graph.json").exists());
    assert!(dir.best().join("network.dot").exists());
    let cfg = RunConfig::from_path(&dir.config())?;
    assert_eq!(cfg, config);
    Ok(())
}

const NET: &str = r#"{"nodes":[{"id":"c","op":"conv2d","filters":8,"kernel":3,"padding":"same"},
  {"id":"r","op":"relu"},{"id":"g","op":"global_avg_pool"},{"id":"fc","op":"dense","units":10}]}"#;
/// The same network written differently (explicit `in`, other ids): same canonical hash.
const NET_AGAIN: &str = r#"```json
{"nodes":[{"id":"a","op":"conv2d","filters":8,"kernel":3,"padding":"same","in":["input"]},
  {"id":"b","op":"relu","in":["a"]},{"id":"p","op":"global_avg_pool"},{"id":"o","op":"dense","units":10}]}
```"#;
/// Dense on a feature map: a shape error.
const BROKEN: &str = r#"{"nodes":[{"id":"c","op":"conv2d","filters":8,"kernel":3},{"id":"fc","op":"dense","units":10}]}"#;

#[test]
fn duplicates_get_a_novelty_round_then_reuse_results_and_broken_answers_get_repairs() -> TestResult
{
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(3, tmp.path());
    config.final_training.enabled = false;
    let dir = RunDir::new(tmp.path().join("run"));
    let arch = ScriptedArchitect::new([NET, BROKEN, NET_AGAIN, NET]);
    let s = discovery(config, Box::new(arch)).discover_in(dir.clone())?;
    let h = &s.history;
    assert_eq!(h.iterations.len(), 3);
    // Iteration 2: broken, repaired with the equivalent of #1, told so in a novelty round,
    // answered #1 again: being the previous iteration's network, the loop edits it itself.
    let r2 = h.iteration(2).unwrap();
    assert_eq!(r2.repair_rounds(), 2);
    match &r2.answers[0] {
        Event::Answer {
            outcome: AnswerOutcome::Invalid { error, .. },
            ..
        } => assert!(error.contains("fc"), "error names the node: {error}"),
        other => panic!("expected an invalid answer, got {other:?}"),
    }
    match &r2.answers[2] {
        Event::Answer { prompt, kind, .. } => {
            assert_eq!(kind, "repair");
            assert!(prompt.is_empty(), "the scripted architect sends no prompt");
        }
        other => panic!("expected the novelty round's answer, got {other:?}"),
    }
    match &r2.outcome {
        IterationOutcome::Evaluated { reused_from, .. } => assert_eq!(*reused_from, None),
        other => panic!("iteration 2: {other:?}"),
    }
    assert!(
        h.warnings.iter().any(|w| w.contains("exploratory edit")),
        "{:?}",
        h.warnings
    );
    // Iteration 3: #1 again after its novelty round, but not the previous network: reused,
    // no training and no energy.
    let r3 = h.iteration(3).unwrap();
    assert_eq!(r3.repair_rounds(), 1);
    match &r3.outcome {
        IterationOutcome::Evaluated { reused_from, .. } => assert_eq!(*reused_from, Some(1)),
        other => panic!("iteration 3: {other:?}"),
    }
    assert_eq!(r3.kwh, 0.0);
    Ok(())
}

#[test]
fn hopeless_answers_end_the_iteration_without_training() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(2, tmp.path());
    config.run.max_repair_rounds = 2;
    config.final_training.enabled = false;
    let dir = RunDir::new(tmp.path().join("run"));
    let s = discovery(config, Box::new(ScriptedArchitect::new([BROKEN]))).discover_in(dir)?;
    for r in &s.history.iterations {
        assert!(matches!(
            r.outcome,
            IterationOutcome::Invalid {
                repair_rounds: 2,
                ..
            }
        ));
        assert_eq!(r.answers.len(), 3);
        assert!(r.evaluation.is_none());
    }
    assert!(s.history.final_result.is_none());
    assert!(!s.history.warnings.is_empty());
    Ok(())
}

#[test]
fn targets_stop_the_search_early() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(10, tmp.path());
    config.termination.targets.min_validation_accuracy = Some(0.5);
    config.final_training.enabled = false;
    let s = discovery(config.clone(), offline(&config))
        .discover_in(RunDir::new(tmp.path().join("run")))?;
    assert_eq!(s.history.iterations.len(), 1);
    assert_eq!(
        s.history.search_finished.as_ref().map(|x| x.0.clone()),
        Some(StopReason::Targets { iteration: 1 })
    );
    Ok(())
}

/// A trainer that sleeps `unit` seconds for the first network it trains and, with
/// `by_params`, in proportion to parameters after that, reported as the evaluation's seconds.
struct Slow {
    unit: f64,
    by_params: bool,
    first: Option<u64>,
}

impl Slow {
    fn fixed(unit: f64) -> Self {
        Slow {
            unit,
            by_params: false,
            first: None,
        }
    }
    fn by_params(unit: f64) -> Self {
        Slow {
            unit,
            by_params: true,
            first: None,
        }
    }
}

impl lemo_train::Trainer for Slow {
    fn name(&self) -> String {
        "slow".into()
    }
    fn train(
        &mut self,
        network: &lemo_arch::ValidatedGraph,
        data: &lemo_train::data::Splits,
        config: &lemo_train::TrainConfig,
        meter: &dyn lemo_energy::EnergyMeter,
        observer: &mut dyn lemo_train::TrainObserver,
    ) -> Result<lemo_train::Evaluation, lemo_train::TrainError> {
        let params = network.params();
        let first = *self.first.get_or_insert(params);
        let seconds = if self.by_params {
            self.unit * params as f64 / first as f64
        } else {
            self.unit
        };
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        let mut ev =
            common::FakeTrainer::default().train(network, data, config, meter, observer)?;
        ev.train_seconds = seconds;
        ev.total_seconds = seconds;
        Ok(ev)
    }
}

#[test]
fn whole_iterations_start_only_when_they_fit_the_wall_clock_budget() -> TestResult {
    // Iterations of about 0.6 s against a 1.5-s budget: two fit, a third would end at ~1.8 s.
    // Without whole_iterations the third starts (1.2 s < 1.5 s) and overruns.
    for (whole, want) in [(true, 2), (false, 3)] {
        let tmp = tempfile::tempdir()?;
        let mut config = quick_config(10, tmp.path());
        config.final_training.enabled = false;
        config.termination.max_wall_seconds = Some(1.5);
        config.termination.whole_iterations = whole;
        let data = common::digits(&config);
        let s = lemo::Discovery::new(
            config.clone(),
            offline(&config),
            Box::new(Slow::fixed(0.6)),
            Box::new(lemo_energy::NoMeter),
            Box::new(lemo_expert::PaperRuleBook),
        )
        .with_data(data)
        .discover_in(RunDir::new(tmp.path().join("run")))?;
        assert_eq!(s.history.iterations.len(), want, "whole_iterations {whole}");
        let seconds = s.history.search_seconds();
        assert!(
            matches!(
                s.history.search_finished.as_ref().map(|x| &x.0),
                Some(StopReason::WallClock { .. })
            ),
            "whole_iterations {whole}: {:?}",
            s.history.search_finished
        );
        let stop = s.history.search_finished.as_ref().map(|x| &x.0);
        if whole {
            assert!(seconds <= 1.5, "whole iterations overran: {seconds} s");
            // The stop says why budget was left: the next iteration (~0.6 s) did not fit.
            let Some(StopReason::WallClock {
                expected_next: Some(next),
                left: Some(left),
                ..
            }) = stop
            else {
                panic!("no expected next iteration in {stop:?}");
            };
            assert!(*next > *left && *next >= 0.5, "{next} s vs {left} s left");
            let text = stop.map(|r| r.to_string()).unwrap_or_default();
            assert!(text.contains("would not fit"), "{text}");
        } else {
            assert!(seconds > 1.5, "{seconds} s");
            assert!(
                matches!(
                    stop,
                    Some(StopReason::WallClock {
                        expected_next: None,
                        ..
                    })
                ),
                "{stop:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn fit_candidates_runs_the_candidates_that_fit_instead_of_stopping() -> TestResult {
    // Candidates of ~0.5 s: the starter alone, then iterations of 3 against a 1.85-s budget.
    // Whole, the second (~1.5 s) does not fit the ~1.35 s left and the search ends after the
    // starter; with fit_candidates it runs the 2 that fit, and no third iteration starts.
    for (fit, want) in [(false, vec![1]), (true, vec![1, 2])] {
        let tmp = tempfile::tempdir()?;
        let mut config = quick_config(10, tmp.path());
        config.final_training.enabled = false;
        config.search.candidates = 3;
        config.search.first_candidates = Some(1);
        config.termination.max_wall_seconds = Some(1.85);
        config.termination.whole_iterations = true;
        config.termination.fit_candidates = fit;
        let data = common::digits(&config);
        let dir = RunDir::new(tmp.path().join("run"));
        let s = lemo::Discovery::new(
            config.clone(),
            offline(&config),
            Box::new(Slow::fixed(0.5)),
            Box::new(lemo_energy::NoMeter),
            Box::new(lemo_expert::PaperRuleBook),
        )
        .with_data(data)
        .discover_in(dir.clone())?;
        let counts: Vec<usize> = s
            .history
            .iterations
            .iter()
            .map(|r| r.candidates.len().max(1))
            .collect();
        assert_eq!(counts, want, "fit_candidates {fit}");
        let seconds = s.history.search_seconds();
        assert!(
            seconds <= 1.85,
            "fit_candidates {fit}: overran ({seconds} s)"
        );
        let stop = s.history.search_finished.as_ref().map(|x| &x.0);
        assert!(
            matches!(stop, Some(StopReason::WallClock { one_candidate, .. }) if *one_candidate == fit),
            "fit_candidates {fit}: {stop:?}"
        );
        // The stop says what did not fit: one candidate, or the whole next iteration.
        let text = stop.map(|r| r.to_string()).unwrap_or_default();
        let what = if fit {
            "one candidate of the next iteration (~"
        } else {
            "the next iteration (~"
        };
        assert!(text.contains(what), "fit_candidates {fit}: {text}");
        // The shortened iteration says so in the journal.
        let warned = read_journal::<Event>(&dir.journal())?
            .entries
            .iter()
            .any(|e| matches!(&e.event, Event::Warning { message } if message.contains("evaluates 2 of its 3 candidates")));
        assert_eq!(warned, fit, "fit_candidates {fit}");
    }
    // Without whole_iterations the key means nothing: a config error naming it.
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(10, tmp.path());
    config.termination.fit_candidates = true;
    let err = config
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("termination.fit_candidates"), "{err}");
    Ok(())
}

/// A digits network whose conv layer has `filters` filters (20 * filters + 10 parameters).
fn net_with(filters: usize) -> String {
    format!(
        r#"{{"nodes":[{{"id":"c","op":"conv2d","filters":{filters},"kernel":3,"padding":"same"}},
        {{"id":"r","op":"relu"}},{{"id":"g","op":"global_avg_pool"}},{{"id":"fc","op":"dense","units":10}}]}}"#
    )
}

#[test]
fn whole_iterations_expect_a_wider_base_to_cost_more() -> TestResult {
    // Each network twice as wide as the last: iterations of ~0.3, ~0.6 and ~1.2 s against a
    // 1.75-s budget. From the largest iteration so far the third would end at ~1.5 s, inside
    // the budget, and it ends at ~2.1 s; scaled by how much slower its base trained than the
    // second's (2x), it is expected at ~2.1 s and does not start.
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(10, tmp.path());
    config.search.candidates = 1;
    config.search.first_candidates = None;
    config.final_training.enabled = false;
    config.termination.max_wall_seconds = Some(1.75);
    config.termination.whole_iterations = true;
    let data = common::digits(&config);
    let answers = [8, 16, 32, 64, 128].map(net_with);
    let s = lemo::Discovery::new(
        config.clone(),
        Box::new(ScriptedArchitect::new(answers)),
        Box::new(Slow::by_params(0.3)),
        Box::new(lemo_energy::NoMeter),
        Box::new(lemo_expert::PaperRuleBook),
    )
    .with_data(data)
    .discover_in(RunDir::new(tmp.path().join("run")))?;
    let seconds = s.history.search_seconds();
    assert_eq!(s.history.iterations.len(), 2, "{seconds} s");
    assert!(seconds <= 1.75, "whole iterations overran: {seconds} s");
    Ok(())
}

#[test]
fn wall_clock_and_energy_budgets_stop_the_search() -> TestResult {
    // A budget smaller than one iteration: the check before iteration 2 ends the search.
    for budget in ["wall", "energy"] {
        let tmp = tempfile::tempdir()?;
        let mut config = quick_config(10, tmp.path());
        config.final_training.enabled = false;
        match budget {
            "wall" => config.termination.max_wall_seconds = Some(1e-9),
            _ => config.termination.max_energy_kwh = Some(1e-12),
        }
        let s = discovery(config.clone(), offline(&config))
            .discover_in(RunDir::new(tmp.path().join("run")))?;
        assert_eq!(s.history.iterations.len(), 1, "{budget}");
        let reason = s.history.search_finished.as_ref().map(|x| x.0.clone());
        match (budget, reason) {
            ("wall", Some(StopReason::WallClock { seconds, .. })) => assert!(seconds > 0.0),
            ("energy", Some(StopReason::Energy { kwh })) => assert!(kwh > 1e-12),
            (b, other) => panic!("{b} budget: unexpected stop {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_config_built_in_code_is_checked_before_the_run_starts() -> TestResult {
    // No TOML reader saw this config: `discover` itself must refuse it, before any directory.
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(2, tmp.path());
    config.search.candidates = 0;
    let dir = RunDir::new(tmp.path().join("run"));
    let err = discovery(config.clone(), offline(&config))
        .discover_in(dir.clone())
        .err()
        .ok_or("a run with no candidates started")?;
    assert!(
        matches!(&err, lemo::LemoError::Config(_)),
        "expected a config error, got {err}"
    );
    assert!(err.to_string().contains("search.candidates"), "{err}");
    assert!(!dir.root().exists(), "the run directory was made");
    let err = discovery(config.clone(), offline(&config))
        .discover()
        .err()
        .ok_or("a run with no candidates started")?;
    assert!(matches!(err, lemo::LemoError::Config(_)), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path())?.count(),
        0,
        "a directory was made"
    );
    Ok(())
}

#[test]
fn data_that_does_not_load_leaves_no_run_directory() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(2, tmp.path());
    config.data.dataset = lemo_train::data::DatasetSpec::Cifar10 {
        dir: tmp.path().join("no-such-cifar"),
    };
    let err = lemo::Discovery::new(
        config.clone(),
        offline(&config),
        Box::new(common::FakeTrainer::default()),
        Box::new(lemo_energy::NoMeter),
        Box::new(lemo_expert::PaperRuleBook),
    )
    .discover()
    .err()
    .ok_or("a run without data started")?;
    assert!(err.to_string().contains("no-such-cifar"), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path())?.count(),
        0,
        "a directory was made"
    );
    Ok(())
}
