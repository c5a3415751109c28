//! Trains network files on CIFAR-10 with the benchmark's final recipe (`fast_final`) for a fixed
//! wall-clock time each, and measures validation and test accuracy once at the end: how the
//! final training of `discover_cifar10` would rank them, without a search.
//!
//! ```sh
//! cargo run --release --example train_cifar10 -- DATA_DIR --seconds 1034 [--cutout N] \
//!     [--tta-translate N] [--weight-decay W] [--with-validation] [--seeds S1,S2,...] \
//!     [--save DIR] NETWORK...
//! cargo run --release --example train_cifar10 -- DATA_DIR --evaluate SAVED_DIR...
//! ```
//!
//! DATA_DIR as for `discover_cifar10` (binary batches or the image folder form). A NETWORK is a
//! network file (the IR's JSON, e.g. `examples/networks/*.json`) or `starter` for the offline
//! architect's first network. The split is the benchmark's: 10% of the training images
//! (stratified, seed 0) for validation. `--cutout N` adds cutout of N x N pixels to the recipe's
//! augmentation (`augmentation.cutout`); `--tta-translate N` sets the translate test-time
//! augmentation (`tta_translate`, 2 pixels in `fast_final`; 0 switches it off);
//! `--weight-decay W` the decoupled weight decay (`weight_decay`, `fast_final`'s when not given).
//! `--with-validation` trains on the training and validation images together, as
//! `discover_cifar10 --with-validation` does its final training (its `val_accuracy` is then not
//! held out). `--seeds S1,S2,...` trains every network once per seed (the training seed:
//! initial weights, batch order, augmentation), seed by seed so that the networks alternate,
//! for repeated draws of the same comparison (`fast_final`'s seed when not given). `--save DIR`
//! writes each trained network (graph, normalisation, evaluation and weights,
//! `TrainedModel::save`) to `DIR/<k>-<name>`. One line per training:
//! `train_cifar10 network=NAME params=P seconds=S epochs=E train_accuracy=A1 val_accuracy=A2 test_accuracy=T seed=K`,
//! and with two seeds or more one line per network over its draws:
//! `train_cifar10 network=NAME draws=N test_mean=M test_sd=D val_mean=M2`.
//!
//! `--evaluate` loads networks saved with `--save` instead and measures validation and test
//! accuracy under each test-time augmentation (none, flip, flip with translate 1 and 2), one
//! line each: `train_cifar10 evaluate=DIR tta=MODE val_accuracy=A2 test_accuracy=T`.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lemo_arch::{Graph, Limits, Task, ValidatedGraph, starter};
use lemo_energy::NoMeter;
use lemo_train::data::{DatasetSpec, Splits};
use lemo_train::{
    BurnTrainer, DeviceChoice, EpochStats, TrainConfig, TrainObserver, TrainedModel, Trainer, Tta,
};

const USAGE: &str = "usage: train_cifar10 DATA_DIR --seconds S [--cutout N] [--tta-translate N] \
                     [--weight-decay W] [--with-validation] [--seeds S1,S2,...] [--save DIR] NETWORK... (a JSON file or `starter`)\n       \
                     train_cifar10 DATA_DIR --evaluate SAVED_DIR...";

/// What the command line asks for.
struct Args {
    data: PathBuf,
    /// Training time per network; `None` with `--evaluate`.
    seconds: Option<f64>,
    cutout: u32,
    /// Translate TTA, when not `fast_final`'s.
    tta_translate: Option<u32>,
    /// Decoupled weight decay, when not `fast_final`'s.
    weight_decay: Option<f64>,
    /// Train on the training and validation images together.
    with_validation: bool,
    /// Training seeds, each network trained once per seed (empty: the recipe's own).
    seeds: Vec<u64>,
    save: Option<PathBuf>,
    /// The NETWORKs are folders of saved networks to evaluate.
    evaluate: bool,
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
    let (mut cutout, mut tta_translate, mut save, mut evaluate) = (0, None, None, false);
    let (mut with_validation, mut seeds, mut weight_decay) = (false, Vec::new(), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let s: f64 = common::value(&mut args, "--seconds", "a number of seconds")?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--seconds {s}: must be positive"));
                }
                seconds = Some(s);
            }
            "--cutout" => {
                cutout = common::value(&mut args, "--cutout", "a whole number of pixels")?
            }
            "--tta-translate" => {
                let what = "a whole number of pixels";
                tta_translate = Some(common::value(&mut args, "--tta-translate", what)?);
            }
            "--weight-decay" => {
                // Ranges are the recipe's own check (`TrainConfig::check`).
                let what = "a rate such as 5e-4";
                weight_decay = Some(common::value(&mut args, "--weight-decay", what)?);
            }
            "--save" => save = Some(PathBuf::from(args.next().ok_or("--save needs a folder")?)),
            "--seeds" => {
                let list = args.next().ok_or("--seeds needs a list such as 1,2,3")?;
                seeds = list
                    .split(',')
                    .map(|v| v.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--seeds {list}: give whole numbers such as 1,2,3"))?;
            }
            "--evaluate" => evaluate = true,
            "--with-validation" => with_validation = true,
            "-h" | "--help" => return Err(String::new()),
            _ if data.is_none() => data = Some(PathBuf::from(a)),
            _ => networks.push(a),
        }
    }
    let data = data.ok_or("DATA_DIR is missing")?;
    if networks.is_empty() {
        return Err("name at least one network".into());
    }
    if !evaluate && seconds.is_none() {
        return Err("--seconds S is missing".into());
    }
    Ok(Args {
        data,
        seconds,
        cutout,
        tta_translate,
        weight_decay,
        with_validation,
        seeds,
        save,
        evaluate,
        networks,
    })
}

fn network(name: &str, task: &Task) -> Result<Graph, String> {
    if name == "starter" {
        return Ok(starter(task));
    }
    common::read_network(Path::new(name))
}

fn run(args: &Args) -> Result<(), String> {
    let (data, names) = (&args.data, &args.networks);
    let spec = DatasetSpec::find_cifar10(data)
        .ok_or_else(|| format!("no CIFAR-10 in {} (see discover_cifar10)", data.display()))?;
    // The benchmark's split (as discover_cifar10 loads it): 45,000 training and 5,000 validation
    // images, stratified with seed 0, and the 10,000 test images.
    let splits = spec.load().map_err(|e| e.to_string())?;
    let mut recipe = TrainConfig::fast_final();
    let Some(seconds) = args.seconds.filter(|_| !args.evaluate) else {
        return names
            .iter()
            .try_for_each(|dir| evaluate(Path::new(dir), &splits));
    };
    recipe.epochs = 500;
    recipe.budget.max_wall_seconds = Some(seconds);
    recipe.inference = None;
    recipe.augmentation.cutout = args.cutout;
    if let Some(t) = args.tta_translate {
        recipe.tta_translate = t;
    }
    if let Some(w) = args.weight_decay {
        recipe.weight_decay = w;
    }
    recipe.check().map_err(|e| e.to_string())?;
    let splits = if args.with_validation {
        splits
            .with_validation_in_training()
            .map_err(|e| e.to_string())?
    } else {
        splits
    };
    let task = Task {
        input: splits.train.shape,
        classes: splits.train.classes(),
        limits: Limits::default(),
    };
    let seeds = if args.seeds.is_empty() {
        vec![recipe.seed]
    } else {
        args.seeds.clone()
    };
    // Every network read and validated once, before the first training.
    let graphs = names
        .iter()
        .map(|name| {
            ValidatedGraph::new(network(name, &task)?, &task).map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Each network's (test, validation) accuracy per draw.
    let mut draws: Vec<Vec<(f64, f64)>> = vec![Vec::new(); names.len()];
    for (s, &seed) in seeds.iter().enumerate() {
        recipe.seed = seed;
        for (i, (name, graph)) in names.iter().zip(&graphs).enumerate() {
            eprintln!(
                "{name}: {} parameters, {seconds} s, seed {seed}, cutout {}, tta_translate {}, \
                 weight_decay {}, {} training images, {} validation images",
                graph.params(),
                args.cutout,
                recipe.tta_translate,
                recipe.weight_decay,
                splits.train.len(),
                splits.val.len()
            );
            let start = Instant::now();
            let mut trainer = BurnTrainer::new();
            let r = trainer
                .train(graph, &splits, &recipe, &NoMeter, &mut Epochs)
                .map_err(|e| format!("{name}: {e}"))?;
            if let Some(root) = &args.save {
                let stem = Path::new(name)
                    .file_stem()
                    .map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
                let dir = root.join(format!("{}-{stem}", s * names.len() + i));
                trainer
                    .save_last(&dir)
                    .map_err(|e| format!("{name}: saving to {}: {e}", dir.display()))?;
                eprintln!("{name}: saved to {}", dir.display());
            }
            let test = r
                .test_accuracy
                .map_or_else(|| "none".to_string(), |a| format!("{a:.4}"));
            if let Some(t) = r.test_accuracy {
                draws[i].push((t, r.val_accuracy));
            }
            println!(
                "train_cifar10 network={name} params={} seconds={:.0} epochs={} \
                 train_accuracy={:.4} val_accuracy={:.4} test_accuracy={test} seed={seed}",
                graph.params(),
                start.elapsed().as_secs_f64(),
                r.history.len(),
                r.train_accuracy,
                r.val_accuracy
            );
        }
    }
    if seeds.len() > 1 {
        for (name, d) in names.iter().zip(&draws) {
            let tests: Vec<f64> = d.iter().map(|x| x.0).collect();
            let vals: Vec<f64> = d.iter().map(|x| x.1).collect();
            let (mean, sd) = mean_sd(&tests);
            println!(
                "train_cifar10 network={name} draws={} test_mean={mean:.4} test_sd={sd:.4} \
                 val_mean={:.4}",
                d.len(),
                mean_sd(&vals).0
            );
        }
    }
    Ok(())
}

/// The mean and the sample standard deviation (0 for fewer than two values).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Validation and test accuracy of the network saved in `dir` under each test-time augmentation.
fn evaluate(dir: &Path, splits: &Splits) -> Result<(), String> {
    let shown = dir.display();
    let model = TrainedModel::load(dir, DeviceChoice::Cpu).map_err(|e| format!("{shown}: {e}"))?;
    let test = splits
        .test
        .as_ref()
        .ok_or("the data has no test split to evaluate on")?;
    let flip = Tta {
        flip: true,
        translate: 0,
    };
    let modes = [
        ("none", Tta::NONE),
        ("flip", flip),
        (
            "flip+translate1",
            Tta {
                translate: 1,
                ..flip
            },
        ),
        (
            "flip+translate2",
            Tta {
                translate: 2,
                ..flip
            },
        ),
    ];
    for (mode, tta) in modes {
        let accuracy = |set| {
            model
                .evaluate_with(set, 500, tta)
                .map(|(_, a)| a)
                .map_err(|e| format!("{shown}: {e}"))
        };
        println!(
            "train_cifar10 evaluate={shown} tta={mode} val_accuracy={:.4} test_accuracy={:.4}",
            accuracy(&splits.val)?,
            accuracy(test)?
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
