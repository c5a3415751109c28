//! Issue 15, items 1 and 2: a search never looks at the test split, and never stalls on one
//! network.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{FakeTrainer, digits, quick_config};
use lemo::journal::read_journal;
use lemo::{Discovery, IterationOutcome, RunDir};
use lemo_arch::ValidatedGraph;
use lemo_energy::{EnergyMeter, NoMeter};
use lemo_expert::PaperRuleBook;
use lemo_llm::{BoxFuture, ChatModel, ChatRequest, ChatResponse, LlmArchitect, LlmError};
use lemo_train::data::Splits;
use lemo_train::{Evaluation, TrainConfig, TrainError, TrainObserver, Trainer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What a trainer was handed: whether the data held a test split, whether it was asked to
/// measure it.
type Seen = Arc<Mutex<Vec<(bool, bool)>>>;

/// The fake trainer, recording what it is handed.
struct Spy {
    inner: FakeTrainer,
    seen: Seen,
}

impl Trainer for Spy {
    fn name(&self) -> String {
        "spy".into()
    }
    fn train(
        &mut self,
        network: &ValidatedGraph,
        data: &Splits,
        config: &TrainConfig,
        meter: &dyn EnergyMeter,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError> {
        self.seen
            .lock()
            .unwrap()
            .push((data.test.is_some(), config.evaluate_test));
        self.inner.train(network, data, config, meter, observer)
    }
}

/// A chat model that answers with a network widened a little at every request, recording
/// every prompt it is sent.
struct Widening {
    prompts: Mutex<Vec<String>>,
}

impl ChatModel for Widening {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let mut prompts = self.prompts.lock().unwrap();
            prompts.push(
                request
                    .messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            let filters = 4 + 2 * prompts.len();
            Ok(ChatResponse {
                text: format!(
                    r#"{{"nodes":[{{"id":"c","op":"conv2d","filters":{filters},"kernel":3,"padding":"same"}},
                    {{"id":"r","op":"relu"}},{{"id":"g","op":"global_avg_pool"}},{{"id":"fc","op":"dense","units":10}}]}}"#
                ),
                model: "widening".into(),
                ..ChatResponse::default()
            })
        })
    }
    fn describe(&self) -> String {
        "widening (test)".into()
    }
}

#[test]
fn the_search_never_sees_the_test_split() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(4, tmp.path());
    config.search.evaluate_test = true; // even when a config asks for it
    let data = digits(&config);
    assert!(data.splits.test.is_some());
    let seen = Seen::default();
    let chat = Arc::new(Widening {
        prompts: Mutex::new(Vec::new()),
    });
    let dir = RunDir::new(tmp.path().join("run"));
    let summary = Discovery::new(
        config,
        Box::new(LlmArchitect::new(chat.clone())),
        Box::new(Spy {
            inner: FakeTrainer::default(),
            seen: seen.clone(),
        }),
        Box::new(NoMeter),
        Box::new(PaperRuleBook),
    )
    .with_data(data)
    .discover_in(dir.clone())?;
    assert!(summary.finished);

    // The trainer got no test split and no request to measure one, until the final training.
    let seen = seen.lock().unwrap().clone();
    let (last, search) = seen.split_last().ok_or("nothing trained")?;
    assert!(search.len() >= 4, "{seen:?}");
    assert!(
        search.iter().all(|&(test, asked)| !test && !asked),
        "{seen:?}"
    );
    assert_eq!(
        *last,
        (true, true),
        "the final training measures the test split"
    );

    // No prompt mentions a test accuracy.
    for prompt in chat.prompts.lock().unwrap().iter() {
        assert!(!prompt.to_lowercase().contains("test accuracy"), "{prompt}");
    }
    // No journal event before `final_started` carries a test accuracy.
    let journal = read_journal::<serde_json::Value>(&dir.journal())?;
    let mut before_final = true;
    for entry in &journal.entries {
        if entry.event["type"] == "final_started" {
            before_final = false;
        }
        if before_final {
            let text = entry.event.to_string();
            assert!(
                !text.contains("\"test_accuracy\":0") && !text.contains("\"test_accuracy\":1"),
                "{text}"
            );
        }
    }
    assert!(!before_final, "the run reached the final training");
    let final_test = summary
        .history
        .final_result
        .as_ref()
        .and_then(|f| f.observed.test_accuracy);
    assert!(
        final_test.is_some(),
        "the final training reports a test accuracy"
    );
    Ok(())
}

#[test]
fn the_offline_search_never_stalls_on_one_network() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let config = quick_config(12, tmp.path());
    let data = digits(&config);
    let architect = config.architect.build()?;
    let summary = Discovery::new(
        config,
        architect,
        Box::new(FakeTrainer::default()),
        Box::new(NoMeter),
        Box::new(PaperRuleBook),
    )
    .with_data(data)
    .discover_in(RunDir::new(tmp.path().join("run")))?;
    let hashes: Vec<String> = summary
        .history
        .iterations
        .iter()
        .filter_map(|r| match &r.outcome {
            IterationOutcome::Evaluated { hash, .. } => Some(hash.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(hashes.len(), 12);
    for pair in hashes.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "two iterations in a row on one network: {hashes:?}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = hashes.iter().collect();
    assert!(
        distinct.len() >= 10,
        "only {} distinct networks: {hashes:?}",
        distinct.len()
    );
    Ok(())
}

#[test]
fn a_user_can_stop_when_every_threshold_is_met() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = quick_config(10, tmp.path());
    // Thresholds every candidate meets: no rule fires after the first network.
    config.metrics.thresholds.ta1 = 0.0;
    config.metrics.thresholds.ta2 = 0.0;
    config.metrics.thresholds.te1_kwh = 1e9;
    config.metrics.thresholds.te2_kwh = 1e9;
    config.metrics.thresholds.tf_fps = 0.0;
    config.metrics.thresholds.ot = 1.0;
    config.metrics.thresholds.ut = 1.0;
    config.termination.stop_when_thresholds_met = true;
    config.final_training.enabled = false;
    let data = digits(&config);
    let architect = config.architect.build()?;
    let summary = Discovery::new(
        config,
        architect,
        Box::new(FakeTrainer::default()),
        Box::new(NoMeter),
        Box::new(PaperRuleBook),
    )
    .with_data(data)
    .discover_in(RunDir::new(tmp.path().join("run")))?;
    let (reason, _) = summary.history.search_finished.clone().ok_or("no stop")?;
    assert_eq!(
        serde_json::to_value(&reason)?["reason"],
        "targets_met",
        "{reason}"
    );
    assert_eq!(summary.history.iterations.len(), 1);
    Ok(())
}
