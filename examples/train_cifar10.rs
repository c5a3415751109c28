//! Trains network files on CIFAR-10 with the benchmark's final recipe (`fast_final`) for a fixed
//! wall-clock time each, and measures validation and test accuracy once at the end: how the
//! final training of `discover_cifar10` would rank them, without a search.
//!
//! ```sh
//! cargo run --release --example train_cifar10 -- DATA_DIR --seconds 1034 [--cutout N] NETWORK...
//! ```
//!
//! DATA_DIR as for `discover_cifar10` (binary batches or the image folder form). A NETWORK is a
//! network file (the IR's JSON, e.g. `examples/networks/*.json`) or `starter` for the offline
//! architect's first network. The split is the benchmark's: 10% of the training images
//! (stratified, seed 0) for validation. `--cutout N` adds cutout of N x N pixels to the recipe's
//! augmentation (`augmentation.cutout`). One line per network:
//! `train_cifar10 network=NAME params=P seconds=S epochs=E train_accuracy=A1 val_accuracy=A2 test_accuracy=T`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lemo_arch::{Graph, Limits, Task, ValidatedGraph, starter};
use lemo_energy::NoMeter;
use lemo_train::data::{DatasetSpec, Splits};
use lemo_train::{BurnTrainer, EpochStats, TrainConfig, TrainObserver, Trainer};

const USAGE: &str = "usage: train_cifar10 DATA_DIR --seconds S [--cutout N] NETWORK... \
                     (a JSON file or `starter`)";

/// What the command line asks for.
struct Args {
    data: PathBuf,
    seconds: f64,
    cutout: u32,
    networks: Vec<String>,
}

/// Prints each epoch on stderr.
struct Epochs;

impl TrainObserver for Epochs {
    fn on_epoch_end(&mut self, s: &EpochStats) {
        eprintln!(
            "  epoch {}: loss {:.3}, A2 (sample) {:.4}, {:.0} img/s, lr {:.4}",
            s.epoch + 1,
            s.train_loss,
            s.val_accuracy,
            s.train_images_per_second,
            s.learning_rate
        );
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut data, mut seconds, mut networks) = (None, None, Vec::new());
    let mut cutout = 0;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a number")?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--seconds {v}: not a number"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--seconds {v}: must be positive"));
                }
                seconds = Some(s);
            }
            "--cutout" => {
                let v = args.next().ok_or("--cutout needs a number")?;
                cutout = v
                    .parse()
                    .map_err(|_| format!("--cutout {v}: give a whole number of pixels"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if data.is_none() => data = Some(PathBuf::from(a)),
            _ => networks.push(a),
        }
    }
    let data = data.ok_or("DATA_DIR is missing")?;
    if networks.is_empty() {
        return Err("name at least one network".into());
    }
    Ok(Args {
        data,
        seconds: seconds.ok_or("--seconds S is missing")?,
        cutout,
        networks,
    })
}

fn network(name: &str, task: &Task) -> Result<Graph, String> {
    if name == "starter" {
        return Ok(starter(task));
    }
    let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
    Graph::from_json(&text).map_err(|e| format!("{name}: {e}"))
}

fn run(args: &Args) -> Result<(), String> {
    let (data, seconds, names) = (&args.data, args.seconds, &args.networks);
    let spec = DatasetSpec::find_cifar10(data)
        .ok_or_else(|| format!("no CIFAR-10 in {} (see discover_cifar10)", data.display()))?;
    let loaded = spec.load().map_err(|e| e.to_string())?;
    let mut recipe = TrainConfig::fast_final();
    recipe.epochs = 500;
    recipe.budget.max_wall_seconds = Some(seconds);
    recipe.inference = None;
    recipe.augmentation.cutout = args.cutout;
    let (train, val) = loaded.train.split(recipe.validation_split, 0);
    let splits = Splits {
        train,
        val,
        test: loaded.test,
    };
    let task = Task {
        input: splits.train.shape,
        classes: splits.train.classes(),
        limits: Limits::default(),
    };
    for name in names {
        let graph = ValidatedGraph::new(network(name, &task)?, &task)
            .map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "{name}: {} parameters, {seconds} s, cutout {}",
            graph.params(),
            args.cutout
        );
        let start = Instant::now();
        let r = BurnTrainer::new()
            .train(&graph, &splits, &recipe, &NoMeter, &mut Epochs)
            .map_err(|e| format!("{name}: {e}"))?;
        let test = r
            .test_accuracy
            .map_or_else(|| "none".to_string(), |a| format!("{a:.4}"));
        println!(
            "train_cifar10 network={name} params={} seconds={:.0} epochs={} train_accuracy={:.4} \
             val_accuracy={:.4} test_accuracy={test}",
            graph.params(),
            start.elapsed().as_secs_f64(),
            r.history.len(),
            r.train_accuracy,
            r.val_accuracy
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
