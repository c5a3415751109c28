//! Shared test helpers: a deterministic fake trainer and small data.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use lemo::event::DataSummary;
use lemo::{RunConfig, RunData};
use lemo_arch::{Graph, Task};
use lemo_energy::{Component, ComponentEnergy, EnergyMeter, EnergyReport, Provenance};
use lemo_train::data::{DatasetSpec, Splits};
use lemo_train::{
    Evaluation, InferenceReport, Status, TrainConfig, TrainError, TrainObserver, Trainer,
};

/// A trainer whose metrics are a pure function of the network and the seed: accuracy grows
/// with parameters, FPS falls with MACs, energy grows with MACs. Counts its calls.
#[derive(Debug, Default)]
pub struct FakeTrainer {
    pub calls: usize,
}

fn report(joules: f64) -> EnergyReport {
    EnergyReport {
        wall: Duration::from_millis(100),
        components: vec![ComponentEnergy {
            component: Component::CpuPackage(0),
            joules,
            source: "fake".into(),
            provenance: Provenance::Estimated,
        }],
    }
}

impl Trainer for FakeTrainer {
    fn name(&self) -> String {
        "fake".into()
    }

    fn train(
        &mut self,
        graph: &Graph,
        task: &Task,
        _data: &Splits,
        config: &TrainConfig,
        _meter: &dyn EnergyMeter,
        _observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError> {
        self.calls += 1;
        let a = graph
            .validate(task)
            .map_err(|e| TrainError::InvalidGraph(e.to_string()))?;
        let p = a.params as f64;
        let jitter = (config.seed % 1000) as f64 * 1e-6;
        let a2 = 0.5 + 0.45 * p / (p + 20_000.0) + jitter;
        let macs = a.macs.max(1) as f64;
        Ok(Evaluation {
            status: Status::Completed,
            backend: "fake".into(),
            history: Vec::new(),
            train_accuracy: (a2 + 0.03).min(1.0),
            train_accuracy_images: 100,
            val_accuracy: a2,
            val_loss: 1.0 - a2,
            test_accuracy: Some(a2 - 0.01),
            params: a.params,
            train_energy: report(macs * 1e-3),
            val_energy: report(macs * 1e-5),
            inference: Some(InferenceReport {
                fps_batch1: 1e9 / macs,
                latency_p50_ms: macs / 1e6,
                latency_p95_ms: macs / 9e5,
                large_batch: 256,
                fps_large_batch: 4e9 / macs,
                energy: report(macs * 1e-6),
                deployed_params: a.params,
            }),
            train_images: 100,
            train_seconds: 0.01,
            total_seconds: 0.02,
        })
    }
}

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
