//! What training and measuring one network reports.

use crate::energy::EnergyReport;
use serde::{Deserialize, Serialize};

/// How a training run ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
#[non_exhaustive]
pub enum Status {
    /// All configured epochs ran.
    #[default]
    Completed,
    /// Early stopping ended training after this epoch (0-based).
    EarlyStopped {
        /// Last epoch run.
        epoch: usize,
    },
    /// The wall-clock budget ran out during this epoch, after this batch (both 0-based).
    WallClockBudget {
        /// Epoch in progress.
        epoch: usize,
        /// Last batch trained.
        batch: usize,
    },
    /// The loss became NaN, infinite or exploded at this epoch and batch (0-based): the
    /// candidate's accuracies are 0 and it was not measured further.
    Diverged {
        /// Epoch in progress.
        epoch: usize,
        /// Batch whose loss diverged.
        batch: usize,
        /// The loss, when it was a finite number.
        loss: Option<f64>,
    },
}

impl Status {
    /// Whether the network trained without diverging.
    pub fn is_usable(&self) -> bool {
        !matches!(self, Status::Diverged { .. })
    }
}

/// One epoch of training.
///
/// `#[non_exhaustive]`: build one with `EpochStats::default()` and set its fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EpochStats {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (augmented data, dropout on).
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (augmented data, dropout on).
    pub train_accuracy: f64,
    /// Validation loss (cross-entropy, mean per image).
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Learning rate used during the epoch.
    pub learning_rate: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Training images processed per second during the epoch.
    pub train_images_per_second: f64,
}

/// Inference speed of the deployment form (batch norm folded, dropout removed), each timing
/// taken with the device synchronised.
///
/// `#[non_exhaustive]`: build one with `InferenceReport::default()` and set its fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InferenceReport {
    /// Images per second at batch 1 (1 / mean latency).
    pub fps_batch1: f64,
    /// Median latency of one image, milliseconds.
    pub latency_p50_ms: f64,
    /// 95th-percentile latency of one image, milliseconds.
    pub latency_p95_ms: f64,
    /// The large batch size.
    pub large_batch: usize,
    /// Images per second at the large batch.
    pub fps_large_batch: f64,
    /// Energy of the whole inference measurement window.
    pub energy: EnergyReport,
    /// Trainable parameters left in the deployment form (batch norm folded away).
    pub deployed_params: u64,
}

/// Everything measured about one trained network: what the expert system needs (A1, A2, P, F,
/// E1, E2) and the history behind it.
///
/// `#[non_exhaustive]`: a trainer builds one with `Evaluation::default()` and sets its fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Evaluation {
    /// How training ended.
    pub status: Status,
    /// Backend the network ran on (`flex`, `cuda:0`, ...).
    pub backend: String,
    /// One entry per completed epoch.
    pub history: Vec<EpochStats>,
    /// A1: accuracy on the non-augmented training set (or its sample), dropout off.
    pub train_accuracy: f64,
    /// Number of training images A1 was measured on.
    pub train_accuracy_images: usize,
    /// A2: validation accuracy.
    pub val_accuracy: f64,
    /// Validation loss at the end.
    pub val_loss: f64,
    /// Test accuracy, when the data has a test split and it was asked for.
    pub test_accuracy: Option<f64>,
    /// P: trainable parameters (lemo-arch's counting rule).
    pub params: u64,
    /// E1: energy of the training window (all epochs, including per-epoch validation; with a
    /// learning-curve proxy, both trainings).
    pub train_energy: EnergyReport,
    /// E2: energy of evaluating the validation set once, after training.
    pub val_energy: EnergyReport,
    /// F: inference speed on the deployment form (`None` when skipped or diverged).
    pub inference: Option<InferenceReport>,
    /// Images the network was trained on per epoch (after the data-fraction budget).
    pub train_images: usize,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
    /// Wall-clock seconds of everything (training, evaluation, measurement).
    pub total_seconds: f64,
    /// With a learning-curve proxy ([`crate::train::CurveProxy`]): both trainings' validation
    /// and training accuracies and the predictions for the target length. Every other field
    /// describes the second training (`total_seconds` and `train_energy` include the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<CurvePrediction>,
}

/// What a learning-curve proxy measured and predicted.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CurvePrediction {
    /// Length of the first training, seconds (its measured training time when the curve's
    /// lengths are epochs).
    pub first_seconds: f64,
    /// Validation accuracy after the first training.
    pub first_val_accuracy: f64,
    /// Length of the second training, seconds, measured as the first's (its accuracy is
    /// `Evaluation::val_accuracy`).
    pub second_seconds: f64,
    /// The length the prediction is for, seconds.
    pub target_seconds: f64,
    /// The predicted validation accuracy after a training of `target_seconds`.
    pub predicted_val_accuracy: f64,
    /// Training accuracy (A1) after the first training (absent in journals written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_train_accuracy: Option<f64>,
    /// The predicted training accuracy after a training of `target_seconds`, through the same
    /// curve as A2's, so A1 and A2 describe the same training length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_train_accuracy: Option<f64>,
    /// When the curve's lengths are epochs: the epochs the first training ran; the curve is
    /// drawn through the epochs, not the seconds (absent in journals written before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_epochs: Option<f64>,
    /// When the curve's lengths are epochs: the epochs the second training ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_epochs: Option<f64>,
    /// When the curve's lengths are epochs: the epochs `target_seconds` holds at the pace
    /// measured over both trainings (their seconds over their epochs), where the curve is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_epochs: Option<f64>,
}

impl Evaluation {
    /// Epochs run.
    pub fn epochs(&self) -> usize {
        self.history.len()
    }

    /// Epochs trained, counting a last epoch that the wall-clock budget cut short as the
    /// fraction of its `batches_per_epoch` batches that ran.
    pub fn epochs_trained(&self, batches_per_epoch: usize) -> f64 {
        match self.status {
            Status::WallClockBudget { epoch, batch } => {
                epoch as f64 + ((batch + 1) as f64 / batches_per_epoch.max(1) as f64).min(1.0)
            }
            _ => self.history.len() as f64,
        }
    }

    /// A2 as the search ranks it: the learning curve's prediction when a curve proxy made one,
    /// else the measured validation accuracy.
    pub fn ranked_val_accuracy(&self) -> f64 {
        self.curve
            .map_or(self.val_accuracy, |c| c.predicted_val_accuracy)
    }

    /// A1 as the search ranks it: the learning curve's prediction when a curve proxy made one
    /// (so A1 and A2 are for the same length: CM adds them, and the over/underfitting rules
    /// compare them), else the measured training accuracy.
    pub fn ranked_train_accuracy(&self) -> f64 {
        self.curve
            .and_then(|c| c.predicted_train_accuracy)
            .unwrap_or(self.train_accuracy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_trained_counts_a_cut_epoch_by_its_batches() {
        let mut ev = Evaluation {
            history: vec![EpochStats::default(); 3],
            ..Evaluation::default()
        };
        assert_eq!(ev.epochs_trained(10), 3.0);
        // Cut after batch 4 (0-based) of epoch 2: two whole epochs and half of the third.
        ev.status = Status::WallClockBudget { epoch: 2, batch: 4 };
        assert_eq!(ev.epochs_trained(10), 2.5);
        ev.status = Status::WallClockBudget { epoch: 0, batch: 9 };
        assert_eq!(ev.epochs_trained(10), 1.0);
        ev.status = Status::EarlyStopped { epoch: 2 };
        assert_eq!(ev.epochs_trained(10), 3.0);
    }
}
