//! Small synthetic data for conformance checks.

use lemo_core::arch::{Limits, Task};
use lemo_core::data::{Dataset, DatasetError, Splits};

/// The task of [`tiny_splits`]: 1x8x8 images, 4 classes, no budgets.
pub fn tiny_task() -> Task {
    Task {
        input: [1, 8, 8],
        classes: 4,
        limits: Limits::default(),
    }
}

/// `n` 1x8x8 images of 4 classes: class k has a bright quadrant k over faint noise (a
/// deterministic LCG), so a real trainer learns it in an epoch or two.
fn quadrants(name: &str, n: usize, seed: u64) -> Result<Dataset, DatasetError> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 4) as u32;
        for y in 0..8usize {
            for x in 0..8usize {
                let q = (y / 4) * 2 + x / 4;
                let base = if q == k as usize { 180 } else { 40 };
                images.push((base + next() % 60) as u8);
            }
        }
        labels.push(k);
    }
    let names = (0..4).map(|k| format!("q{k}")).collect();
    Dataset::new(name, [1, 8, 8], names, images, labels)
}

/// Train (128 images), validation (32) and test (32) splits of the quadrant task.
pub fn tiny_splits() -> Result<Splits, DatasetError> {
    Ok(Splits {
        train: quadrants("tiny-train", 128, 1)?,
        val: quadrants("tiny-val", 32, 2)?,
        test: Some(quadrants("tiny-test", 32, 3)?),
    })
}
