//! Real data: CIFAR-10 (the shared JPEG copy through the image-folder loader, or else the
//! binary version from its official address through the CIFAR loader) and Fashion-MNIST
//! (Debian's `dataset-fashion-mnist`, through the IDX loader).
//!
//! `scripts/fetch-test-data.sh` installs / unpacks / downloads them; when the data is missing
//! these tests fail and say so (they never pass silently).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use lemo_train::data::download::unpack_tar_gz;
use lemo_train::data::{DatasetSpec, Normalization, load_idx};

const FETCH: &str = "scripts/fetch-test-data.sh";

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

/// The shared data folder: `$LEMO_SHARED_DATA`, else `../shared/data` beside the repository.
fn shared_data() -> PathBuf {
    std::env::var_os("LEMO_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

/// Real CIFAR-10: the unpacked JPEG folder (unpacking the shared tarball on first use,
/// atomically), else the binary version `scripts/fetch-test-data.sh` downloads into
/// `$LEMO_TEST_DATA/cifar-10` where there is no shared copy.
fn cifar10() -> DatasetSpec {
    let cache = std::env::var_os("LEMO_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-data"));
    let dir = cache.join("cifar10-jpeg");
    let tarball = shared_data().join("cifar10-jpeg.tar.gz");
    let binary = cache.join("cifar-10");
    if !dir.join("train").is_dir() && !tarball.exists() && binary.is_dir() {
        return DatasetSpec::Cifar10 { dir: binary };
    }
    if !dir.join("train").is_dir() {
        assert!(
            tarball.exists(),
            "real CIFAR-10 is missing: none of {}, {} or {} exists; run {FETCH} (it downloads \
             the binary version when there is no shared copy), or set LEMO_SHARED_DATA to the \
             folder holding cifar10-jpeg.tar.gz",
            dir.display(),
            tarball.display(),
            binary.display()
        );
        unpack_tar_gz(&tarball, &dir).unwrap();
    }
    DatasetSpec::ImageFolder { dir, size: None }
}

#[test]
fn real_cifar10_jpeg_folder_or_binary() {
    let spec = cifar10();
    let start = Instant::now();
    let (train, test) = spec.load_raw().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "loaded {} CIFAR-10 images ({}) in {secs:.2} s ({:.0} images/s, {} threads)",
        train.len() + test.as_ref().map_or(0, |t| t.len()),
        spec.kind(),
        (train.len() + test.as_ref().map_or(0, |t| t.len())) as f64 / secs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert_eq!(train.len(), 50_000);
    assert_eq!(train.shape, [3, 32, 32]);
    assert_eq!(
        train.class_names,
        [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck"
        ]
    );
    assert_eq!(train.class_counts(), vec![5000; 10]);
    let test = test.unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    // CIFAR-10's mean pixel is about 120 (0.49, 0.48, 0.45 per channel)
    let mean = train.mean_pixel();
    assert!((110.0..130.0).contains(&mean), "mean pixel {mean}");
    let norm = Normalization::from_dataset(&train);
    for (m, want) in norm.mean.iter().zip([0.491, 0.482, 0.447]) {
        assert!((m - want).abs() < 0.02, "channel means {:?}", norm.mean);
    }
    for (s, want) in norm.std.iter().zip([0.247, 0.243, 0.261]) {
        assert!((s - want).abs() < 0.02, "channel stds {:?}", norm.std);
    }
    // the 9:1 split DatasetSpec::load makes
    let (t, v) = train.split(lemo_train::data::DEFAULT_VAL_FRACTION, 0);
    assert_eq!(t.len(), 45_000);
    assert_eq!(v.class_counts(), vec![500; 10]);
}

#[test]
fn real_fashion_mnist_idx() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").exists(),
        "Fashion-MNIST is missing from {}: run {FETCH} (installs the Debian package \
         dataset-fashion-mnist)",
        dir.display()
    );
    let start = Instant::now();
    let (train, test) = load_idx(dir).unwrap();
    println!(
        "Fashion-MNIST loaded in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.shape, [1, 28, 28]);
    assert_eq!(train.classes(), 10);
    assert_eq!(train.class_counts(), vec![6000; 10]);
    let test = test.unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    // Fashion-MNIST's mean pixel is 0.286 * 255 = 72.9
    let mean = train.mean_pixel();
    assert!((70.0..76.0).contains(&mean), "mean pixel {mean}");
}
