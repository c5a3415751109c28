//! LeMo-NADe on CIFAR-100 with the paper's settings: the appendix's CIFAR-100 configuration
//! (Temperature 0.4; PA1 0.4, PA2 0.6; TA1 0.90, TA2 0.85, TF 20000, TE1 1e-2 kWh, TE2 1e-4 kWh),
//! 30 iterations, the paper's search and final training recipes.
//!
//! ```sh
//! cargo run --release --example discover_cifar100 -- DATA_DIR [--download] [--config FILE] [--device DEVICE]
//! ```
//!
//! DATA_DIR holds `cifar-100-binary/` (`train.bin`, `test.bin`) from
//! <https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz>. `--download` fetches and checks it
//! (lemo-train's checksummed downloader). The architect comes from `--config` (a run config
//! whose `[architect]` section is used), else the offline architect; for the paper's setup use
//! `kind = "openai"` with `OPENAI_API_KEY` set, or an OpenAI-compatible local server.
//!
//! The paper fixes the training recipes; what it does not fix comes from `--config` (the device,
//! the evaluation batch size, the seed, the divergence guard, the training-accuracy sample, the
//! inference timing). `--device` (`cpu`, `cuda`, `cuda:N`, `wgpu`, `vulkan`) wins over both;
//! without either, the build's GPU backend is used where it has one (`cargo run --release
//! --features wgpu ...`), else the CPU.

use std::path::PathBuf;
use std::process::ExitCode;

use lemo::{Discovery, RunConfig};
use lemo_llm::ArchitectConfig;
use lemo_metrics::PaperDataset;
use lemo_train::data::download::{Downloader, RemoteDataset};
use lemo_train::data::{Cifar100Labels, DatasetSpec};
use lemo_train::{DeviceChoice, TrainConfig};

fn usage() -> ExitCode {
    eprintln!(
        "usage: discover_cifar100 DATA_DIR [--download] [--config RUN_CONFIG.toml] \
         [--device cpu|cuda|cuda:N|wgpu|vulkan]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut data_dir: Option<PathBuf> = None;
    let mut download = false;
    let mut config_file: Option<PathBuf> = None;
    let mut device: Option<DeviceChoice> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--download" => download = true,
            "--device" => match args.next().map(|d| d.parse::<DeviceChoice>()) {
                Some(Ok(d)) => device = Some(d),
                Some(Err(e)) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
                None => return usage(),
            },
            "--config" => match args.next() {
                Some(f) => config_file = Some(f.into()),
                None => return usage(),
            },
            "-h" | "--help" => return usage(),
            other if data_dir.is_none() => data_dir = Some(other.into()),
            _ => return usage(),
        }
    }
    let Some(root) = data_dir else {
        return usage();
    };

    let dir = root.join("cifar-100-binary");
    let spec = if download {
        match Downloader::new(&root).fetch(RemoteDataset::Cifar100) {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("download failed: {e}");
                return ExitCode::from(3);
            }
        }
    } else if dir.join("train.bin").is_file() && dir.join("test.bin").is_file() {
        DatasetSpec::Cifar100 {
            dir: dir.clone(),
            labels: Cifar100Labels::default(),
        }
    } else {
        eprintln!(
            "CIFAR-100 is not in {}.\n\
             Get it with one of:\n  \
             cargo run --release --example discover_cifar100 -- {} --download\n  \
             curl -L https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz | tar -xz -C {}\n\
             (the folder must hold cifar-100-binary/train.bin and cifar-100-binary/test.bin)",
            dir.display(),
            root.display(),
            root.display()
        );
        return ExitCode::from(3);
    };

    let mut config = match &config_file {
        Some(f) => match RunConfig::from_path(f) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => match RunConfig::from_toml_str("") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    // The paper's CIFAR-100 setup (keep the architect and anything else from --config).
    config.run.name = "CIFAR-100 (paper appendix configuration)".into();
    config.data.dataset = spec;
    config.metrics = PaperDataset::Cifar100.appendix_configuration();
    let device = device.unwrap_or(match config_file {
        Some(_) => config.search.training.device,
        None => lemo_train::device::preferred(),
    });
    config.search.training = paper_recipe(TrainConfig::paper_search(), &config.search.training);
    config.search.training.device = device;
    config.search.base = lemo::SearchBase::Previous; // the paper edits the previous network
    config.final_training.training =
        paper_recipe(TrainConfig::paper_final(), &config.final_training.training);
    config.final_training.training.device = device;
    println!("training on {}", device.backend_name());
    config.termination.iterations = 30;
    let temperature = PaperDataset::Cifar100.appendix_temperature() as f32;
    match &mut config.architect {
        ArchitectConfig::OpenAi(c) => c.temperature = temperature,
        ArchitectConfig::Gemini(c) => c.temperature = temperature,
        ArchitectConfig::Local(c) => c.temperature = temperature,
        ArchitectConfig::Offline(_) => {}
    }

    let result = Discovery::from_config(config).and_then(|mut d| d.discover());
    match result {
        Ok(summary) => {
            println!("report: {}", summary.report_path().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

/// The paper's recipe `paper`, with what the paper does not fix taken from `user`.
fn paper_recipe(paper: TrainConfig, user: &TrainConfig) -> TrainConfig {
    TrainConfig {
        eval_batch_size: user.eval_batch_size,
        seed: user.seed,
        divergence_loss: user.divergence_loss,
        train_accuracy_sample: user.train_accuracy_sample,
        inference: user.inference,
        ..paper
    }
}
