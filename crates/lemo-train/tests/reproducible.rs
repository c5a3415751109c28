//! Seeded runs are reproducible. burn Flex's random generator is process-global, so this test
//! lives alone in its binary: two trainings running at once in one process would interleave
//! their draws (the discovery loop trains one network at a time).

mod common;

use common::{config, small_cnn, splits, task, validated};
use lemo_arch::{Graph, Node, Op};
use lemo_energy::NoMeter;
use lemo_train::data::Augmentation;
use lemo_train::{Schedule, TrainConfig, TrainError, train_and_measure};

/// The losses of every epoch, then A1 and A2, of `graph` trained with `config`.
fn measured(graph: Graph, config: &TrainConfig) -> Result<Vec<f64>, TrainError> {
    let t = train_and_measure(
        &validated(graph, task())?,
        &splits(false),
        config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    let e = t.evaluation.expect("evaluation");
    Ok(e.history
        .iter()
        .flat_map(|h| [h.train_loss, h.val_loss])
        .chain([e.train_accuracy, e.val_accuracy])
        .collect())
}

#[test]
fn same_seed_same_run_other_seed_other_run() -> Result<(), TrainError> {
    let run = |seed: u64| {
        let config = TrainConfig {
            seed,
            epochs: 2,
            inference: None,
            augmentation: Augmentation::paper(),
            ..config()
        };
        measured(small_cnn(), &config)
    };
    let a = run(7)?;
    assert_eq!(a, run(7)?, "same seed, different history");
    assert_ne!(a, run(8)?, "seed has no effect");

    // The search's form: a one-cycle schedule with a wall-clock cap that does not bind, and
    // 16-channel 3x3 convolutions on batches of 32 (the Winograd kernels, whose weight
    // gradient adds up partial sums across threads). The rates follow the steps alone and the
    // sums are added in a fixed order, so the run repeats bit for bit.
    let wide = Graph {
        name: Some("wide".into()),
        nodes: vec![
            Node::new("c1", Op::conv_same(16, 3)),
            Node::new("b1", Op::batch_norm()),
            Node::new("r1", Op::Relu),
            Node::new("c2", Op::conv_same(16, 3)),
            Node::new("b2", Op::batch_norm()),
            Node::new("r2", Op::Relu),
            Node::new("p", Op::max_pool(2)),
            Node::new("f", Op::Flatten),
            Node::new("fc", Op::dense(4)),
        ],
    };
    let mut capped = TrainConfig {
        seed: 7,
        epochs: 2,
        inference: None,
        schedule: Some(Schedule::one_cycle(0.2)),
        ..config()
    };
    capped.budget.max_wall_seconds = Some(3600.0);
    let b = measured(wide.clone(), &capped)?;
    assert_eq!(
        b,
        measured(wide, &capped)?,
        "same seed and cap, different history"
    );
    Ok(())
}
