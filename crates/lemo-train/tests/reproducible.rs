//! Seeded runs are reproducible. burn Flex's random generator is process-global, so this test
//! lives alone in its binary: two trainings running at once in one process would interleave
//! their draws (the discovery loop trains one network at a time).

mod common;

use common::{config, small_cnn, splits, task, validated};
use lemo_energy::NoMeter;
use lemo_train::data::Augmentation;
use lemo_train::{TrainConfig, TrainError, train_and_measure};

#[test]
fn same_seed_same_run_other_seed_other_run() -> Result<(), TrainError> {
    let run = |seed: u64| -> Result<Vec<f64>, TrainError> {
        let config = TrainConfig {
            seed,
            epochs: 2,
            inference: None,
            augmentation: Augmentation::paper(),
            ..config()
        };
        let t = train_and_measure(
            &validated(small_cnn(), task())?,
            &splits(false),
            &config,
            &NoMeter,
            &mut lemo_train::NoObserver,
        )?;
        let e = t.evaluation.expect("evaluation");
        Ok(e.history
            .iter()
            .flat_map(|h| [h.train_loss, h.val_loss])
            .collect())
    };
    let a = run(7)?;
    assert_eq!(a, run(7)?, "same seed, different history");
    assert_ne!(a, run(8)?, "seed has no effect");
    Ok(())
}
