//! How well the search's proxy ranks networks: a handful of CIFAR-10 networks of different sizes
//! (the starter, the starter after each capacity edit the rule book asks for, the reference
//! CNN) trained once with the search's proxy (`fast_search`, a fixed wall-clock time each) and
//! once much longer with the final recipe (`fast_final`), then the rank agreement of their
//! validation accuracies (Spearman's rho, Kendall's tau).
//!
//! ```sh
//! cargo run --release --example proxy_agreement -- DATA_DIR [--proxy-seconds 90] [--long-seconds 360] [--proxy-fraction F] [--network FILE]...
//! ```
//!
//! DATA_DIR as for `discover_cifar10` (binary batches or the image folder form). The proxy trains
//! on the whole training split by default; `--proxy-fraction F` trains it on a stratified
//! fraction instead (with proxy seconds / long seconds, every network runs as many epochs in
//! the proxy as in the long training). `--network FILE` (repeatable) adds a network file (the
//! IR's JSON) to the list.
//! `--curve T1,T2` measures the two-fidelity prediction instead: every network is trained with
//! the final recipe for T1 and for T2 seconds, a [`lemo_metrics::LearningCurve`] (exponent
//! [`lemo_metrics::DEFAULT_CURVE_EXPONENT`]) through the two validation accuracies predicts the
//! long training's, and the rank agreement of the prediction (and of T2 alone) with the long
//! training is reported.
//! `--curve-epochs E1,E2` measures the search's curve in epochs (`discover_cifar10
//! --curve-epochs`): every network is trained as a candidate is, with the search recipe for E1
//! and for E2 epochs and the curve through the epochs, read at the long time's epochs at the
//! candidate's measured pace ([`EPOCH_CURVE_EXPONENT`])
//! predicting the long training; then as `--curve`.
//! Prints a table, then one line:
//! `proxy_agreement networks=N proxy_seconds=S long_seconds=L proxy_fraction=F spearman=R kendall=T`,
//! with `--curve`: `proxy_agreement networks=N curve=T1,T2 long_seconds=L spearman=R kendall=T
//! t2_spearman=R2 t2_kendall=T2` (`curve_epochs=E1,E2` in place of `curve=T1,T2` with
//! `--curve-epochs`).

mod common;

use std::process::ExitCode;

use lemo_arch::{Graph, Instruction, Limits, Task, ValidatedGraph, ref_cnn, starter};
use lemo_energy::NoMeter;
use lemo_metrics::{DEFAULT_CURVE_EXPONENT, EPOCH_CURVE_EXPONENT, LearningCurve};
use lemo_train::data::{DatasetSpec, Splits};
use lemo_train::{BurnTrainer, CurveProxy, NoObserver, TrainConfig, Trainer};

/// The networks: the starter, the starter after each capacity edit, the reference CNN.
fn networks(task: &Task) -> Vec<(String, Graph)> {
    let base = starter(task);
    let mut out = vec![("starter".to_string(), base.clone())];
    for instruction in [
        Instruction::AddMoreKernels,
        Instruction::AddConvLayer,
        Instruction::AddSkipConnection,
    ] {
        if let Ok(edit) = base.apply(instruction, task, 1)
            && edit.applied
        {
            out.push((format!("starter + {}", instruction.code()), edit.graph));
        }
    }
    out.push(("ref-cnn".to_string(), ref_cnn(task.classes)));
    out
}

/// Ranks of `v` (1 = smallest; ties get their mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for k in i..=j {
            r[idx[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let va: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn kendall(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    let mut pairs = 0.0;
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            s += ((a[i] - a[j]) * (b[i] - b[j])).signum();
            pairs += 1.0;
        }
    }
    s / pairs
}

/// The curve modes' rank agreements with the long training, as their last line shows them: of
/// the predictions (`spearman`, `kendall`) and of the second training alone (`t2_...`).
fn agreement(predicted: &[f64], second_only: &[f64], measured: &[f64]) -> String {
    format!(
        "spearman={:.3} kendall={:.3} t2_spearman={:.3} t2_kendall={:.3}",
        spearman(predicted, measured),
        kendall(predicted, measured),
        spearman(second_only, measured),
        kendall(second_only, measured)
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut proxy, mut long, mut fraction) = (None, 90.0, 360.0, 1.0);
    let mut curve: Option<(f64, f64)> = None;
    let mut curve_epochs: Option<(usize, usize)> = None;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> Option<f64> {
            let v = args.next()?.parse().ok()?;
            if v > 0.0 {
                Some(v)
            } else {
                eprintln!("{name} must be positive");
                None
            }
        };
        match a.as_str() {
            "--proxy-seconds" => match number("--proxy-seconds") {
                Some(v) => proxy = v,
                None => return ExitCode::from(2),
            },
            "--long-seconds" => match number("--long-seconds") {
                Some(v) => long = v,
                None => return ExitCode::from(2),
            },
            "--proxy-fraction" => match number("--proxy-fraction") {
                Some(v) if v <= 1.0 => fraction = v,
                _ => {
                    eprintln!("--proxy-fraction must be in (0, 1]");
                    return ExitCode::from(2);
                }
            },
            "--curve" => match args
                .next()
                .as_deref()
                .and_then(common::increasing_pair::<f64>)
            {
                Some(c) => curve = Some(c),
                None => {
                    eprintln!("--curve needs T1,T2 with 0 < T1 < T2 (seconds)");
                    return ExitCode::from(2);
                }
            },
            "--curve-epochs" => match args
                .next()
                .as_deref()
                .and_then(common::increasing_pair::<usize>)
            {
                Some(c) => curve_epochs = Some(c),
                None => {
                    eprintln!("--curve-epochs needs E1,E2 with 0 < E1 < E2 (epochs)");
                    return ExitCode::from(2);
                }
            },
            "--network" => match args.next() {
                Some(f) => files.push(std::path::PathBuf::from(f)),
                None => {
                    eprintln!("--network needs a file");
                    return ExitCode::from(2);
                }
            },
            other if dir.is_none() => dir = Some(std::path::PathBuf::from(other)),
            _ => {
                eprintln!(
                    "usage: proxy_agreement DATA_DIR [--proxy-seconds S] [--long-seconds L] \
                     [--proxy-fraction F] [--curve T1,T2 | --curve-epochs E1,E2] \
                     [--network FILE]..."
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(spec) = dir.as_deref().and_then(DatasetSpec::find_cifar10) else {
        eprintln!("usage: proxy_agreement DATA_DIR (CIFAR-10 binary batches or image folders)");
        return ExitCode::from(2);
    };
    let mode = match (curve, curve_epochs) {
        (Some(_), Some(_)) => {
            eprintln!("--curve and --curve-epochs exclude each other");
            return ExitCode::from(2);
        }
        (Some(c), None) => Mode::Curve(c),
        (None, Some(e)) => Mode::CurveEpochs(e),
        (None, None) => Mode::Proxy,
    };
    match run(&spec, proxy, long, fraction, mode, &files) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// What is compared with the long training.
enum Mode {
    /// The fixed-time proxy (`--proxy-seconds`, `--proxy-fraction`).
    Proxy,
    /// The curve through trainings of T1 and T2 seconds (`--curve`).
    Curve((f64, f64)),
    /// The search's curve through trainings of E1 and E2 epochs (`--curve-epochs`).
    CurveEpochs((usize, usize)),
}

fn run(
    spec: &DatasetSpec,
    proxy: f64,
    long: f64,
    fraction: f64,
    mode: Mode,
    files: &[std::path::PathBuf],
) -> Result<String, Box<dyn std::error::Error>> {
    // The benchmark's split (45,000 training and 5,000 validation images, as discover_cifar10
    // loads it). The test split is not needed: ranks are compared on the validation split, as
    // the search compares candidates.
    let splits = Splits {
        test: None,
        ..spec.load()?
    };
    let task = Task {
        input: splits.train.shape,
        classes: splits.train.classes(),
        limits: Limits::default(),
    };
    let mut short = TrainConfig::fast_search();
    short.epochs = 200;
    short.budget.data_fraction = fraction;
    short.budget.max_wall_seconds = Some(proxy);
    short.inference = None;
    let mut longer = TrainConfig::fast_final();
    longer.epochs = 500;
    longer.budget.max_wall_seconds = Some(long);
    longer.inference = None;
    longer.evaluate_test = false;

    let mut list = networks(&task);
    for f in files {
        let graph = common::read_network(f)?;
        let name = f.file_stem().map_or_else(
            || f.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        list.push((name, graph));
    }
    match mode {
        Mode::Curve(c) => return curve_agreement(&splits, &task, list, c, &longer),
        Mode::CurveEpochs(e) => return epoch_curve_agreement(&splits, &task, list, e, &longer),
        Mode::Proxy => {}
    }
    let mut rows = Vec::new();
    println!("| network | params | proxy A2 | long A2 | long epochs |");
    println!("|---|---|---|---|---|");
    for (name, graph) in list {
        let network = ValidatedGraph::new(graph, &task)?;
        let mut trainer = BurnTrainer::new();
        let p = trainer.train(&network, &splits, &short, &NoMeter, &mut NoObserver)?;
        let l = trainer.train(&network, &splits, &longer, &NoMeter, &mut NoObserver)?;
        println!(
            "| {name} | {} | {:.4} | {:.4} | {} |",
            network.params(),
            p.val_accuracy,
            l.val_accuracy,
            l.history.len()
        );
        rows.push((p.val_accuracy, l.val_accuracy));
    }
    let (a, b): (Vec<f64>, Vec<f64>) = rows.into_iter().unzip();
    Ok(format!(
        "proxy_agreement networks={} proxy_seconds={proxy} long_seconds={long} \
         proxy_fraction={fraction} spearman={:.3} kendall={:.3}",
        a.len(),
        spearman(&a, &b),
        kendall(&a, &b)
    ))
}

/// The `--curve` mode: each network trained with the final recipe for `t1`, `t2` and the long
/// time; the learning curve through the first two predicts the third.
fn curve_agreement(
    splits: &Splits,
    task: &Task,
    list: Vec<(String, Graph)>,
    (t1, t2): (f64, f64),
    longer: &TrainConfig,
) -> Result<String, Box<dyn std::error::Error>> {
    let long = longer.budget.max_wall_seconds.unwrap_or(0.0);
    let at = |seconds: f64| {
        let mut c = longer.clone();
        c.budget.max_wall_seconds = Some(seconds);
        c
    };
    let (first, second) = (at(t1), at(t2));
    println!(
        "| network | params | A2 at {t1} s | A2 at {t2} s | predicted A2 at {long} s | A2 at {long} s |"
    );
    println!("|---|---|---|---|---|---|");
    let (mut predicted, mut second_only, mut measured) = (Vec::new(), Vec::new(), Vec::new());
    for (name, graph) in list {
        let network = ValidatedGraph::new(graph, task)?;
        let mut trainer = BurnTrainer::new();
        let a1 = trainer.train(&network, splits, &first, &NoMeter, &mut NoObserver)?;
        let a2 = trainer.train(&network, splits, &second, &NoMeter, &mut NoObserver)?;
        let l = trainer.train(&network, splits, longer, &NoMeter, &mut NoObserver)?;
        let p = LearningCurve::through(
            (t1, a1.val_accuracy),
            (t2, a2.val_accuracy),
            DEFAULT_CURVE_EXPONENT,
        )
        .map_or(a2.val_accuracy, |c| c.at(long));
        println!(
            "| {name} | {} | {:.4} | {:.4} | {p:.4} | {:.4} |",
            network.params(),
            a1.val_accuracy,
            a2.val_accuracy,
            l.val_accuracy
        );
        predicted.push(p);
        second_only.push(a2.val_accuracy);
        measured.push(l.val_accuracy);
    }
    Ok(format!(
        "proxy_agreement networks={} curve={t1},{t2} long_seconds={long} {}",
        measured.len(),
        agreement(&predicted, &second_only, &measured)
    ))
}

/// The `--curve-epochs` mode: each network trained as `discover_cifar10 --curve-epochs E1,E2`
/// trains a candidate (the search recipe for `e1`, then `e2` epochs, and the trainer's curve
/// through the epochs predicting the long training), then with the final recipe for the
/// long time.
fn epoch_curve_agreement(
    splits: &Splits,
    task: &Task,
    list: Vec<(String, Graph)>,
    (e1, e2): (usize, usize),
    longer: &TrainConfig,
) -> Result<String, Box<dyn std::error::Error>> {
    let long = longer.budget.max_wall_seconds.unwrap_or(0.0);
    let mut search = TrainConfig::fast_search();
    search.epochs = e2;
    search.budget.data_fraction = 1.0;
    search.budget.max_wall_seconds = None;
    search.budget.curve = Some(CurveProxy {
        first_seconds: 0.0,
        first_epochs: Some(e1),
        target_seconds: long,
        exponent: EPOCH_CURVE_EXPONENT,
    });
    search.tta_flip = true;
    search.inference = None;
    println!(
        "| network | params | A2 after {e1} epochs | A2 after {e2} epochs | predicted A2 at {long} s | A2 at {long} s |"
    );
    println!("|---|---|---|---|---|---|");
    let (mut predicted, mut second_only, mut measured) = (Vec::new(), Vec::new(), Vec::new());
    for (name, graph) in list {
        let network = ValidatedGraph::new(graph, task)?;
        let mut trainer = BurnTrainer::new();
        let c = trainer.train(&network, splits, &search, &NoMeter, &mut NoObserver)?;
        let curve = c
            .curve
            .ok_or("the search recipe made no curve prediction")?;
        let l = trainer.train(&network, splits, longer, &NoMeter, &mut NoObserver)?;
        println!(
            "| {name} | {} | {:.4} ({:.0} s) | {:.4} ({:.0} s) | {:.4} | {:.4} |",
            network.params(),
            curve.first_val_accuracy,
            curve.first_seconds,
            c.val_accuracy,
            curve.second_seconds,
            curve.predicted_val_accuracy,
            l.val_accuracy
        );
        predicted.push(curve.predicted_val_accuracy);
        second_only.push(c.val_accuracy);
        measured.push(l.val_accuracy);
    }
    Ok(format!(
        "proxy_agreement networks={} curve_epochs={e1},{e2} long_seconds={long} {}",
        measured.len(),
        agreement(&predicted, &second_only, &measured)
    ))
}
