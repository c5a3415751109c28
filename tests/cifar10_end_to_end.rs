//! End to end on real CIFAR-10 (the shared JPEG copy, or the binary version): the whole discovery loop with the offline
//! architect, two iterations on a small stratified sample, one epoch each, the final training,
//! energy measured (or estimated, and labelled so), the report.
//!
//! The data comes from `$LEMO_TEST_DATA/cifar10-jpeg` (default `target/test-data/cifar10-jpeg`),
//! unpacked from `../shared/data/cifar10-jpeg.tar.gz` (or `$LEMO_SHARED_DATA`) on first use, as
//! `scripts/fetch-test-data.sh` does; without a shared copy, from the binary version that script
//! downloads into `$LEMO_TEST_DATA/cifar-10`. Missing data fails the test and says how to get it.

use std::path::PathBuf;

use lemo::event::DataSummary;
use lemo::{Discovery, IterationOutcome, RunConfig, RunData, RunDir};
use lemo_train::data::download::unpack_tar_gz;
use lemo_train::data::{DatasetSpec, Splits};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

fn cifar10() -> Result<DatasetSpec, Box<dyn std::error::Error>> {
    let cache = std::env::var_os("LEMO_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-data"));
    let dir = cache.join("cifar10-jpeg");
    let shared = std::env::var_os("LEMO_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    let tarball = shared.join("cifar10-jpeg.tar.gz");
    let binary = cache.join("cifar-10");
    if !dir.join("train").is_dir() {
        if !tarball.exists() && binary.is_dir() {
            return Ok(DatasetSpec::Cifar10 { dir: binary });
        }
        if !tarball.exists() {
            return Err(format!(
                "real CIFAR-10 is missing: none of {}, {} or {} exists; run \
                 scripts/fetch-test-data.sh (it downloads the binary version when there is no \
                 shared copy), or set LEMO_SHARED_DATA to the folder holding cifar10-jpeg.tar.gz",
                dir.display(),
                tarball.display(),
                binary.display()
            )
            .into());
        }
        unpack_tar_gz(&tarball, &dir)?;
    }
    Ok(DatasetSpec::ImageFolder { dir, size: None })
}

const CONFIG: &str = r#"
[run]
name = "CIFAR-10 end-to-end test"
seed = 2
[metrics]
preset = "cifar10"
[architect]
kind = "offline"
[search]
preset = "quick"
epochs = 1
batch_size = 64
[search.inference]
large_batch = 128
batch1_runs = 20
large_batch_runs = 2
max_seconds = 0.5
[final]
preset = "quick"
epochs = 1
batch_size = 64
[final.inference]
large_batch = 128
batch1_runs = 20
large_batch_runs = 2
max_seconds = 0.5
[termination]
iterations = 2
[energy]
enabled = true
"#;

fn sample(spec: &DatasetSpec) -> Result<RunData, Box<dyn std::error::Error>> {
    let (train, test) = spec.load_raw()?;
    let test = test.ok_or("the CIFAR-10 copy has no test split")?;
    // 6% of the training images (3,000), 9:1 into train/validation; 500 test images.
    let (train, val) = train.fraction(0.06, 1).split(0.1, 1);
    let test = test.fraction(0.05, 1);
    let summary = DataSummary {
        name: "cifar10 (6% sample)".into(),
        shape: train.shape,
        classes: train.classes(),
        train: train.len(),
        val: val.len(),
        test: test.len(),
        test_source: "dataset test split (5% sample)".into(),
    };
    Ok(RunData {
        splits: Splits {
            train,
            val,
            test: Some(test),
        },
        summary,
    })
}

#[test]
fn discovery_on_real_cifar10_end_to_end() -> TestResult {
    let data = sample(&cifar10()?)?;
    assert_eq!(data.summary.shape, [3, 32, 32]);
    assert_eq!(data.summary.classes, 10);
    let config = RunConfig::from_toml_str(CONFIG)?;
    let tmp = tempfile::tempdir()?;
    let dir = RunDir::new(tmp.path().join("run"));
    let summary = Discovery::from_config(config)?
        .with_data(data)
        .discover_in(dir.clone())?;
    let h = &summary.history;
    assert!(summary.finished);
    assert_eq!(h.iterations.len(), 2);
    let mut best_a2: f64 = 0.0;
    for r in &h.iterations {
        match &r.outcome {
            IterationOutcome::Evaluated { observed, .. } => {
                println!("iteration {}: {}", r.iteration, r.outcome_line());
                assert!(observed.fps > 0.0 && observed.params > 0);
                assert!(
                    observed.e1_kwh > 0.0,
                    "training energy measured or estimated"
                );
                best_a2 = best_a2.max(observed.a2);
            }
            other => panic!("iteration {}: {other:?}", r.iteration),
        }
    }
    // One epoch on 2,700 images: clearly better than chance (0.1).
    assert!(best_a2 > 0.15, "best validation accuracy {best_a2}");
    let fin = h.final_result.as_ref().ok_or("no final training")?;
    let test_acc = fin.observed.test_accuracy.ok_or("no test accuracy")?;
    println!(
        "final: test accuracy {test_acc:.4}, {} params",
        fin.observed.params
    );
    assert!(test_acc > 0.12, "test accuracy {test_acc}");
    assert!(fin.inference_joules_per_image.is_some_and(|j| j > 0.0));
    assert!(dir.best().join("weights").is_dir());
    let report = std::fs::read_to_string(dir.report())?;
    assert!(report.contains("Test accuracy") && report.contains("kWh-PUE"));
    assert!(report.contains("measured") || report.contains("estimated"));
    Ok(())
}
