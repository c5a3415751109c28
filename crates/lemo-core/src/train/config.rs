//! Training configuration: the paper's section 4.1 recipe, every number adjustable, plus the
//! budgets that make candidate evaluation cheap.

use serde::{Deserialize, Serialize};

use super::{DeviceChoice, TrainError};
use crate::data::Augmentation;

/// How a network is trained and measured. Serialised with serde (TOML or JSON); every field has
/// a default, so a config file only names what it changes.
///
/// Defaults are the paper's search-time recipe ([`TrainConfig::paper_search`]). An optional
/// setting (`schedule`, `plateau`, `early_stopping`, `train_accuracy_sample`,
/// `epoch_validation_sample`, `inference`) is switched off with `false` (`plateau = false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum number of epochs (paper: 20 during the search).
    pub epochs: usize,
    /// Training batch size (paper: 512).
    pub batch_size: usize,
    /// Batch size of evaluation passes (accuracies, losses); does not change results.
    pub eval_batch_size: usize,
    /// Initial (peak, with a [`Schedule`]) learning rate (paper: 1e-3, Adam).
    pub learning_rate: f64,
    /// Which optimiser updates the weights (paper: Adam).
    pub optimizer: OptimizerKind,
    /// Adam's beta1, beta2 and epsilon (Keras defaults 0.9, 0.999, 1e-7).
    pub adam: AdamSettings,
    /// SGD's momentum (used when `optimizer = "sgd"`).
    pub sgd: SgdSettings,
    /// Decoupled weight decay (AdamW / SGDW): every step multiplies every parameter by
    /// `1 - rate * weight_decay` before the optimiser's update. 0 switches it off (paper).
    pub weight_decay: f64,
    /// Per-step learning-rate schedule (warm-up, one-cycle, cosine or linear decay), as a factor
    /// of `learning_rate`; `None`: constant (paper).
    #[serde(with = "off")]
    pub schedule: Option<Schedule>,
    /// Reduce the learning rate when the validation loss stops improving (paper: 5 epochs).
    /// With a schedule too, the reductions multiply the scheduled rate.
    #[serde(with = "off")]
    pub plateau: Option<Plateau>,
    /// Label smoothing of the cross-entropy: the target puts `1 - label_smoothing` on the true
    /// class and spreads `label_smoothing` evenly over all classes (0: off, paper).
    pub label_smoothing: f64,
    /// Flip test-time augmentation: validation and test accuracies (and losses) average the
    /// logits of each image and its horizontal mirror.
    pub tta_flip: bool,
    /// Translate test-time augmentation (airbench's): with `N > 0`, validation and test logits
    /// are half the image's plus a quarter each of the image shifted by `N` pixels down-right
    /// and up-left (reflected at the border), each view with its mirror when `tta_flip` is on.
    /// 0: off.
    pub tta_translate: u32,
    /// Stop when the validation loss stops improving (final training only).
    #[serde(with = "off")]
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
    /// stratified sample of this many images of it (`None`, `false` in a file: the whole set).
    #[serde(with = "off")]
    pub train_accuracy_sample: Option<usize>,
    /// The validation pass after each epoch (progress, `plateau`, `early_stopping`) uses a
    /// seeded stratified sample of this many validation images, without TTA (`None`, `false`
    /// in a file: the whole split, with `tta_flip` and `tta_translate` as set). A2 after
    /// training always uses the whole split.
    #[serde(with = "off")]
    pub epoch_validation_sample: Option<usize>,
    /// Measure the test accuracy when the data has a test split (off during a search, which
    /// never looks at the test split; on for the final training).
    pub evaluate_test: bool,
    /// Inference speed measurement on the deployment form (`None`: skip).
    #[serde(with = "off")]
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

/// Serde of optional settings: `None` is written `false` (TOML has no null, and a missing key
/// means the preset's value), and reads back from `false`, `null` or (with the struct's
/// default) a missing key.
mod off {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => t.serialize(s),
            None => s.serialize_bool(false),
        }
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null | serde_json::Value::Bool(false) => Ok(None),
            serde_json::Value::Bool(true) => Err(D::Error::custom(
                "`true` is not a setting: give its value, or `false` to switch it off",
            )),
            v => serde_json::from_value(v)
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OptimizerKind {
    /// Adam ([`AdamSettings`]); with `weight_decay`, AdamW.
    #[default]
    Adam,
    /// Stochastic gradient descent with momentum ([`SgdSettings`]); with `weight_decay`, SGDW.
    Sgd,
}

/// SGD's momentum (PyTorch semantics: no dampening).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdSettings {
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Nesterov's look-ahead momentum.
    pub nesterov: bool,
}

impl Default for SgdSettings {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: true,
        }
    }
}

/// How the rate decays after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decay {
    /// Straight line from the peak to `end_factor` (with a warm-up: the one-cycle schedule).
    #[default]
    Linear,
    /// Half a cosine from the peak to `end_factor`.
    Cosine,
    /// Stays at the peak.
    Constant,
}

/// A per-step learning-rate schedule: the rate is `learning_rate * factor(progress)`, where
/// progress runs from 0 to 1 over training: the fraction of all steps (`epochs` times batches
/// per epoch) done, or of `budget.max_wall_seconds` spent, whichever is further. Linear warm-up
/// from `start_factor` to 1 over the first `warmup` of training, then `decay` to `end_factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Fraction of training spent warming up, in `[0, 1)`.
    pub warmup: f64,
    /// Shape after the warm-up.
    pub decay: Decay,
    /// Factor at the first step (with a warm-up).
    pub start_factor: f64,
    /// Factor at the end of training.
    pub end_factor: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::one_cycle(0.2)
    }
}

impl Schedule {
    /// Linear warm-up from 0.1 of the peak over `warmup` of training, then linear decay to 0.
    pub fn one_cycle(warmup: f64) -> Self {
        Self {
            warmup,
            decay: Decay::Linear,
            start_factor: 0.1,
            end_factor: 0.0,
        }
    }

    /// Linear warm-up over `warmup` of training, then half a cosine to 0.
    pub fn cosine(warmup: f64) -> Self {
        Self {
            decay: Decay::Cosine,
            ..Self::one_cycle(warmup)
        }
    }

    /// The factor of the peak rate at `progress` (clamped to `[0, 1]`).
    pub fn factor(&self, progress: f64) -> f64 {
        let p = if progress.is_nan() {
            0.0
        } else {
            progress.clamp(0.0, 1.0)
        };
        if p < self.warmup {
            return self.start_factor + (1.0 - self.start_factor) * p / self.warmup;
        }
        let rest = 1.0 - self.warmup;
        let q = if rest > 0.0 {
            (p - self.warmup) / rest
        } else {
            1.0
        };
        let end = self.end_factor;
        match self.decay {
            Decay::Linear => 1.0 + (end - 1.0) * q,
            Decay::Cosine => end + (1.0 - end) * 0.5 * (1.0 + (std::f64::consts::PI * q).cos()),
            Decay::Constant => 1.0,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(self.warmup >= 0.0 && self.warmup < 1.0) {
            return Err(format!(
                "schedule.warmup {} must be in [0, 1) (a fraction of training)",
                self.warmup
            ));
        }
        for (key, v) in [
            ("schedule.start_factor", self.start_factor),
            ("schedule.end_factor", self.end_factor),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key} {v} must be a finite number >= 0"));
            }
        }
        Ok(())
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
    /// A learning-curve proxy: train twice (first for `curve.first_seconds`, then for
    /// `max_wall_seconds`; or first for `curve.first_epochs` epochs, then for the recipe's
    /// `epochs`) and predict the validation accuracy of a training of `curve.target_seconds`
    /// ([`CurveProxy`]). `None`: one training, measured as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<CurveProxy>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            data_fraction: 1.0,
            max_wall_seconds: None,
            curve: None,
        }
    }
}

/// How a search predicts what the final training will make of a candidate: two whole trainings
/// of different lengths (each with its schedule fitted to its length), and the power-law
/// learning curve through their validation accuracies ([`lemo_metrics::LearningCurve`])
/// evaluated at the final training's length. A short proxy alone ranks networks that learn
/// fast per second first; the curve also sees how fast each one is still improving
/// (docs/results.md).
///
/// The two lengths are either seconds (`first_seconds`, then `budget.max_wall_seconds`: every
/// candidate measured at the same times) or epochs (`first_epochs`, then the recipe's `epochs`,
/// with `budget.max_wall_seconds` as a cap if set: every candidate measured at the same points
/// of its own learning, a network twice as slow measured twice as late; the curve is drawn
/// through the epochs trained and read at the epochs the target's seconds hold at the pace
/// measured over both trainings, so a network twice as slow is read at half the epochs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurveProxy {
    /// Seconds of the first, shorter training (the second runs `budget.max_wall_seconds`);
    /// 0 when the lengths are epochs.
    #[serde(default)]
    pub first_seconds: f64,
    /// Epochs of the first, shorter training, when the lengths are epochs (the second runs the
    /// recipe's `epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_epochs: Option<usize>,
    /// Seconds of the training whose validation accuracy is predicted (the final training's).
    pub target_seconds: f64,
    /// The learning curve's exponent.
    #[serde(default = "default_curve_exponent")]
    pub exponent: f64,
}

fn default_curve_exponent() -> f64 {
    lemo_metrics::DEFAULT_CURVE_EXPONENT
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
            optimizer: OptimizerKind::Adam,
            adam: AdamSettings::default(),
            sgd: SgdSettings::default(),
            weight_decay: 0.0,
            schedule: None,
            plateau: Some(Plateau::default()),
            label_smoothing: 0.0,
            tta_flip: false,
            tta_translate: 0,
            early_stopping: None,
            augmentation: Augmentation::paper(),
            validation_split: 0.1,
            budget: Budget::default(),
            seed: 0,
            divergence_loss: 1e4,
            train_accuracy_sample: Some(10_000),
            epoch_validation_sample: None,
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

    /// A fast modern recipe for the final training (measured on CIFAR-10, docs/training.md):
    /// SGD with Nesterov momentum 0.9, peak rate 0.1 at batch 256, decoupled weight decay 5e-4,
    /// one-cycle schedule (20% warm-up from a tenth of the peak, linear decay to 0), label
    /// smoothing 0.2, random crop (4 pixels) and flip, flip and translate (2 pixels) test-time
    /// augmentation, up to 40 epochs (usually capped by `budget.max_wall_seconds`, which the
    /// schedule follows), no plateau, no early stopping, per-epoch validation on 1,000 images
    /// (A2 on the whole split), test accuracy measured.
    pub fn fast_final() -> Self {
        Self {
            epochs: 40,
            batch_size: 256,
            eval_batch_size: 500,
            learning_rate: 0.1,
            optimizer: OptimizerKind::Sgd,
            sgd: SgdSettings::default(),
            weight_decay: 5e-4,
            schedule: Some(Schedule::one_cycle(0.2)),
            plateau: None,
            early_stopping: None,
            label_smoothing: 0.2,
            tta_flip: true,
            tta_translate: 2,
            augmentation: Augmentation::crop_flip(4),
            epoch_validation_sample: Some(1_000),
            evaluate_test: true,
            ..Self::paper_search()
        }
    }

    /// A cheap proxy for candidates during a search, with [`TrainConfig::fast_final`]'s recipe:
    /// 4 epochs on half of the training split (stratified), no test-time augmentation, A1 on
    /// 5,000 images, shorter inference timing, never the test split.
    pub fn fast_search() -> Self {
        Self {
            epochs: 4,
            budget: Budget {
                data_fraction: 0.5,
                max_wall_seconds: None,
                curve: None,
            },
            tta_flip: false,
            tta_translate: 0,
            evaluate_test: false,
            train_accuracy_sample: Some(5_000),
            inference: Some(InferenceBench {
                batch1_runs: 50,
                large_batch_runs: 3,
                max_seconds: 1.0,
                ..InferenceBench::default()
            }),
            ..Self::fast_final()
        }
    }

    /// The names [`TrainConfig::preset`] knows.
    pub const PRESETS: [&'static str; 5] = [
        "paper_search",
        "paper_final",
        "fast_search",
        "fast_final",
        "quick",
    ];

    /// A preset by name (one of [`TrainConfig::PRESETS`]; `quick` is `quick(1, 1.0)`).
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "paper_search" => Self::paper_search(),
            "paper_final" => Self::paper_final(),
            "fast_search" => Self::fast_search(),
            "fast_final" => Self::fast_final(),
            "quick" => Self::quick(1, 1.0),
            _ => return None,
        })
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
                curve: None,
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
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay {} must be a finite number >= 0",
                self.weight_decay
            ));
        }
        if !(self.label_smoothing >= 0.0 && self.label_smoothing < 1.0) {
            return bad(format!(
                "label_smoothing {} must be in [0, 1)",
                self.label_smoothing
            ));
        }
        let m = self.sgd.momentum;
        if !(0.0..1.0).contains(&m) {
            return bad(format!("sgd.momentum {m} must be in [0, 1)"));
        }
        if self.sgd.nesterov && m == 0.0 && self.optimizer == OptimizerKind::Sgd {
            return bad("sgd.nesterov needs sgd.momentum > 0".into());
        }
        if let Some(s) = &self.schedule {
            s.check().map_err(TrainError::Config)?;
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
        if let Some(c) = self.budget.curve
            && let Some(e) = c.first_epochs
        {
            if c.first_seconds != 0.0 {
                return bad(format!(
                    "budget.curve.first_seconds {} and budget.curve.first_epochs {e}: give the \
                     first training's length in one unit",
                    c.first_seconds
                ));
            }
            if e == 0 || e >= self.epochs {
                return bad(format!(
                    "budget.curve.first_epochs {e} must be at least 1 and below epochs {}",
                    self.epochs
                ));
            }
            if !(c.target_seconds.is_finite() && c.target_seconds > 0.0) {
                return bad(format!(
                    "budget.curve.target_seconds {} must be positive",
                    c.target_seconds
                ));
            }
        } else if let Some(c) = self.budget.curve {
            let Some(second) = self.budget.max_wall_seconds else {
                return bad(
                    "budget.curve needs budget.max_wall_seconds (the second training's length) \
                     or budget.curve.first_epochs"
                        .into(),
                );
            };
            if !(c.first_seconds.is_finite() && c.first_seconds > 0.0 && c.first_seconds < second) {
                return bad(format!(
                    "budget.curve.first_seconds {} must be positive and below \
                     budget.max_wall_seconds {second}",
                    c.first_seconds
                ));
            }
            if !(c.target_seconds.is_finite() && c.target_seconds > second) {
                return bad(format!(
                    "budget.curve.target_seconds {} must be above budget.max_wall_seconds {second}",
                    c.target_seconds
                ));
            }
        }
        if let Some(c) = self.budget.curve
            && !(c.exponent.is_finite() && c.exponent > 0.0)
        {
            return bad(format!(
                "budget.curve.exponent {} must be positive",
                c.exponent
            ));
        }
        if self.divergence_loss.is_nan() || self.divergence_loss <= 0.0 {
            return bad("divergence_loss must be positive".into());
        }
        if self.train_accuracy_sample == Some(0) {
            return bad("train_accuracy_sample must be at least 1 (or none)".into());
        }
        if self.epoch_validation_sample == Some(0) {
            return bad("epoch_validation_sample must be at least 1 (or none)".into());
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

    /// Checks the settings that depend on the images: the crop padding must be smaller than
    /// both sides of an image of `height` x `width`, the cutout square no larger than either, the
    /// test-time shift smaller than both.
    pub fn check_for_images(&self, height: usize, width: usize) -> Result<(), TrainError> {
        self.tta().check_for_images(height, width)?;
        let p = self.augmentation.crop_padding as usize;
        if p > 0 && (p >= height || p >= width) {
            return Err(TrainError::Config(format!(
                "augmentation.crop_padding {p} must be smaller than the images ({height} x {width})"
            )));
        }
        let c = self.augmentation.cutout as usize;
        if c > height || c > width {
            return Err(TrainError::Config(format!(
                "augmentation.cutout {c} must be at most the images' sides ({height} x {width})"
            )));
        }
        Ok(())
    }

    /// The test-time augmentation of the validation and test passes (`tta_flip`,
    /// `tta_translate`).
    pub fn tta(&self) -> Tta {
        Tta {
            flip: self.tta_flip,
            translate: self.tta_translate as usize,
        }
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

/// Test-time augmentation of evaluation passes (validation and test accuracies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tta {
    /// Average each view's logits with its horizontal mirror's.
    pub flip: bool,
    /// With `N > 0`: half the image's logits plus a quarter each of the image shifted by `N`
    /// pixels down-right and up-left, reflected at the border (airbench's translate TTA).
    pub translate: usize,
}

impl Tta {
    /// No augmentation: one forward pass per image.
    pub const NONE: Tta = Tta {
        flip: false,
        translate: 0,
    };

    /// The shift must be smaller than both sides of an image of `height` x `width`.
    pub fn check_for_images(&self, height: usize, width: usize) -> Result<(), TrainError> {
        let t = self.translate;
        if t > 0 && (t >= height || t >= width) {
            return Err(TrainError::Config(format!(
                "tta_translate {t} must be smaller than the images ({height} x {width})"
            )));
        }
        Ok(())
    }
}
