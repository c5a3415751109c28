//! Training through the public API on small synthetic data: learning, reproducibility, budgets,
//! plateau and early stopping, divergence, measurements, saving and loading, errors.

use std::cell::Cell;

mod common;

use common::{config, small_cnn, splits, task, validated};
use lemo_arch::{Graph, Task};
use lemo_energy::NoMeter;
use lemo_train::data::Augmentation;
use lemo_train::{
    BurnTrainer, DeviceChoice, EarlyStopping, EpochStats, Plateau, Status, TrainConfig, TrainError,
    TrainObserver, TrainedModel, Trainer,
};

#[derive(Default)]
struct Counter {
    epochs: Cell<usize>,
    batches: usize,
    ended: Vec<EpochStats>,
    phases: Vec<String>,
}

impl TrainObserver for Counter {
    fn on_epoch_start(&mut self, _epoch: usize, _epochs: usize) {
        self.epochs.set(self.epochs.get() + 1);
    }
    fn on_batch(&mut self, _done: usize, _total: usize) {
        self.batches += 1;
    }
    fn on_epoch_end(&mut self, stats: &EpochStats) {
        self.ended.push(stats.clone());
    }
    fn on_phase(&mut self, phase: &str) {
        self.phases.push(phase.to_string());
    }
}

#[test]
fn learns_quadrants_and_reports_every_measurement() -> Result<(), TrainError> {
    let mut trainer: Box<dyn Trainer> = Box::new(BurnTrainer::new());
    let mut counter = Counter::default();
    let eval = trainer.train(
        &validated(small_cnn(), task())?,
        &splits(true),
        &config(),
        &NoMeter,
        &mut counter,
    )?;
    assert_eq!(eval.status, Status::Completed);
    assert_eq!(eval.history.len(), 4);
    assert_eq!(counter.epochs.get(), 4);
    assert_eq!(counter.batches, 4 * 8);
    assert_eq!(counter.ended, eval.history);
    assert_eq!(
        counter.phases,
        ["train accuracy", "validation", "test", "inference"]
    );
    assert!(eval.val_accuracy > 0.9, "A2 {}", eval.val_accuracy);
    assert!(eval.train_accuracy > 0.9, "A1 {}", eval.train_accuracy);
    assert!(eval.test_accuracy.is_some_and(|a| a > 0.9));
    assert_eq!(eval.train_accuracy_images, 256);
    assert_eq!(eval.params, (8 * 9 + 8) + 16 + (8 * 4 * 4 * 4 + 4));
    let first = &eval.history[0];
    let last = &eval.history[3];
    assert!(last.train_loss < first.train_loss);
    assert!(eval.val_loss.is_finite() && eval.val_loss < 1.0);
    let inf = eval.inference.as_ref().expect("inference measured");
    assert!(inf.fps_batch1 > 0.0 && inf.fps_large_batch > 0.0);
    assert!(inf.latency_p50_ms > 0.0 && inf.latency_p50_ms <= inf.latency_p95_ms);
    assert_eq!(inf.large_batch, 32);
    // Folded: the batch norm's gamma and beta are gone from the deployment form.
    assert_eq!(inf.deployed_params, eval.params - 16);
    assert!(eval.train_seconds > 0.0 && eval.total_seconds >= eval.train_seconds);
    assert_eq!(eval.backend, "flex");
    // The evaluation is serialisable for the run journal.
    let json = serde_json::to_string(&eval).expect("serialises");
    let back: lemo_train::Evaluation = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back.history, eval.history);
    Ok(())
}

/// The small CNN with a patch-whitening 2x2 stem (8 = 2 x 1 x 2 x 2 filters) in front.
fn whitened_cnn() -> Graph {
    let mut g = small_cnn();
    let mut stem = lemo_arch::Node::new("w", lemo_arch::Op::conv_same(8, 2));
    if let lemo_arch::Op::Conv2d { padding, .. } = &mut stem.op {
        *padding = lemo_arch::Padding::Named(lemo_arch::PaddingMode::Valid);
    }
    stem.init = Some(lemo_arch::Init::PatchWhitening);
    g.nodes.insert(0, stem);
    g.nodes
        .insert(1, lemo_arch::Node::new("wa", lemo_arch::Op::Relu));
    g
}

#[test]
fn patch_whitening_sets_the_stem_from_the_training_images_and_trains() -> Result<(), TrainError> {
    use burn::tensor::Device;
    use lemo_train::GraphModel;
    use lemo_train::data::Normalization;
    let network = validated(whitened_cnn(), task())?;
    let data = splits(true);
    let norm = Normalization::from_dataset(&data.train);
    let model = GraphModel::new(&network, &Device::flex())?.whiten(&network, &data.train, &norm)?;
    let (want, rows) =
        lemo_train::whiten::whitening_filters(&data.train, &norm, 2, 8).expect("patches to whiten");
    assert_eq!(rows, 8);
    let Some(lemo_train::model::Layer::Conv(conv)) = model.layers.first() else {
        panic!("the stem is the first layer");
    };
    let got: Vec<f32> = conv
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 weights");
    assert_eq!(got, want);
    let bias: Vec<f32> = conv
        .bias
        .as_ref()
        .expect("a bias")
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 bias");
    assert!(bias.iter().all(|b| *b == 0.0));
    // Filter pairs are +v, -v.
    for pair in got.chunks_exact(8) {
        let (plus, minus) = pair.split_at(4);
        assert!(plus.iter().zip(minus).all(|(p, m)| *p == -*m));
    }
    // The trainer whitens before training, and the network learns.
    let eval = BurnTrainer::new().train(
        &network,
        &data,
        &config(),
        &NoMeter,
        &mut Counter::default(),
    )?;
    assert_eq!(eval.status, Status::Completed);
    assert!(eval.val_accuracy > 0.9, "A2 {}", eval.val_accuracy);
    Ok(())
}

#[test]
fn plateau_reduces_the_rate_and_early_stopping_stops() -> Result<(), TrainError> {
    // min_delta so large that nothing after the first epoch counts as an improvement.
    let config = TrainConfig {
        epochs: 6,
        plateau: Some(Plateau {
            patience: 1,
            factor: 0.1,
            min_delta: 1e9,
            min_lr: 0.0,
        }),
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_delta: 1e9,
            restore_best: true,
        }),
        inference: None,
        ..config()
    };
    let mut trainer = BurnTrainer::new();
    let eval = trainer.train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    let lrs: Vec<f64> = eval.history.iter().map(|h| h.learning_rate).collect();
    let expected = [0.01, 0.01, 0.001, 0.0001];
    assert_eq!(lrs.len(), expected.len(), "{lrs:?}");
    for (a, b) in lrs.iter().zip(expected) {
        assert!((a - b).abs() < 1e-12, "{lrs:?}");
    }
    assert_eq!(eval.status, Status::EarlyStopped { epoch: 3 });
    // Restored weights are the first epoch's: A2 equals that epoch's validation accuracy.
    assert!((eval.val_accuracy - eval.history[0].val_accuracy).abs() < 1e-12);
    Ok(())
}

#[test]
fn divergence_is_a_status_not_a_panic() -> Result<(), TrainError> {
    let mut trainer = BurnTrainer::new();
    // An absurd learning rate blows the weights up within a few batches.
    let exploding = TrainConfig {
        learning_rate: 1e30,
        epochs: 3,
        ..config()
    };
    let eval = trainer.train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &exploding,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    assert!(
        matches!(eval.status, Status::Diverged { .. }),
        "{:?}",
        eval.status
    );
    assert!(!eval.status.is_usable());
    assert_eq!(eval.val_accuracy, 0.0);
    assert!(eval.inference.is_none());

    // A tiny divergence threshold trips on the very first batch, reporting its loss.
    let strict = TrainConfig {
        divergence_loss: 1e-6,
        ..config()
    };
    let eval = trainer.train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &strict,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    match eval.status {
        Status::Diverged {
            epoch: 0,
            batch: 0,
            loss: Some(l),
        } => assert!(l > 1e-6),
        other => panic!("expected divergence at 0/0, got {other:?}"),
    }
    Ok(())
}

#[test]
fn wall_clock_budget_and_data_fraction_limit_training() -> Result<(), TrainError> {
    let mut config = TrainConfig {
        epochs: 50,
        inference: None,
        ..config()
    };
    config.budget.max_wall_seconds = Some(1e-9);
    config.budget.data_fraction = 0.5;
    let mut counter = Counter::default();
    let eval = BurnTrainer::new().train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &config,
        &NoMeter,
        &mut counter,
    )?;
    assert_eq!(eval.status, Status::WallClockBudget { epoch: 0, batch: 0 });
    assert_eq!(counter.batches, 1);
    assert_eq!(eval.history.len(), 1);
    assert_eq!(eval.train_images, 128);
    // Still measured: A2 exists (whatever it is).
    assert!(eval.val_accuracy >= 0.0 && eval.val_loss.is_finite());
    Ok(())
}

#[test]
fn a_trained_network_saves_loads_and_evaluates_the_same() -> Result<(), TrainError> {
    let mut trainer = BurnTrainer::new();
    let data = splits(true);
    let config = TrainConfig {
        inference: None,
        ..config()
    };
    let eval = trainer.train(
        &validated(small_cnn(), task())?,
        &data,
        &config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    let dir = tempfile::tempdir().map_err(|e| TrainError::Io {
        path: "tempdir".into(),
        reason: e.to_string(),
    })?;
    assert!(trainer.save_last(dir.path())?);
    for file in [
        "graph.json",
        "task.json",
        "normalization.json",
        "evaluation.json",
        "weights.bpk",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    let loaded = TrainedModel::load(dir.path(), DeviceChoice::Cpu)?;
    assert_eq!(loaded.network.graph(), &small_cnn());
    assert_eq!(
        loaded.evaluation.as_ref().map(|e| &e.history),
        Some(&eval.history)
    );
    let (loss, acc) = loaded.evaluate(&data.val, 17)?;
    assert!(
        (acc - eval.val_accuracy).abs() < 1e-12,
        "{acc} vs {}",
        eval.val_accuracy
    );
    assert!(
        (loss - eval.val_loss).abs() < 1e-4,
        "{loss} vs {}",
        eval.val_loss
    );
    let original = trainer.last_trained().expect("kept");
    assert_eq!(
        original.predict(&data.val, 64)?,
        loaded.predict(&data.val, 64)?
    );

    // A corrupt weights file is an error naming it, not a panic.
    std::fs::write(dir.path().join("weights.bpk"), b"not a burnpack").map_err(|e| {
        TrainError::Io {
            path: "weights".into(),
            reason: e.to_string(),
        }
    })?;
    match TrainedModel::load(dir.path(), DeviceChoice::Cpu) {
        Err(TrainError::Io { path, .. }) => assert!(path.ends_with("weights.bpk")),
        other => panic!("expected an Io error, got {:?}", other.map(|_| ())),
    }
    Ok(())
}

/// The small CNN trained for three epochs with a learning-curve proxy (and a wall-clock cap):
/// the config, what the observer saw, the evaluation.
fn train_with_curve(
    max_wall_seconds: Option<f64>,
    curve: lemo_train::CurveProxy,
) -> Result<(TrainConfig, Counter, lemo_train::Evaluation), TrainError> {
    let mut curved = TrainConfig {
        epochs: 3,
        inference: None,
        evaluate_test: false,
        ..config()
    };
    curved.budget.max_wall_seconds = max_wall_seconds;
    curved.budget.curve = Some(curve);
    let mut counter = Counter::default();
    let eval = BurnTrainer::new().train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &curved,
        &NoMeter,
        &mut counter,
    )?;
    Ok((curved, counter, eval))
}

#[test]
fn a_curve_proxy_trains_twice_and_predicts_the_target_length() -> Result<(), TrainError> {
    use lemo_core::metrics::LearningCurve;
    use lemo_train::CurveProxy;
    let (curved, counter, eval) = train_with_curve(
        Some(30.0),
        CurveProxy {
            first_seconds: 10.0,
            first_epochs: None,
            target_seconds: 300.0,
            exponent: 0.5,
        },
    )?;
    // Two whole trainings (three epochs each: the wall budgets are far away).
    assert_eq!(counter.ended.len(), 6);
    assert_eq!(eval.history.len(), 3);
    // Each training is announced, so progress lines can tell them apart.
    for phase in [
        "learning curve: first training",
        "learning curve: second training",
    ] {
        assert!(counter.phases.iter().any(|p| p == phase), "{phase}");
    }
    let c = eval.curve.expect("a prediction");
    assert_eq!(
        (c.first_seconds, c.second_seconds, c.target_seconds),
        (10.0, 30.0, 300.0)
    );
    // Drawn through the nominal seconds: no epochs recorded.
    assert_eq!((c.first_epochs, c.target_epochs), (None, None));
    let want = LearningCurve::through((10.0, c.first_val_accuracy), (30.0, eval.val_accuracy), 0.5)
        .expect("a curve")
        .at(300.0);
    assert!((c.predicted_val_accuracy - want).abs() < 1e-12);
    assert_eq!(eval.ranked_val_accuracy(), c.predicted_val_accuracy);
    // A1 through the same curve, so CM and the rules compare accuracies of one length.
    let first_a1 = c.first_train_accuracy.expect("the first training's A1");
    let want_a1 = LearningCurve::through((10.0, first_a1), (30.0, eval.train_accuracy), 0.5)
        .map(|curve| curve.at(300.0));
    assert_eq!(c.predicted_train_accuracy, want_a1);
    assert_eq!(
        eval.ranked_train_accuracy(),
        want_a1.unwrap_or(eval.train_accuracy)
    );
    // Serialised with the evaluation, and absent from one without a curve.
    let json = serde_json::to_string(&eval).expect("serialises");
    assert!(json.contains("predicted_val_accuracy"));
    let plain = BurnTrainer::new().train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &TrainConfig {
            epochs: 1,
            inference: None,
            evaluate_test: false,
            ..config()
        },
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    assert!(plain.curve.is_none());
    assert_eq!(plain.ranked_val_accuracy(), plain.val_accuracy);
    assert_eq!(plain.ranked_train_accuracy(), plain.train_accuracy);

    // Bad settings are config errors that name the key.
    for (first, target, exponent, key) in [
        (30.0, 300.0, 0.5, "budget.curve.first_seconds"),
        (10.0, 20.0, 0.5, "budget.curve.target_seconds"),
        (10.0, 300.0, 0.0, "budget.curve.exponent"),
    ] {
        let mut bad = curved.clone();
        bad.budget.curve = Some(CurveProxy {
            first_seconds: first,
            first_epochs: None,
            target_seconds: target,
            exponent,
        });
        match bad.check() {
            Err(TrainError::Config(m)) => assert!(m.contains(key), "{m}"),
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
    let mut no_second = curved.clone();
    no_second.budget.max_wall_seconds = None;
    assert!(matches!(no_second.check(), Err(TrainError::Config(m)) if m.contains("budget.curve")));
    Ok(())
}

/// With the lengths in epochs, the first training runs `first_epochs` epochs, the second the
/// recipe's, and the curve goes through the epochs; the target's seconds become epochs at the
/// pace of both trainings together.
#[test]
fn a_curve_proxy_in_epochs_draws_the_curve_through_the_epochs() -> Result<(), TrainError> {
    use lemo_core::metrics::LearningCurve;
    use lemo_train::CurveProxy;
    let (curved, counter, eval) = train_with_curve(
        None,
        CurveProxy {
            first_seconds: 0.0,
            first_epochs: Some(1),
            target_seconds: 300.0,
            exponent: 0.5,
        },
    )?;
    // One epoch, then three.
    assert_eq!(counter.ended.len(), 4);
    assert_eq!(eval.history.len(), 3);
    let c = eval.curve.expect("a prediction");
    assert_eq!(c.second_seconds, eval.train_seconds);
    assert!(
        c.first_seconds > 0.0 && c.first_seconds < c.second_seconds,
        "{} then {} s",
        c.first_seconds,
        c.second_seconds
    );
    assert_eq!((c.first_epochs, c.second_epochs), (Some(1.0), Some(3.0)));
    let pace = (c.first_seconds + c.second_seconds) / 4.0;
    let target = c.target_epochs.expect("the target in epochs");
    assert!((target - 300.0 / pace).abs() < 1e-9, "{target} epochs");
    let want = LearningCurve::through((1.0, c.first_val_accuracy), (3.0, eval.val_accuracy), 0.5)
        .expect("a curve")
        .at(target);
    assert!((c.predicted_val_accuracy - want).abs() < 1e-12);

    // One unit at a time, and fewer epochs first.
    for (seconds, epochs, key) in [
        (10.0, Some(1), "budget.curve.first_seconds"),
        (0.0, Some(3), "budget.curve.first_epochs"),
        (0.0, Some(0), "budget.curve.first_epochs"),
    ] {
        let mut bad = curved.clone();
        bad.budget.curve = Some(CurveProxy {
            first_seconds: seconds,
            first_epochs: epochs,
            target_seconds: 300.0,
            exponent: 0.5,
        });
        match bad.check() {
            Err(TrainError::Config(m)) => assert!(m.contains(key), "{m}"),
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mut trainer = BurnTrainer::new();
    let run = |trainer: &mut BurnTrainer, graph: &Graph, task: &Task, config: &TrainConfig| {
        trainer.train(
            &validated(graph.clone(), task.clone())?,
            &splits(false),
            config,
            &NoMeter,
            &mut lemo_train::NoObserver,
        )
    };
    // The graph's logits do not match the task's classes.
    let wrong = Task {
        classes: 5,
        ..task()
    };
    assert!(matches!(
        run(&mut trainer, &small_cnn(), &wrong, &config()),
        Err(TrainError::InvalidGraph(_)) | Err(TrainError::Data(_))
    ));
    // Images of another shape than the task's.
    let other_shape = Task {
        input: [3, 8, 8],
        ..task()
    };
    assert!(matches!(
        run(&mut trainer, &small_cnn(), &other_shape, &config()),
        Err(TrainError::Data(_))
    ));
    // A configuration value out of range.
    let bad = TrainConfig {
        batch_size: 0,
        ..config()
    };
    assert!(matches!(
        run(&mut trainer, &small_cnn(), &task(), &bad),
        Err(TrainError::Config(_))
    ));
    // A backend this build does not have.
    #[cfg(not(feature = "cuda"))]
    {
        let cuda = TrainConfig {
            device: DeviceChoice::Cuda(0),
            ..config()
        };
        assert!(matches!(
            run(&mut trainer, &small_cnn(), &task(), &cuda),
            Err(TrainError::BackendUnavailable { .. })
        ));
    }
    assert!(trainer.last_trained().is_none());
}

#[test]
fn config_presets_round_trip_and_reject_unknown_fields() {
    let search = TrainConfig::paper_search();
    assert_eq!(search.epochs, 20);
    assert_eq!(search.batch_size, 512);
    assert_eq!(search.learning_rate, 1e-3);
    assert_eq!(search.plateau.map(|p| p.patience), Some(5));
    assert_eq!(search.augmentation, Augmentation::paper());
    assert_eq!(search.validation_split, 0.1);
    assert!(
        !search.evaluate_test,
        "a search never measures the test split"
    );
    let fin = TrainConfig::paper_final();
    assert!(fin.evaluate_test);
    assert_eq!(
        (fin.epochs, fin.batch_size, fin.learning_rate),
        (500, 1024, 0.01)
    );
    assert_eq!(fin.plateau.map(|p| p.patience), Some(20));
    assert!(fin.early_stopping.is_some());
    for c in [search, fin] {
        c.check().expect("presets are valid");
        let json = serde_json::to_string(&c).expect("serialises");
        let back: TrainConfig = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, c);
    }
    let partial: TrainConfig =
        serde_json::from_str(r#"{"epochs": 3, "device": {"cuda": 1}}"#).expect("partial");
    assert_eq!(partial.epochs, 3);
    assert_eq!(partial.device, DeviceChoice::Cuda(1));
    assert_eq!(partial.batch_size, 512);
    assert!(serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).is_err());
}
