//! The fast training recipes: SGD with Nesterov momentum, decoupled weight decay, per-step
//! schedules, label smoothing, random crop + flip and flip test-time augmentation.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Int, Tensor, TensorData};
use common::{config, small_cnn, splits, task, validated};
use lemo_energy::NoMeter;
use lemo_train::data::{Augmentation, Dataset};
use lemo_train::trainer::{cross_entropy, smoothed_cross_entropy};
use lemo_train::{
    BurnTrainer, Decay, OptimizerKind, Schedule, SgdSettings, TrainConfig, TrainError,
    TrainedModel, Trainer, Tta, evaluate,
};

fn fast(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        learning_rate: 0.05,
        optimizer: OptimizerKind::Sgd,
        sgd: SgdSettings {
            momentum: 0.9,
            nesterov: true,
        },
        weight_decay: 5e-4,
        schedule: Some(Schedule::one_cycle(0.25)),
        plateau: None,
        label_smoothing: 0.1,
        // No flip: a mirror swaps the quadrants the classes are told apart by.
        tta_flip: false,
        augmentation: Augmentation {
            crop_padding: 1,
            ..Augmentation::none()
        },
        ..config()
    }
}

#[test]
fn sgd_nesterov_one_cycle_learns_and_follows_the_schedule() -> Result<(), TrainError> {
    let config = fast(4);
    let eval = BurnTrainer::new().train(
        &validated(small_cnn(), task())?,
        &splits(true),
        &config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    assert!(eval.status.is_usable(), "{:?}", eval.status);
    assert!(eval.val_accuracy > 0.9, "A2 {}", eval.val_accuracy);
    assert!(eval.test_accuracy.is_some_and(|a| a > 0.9));
    // 256 images at batch 32: 8 steps an epoch, 32 in all; the rate recorded at each epoch's end
    // is the schedule's factor at that epoch's last step.
    let schedule = Schedule::one_cycle(0.25);
    for (e, h) in eval.history.iter().enumerate() {
        let last_step = (e + 1) * 8 - 1;
        let want = 0.05 * schedule.factor(last_step as f64 / 32.0);
        assert!(
            (h.learning_rate - want).abs() < 1e-12,
            "epoch {e}: {} vs {want}",
            h.learning_rate
        );
    }
    Ok(())
}

/// The small CNN after one epoch of the fast recipe on the quadrant images, kept for evaluation.
fn trained_one_epoch() -> Result<TrainedModel, TrainError> {
    let mut trainer = BurnTrainer::new();
    trainer.train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &TrainConfig {
            inference: None,
            ..fast(1)
        },
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    let trained = trainer
        .take_last()
        .ok_or_else(|| TrainError::Device("nothing trained".into()))?;
    Ok(trained)
}

#[test]
fn flip_tta_changes_nothing_on_mirror_symmetric_images() -> Result<(), TrainError> {
    let trained = trained_one_epoch()?;
    let device = Default::default();
    let eval = |data: &Dataset, flip: bool| {
        evaluate(
            &trained.model,
            data,
            &trained.normalization,
            16,
            Tta { flip, translate: 0 },
            &device,
        )
    };
    // Every row mirrored onto itself: TTA averages two identical logits.
    let quadrants = splits(false).val;
    let mut symmetric = quadrants.images.clone();
    for row in symmetric.chunks_exact_mut(8) {
        for x in 0..4 {
            row[7 - x] = row[x];
        }
    }
    let symmetric = Dataset::new(
        "symmetric",
        [1, 8, 8],
        quadrants.class_names.clone(),
        symmetric,
        quadrants.labels.clone(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let (plain, with_tta) = (eval(&symmetric, false)?, eval(&symmetric, true)?);
    assert!(
        (plain.0 - with_tta.0).abs() < 1e-5,
        "{plain:?} {with_tta:?}"
    );
    assert_eq!(plain.1, with_tta.1);
    // On the quadrants, the mirror is another class: TTA changes the loss.
    let (plain, with_tta) = (eval(&quadrants, false)?, eval(&quadrants, true)?);
    assert!(
        (plain.0 - with_tta.0).abs() > 1e-3,
        "{plain:?} {with_tta:?}"
    );
    Ok(())
}

#[test]
fn translate_tta_changes_nothing_on_flat_images_and_something_on_the_quadrants()
-> Result<(), TrainError> {
    let trained = trained_one_epoch()?;
    let translate = Tta {
        flip: false,
        translate: 2,
    };
    // A flat image is every shift of itself: three identical views.
    let quadrants = splits(false).val;
    let flat: Vec<u8> = quadrants
        .images
        .chunks_exact(64)
        .flat_map(|img| std::iter::repeat_n(img[0], 64))
        .collect();
    let flat = Dataset::new(
        "flat",
        [1, 8, 8],
        quadrants.class_names.clone(),
        flat,
        quadrants.labels.clone(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let (plain, shifted) = (
        trained.evaluate(&flat, 16)?,
        trained.evaluate_with(&flat, 16, translate)?,
    );
    assert!((plain.0 - shifted.0).abs() < 1e-5, "{plain:?} {shifted:?}");
    let (plain, shifted) = (
        trained.evaluate(&quadrants, 16)?,
        trained.evaluate_with(&quadrants, 16, translate)?,
    );
    assert!((plain.0 - shifted.0).abs() > 1e-4, "{plain:?} {shifted:?}");
    // A shift as large as the image is refused, naming the key.
    let too_far = Tta {
        flip: true,
        translate: 8,
    };
    match trained.evaluate_with(&quadrants, 16, too_far) {
        Err(TrainError::Config(m)) => assert!(m.contains("tta_translate"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn schedules_warm_up_and_decay_to_their_end() {
    let s = Schedule::one_cycle(0.2);
    assert!((s.factor(0.0) - 0.1).abs() < 1e-12);
    assert!((s.factor(0.1) - 0.55).abs() < 1e-12);
    assert!((s.factor(0.2) - 1.0).abs() < 1e-12);
    assert!((s.factor(0.6) - 0.5).abs() < 1e-12);
    assert!(s.factor(1.0).abs() < 1e-12);
    assert!(s.factor(7.0).abs() < 1e-12, "progress is clamped");
    let c = Schedule::cosine(0.0);
    assert!((c.factor(0.0) - 1.0).abs() < 1e-12);
    assert!((c.factor(0.5) - 0.5).abs() < 1e-12);
    assert!(c.factor(1.0).abs() < 1e-12);
    let flat = Schedule {
        decay: Decay::Constant,
        ..Schedule::one_cycle(0.5)
    };
    assert_eq!(flat.factor(0.9), 1.0);
}

#[test]
fn label_smoothing_is_the_mixture_of_nll_and_the_uniform_target() -> Result<(), TrainError> {
    let device = Default::default();
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![2.0f32, 0.0, -1.0, 0.5, 0.5, 3.0], [2, 3]),
        &device,
    );
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let scalar = |t: Tensor<1>| -> Result<f64, TrainError> {
        let v: f32 = t
            .try_into_scalar()
            .map_err(|e| TrainError::Device(format!("{e:?}")))?;
        Ok(f64::from(v))
    };
    let plain = scalar(cross_entropy(logits.clone(), targets.clone()))?;
    let smoothed = scalar(smoothed_cross_entropy(logits.clone(), targets.clone(), 0.3))?;
    // By hand: log-softmax of each row.
    let rows = [[2.0f64, 0.0, -1.0], [0.5, 0.5, 3.0]];
    let mut nll = 0.0;
    let mut uniform = 0.0;
    for (row, t) in rows.iter().zip([0usize, 2]) {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        nll -= row[t] - lse;
        uniform -= row.iter().map(|v| v - lse).sum::<f64>() / 3.0;
    }
    nll /= 2.0;
    uniform /= 2.0;
    assert!((plain - nll).abs() < 1e-5, "{plain} vs {nll}");
    let want = 0.7 * nll + 0.3 * uniform;
    assert!((smoothed - want).abs() < 1e-5, "{smoothed} vs {want}");
    Ok(())
}

/// Sum of squares of every float parameter (batch-norm running statistics included).
struct SquareSum(f64);

impl ModuleVisitor for SquareSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v: f32 = param.val().powf_scalar(2.0).sum().into_scalar();
        self.0 += f64::from(v);
    }
}

#[test]
fn weight_decay_shrinks_the_weights() -> Result<(), TrainError> {
    // Same seed, same data: strong decoupled decay must end with smaller weights.
    let norm = |wd: f64| -> Result<f64, TrainError> {
        let config = TrainConfig {
            weight_decay: wd,
            label_smoothing: 0.0,
            tta_flip: false,
            augmentation: Augmentation::none(),
            schedule: None,
            inference: None,
            epochs: 2,
            ..fast(2)
        };
        let mut trainer = BurnTrainer::new();
        trainer.train(
            &validated(small_cnn(), task())?,
            &splits(false),
            &config,
            &NoMeter,
            &mut lemo_train::NoObserver,
        )?;
        let model = trainer
            .take_last()
            .ok_or_else(|| TrainError::Device("nothing trained".into()))?;
        let mut sum = SquareSum(0.0);
        model.model.visit(&mut sum);
        Ok(sum.0)
    };
    let free = norm(0.0)?;
    let decayed = norm(2.0)?;
    assert!(decayed < 0.9 * free, "{decayed} vs {free}");
    Ok(())
}

#[test]
fn bad_recipe_values_are_config_errors_naming_the_key() {
    let cases: [(TrainConfig, &str); 8] = [
        (
            TrainConfig {
                weight_decay: -1e-4,
                ..fast(1)
            },
            "weight_decay",
        ),
        (
            TrainConfig {
                schedule: Some(Schedule::one_cycle(1.0)),
                ..fast(1)
            },
            "schedule.warmup",
        ),
        (
            TrainConfig {
                label_smoothing: 1.0,
                ..fast(1)
            },
            "label_smoothing",
        ),
        (
            TrainConfig {
                sgd: SgdSettings {
                    momentum: 1.5,
                    nesterov: true,
                },
                ..fast(1)
            },
            "sgd.momentum",
        ),
        (
            TrainConfig {
                augmentation: Augmentation::crop_flip(8),
                ..fast(1)
            },
            "augmentation.crop_padding",
        ),
        (
            TrainConfig {
                augmentation: Augmentation {
                    cutout: 9,
                    ..Augmentation::none()
                },
                ..fast(1)
            },
            "augmentation.cutout",
        ),
        (
            TrainConfig {
                tta_translate: 8,
                ..fast(1)
            },
            "tta_translate",
        ),
        (
            TrainConfig {
                epoch_validation_sample: Some(0),
                ..fast(1)
            },
            "epoch_validation_sample",
        ),
    ];
    for (config, key) in cases {
        let result = validated(small_cnn(), task()).and_then(|network| {
            BurnTrainer::new().train(
                &network,
                &splits(false),
                &config,
                &NoMeter,
                &mut lemo_train::NoObserver,
            )
        });
        match result {
            Err(TrainError::Config(m)) => assert!(m.contains(key), "{key}: {m}"),
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn the_per_epoch_validation_uses_its_sample_and_a2_the_whole_split() -> Result<(), TrainError> {
    // A stratified sample keeps at least one image of each class: 4 of the 64 validation
    // images here, so every per-epoch accuracy is a multiple of 1/4.
    let config = TrainConfig {
        epoch_validation_sample: Some(4),
        ..fast(3)
    };
    let eval = BurnTrainer::new().train(
        &validated(small_cnn(), task())?,
        &splits(false),
        &config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    assert_eq!(eval.history.len(), 3);
    for h in &eval.history {
        let quarters = h.val_accuracy * 4.0;
        assert!(
            (quarters - quarters.round()).abs() < 1e-9,
            "epoch {}: {} is not the accuracy of 4 images",
            h.epoch,
            h.val_accuracy
        );
    }
    // The last epoch's weights are the trained network (no TTA, no early stopping): on the
    // same images its loss would be A2's loss exactly.
    let last = eval.history.last().map(|h| h.val_loss);
    assert!(
        last.is_some_and(|l| l != eval.val_loss),
        "the last epoch's validation loss {last:?} equals A2's {}: no sample was used",
        eval.val_loss
    );
    Ok(())
}

#[test]
fn fast_presets_are_valid_and_never_test_in_the_search() {
    let search = TrainConfig::fast_search();
    let fin = TrainConfig::fast_final();
    assert!(!search.evaluate_test && !search.tta_flip);
    assert!(fin.evaluate_test && fin.tta_flip && fin.tta_translate > 0);
    assert_eq!(search.tta_translate, 0);
    assert_eq!(search.optimizer, OptimizerKind::Sgd);
    for name in TrainConfig::PRESETS {
        let c = TrainConfig::preset(name).expect("every listed preset exists");
        c.check().expect("presets are valid");
        let json = serde_json::to_string(&c).expect("serialises");
        let back: TrainConfig = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, c);
    }
    assert!(TrainConfig::preset("fastest").is_none());
}
