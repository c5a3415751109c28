//! Progress callbacks of a training run (progress bars, logs).

use super::EpochStats;

/// Receives progress while a network trains. Every method has a no-op default.
pub trait TrainObserver {
    /// An epoch starts (`epoch` 0-based, of `epochs`).
    fn on_epoch_start(&mut self, epoch: usize, epochs: usize) {
        let _ = (epoch, epochs);
    }
    /// `done` of `total` training batches of the current epoch are finished.
    fn on_batch(&mut self, done: usize, total: usize) {
        let _ = (done, total);
    }
    /// An epoch ended, validation included.
    fn on_epoch_end(&mut self, stats: &EpochStats) {
        let _ = stats;
    }
    /// A measurement phase after training starts: `"train accuracy"`, `"validation"`,
    /// `"test"`, `"inference"`.
    fn on_phase(&mut self, phase: &str) {
        let _ = phase;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl TrainObserver for NoObserver {}
