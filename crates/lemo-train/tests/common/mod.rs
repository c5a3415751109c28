//! Helpers shared by the training tests: small synthetic data and a small CNN.
#![allow(dead_code)]

use lemo_arch::{Graph, Limits, Node, Op, Task, ValidatedGraph};
use lemo_train::data::{Augmentation, Dataset, Splits};
use lemo_train::{InferenceBench, TrainConfig, TrainError};

/// `graph` validated for `task` (an invalid one is the trainer's `InvalidGraph` error).
pub fn validated(graph: Graph, task: Task) -> Result<ValidatedGraph, TrainError> {
    ValidatedGraph::new(graph, &task).map_err(|e| TrainError::InvalidGraph(e.to_string()))
}

/// `n` 1x8x8 images of 4 classes: class k has a bright quadrant k over faint noise.
pub fn quadrants(name: &str, n: usize, seed: u64) -> Dataset {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 4) as u32;
        for y in 0..8 {
            for x in 0..8 {
                let q = (y / 4) * 2 + x / 4;
                let base = if q == k as usize { 180 } else { 40 };
                images.push((base + next() % 60) as u8);
            }
        }
        labels.push(k);
    }
    let names = (0..4).map(|k| format!("q{k}")).collect();
    Dataset::new(name, [1, 8, 8], names, images, labels).expect("valid dataset")
}

pub fn splits(test: bool) -> Splits {
    Splits {
        train: quadrants("train", 256, 1),
        val: quadrants("val", 64, 2),
        test: test.then(|| quadrants("test", 64, 3)),
    }
}

pub fn task() -> Task {
    Task {
        input: [1, 8, 8],
        classes: 4,
        limits: Limits::default(),
    }
}

pub fn small_cnn() -> Graph {
    Graph {
        name: Some("small".into()),
        nodes: vec![
            Node::new("c1", Op::conv_same(8, 3)),
            Node::new("b1", Op::batch_norm()),
            Node::new("r1", Op::Relu),
            Node::new("p1", Op::max_pool(2)),
            Node::new("f", Op::Flatten),
            Node::new("d", Op::Dropout { rate: 0.1 }),
            Node::new("fc", Op::dense(4)),
        ],
    }
}

pub fn config() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 32,
        learning_rate: 0.01,
        augmentation: Augmentation::none(),
        inference: Some(InferenceBench {
            batch1_runs: 10,
            large_batch_runs: 2,
            large_batch: 32,
            max_seconds: 1.0,
            warmup: 1,
        }),
        evaluate_test: true,
        ..TrainConfig::paper_search()
    }
}
