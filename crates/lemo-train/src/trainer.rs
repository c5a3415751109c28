//! The [`Trainer`] seam and its burn implementation: the paper's training loop (section 4.1),
//! then the measurements the expert system needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, GradientsParams, LearningRate, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use lemo_arch::{Graph, Task, ValidatedGraph};
use lemo_energy::EnergyMeter;

use crate::TrainError;
use crate::config::{InferenceBench, OptimizerKind, TrainConfig, Tta};
use crate::data::{Batch, Batcher, Dataset, Normalization, Splits};
use crate::device::{BurnDevice, DeviceChoice};
use crate::evaluation::{CurvePrediction, EpochStats, Evaluation, InferenceReport, Status};
use crate::model::GraphModel;
use crate::observer::TrainObserver;
use lemo_core::metrics::LearningCurve;
use lemo_core::train::Trainer;

/// The burn implementation of [`Trainer`]: builds a [`GraphModel`] on the configured device,
/// trains it with Adam and measures it.
#[derive(Debug, Default)]
pub struct BurnTrainer {
    last: Option<TrainedModel>,
}

impl BurnTrainer {
    /// A trainer with nothing trained yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The network trained last, in validation mode (best epoch's weights when early stopping
    /// restores them).
    pub fn last_trained(&self) -> Option<&TrainedModel> {
        self.last.as_ref()
    }

    /// Takes the network trained last out of the trainer.
    pub fn take_last(&mut self) -> Option<TrainedModel> {
        self.last.take()
    }
}

impl Trainer for BurnTrainer {
    fn name(&self) -> String {
        "burn".into()
    }

    fn train(
        &mut self,
        network: &ValidatedGraph,
        data: &Splits,
        config: &TrainConfig,
        meter: &dyn EnergyMeter,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError> {
        self.last = None;
        let trained = train_and_measure(network, data, config, meter, observer)?;
        let evaluation = trained
            .evaluation
            .clone()
            .ok_or_else(|| TrainError::Device("training finished without an evaluation".into()))?;
        self.last = Some(trained);
        Ok(evaluation)
    }

    fn save_last(&self, dir: &Path) -> Result<bool, TrainError> {
        match &self.last {
            Some(t) => t.save(dir).map(|()| true),
            None => Ok(false),
        }
    }
}

fn device_err(e: impl std::fmt::Debug) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

fn check_data(task: &Task, name: &str, d: &Dataset) -> Result<(), TrainError> {
    if d.shape != task.input {
        return Err(TrainError::Data(format!(
            "{name} images are {:?}, the task expects {:?}",
            d.shape, task.input
        )));
    }
    if d.is_empty() {
        return Err(TrainError::Data(format!("the {name} split is empty")));
    }
    if let Some(l) = d.labels.iter().find(|l| **l as usize >= task.classes) {
        return Err(TrainError::Data(format!(
            "{name} has label {l}, the task has {} classes",
            task.classes
        )));
    }
    Ok(())
}

/// A batch as tensors on `device`.
fn to_tensors(batch: Batch, shape: [usize; 3], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let [c, h, w] = shape;
    let n = batch.size;
    let images = Tensor::<4>::from_data(TensorData::new(batch.images, [n, c, h, w]), device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(batch.labels, [n]), device);
    (images, labels)
}

/// Mean cross-entropy of logits against class indices.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    smoothed_cross_entropy(logits, targets, 0.0)
}

/// Mean cross-entropy against targets smoothed by `smoothing`: `1 - smoothing` on the true
/// class plus `smoothing` spread evenly over all classes (0: plain cross-entropy).
pub fn smoothed_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    smoothing: f64,
) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = activation::log_softmax(logits, 1);
    if smoothing == 0.0 {
        return log_p.gather(1, targets.reshape([n, 1])).mean().neg();
    }
    let nll = log_p
        .clone()
        .gather(1, targets.reshape([n, 1]))
        .mean()
        .neg();
    // mean over images of the mean over classes of -log p
    let uniform = log_p.mean().neg();
    nll.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing)
}

/// `x` (`[n, c, h, w]`) shifted by `t` pixels along `dim` (2 or 3), reflected at the border
/// (PyTorch's `reflect` padding, then a crop): `t > 0` moves the content towards higher
/// indices. `|t|` must be smaller than the side.
fn shift_reflect(x: Tensor<4>, dim: usize, t: isize) -> Tensor<4> {
    let dims = x.dims();
    let k = t.unsigned_abs();
    let Some(&side) = dims.get(dim).filter(|&&side| k > 0 && k < side) else {
        return x;
    };
    let part = |r: std::ops::Range<usize>| {
        let mut ranges = dims.map(|d| 0..d);
        if let Some(slot) = ranges.get_mut(dim) {
            *slot = r;
        }
        x.clone().slice(ranges)
    };
    if t > 0 {
        // rows k, k-1, ..., 1 (the reflection) then 0 .. side-k
        Tensor::cat(vec![part(1..k + 1).flip([dim]), part(0..side - k)], dim)
    } else {
        // rows k .. side, then side-2, ..., side-1-k (the reflection)
        Tensor::cat(
            vec![part(k..side), part(side - 1 - k..side - 1).flip([dim])],
            dim,
        )
    }
}

/// Logits of a batch under test-time augmentation `tta`.
fn predict_logits(model: &GraphModel, x: Tensor<4>, tta: Tta) -> Result<Tensor<2>, TrainError> {
    let mirrored = |x: Tensor<4>| -> Result<Tensor<2>, TrainError> {
        if !tta.flip {
            return model.forward(x);
        }
        let m = x.clone().flip([3]);
        Ok((model.forward(x)? + model.forward(m)?).mul_scalar(0.5))
    };
    if tta.translate == 0 {
        return mirrored(x);
    }
    let t = tta.translate as isize;
    let down = shift_reflect(shift_reflect(x.clone(), 2, t), 3, t);
    let up = shift_reflect(shift_reflect(x.clone(), 2, -t), 3, -t);
    Ok(mirrored(x)?.mul_scalar(0.5) + (mirrored(down)? + mirrored(up)?).mul_scalar(0.25))
}

/// Number of correct predictions (no gradient).
fn correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> Result<u64, TrainError> {
    let [n, _] = logits.dims();
    let hits: i64 = logits
        .detach()
        .argmax(1)
        .reshape([n])
        .equal(targets)
        .int()
        .sum()
        .try_into_scalar()
        .map_err(device_err)?;
    Ok(hits.max(0) as u64)
}

/// A seeded stratified sample of `size` images of `set`, or `None` when no size is set or the
/// set is not larger (the caller then uses the whole set).
fn sample(set: &Dataset, size: Option<usize>, seed: u64) -> Option<Dataset> {
    size.filter(|&k| k < set.len())
        .map(|k| set.fraction(k as f64 / set.len() as f64, seed))
}

/// Mean loss and accuracy of a validation-mode model over a dataset (in order, no augmentation;
/// logits under test-time augmentation `tta`).
pub fn evaluate(
    model: &GraphModel,
    data: &Dataset,
    norm: &Normalization,
    batch_size: usize,
    tta: Tta,
    device: &Device,
) -> Result<(f64, f64), TrainError> {
    let mut loss_sum = 0.0;
    let mut hits = 0u64;
    let mut seen = 0usize;
    for batch in Batcher::new(data, batch_size, norm) {
        let n = batch.size;
        let (x, y) = to_tensors(batch, data.shape, device);
        let logits = predict_logits(model, x, tta)?;
        hits += correct(logits.clone(), y.clone())?;
        let loss: f32 = cross_entropy(logits, y)
            .try_into_scalar()
            .map_err(device_err)?;
        loss_sum += f64::from(loss) * n as f64;
        seen += n;
    }
    if seen == 0 {
        return Err(TrainError::Data(format!("{} is empty", data.name)));
    }
    Ok((loss_sum / seen as f64, hits as f64 / seen as f64))
}

/// Decoupled weight decay around any optimiser: every step first multiplies the parameter by
/// `1 - lr * decay`, then applies the inner optimiser's update (AdamW, SGDW).
#[derive(Clone)]
struct Decoupled<O> {
    inner: O,
    decay: f64,
}

impl<O: Optimizer> Optimizer for Decoupled<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let tensor = if self.decay > 0.0 {
            tensor.mul_scalar(1.0 - lr * self.decay)
        } else {
            tensor
        };
        self.inner.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// The configured optimiser (Adam or SGD, decoupled weight decay on every parameter), plus one
/// group per distinct per-node L2 factor: L2 is applied as the optimiser's (coupled) weight
/// decay `grad += 2 * l2 * w` on that node's kernels, which is exactly the gradient of adding
/// `l2 * ||w||^2` to the loss (Keras' `regularizers.l2`); the reported loss does not include
/// the penalty.
fn optimizer(model: &GraphModel, config: &TrainConfig) -> Result<ModuleOptimizer, TrainError> {
    let decay = config.weight_decay;
    let coupled = |l2: Option<f32>| l2.map(WeightDecayConfig::new);
    match config.optimizer {
        OptimizerKind::Adam => {
            let a = config.adam;
            Ok(grouped(model, decay, |l2| {
                AdamConfig::new()
                    .with_beta_1(a.beta1)
                    .with_beta_2(a.beta2)
                    .with_epsilon(a.epsilon)
                    .with_weight_decay(coupled(l2))
                    .build()
            }))
        }
        OptimizerKind::Sgd => {
            let m = config.sgd;
            let momentum = (m.momentum > 0.0).then_some(MomentumConfig {
                momentum: m.momentum,
                dampening: 0.0,
                nesterov: m.nesterov,
            });
            Ok(grouped(model, decay, |l2| {
                SgdConfig::new()
                    .with_momentum(momentum.clone())
                    .with_weight_decay(coupled(l2))
                    .build()
            }))
        }
        other => Err(TrainError::Config(format!(
            "optimizer {other:?} is not supported by the burn trainer"
        ))),
    }
}

/// One optimiser for every parameter, and one more per distinct per-node L2 factor.
fn grouped<O: Optimizer>(
    model: &GraphModel,
    decay: f64,
    make: impl Fn(Option<f32>) -> O,
) -> ModuleOptimizer {
    let mut optim = ModuleOptimizer::from(Decoupled {
        inner: make(None),
        decay,
    });
    let mut groups: BTreeMap<u64, Vec<burn::module::ParamId>> = BTreeMap::new();
    for (l2, ids) in model.l2_weights() {
        groups.entry(l2.to_bits()).or_default().extend(ids);
    }
    for (bits, ids) in groups {
        let penalty = (2.0 * f64::from_bits(bits)) as f32;
        optim = optim.with_group(
            ParamGroup::from_ids(ids),
            Decoupled {
                inner: make(Some(penalty)),
                decay,
            },
            None,
        );
    }
    optim
}

/// Keras-style "improved" test for a loss to minimise.
struct Monitor {
    best: f64,
    wait: usize,
}

impl Monitor {
    fn new() -> Self {
        Self {
            best: f64::INFINITY,
            wait: 0,
        }
    }
    /// Records a value; true when it improved on the best by more than `min_delta`.
    fn update(&mut self, value: f64, min_delta: f64) -> bool {
        if value < self.best - min_delta {
            self.best = value;
            self.wait = 0;
            true
        } else {
            self.wait += 1;
            false
        }
    }
}

/// Trains and measures a validated network, returning the trained network with its evaluation.
pub fn train_and_measure(
    network: &ValidatedGraph,
    data: &Splits,
    config: &TrainConfig,
    meter: &dyn EnergyMeter,
    observer: &mut dyn TrainObserver,
) -> Result<TrainedModel, TrainError> {
    let started = Instant::now();
    config.check()?;
    // A learning-curve proxy: the first, shorter training comes first (a whole training with
    // its schedule fitted to its length); the rest of this function is the second.
    let first = match config.budget.curve {
        Some(curve) => {
            let mut short = config.clone();
            short.budget.curve = None;
            match curve.first_epochs {
                Some(epochs) => short.epochs = epochs,
                None => short.budget.max_wall_seconds = Some(curve.first_seconds),
            }
            short.inference = None;
            short.evaluate_test = false;
            observer.on_phase("learning curve: first training");
            let trained = train_and_measure(network, data, &short, meter, observer)?;
            observer.on_phase("learning curve: second training");
            trained.evaluation.map(|e| (curve, e))
        }
        None => None,
    };
    let task = network.task();
    config.check_for_images(task.input[1], task.input[2])?;
    check_data(task, "training", &data.train)?;
    check_data(task, "validation", &data.val)?;
    if let Some(test) = &data.test {
        check_data(task, "test", test)?;
    }
    let device = config.device.device()?;
    device.seed(config.seed);
    let ad = device.clone().autodiff();
    let model = GraphModel::new(network, &ad)?;
    let params = model.trainable_params();

    let fraction = config.budget.data_fraction;
    let subset;
    let train_set: &Dataset = if fraction < 1.0 {
        subset = data.train.fraction(fraction, config.seed);
        &subset
    } else {
        &data.train
    };
    if train_set.is_empty() {
        return Err(TrainError::Data(format!(
            "data_fraction {fraction} leaves no training images"
        )));
    }
    let norm = Normalization::from_dataset(train_set);
    let mut model = model.whiten(network, train_set, &norm)?;
    // Every evaluation pass of this run: same normalisation, batch and device.
    let eval = |model: &GraphModel, set: &Dataset, tta: Tta| {
        evaluate(model, set, &norm, config.eval_batch_size, tta, &device)
    };
    // The per-epoch validation: the whole split with TTA as set, or a sample without it.
    let epoch_sample = sample(&data.val, config.epoch_validation_sample, config.seed ^ 2);
    let (epoch_val, epoch_tta) = match &epoch_sample {
        Some(s) => (s, Tta::NONE),
        None => (&data.val, config.tta()),
    };
    let mut optim = optimizer(&model, config)?;
    let mut lr = config.learning_rate;
    let mut plateau = Monitor::new();
    let mut stopper = Monitor::new();
    let mut best: Option<GraphModel> = None;
    let mut history = Vec::new();
    let mut status = Status::Completed;

    let steps_per_epoch = train_set.len().div_ceil(config.batch_size.max(1));
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let mut step = 0usize;
    let mut step_lr = lr;
    let window = meter.start()?;
    let train_start = Instant::now();
    // Seconds since `train_start` at the end of the last step.
    let mut trained_seconds = 0.0f64;
    'epochs: for epoch in 0..config.epochs {
        observer.on_epoch_start(epoch, config.epochs);
        let epoch_start = Instant::now();
        let epoch_seed = config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(epoch as u64);
        let batcher = Batcher::new(train_set, config.batch_size, &norm)
            .shuffle(epoch_seed)
            .augment(&config.augmentation, epoch_seed ^ 0xA5A5_5A5A);
        let total = batcher.batches();
        let (mut loss_sum, mut hits, mut seen) = (0.0f64, 0u64, 0usize);
        for (b, batch) in batcher.enumerate() {
            let n = batch.size;
            let (x, y) = to_tensors(batch, task.input, &ad);
            let logits = model.forward(x)?;
            let loss = smoothed_cross_entropy(logits.clone(), y.clone(), config.label_smoothing);
            let value: f32 = loss.clone().try_into_scalar().map_err(device_err)?;
            let value = f64::from(value);
            if !value.is_finite() || value > config.divergence_loss {
                status = Status::Diverged {
                    epoch,
                    batch: b,
                    loss: value.is_finite().then_some(value),
                };
                break 'epochs;
            }
            hits += correct(logits, y)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            // The schedule's position: the share of the steps, or of the wall-clock cap, spent
            // before this step, whichever is further. Both are 0 at the first step, so a run
            // whose cap does not bind follows the steps alone, the same in every run.
            step_lr = match &config.schedule {
                Some(schedule) => {
                    let by_steps = step as f64 / total_steps as f64;
                    let by_clock = config
                        .budget
                        .max_wall_seconds
                        .map_or(0.0, |cap| trained_seconds / cap);
                    lr * schedule.factor(by_steps.max(by_clock))
                }
                None => lr,
            };
            model = optim.step(step_lr, model, grads);
            step += 1;
            trained_seconds = train_start.elapsed().as_secs_f64();
            loss_sum += value * n as f64;
            seen += n;
            observer.on_batch(b + 1, total);
            if let Some(cap) = config.budget.max_wall_seconds
                && trained_seconds >= cap
            {
                status = Status::WallClockBudget { epoch, batch: b };
                break;
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let valid = model.valid();
        let (val_loss, val_accuracy) = eval(&valid, epoch_val, epoch_tta)?;
        let mut stats = EpochStats::default();
        stats.epoch = epoch;
        stats.train_loss = loss_sum / seen.max(1) as f64;
        stats.train_accuracy = hits as f64 / seen.max(1) as f64;
        stats.val_loss = val_loss;
        stats.val_accuracy = val_accuracy;
        stats.learning_rate = step_lr;
        stats.seconds = epoch_start.elapsed().as_secs_f64();
        stats.train_images_per_second = seen as f64 / train_seconds.max(1e-9);
        observer.on_epoch_end(&stats);
        history.push(stats);
        if matches!(status, Status::WallClockBudget { .. }) {
            break;
        }
        if !val_loss.is_finite() {
            status = Status::Diverged {
                epoch,
                batch: total.saturating_sub(1),
                loss: None,
            };
            break;
        }
        if let Some(p) = config.plateau
            && !plateau.update(val_loss, p.min_delta)
            && plateau.wait >= p.patience
        {
            lr = (lr * p.factor).max(p.min_lr);
            plateau.wait = 0;
        }
        if let Some(e) = config.early_stopping {
            if stopper.update(val_loss, e.min_delta) {
                if e.restore_best {
                    best = Some(valid);
                }
            } else if stopper.wait >= e.patience {
                status = Status::EarlyStopped { epoch };
                break;
            }
        }
    }
    let train_energy = window.finish()?;
    let train_seconds = train_start.elapsed().as_secs_f64();

    let trained = best.unwrap_or_else(|| model.valid());
    let mut evaluation = Evaluation::default();
    evaluation.status = status.clone();
    evaluation.backend = config.device.backend_name();
    evaluation.history = history;
    evaluation.val_loss = f64::NAN;
    evaluation.params = params;
    evaluation.train_energy = train_energy;
    evaluation.train_images = train_set.len();
    evaluation.train_seconds = train_seconds;
    if status.is_usable() {
        // A1: the non-augmented training set (or a stratified sample of it), dropout off.
        observer.on_phase("train accuracy");
        let a1_sample = sample(train_set, config.train_accuracy_sample, config.seed ^ 1);
        let a1_set = a1_sample.as_ref().unwrap_or(train_set);
        let (_, a1) = eval(&trained, a1_set, Tta::NONE)?;
        evaluation.train_accuracy = a1;
        evaluation.train_accuracy_images = a1_set.len();

        // A2 inside the E2 window.
        observer.on_phase("validation");
        let window = meter.start()?;
        let (val_loss, a2) = eval(&trained, &data.val, config.tta())?;
        evaluation.val_energy = window.finish()?;
        evaluation.val_accuracy = a2;
        evaluation.val_loss = val_loss;

        if config.evaluate_test
            && let Some(test) = &data.test
        {
            observer.on_phase("test");
            let (_, acc) = eval(&trained, test, config.tta())?;
            evaluation.test_accuracy = Some(acc);
        }
        if let Some(bench) = config.inference {
            observer.on_phase("inference");
            let deployed = trained.deployment_form()?;
            evaluation.inference = Some(measure_inference(
                &deployed, &data.val, &norm, &bench, &device, meter,
            )?);
        }
    }
    // With a learning-curve proxy, E1 is what evaluating the candidate cost: both trainings.
    if let Some((_, first)) = &first {
        evaluation.train_energy.absorb(&first.train_energy);
    }
    // Both trainings' seconds, and when the curve's lengths are epochs, the epochs trained and
    // the target's seconds turned into epochs at the pace measured over both trainings (so the
    // machine's drift between the two trainings moves only that pace, not the curve's shape).
    // The curve is drawn through the epochs when there are some, else through the seconds.
    let lengths = first
        .as_ref()
        .and_then(|(curve, first)| match curve.first_epochs {
            Some(_) => {
                let seconds = (first.train_seconds, evaluation.train_seconds);
                let (e1, e2) = (
                    first.epochs_trained(steps_per_epoch),
                    evaluation.epochs_trained(steps_per_epoch),
                );
                let pace = (seconds.0 + seconds.1) / (e1 + e2);
                Some((seconds, Some((e1, e2, curve.target_seconds / pace))))
            }
            None => Some(((curve.first_seconds, config.budget.max_wall_seconds?), None)),
        });
    if let (Some((curve, first)), Some((seconds, epochs))) = (first, lengths)
        && status.is_usable()
        && first.status.is_usable()
    {
        let (x1, x2, target) = epochs.unwrap_or((seconds.0, seconds.1, curve.target_seconds));
        let predict = |at_first: f64, at_second: f64| {
            LearningCurve::through((x1, at_first), (x2, at_second), curve.exponent)
                .filter(|_| target.is_finite() && target > 0.0)
                .map(|c| c.at(target))
        };
        if let Some(predicted_val_accuracy) = predict(first.val_accuracy, evaluation.val_accuracy) {
            evaluation.curve = Some(CurvePrediction {
                first_seconds: seconds.0,
                first_val_accuracy: first.val_accuracy,
                second_seconds: seconds.1,
                target_seconds: curve.target_seconds,
                predicted_val_accuracy,
                first_train_accuracy: Some(first.train_accuracy),
                predicted_train_accuracy: predict(first.train_accuracy, evaluation.train_accuracy),
                first_epochs: epochs.map(|e| e.0),
                second_epochs: epochs.map(|e| e.1),
                target_epochs: epochs.map(|e| e.2),
            });
        }
    }
    evaluation.total_seconds = started.elapsed().as_secs_f64();
    Ok(TrainedModel {
        network: network.clone(),
        normalization: norm,
        device: config.device,
        burn_device: device,
        model: trained,
        evaluation: Some(evaluation),
    })
}

/// A batch of `n` images taken from the start of `data` (repeated when it has fewer).
fn sample_batch(data: &Dataset, n: usize, norm: &Normalization, device: &Device) -> Tensor<4> {
    let idx: Vec<usize> = (0..n).map(|i| i % data.len().max(1)).collect();
    let subset = data.subset(&idx);
    let mut images = Vec::with_capacity(n * subset.image_len());
    for batch in Batcher::new(&subset, n, norm) {
        images.extend(batch.images);
    }
    let [c, h, w] = data.shape;
    Tensor::<4>::from_data(TensorData::new(images, [n, c, h, w]), device)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    // rank.min(len - 1): a rank past the end is the last value.
    sorted.get(rank).or(sorted.last()).copied().unwrap_or(0.0)
}

/// Times `runs` forward passes of `x` (after `warmup` untimed ones), each ended by a device
/// sync; stops early after `max_seconds` once 3 runs are done. Returns the seconds per run.
fn time_forward(
    model: &GraphModel,
    x: &Tensor<4>,
    warmup: usize,
    runs: usize,
    max_seconds: f64,
    device: &Device,
) -> Result<Vec<f64>, TrainError> {
    for _ in 0..warmup {
        let _ = model.forward(x.clone())?;
        device.sync().map_err(device_err)?;
    }
    let mut times = Vec::with_capacity(runs);
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let out = model.forward(x.clone())?;
        device.sync().map_err(device_err)?;
        drop(out);
        times.push(t.elapsed().as_secs_f64());
        if times.len() >= 3 && start.elapsed().as_secs_f64() > max_seconds {
            break;
        }
    }
    Ok(times)
}

/// Inference speed of a (deployment-form) model at batch 1 and at the large batch, on images
/// of `data`, inside one energy window.
pub fn measure_inference(
    model: &GraphModel,
    data: &Dataset,
    norm: &Normalization,
    bench: &InferenceBench,
    device: &Device,
    meter: &dyn EnergyMeter,
) -> Result<InferenceReport, TrainError> {
    if data.is_empty() {
        return Err(TrainError::Data("no images to time inference on".into()));
    }
    let one = sample_batch(data, 1, norm, device);
    let large = sample_batch(data, bench.large_batch, norm, device);
    let window = meter.start()?;
    let mut t1 = time_forward(
        model,
        &one,
        bench.warmup,
        bench.batch1_runs,
        bench.max_seconds,
        device,
    )?;
    let tl = time_forward(
        model,
        &large,
        bench.warmup.min(1),
        bench.large_batch_runs,
        bench.max_seconds,
        device,
    )?;
    let energy = window.finish()?;
    let mean1 = t1.iter().sum::<f64>() / t1.len().max(1) as f64;
    let mean_l = tl.iter().sum::<f64>() / tl.len().max(1) as f64;
    t1.sort_by(f64::total_cmp);
    let mut report = InferenceReport::default();
    report.fps_batch1 = 1.0 / mean1.max(1e-12);
    report.latency_p50_ms = percentile(&t1, 0.5) * 1e3;
    report.latency_p95_ms = percentile(&t1, 0.95) * 1e3;
    report.large_batch = bench.large_batch;
    report.fps_large_batch = bench.large_batch as f64 / mean_l.max(1e-12);
    report.energy = energy;
    report.deployed_params = model.trainable_params();
    Ok(report)
}

/// A trained network ready to deploy or re-evaluate: its graph, task, input normalisation and
/// weights (validation mode).
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The network, validated for the task it was trained for.
    pub network: ValidatedGraph,
    /// Input normalisation of its training data (applied to every image it sees).
    pub normalization: Normalization,
    /// The backend it lives on.
    pub device: DeviceChoice,
    burn_device: Device,
    /// The weights, in validation mode (no autodiff).
    pub model: GraphModel,
    /// What training measured (absent for a model loaded without `evaluation.json`).
    pub evaluation: Option<Evaluation>,
}

const GRAPH_FILE: &str = "graph.json";
const TASK_FILE: &str = "task.json";
const NORM_FILE: &str = "normalization.json";
const EVAL_FILE: &str = "evaluation.json";
const WEIGHTS_FILE: &str = "weights.bpk";

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| io_err(path, e))?;
    std::fs::write(path, text).map_err(|e| io_err(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| io_err(path, e))
}

impl TrainedModel {
    /// Writes `graph.json`, `task.json`, `normalization.json`, `evaluation.json` (when known)
    /// and the weights `weights.bpk` (a burnpack record, batch-norm running statistics
    /// included) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        write_json(&dir.join(GRAPH_FILE), self.network.graph())?;
        write_json(&dir.join(TASK_FILE), self.network.task())?;
        write_json(&dir.join(NORM_FILE), &self.normalization)?;
        if let Some(e) = &self.evaluation {
            write_json(&dir.join(EVAL_FILE), e)?;
        }
        let weights = dir.join(WEIGHTS_FILE);
        self.model
            .clone()
            .save_file(&weights)
            .map_err(|e| io_err(&weights, e))
    }

    /// Loads a network saved by [`TrainedModel::save`] onto `device`.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<TrainedModel, TrainError> {
        let graph: Graph = read_json(&dir.join(GRAPH_FILE))?;
        let task: Task = read_json(&dir.join(TASK_FILE))?;
        let normalization: Normalization = read_json(&dir.join(NORM_FILE))?;
        let eval_path = dir.join(EVAL_FILE);
        let evaluation = if eval_path.exists() {
            Some(read_json(&eval_path)?)
        } else {
            None
        };
        let network = ValidatedGraph::new(graph, &task)
            .map_err(|e| TrainError::InvalidGraph(e.to_string()))?;
        let burn_device = device.device()?;
        let weights = dir.join(WEIGHTS_FILE);
        let model = GraphModel::new(&network, &burn_device)?
            .try_load_file(&weights)
            .map_err(|e| io_err(&weights, e))?
            .valid();
        Ok(TrainedModel {
            network,
            normalization,
            device,
            burn_device,
            model,
            evaluation,
        })
    }

    /// Mean loss and accuracy on `data` (normalised with the training normalisation).
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<(f64, f64), TrainError> {
        self.evaluate_with(data, batch_size, Tta::NONE)
    }

    /// Mean loss and accuracy on `data` under test-time augmentation `tta`.
    pub fn evaluate_with(
        &self,
        data: &Dataset,
        batch_size: usize,
        tta: Tta,
    ) -> Result<(f64, f64), TrainError> {
        check_data(self.network.task(), &data.name, data)?;
        let [_, h, w] = data.shape;
        tta.check_for_images(h, w)?;
        evaluate(
            &self.model,
            data,
            &self.normalization,
            batch_size,
            tta,
            &self.burn_device,
        )
    }

    /// Predicted class of every image of `data`, in order.
    pub fn predict(&self, data: &Dataset, batch_size: usize) -> Result<Vec<u32>, TrainError> {
        check_data(self.network.task(), &data.name, data)?;
        let mut out = Vec::with_capacity(data.len());
        for batch in Batcher::new(data, batch_size, &self.normalization) {
            let (x, _) = to_tensors(batch, data.shape, &self.burn_device);
            let classes = self.model.forward(x)?.argmax(1).into_data();
            out.extend(classes.iter::<i64>().map(|c| c.max(0) as u32));
        }
        Ok(out)
    }

    /// The burn device the model lives on.
    pub fn burn_device(&self) -> &Device {
        &self.burn_device
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// A `[1, 1, h, w]` tensor holding `values` row by row.
    fn image(values: &[f32], h: usize, w: usize) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, 1, h, w]),
            &Default::default(),
        )
    }

    fn values(x: Tensor<4>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    #[test]
    fn shifts_reflect_like_a_padded_crop() {
        // One row 0 1 2 3 4: reflect-padded by 2 it reads 2 1 0 1 2 3 4 3 2.
        let x = image(&[0., 1., 2., 3., 4.], 1, 5);
        assert_eq!(values(shift_reflect(x.clone(), 3, 2)), [2., 1., 0., 1., 2.]);
        assert_eq!(
            values(shift_reflect(x.clone(), 3, -2)),
            [2., 3., 4., 3., 2.]
        );
        assert_eq!(values(shift_reflect(x.clone(), 3, 1)), [1., 0., 1., 2., 3.]);
        assert_eq!(
            values(shift_reflect(x.clone(), 3, -1)),
            [1., 2., 3., 4., 3.]
        );
        assert_eq!(values(shift_reflect(x.clone(), 3, 0)), [0., 1., 2., 3., 4.]);
        // Along the height, each column moves as a whole.
        let y = image(&[0., 10., 1., 11., 2., 12.], 3, 2);
        assert_eq!(values(shift_reflect(y, 2, 1)), [1., 11., 0., 10., 1., 11.]);
    }
}
