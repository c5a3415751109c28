//! Shared test helpers: a deterministic fake trainer and small data.
#![allow(dead_code, clippy::unwrap_used)]

use lemo::event::DataSummary;
use lemo::{Discovery, RunConfig, RunData};
use lemo_energy::NoMeter;
use lemo_expert::PaperRuleBook;
use lemo_llm::Architect;
use lemo_train::data::{DatasetSpec, Splits};

/// The fake trainer: the testkit's, which scores a network without training it.
pub use lemo_testkit::ScoringTrainer as FakeTrainer;

/// The embedded digits, split as a run splits them.
pub fn digits(config: &RunConfig) -> RunData {
    lemo::load_data(config).unwrap()
}

/// A config for fast library tests: digits, offline architect, `iterations` iterations.
pub fn quick_config(iterations: usize, out: &std::path::Path) -> RunConfig {
    let mut c = RunConfig::quickstart().unwrap();
    c.termination.iterations = iterations;
    c.termination.max_wall_seconds = None;
    c.run.out_dir = out.to_path_buf();
    c.data.dataset = DatasetSpec::Digits { path: None };
    c
}

/// A data summary for hand-made data.
pub fn summary(splits: &Splits) -> DataSummary {
    DataSummary {
        name: splits.train.name.clone(),
        shape: splits.train.shape,
        classes: splits.train.classes(),
        train: splits.train.len(),
        val: splits.val.len(),
        test: splits.test.as_ref().map_or(0, |t| t.len()),
        test_source: "test".into(),
    }
}

/// A discovery on the embedded digits with the fake trainer, no energy meter and the paper's
/// rule book.
pub fn discovery(config: RunConfig, architect: Box<dyn Architect>) -> Discovery {
    let data = digits(&config);
    Discovery::new(
        config,
        architect,
        Box::new(FakeTrainer::default()),
        Box::new(NoMeter),
        Box::new(PaperRuleBook),
    )
    .with_data(data)
}

/// A valid digits network whose conv layer has `4 + 2 * n` filters: a new network for every
/// `n`, as a chat model's `n`-th answer.
pub fn widening_answer(n: usize) -> String {
    let filters = 4 + 2 * n;
    format!(
        r#"{{"nodes":[{{"id":"c","op":"conv2d","filters":{filters},"kernel":3,"padding":"same"}},
        {{"id":"r","op":"relu"}},{{"id":"g","op":"global_avg_pool"}},{{"id":"fc","op":"dense","units":10}}]}}"#
    )
}
