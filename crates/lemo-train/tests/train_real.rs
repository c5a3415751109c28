//! The "done when": the ref-cnn, trained through the public API for one epoch on 10% of
//! real CIFAR-10 (the shared JPEG copy, or else the binary version from its official address),
//! reaches clearly-above-chance validation accuracy.
//!
//! The data comes from `scripts/fetch-test-data.sh` (or is unpacked here from
//! `../shared/data/cifar10-jpeg.tar.gz`); when it is missing this test fails and says so.

use std::path::PathBuf;
use std::time::Instant;

use lemo_arch::{Limits, Task, ValidatedGraph, ref_cnn};
use lemo_energy::NoMeter;
use lemo_train::data::download::unpack_tar_gz;
use lemo_train::data::{Augmentation, DatasetSpec, Splits};
use lemo_train::{BurnTrainer, InferenceBench, Status, TrainConfig, TrainError, Trainer};

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

/// Real CIFAR-10: the JPEG folder (unpacked from the shared copy on first use), else the
/// binary version `scripts/fetch-test-data.sh` downloads into `$LEMO_TEST_DATA/cifar-10`.
fn cifar10() -> DatasetSpec {
    let cache = std::env::var_os("LEMO_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-data"));
    let dir = cache.join("cifar10-jpeg");
    let shared = std::env::var_os("LEMO_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    let tarball = shared.join("cifar10-jpeg.tar.gz");
    let binary = cache.join("cifar-10");
    if !dir.join("train").is_dir() && !tarball.exists() && binary.is_dir() {
        return DatasetSpec::Cifar10 { dir: binary };
    }
    if !dir.join("train").is_dir() {
        assert!(
            tarball.exists(),
            "real CIFAR-10 is missing: none of {}, {} or {} exists; run \
             scripts/fetch-test-data.sh",
            dir.display(),
            tarball.display(),
            binary.display()
        );
        if let Err(e) = unpack_tar_gz(&tarball, &dir) {
            panic!("cannot unpack {}: {e}", tarball.display());
        }
    }
    DatasetSpec::ImageFolder { dir, size: None }
}

#[test]
fn ref_cnn_one_epoch_on_ten_percent_of_cifar10_beats_chance() -> Result<(), TrainError> {
    let spec = cifar10();
    let loaded = spec
        .load()
        .map_err(|e| TrainError::Data(format!("loading CIFAR-10: {e}")))?;
    assert_eq!(loaded.train.classes(), 10);
    // Validate on a 1,000-image stratified sample of the validation split to keep CI quick.
    let splits = Splits {
        val: loaded.val.fraction(1000.0 / loaded.val.len() as f64, 1),
        train: loaded.train,
        test: None,
    };
    let task = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    };
    let mut config = TrainConfig {
        epochs: 1,
        batch_size: 64,
        learning_rate: 1e-3,
        augmentation: Augmentation::none(),
        train_accuracy_sample: Some(500),
        inference: Some(InferenceBench {
            large_batch: 64,
            batch1_runs: 20,
            large_batch_runs: 2,
            warmup: 1,
            max_seconds: 2.0,
        }),
        ..TrainConfig::paper_search()
    };
    config.budget.data_fraction = 0.1;
    let start = Instant::now();
    let eval = BurnTrainer::new().train(
        &ValidatedGraph::new(ref_cnn(10), &task)
            .map_err(|e| TrainError::InvalidGraph(e.to_string()))?,
        &splits,
        &config,
        &NoMeter,
        &mut lemo_train::NoObserver,
    )?;
    let h = &eval.history[0];
    let inf = eval.inference.as_ref().expect("measured");
    println!(
        "ref-cnn, 1 epoch on {} CIFAR-10 images: train loss {:.3}, A1 {:.3}, A2 {:.3} \
         ({:.0} train img/s, infer b1 {:.0} fps p50 {:.2} ms, b64 {:.0} img/s), {:.1} s",
        eval.train_images,
        h.train_loss,
        eval.train_accuracy,
        eval.val_accuracy,
        h.train_images_per_second,
        inf.fps_batch1,
        inf.latency_p50_ms,
        inf.fps_large_batch,
        start.elapsed().as_secs_f64()
    );
    assert_eq!(eval.status, Status::Completed);
    assert_eq!(eval.params, 582_308 - 90 * 257, "ref-cnn with 10 classes");
    assert!(
        eval.val_accuracy > 0.2,
        "validation accuracy {} is not clearly above chance (0.1)",
        eval.val_accuracy
    );
    Ok(())
}
