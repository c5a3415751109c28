//! A trainer written the way a third party would write one: it depends on `lemo-core` alone,
//! checks itself with `lemo-testkit`'s conformance suite (`tests/conformance.rs`), and runs a
//! whole discovery (`tests/discovery.rs`).
//!
//! [`CentroidTrainer`] does not train the network it is given: it fits a nearest-centroid
//! classifier on the pixels (a real, if simple, learner) and reports the network's own size
//! and cost beside it. It stands for any engine outside this project (a PyTorch bridge, a
//! remote service): the loop only sees the [`Trainer`] trait.

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Instant;

use lemo_core::arch::ValidatedGraph;
use lemo_core::data::{Dataset, Splits};
use lemo_core::energy::EnergyMeter;
use lemo_core::train::{
    EpochStats, Evaluation, InferenceReport, Status, TrainConfig, TrainError, TrainObserver,
    Trainer,
};

/// Nearest-centroid classification of the pixels, reported with the network's parameter count
/// and an FPS derived from its multiply-accumulates at an assumed 10 GMAC/s.
#[derive(Debug, Default)]
pub struct CentroidTrainer;

/// Mean image of every class, in pixel units (0..=255).
fn centroids(d: &Dataset) -> Vec<Vec<f64>> {
    let len = d.image_len();
    let mut sums = vec![vec![0.0; len]; d.classes()];
    let mut counts = vec![0usize; d.classes()];
    for (i, &label) in d.labels.iter().enumerate() {
        let (Some(sum), Some(count)) =
            (sums.get_mut(label as usize), counts.get_mut(label as usize))
        else {
            continue;
        };
        for (s, &p) in sum.iter_mut().zip(d.image(i)) {
            *s += f64::from(p);
        }
        *count += 1;
    }
    for (sum, &count) in sums.iter_mut().zip(&counts) {
        for s in sum.iter_mut() {
            *s /= count.max(1) as f64;
        }
    }
    sums
}

/// Share of `d`'s images whose nearest centroid is their class.
fn accuracy(centroids: &[Vec<f64>], d: &Dataset) -> f64 {
    let mut hits = 0usize;
    for (i, &label) in d.labels.iter().enumerate() {
        let image = d.image(i);
        let nearest = centroids
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let dist: f64 = c
                    .iter()
                    .zip(image)
                    .map(|(m, &p)| (m - f64::from(p)).powi(2))
                    .sum();
                (k, dist)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k);
        hits += usize::from(nearest == Some(label as usize));
    }
    hits as f64 / d.len().max(1) as f64
}

impl Trainer for CentroidTrainer {
    fn name(&self) -> String {
        "nearest-centroid (example third-party trainer)".into()
    }

    fn train(
        &mut self,
        network: &ValidatedGraph,
        data: &Splits,
        config: &TrainConfig,
        meter: &dyn EnergyMeter,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError> {
        config.check()?;
        let task = network.task();
        for d in [&data.train, &data.val] {
            if d.shape != task.input || d.is_empty() {
                return Err(TrainError::Data(format!(
                    "{} holds {} images of {:?}; the task expects {:?}",
                    d.name,
                    d.len(),
                    d.shape,
                    task.input
                )));
            }
        }
        let started = Instant::now();
        let window = meter.start()?;
        observer.on_epoch_start(0, 1);
        let fitted = centroids(&data.train);
        let train_accuracy = accuracy(&fitted, &data.train);
        let train_energy = window.finish()?;
        let window = meter.start()?;
        let val_accuracy = accuracy(&fitted, &data.val);
        let val_energy = window.finish()?;

        let mut stats = EpochStats::default();
        stats.train_accuracy = train_accuracy;
        stats.val_accuracy = val_accuracy;
        stats.seconds = started.elapsed().as_secs_f64();
        observer.on_epoch_end(&stats);

        let mut ev = Evaluation::default();
        ev.status = Status::Completed;
        ev.backend = "cpu (nearest centroid)".into();
        ev.history = vec![stats];
        ev.train_accuracy = train_accuracy;
        ev.train_accuracy_images = data.train.len();
        ev.val_accuracy = val_accuracy;
        ev.test_accuracy = match (&data.test, config.evaluate_test) {
            (Some(test), true) => Some(accuracy(&fitted, test)),
            _ => None,
        };
        ev.params = network.params();
        ev.train_energy = train_energy;
        ev.val_energy = val_energy;
        ev.inference = config.inference.map(|bench| {
            let seconds_per_image = network.analysis().macs.max(1) as f64 / 1e10;
            let mut i = InferenceReport::default();
            i.fps_batch1 = 1.0 / seconds_per_image;
            i.latency_p50_ms = seconds_per_image * 1e3;
            i.latency_p95_ms = seconds_per_image * 1e3;
            i.large_batch = bench.large_batch;
            i.fps_large_batch = 1.0 / seconds_per_image;
            i.deployed_params = network.params();
            i
        });
        ev.train_images = data.train.len();
        ev.train_seconds = started.elapsed().as_secs_f64();
        ev.total_seconds = ev.train_seconds;
        Ok(ev)
    }
}
