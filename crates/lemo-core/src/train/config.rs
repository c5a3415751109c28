//! Training configuration: the paper's section 4.1 recipe, every number adjustable, plus the
//! budgets that make candidate evaluation cheap.

use serde::{Deserialize, Serialize};

use super::{DeviceChoice, TrainError};
use crate::data::Augmentation;

/// How a network is trained and measured. Serialised with serde (TOML or JSON); every field has
/// a default, so a config file only names what it changes.
///
/// Defaults are the paper's search-time recipe ([`TrainConfig::paper_search`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum number of epochs (paper: 20 during the search).
    pub epochs: usize,
    /// Training batch size (paper: 512).
    pub batch_size: usize,
    /// Batch size of evaluation passes (accuracies, losses); does not change results.
    pub eval_batch_size: usize,
    /// Initial Adam learning rate (paper: 1e-3).
    pub learning_rate: f64,
    /// Adam's beta1, beta2 and epsilon (Keras defaults 0.9, 0.999, 1e-7).
    pub adam: AdamSettings,
    /// Reduce the learning rate when the validation loss stops improving (paper: 5 epochs).
    pub plateau: Option<Plateau>,
    /// Stop when the validation loss stops improving (final training only).
    pub early_stopping: Option<EarlyStopping>,
    /// Augmentation of training images (paper preset by default; `Augmentation::none()` to
    /// switch it off).
    pub augmentation: Augmentation,
    /// Fraction of the training data held out for validation when splits are made with
    /// [`TrainConfig::split`] (paper: 9:1, i.e. 0.1).
    pub validation_split: f64,
    /// Cheap-candidate budgets.
    pub budget: Budget,
    /// Seed of weight initialisation (burn's device RNG), data order, augmentation and dropout.
    pub seed: u64,
    /// A batch loss above this (or NaN / infinite) ends the candidate as diverged.
    pub divergence_loss: f64,
    /// A1 (training accuracy) is measured on the non-augmented training set, or on a seeded
    /// stratified sample of this many images of it (`None`: the whole set).
    pub train_accuracy_sample: Option<usize>,
    /// Measure the test accuracy when the data has a test split (off during a search, which
    /// never looks at the test split; on for the final training).
    pub evaluate_test: bool,
    /// Inference speed measurement on the deployment form (`None`: skip).
    pub inference: Option<InferenceBench>,
    /// Where to train.
    pub device: DeviceChoice,
}

/// Adam hyper-parameters other than the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamSettings {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Numerical stabiliser.
    pub epsilon: f32,
}

impl Default for AdamSettings {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Learning-rate reduction on a validation-loss plateau (Keras' `ReduceLROnPlateau`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plateau {
    /// Epochs without improvement before the rate is reduced.
    pub patience: usize,
    /// Multiplier applied to the rate (0.1: divided by ten; Keras' default).
    pub factor: f64,
    /// An improvement must lower the best validation loss by more than this.
    pub min_delta: f64,
    /// The rate never goes below this.
    pub min_lr: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Self {
            patience: 5,
            factor: 0.1,
            min_delta: 1e-4,
            min_lr: 0.0,
        }
    }
}

/// Early stopping on the validation loss (Keras' `EarlyStopping`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without improvement before training stops.
    pub patience: usize,
    /// An improvement must lower the best validation loss by more than this.
    pub min_delta: f64,
    /// Go back to the weights of the best epoch when stopping (or at the end).
    pub restore_best: bool,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            patience: 40,
            min_delta: 1e-4,
            restore_best: true,
        }
    }
}

/// Budgets for cheap candidate evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Train on a seeded stratified fraction of the training split (1.0: all of it).
    pub data_fraction: f64,
    /// Stop training after this many seconds of wall clock (checked after every batch); the
    /// candidate is then measured as it is.
    pub max_wall_seconds: Option<f64>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            data_fraction: 1.0,
            max_wall_seconds: None,
        }
    }
}

/// How inference speed is measured (on the deployment form, device synchronised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceBench {
    /// The large batch (images/s at this batch size).
    pub large_batch: usize,
    /// Untimed runs before timing, at each batch size.
    pub warmup: usize,
    /// Timed runs at batch 1 (latencies p50/p95 come from these).
    pub batch1_runs: usize,
    /// Timed runs at the large batch.
    pub large_batch_runs: usize,
    /// Stop timing a batch size once this many seconds have passed (at least 3 runs are made).
    pub max_seconds: f64,
}

impl Default for InferenceBench {
    fn default() -> Self {
        Self {
            large_batch: 256,
            warmup: 2,
            batch1_runs: 100,
            large_batch_runs: 5,
            max_seconds: 3.0,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::paper_search()
    }
}

impl TrainConfig {
    /// The paper's search-time training (section 4.1): Adam, learning rate 1e-3, batch 512,
    /// 20 epochs, learning rate x0.1 after a 5-epoch validation-loss plateau, augmentation on,
    /// 9:1 train/validation split.
    pub fn paper_search() -> Self {
        Self {
            epochs: 20,
            batch_size: 512,
            eval_batch_size: 256,
            learning_rate: 1e-3,
            adam: AdamSettings::default(),
            plateau: Some(Plateau::default()),
            early_stopping: None,
            augmentation: Augmentation::paper(),
            validation_split: 0.1,
            budget: Budget::default(),
            seed: 0,
            divergence_loss: 1e4,
            train_accuracy_sample: Some(10_000),
            evaluate_test: false,
            inference: Some(InferenceBench::default()),
            device: DeviceChoice::Cpu,
        }
    }

    /// The paper's final training of the best network: up to 500 epochs, batch 1024, learning
    /// rate 0.01, plateau 20 epochs, early stopping (patience 40, best weights restored).
    pub fn paper_final() -> Self {
        Self {
            epochs: 500,
            batch_size: 1024,
            learning_rate: 0.01,
            plateau: Some(Plateau {
                patience: 20,
                ..Plateau::default()
            }),
            early_stopping: Some(EarlyStopping::default()),
            evaluate_test: true,
            ..Self::paper_search()
        }
    }

    /// A quick budget for smoke tests and examples: `epochs` epochs on `fraction` of the data,
    /// no augmentation, no inference timing.
    pub fn quick(epochs: usize, fraction: f64) -> Self {
        Self {
            epochs,
            batch_size: 128,
            augmentation: Augmentation::none(),
            budget: Budget {
                data_fraction: fraction,
                max_wall_seconds: None,
            },
            inference: None,
            ..Self::paper_search()
        }
    }

    /// Checks every value; the error names the field.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch_size and eval_batch_size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning_rate {} must be positive",
                self.learning_rate
            ));
        }
        let a = self.adam;
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2) && a.epsilon > 0.0) {
            return bad(format!(
                "adam betas must be in [0, 1) and epsilon positive, got {a:?}"
            ));
        }
        if let Some(p) = self.plateau
            && !(p.factor > 0.0 && p.factor < 1.0 && p.patience > 0 && p.min_lr >= 0.0)
        {
            return bad(format!(
                "plateau needs 0 < factor < 1, patience >= 1, min_lr >= 0, got {p:?}"
            ));
        }
        if let Some(e) = self.early_stopping
            && e.patience == 0
        {
            return bad("early_stopping.patience must be at least 1".into());
        }
        if !(self.validation_split > 0.0 && self.validation_split < 1.0) {
            return bad(format!(
                "validation_split {} must be in (0, 1)",
                self.validation_split
            ));
        }
        let f = self.budget.data_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return bad(format!("budget.data_fraction {f} must be in (0, 1]"));
        }
        if let Some(s) = self.budget.max_wall_seconds
            && (s.is_nan() || s <= 0.0)
        {
            return bad(format!("budget.max_wall_seconds {s} must be positive"));
        }
        if self.divergence_loss.is_nan() || self.divergence_loss <= 0.0 {
            return bad("divergence_loss must be positive".into());
        }
        if self.train_accuracy_sample == Some(0) {
            return bad("train_accuracy_sample must be at least 1 (or none)".into());
        }
        if let Some(b) = self.inference
            && (b.large_batch == 0 || b.batch1_runs == 0 || b.large_batch_runs == 0)
        {
            return bad(format!(
                "inference batch and run counts must be at least 1, got {b:?}"
            ));
        }
        Ok(())
    }

    /// Splits a training set into train and validation parts with the configured fraction
    /// (stratified, seeded with [`TrainConfig::seed`]) and wraps them with an optional test set.
    pub fn split(
        &self,
        train: &crate::data::Dataset,
        test: Option<crate::data::Dataset>,
    ) -> crate::data::Splits {
        let (train, val) = train.split(self.validation_split, self.seed);
        crate::data::Splits { train, val, test }
    }
}
