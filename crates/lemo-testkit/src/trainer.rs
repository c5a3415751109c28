//! The trainer fake and the trainer conformance suite.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use lemo_core::arch::{ValidatedGraph, starter};
use lemo_core::data::Splits;
use lemo_core::energy::{
    Component, ComponentEnergy, EnergyMeter, EnergyReport, NoMeter, Provenance,
};
use lemo_core::train::{
    EpochStats, Evaluation, InferenceBench, InferenceReport, Status, TrainConfig, TrainError,
    TrainObserver, Trainer,
};

use crate::{ConformanceError, Findings, is_fraction, tiny_splits, tiny_task};

/// A trainer that scores a network without training it: every metric is a pure function of
/// the network's size and cost and of the seed (accuracy grows with parameters, FPS falls and
/// energy grows with MACs). It keeps the whole trainer contract (checks its inputs, honours
/// `evaluate_test` and `inference`, reports every epoch to the observer), so a discovery runs
/// on it in milliseconds. Counts its calls.
#[derive(Debug, Default, Clone)]
pub struct ScoringTrainer {
    /// How many networks it was asked to train.
    pub calls: usize,
}

fn report(joules: f64, wall: Duration) -> EnergyReport {
    EnergyReport {
        wall,
        components: vec![ComponentEnergy {
            component: Component::CpuPackage(0),
            joules,
            source: "estimate:scoring-trainer (no training)".into(),
            provenance: Provenance::Estimated,
        }],
    }
}

impl Trainer for ScoringTrainer {
    fn name(&self) -> String {
        "scoring (no training)".into()
    }

    fn train(
        &mut self,
        network: &ValidatedGraph,
        data: &Splits,
        config: &TrainConfig,
        _meter: &dyn EnergyMeter,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError> {
        self.calls += 1;
        config.check()?;
        let task = network.task();
        for (name, d) in [("training", &data.train), ("validation", &data.val)] {
            if d.shape != task.input || d.is_empty() {
                return Err(TrainError::Data(format!(
                    "{name} images are {:?} ({} of them), the task expects {:?}",
                    d.shape,
                    d.len(),
                    task.input
                )));
            }
        }
        let a = network.analysis();
        let p = a.params as f64;
        let jitter = (config.seed % 1000) as f64 * 1e-6;
        let a2 = 0.5 + 0.45 * p / (p + 20_000.0) + jitter;
        let macs = a.macs.max(1) as f64;
        let mut ev = Evaluation::default();
        ev.status = Status::Completed;
        ev.backend = "scoring".into();
        for epoch in 0..config.epochs {
            observer.on_epoch_start(epoch, config.epochs);
            let grown = (epoch + 1) as f64 / config.epochs as f64;
            let mut stats = EpochStats::default();
            stats.epoch = epoch;
            stats.train_loss = 1.0 - a2 * grown;
            stats.train_accuracy = a2 * grown;
            stats.val_loss = 1.0 - a2 * grown;
            stats.val_accuracy = a2 * grown;
            stats.learning_rate = config.learning_rate;
            observer.on_epoch_end(&stats);
            ev.history.push(stats);
        }
        ev.train_accuracy = (a2 + 0.03).min(1.0);
        ev.train_accuracy_images = data.train.len();
        ev.val_accuracy = a2;
        ev.val_loss = 1.0 - a2;
        ev.test_accuracy = (config.evaluate_test && data.test.is_some()).then_some(a2 - 0.01);
        ev.params = a.params;
        ev.train_energy = report(macs * 1e-3, Duration::from_millis(10));
        ev.val_energy = report(macs * 1e-5, Duration::from_millis(1));
        ev.inference = config.inference.map(|b| {
            let mut i = InferenceReport::default();
            i.fps_batch1 = 1e9 / macs;
            i.latency_p50_ms = macs / 1e6;
            i.latency_p95_ms = macs / 9e5;
            i.large_batch = b.large_batch;
            i.fps_large_batch = 4e9 / macs;
            i.energy = report(macs * 1e-6, Duration::from_millis(1));
            i.deployed_params = a.params;
            i
        });
        ev.train_images = data.train.len();
        ev.train_seconds = 0.01;
        ev.total_seconds = 0.02;
        Ok(ev)
    }
}

/// Counts the observer calls a trainer makes.
#[derive(Default)]
struct Counting {
    epoch_starts: usize,
    epoch_ends: Vec<EpochStats>,
}

impl TrainObserver for Counting {
    fn on_epoch_start(&mut self, _epoch: usize, _epochs: usize) {
        self.epoch_starts += 1;
    }
    fn on_epoch_end(&mut self, stats: &EpochStats) {
        self.epoch_ends.push(stats.clone());
    }
}

/// The trainer contract, checked on the small quadrant task ([`crate::tiny_splits`]) with the
/// starter network and a two-epoch recipe:
///
/// - a valid network trains to an `Ok` evaluation (diverging is an `Ok` with a diverged status);
/// - A1, A2 (and the test accuracy when reported) are fractions in `[0, 1]`; every epoch's too;
/// - P equals the IR's parameter count (lemo-arch counts exactly what a trainer allocates);
/// - at most the configured epochs run, each reported to the observer (start and end);
/// - energy figures are finite and non-negative;
/// - the test split is measured only when asked (`evaluate_test`): a search never sees it;
/// - inference speed is reported, and positive, when asked for a usable network;
/// - bad input (data of the wrong shape, zero epochs) is an `Err`, never a panic.
///
/// Returns every broken rule at once.
pub fn check_trainer(trainer: &mut dyn Trainer) -> Result<(), ConformanceError> {
    let mut f = Findings::new("trainer", trainer.name());
    f.expect(!trainer.name().trim().is_empty(), || {
        "its name is empty".into()
    });
    let task = tiny_task();
    let (network, splits) = match (ValidatedGraph::new(starter(&task), &task), tiny_splits()) {
        (Ok(n), Ok(s)) => (n, s),
        (n, s) => {
            f.expect(false, || {
                format!("the testkit's own fixtures failed: {n:?} / {s:?}")
            });
            return f.finish();
        }
    };
    let mut config = TrainConfig::quick(2, 1.0);
    config.batch_size = 32;
    config.evaluate_test = false;
    config.inference = Some(InferenceBench {
        large_batch: 16,
        warmup: 1,
        batch1_runs: 3,
        large_batch_runs: 2,
        max_seconds: 0.5,
    });

    // A valid network.
    let mut observer = Counting::default();
    let run = catch_unwind(AssertUnwindSafe(|| {
        trainer.train(&network, &splits, &config, &NoMeter, &mut observer)
    }));
    match run {
        Err(_) => f.expect(false, || "panicked training the starter network".into()),
        Ok(Err(e)) => f.expect(false, || {
            format!("could not train the starter network: {e}")
        }),
        Ok(Ok(ev)) => check_evaluation(&mut f, &ev, &network, &config, &observer),
    }

    // The test split, when asked for.
    let mut with_test = config.clone();
    with_test.evaluate_test = true;
    with_test.inference = None;
    let run = catch_unwind(AssertUnwindSafe(|| {
        trainer.train(
            &network,
            &splits,
            &with_test,
            &NoMeter,
            &mut Counting::default(),
        )
    }));
    if let Ok(Ok(ev)) = run {
        f.expect(ev.test_accuracy.is_none_or(is_fraction), || {
            format!("test accuracy {:?} is not a fraction", ev.test_accuracy)
        });
    }

    // Bad input: images of another shape than the task's, and zero epochs.
    let mut wrong = splits.clone();
    wrong.train.shape = [1, 4, 16];
    let run = catch_unwind(AssertUnwindSafe(|| {
        trainer.train(
            &network,
            &wrong,
            &config,
            &NoMeter,
            &mut Counting::default(),
        )
    }));
    match run {
        Err(_) => f.expect(false, || "panicked on data of the wrong shape".into()),
        Ok(r) => f.expect(r.is_err(), || {
            "accepted training images of another shape than the task's".into()
        }),
    }
    let mut zero = config.clone();
    zero.epochs = 0;
    let run = catch_unwind(AssertUnwindSafe(|| {
        trainer.train(&network, &splits, &zero, &NoMeter, &mut Counting::default())
    }));
    match run {
        Err(_) => f.expect(false, || {
            "panicked on a configuration with zero epochs".into()
        }),
        Ok(r) => f.expect(r.is_err(), || {
            "accepted a configuration with zero epochs".into()
        }),
    }
    f.finish()
}

fn check_evaluation(
    f: &mut Findings,
    ev: &Evaluation,
    network: &ValidatedGraph,
    config: &TrainConfig,
    observer: &Counting,
) {
    f.expect(is_fraction(ev.train_accuracy), || {
        format!("A1 {} is not a fraction", ev.train_accuracy)
    });
    f.expect(is_fraction(ev.val_accuracy), || {
        format!("A2 {} is not a fraction", ev.val_accuracy)
    });
    f.expect(ev.test_accuracy.is_none(), || {
        "reported a test accuracy although evaluate_test was off (the search must never see the test split)".into()
    });
    f.expect(ev.params == network.params(), || {
        format!(
            "P is {}, the IR counts {} parameters",
            ev.params,
            network.params()
        )
    });
    f.expect(ev.history.len() <= config.epochs, || {
        format!("ran {} epochs of {}", ev.history.len(), config.epochs)
    });
    f.expect(observer.epoch_ends.len() == ev.history.len(), || {
        format!(
            "reported {} epoch ends to the observer for {} epochs in the history",
            observer.epoch_ends.len(),
            ev.history.len()
        )
    });
    f.expect(observer.epoch_starts >= observer.epoch_ends.len(), || {
        "ended more epochs than it started".into()
    });
    for h in &ev.history {
        f.expect(
            is_fraction(h.train_accuracy) && is_fraction(h.val_accuracy),
            || format!("epoch {} has accuracies outside [0, 1]", h.epoch),
        );
    }
    for (name, r) in [
        ("training", &ev.train_energy),
        ("validation", &ev.val_energy),
    ] {
        let j = r.total_joules();
        f.expect(j.is_finite() && j >= 0.0, || {
            format!("{name} energy {j} J is not a finite, non-negative number")
        });
    }
    if ev.status.is_usable() && config.inference.is_some() {
        match &ev.inference {
            None => f.expect(false, || {
                "no inference speed although one was asked for".into()
            }),
            Some(i) => f.expect(
                i.fps_large_batch.is_finite() && i.fps_large_batch > 0.0,
                || {
                    format!(
                        "inference speed {} img/s is not positive",
                        i.fps_large_batch
                    )
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scoring_trainer_conforms() {
        let mut t = ScoringTrainer::default();
        assert_eq!(check_trainer(&mut t), Ok(()));
        assert!(t.calls >= 3);
    }

    /// A trainer that breaks rules on purpose: the suite must name each.
    struct Sloppy;

    impl Trainer for Sloppy {
        fn name(&self) -> String {
            "sloppy".into()
        }
        fn train(
            &mut self,
            _network: &ValidatedGraph,
            _data: &Splits,
            _config: &TrainConfig,
            _meter: &dyn EnergyMeter,
            _observer: &mut dyn TrainObserver,
        ) -> Result<Evaluation, TrainError> {
            let mut ev = Evaluation::default();
            ev.val_accuracy = 1.5;
            ev.test_accuracy = Some(0.9);
            Ok(ev)
        }
    }

    #[test]
    fn a_sloppy_trainer_is_caught_on_every_rule_it_breaks() {
        let Err(e) = check_trainer(&mut Sloppy) else {
            panic!("the sloppy trainer passed");
        };
        let all = e.violations.join("\n");
        for needle in [
            "A2 1.5",
            "test accuracy",
            "P is 0",
            "wrong shape",
            "zero epochs",
        ] {
            assert!(
                all.contains(needle)
                    || all.contains(&needle.replace("wrong shape", "another shape")),
                "{needle} missing in:\n{all}"
            );
        }
    }
}
