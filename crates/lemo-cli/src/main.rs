//! `lemo`: the LeMo-NADe command line.
//!
//! ```text
//! lemo discover [CONFIG]        run a discovery (default: the embedded quickstart config)
//! lemo resume RUN_DIR           continue a killed run from its journal
//! lemo report RUN_DIR           rewrite report.md and plots from the journal
//! lemo evaluate JOB RESULT      worker: train and measure one candidate job, write its result
//! lemo arch check FILE          validate and summarise a network file (IR JSON or LLM answer)
//! lemo data inspect SPEC        load a dataset and print its sizes
//! lemo data download NAME DIR   fetch cifar10 / cifar100 / fashion-mnist, checksummed
//! ```
//!
//! Exit codes: 0 success, 1 unexpected error, 2 bad configuration or input (an invalid network
//! for `arch check`), 3 data missing or unreadable, 4 architect / API failure, 5 training
//! failure, 6 run directory / journal / report I/O, 7 energy meter, 8 executor failure (SLURM,
//! worker processes), 130 interrupted (Ctrl-C; the run's jobs were cancelled).

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use lemo::job::{read_job, write_json};
use lemo::{
    Discovery, ExecutorKind, JobOutcome, LemoError, RunConfig, RunDir, RunHistory, write_report,
};
use lemo_arch::{Limits, Task, parse_answer};
use lemo_train::data::{DatasetSpec, Downloader, RemoteDataset};

/// LeMo-NADe: LLM-guided neural architecture discovery for edge devices.
#[derive(Debug, Parser)]
#[command(name = "lemo", version, about, long_about = None)]
struct Cli {
    /// Hide progress bars (logs still follow RUST_LOG).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a discovery; without CONFIG the embedded quickstart (digits, offline architect).
    Discover {
        /// The run configuration (TOML).
        config: Option<PathBuf>,
        /// Create the run directory under this folder instead of the config's `run.out_dir`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override `termination.iterations`.
        #[arg(long)]
        iterations: Option<usize>,
        /// Override `run.seed`.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Continue a killed run from its journal (no finished iteration lost or repeated).
    Resume {
        /// The run directory (holding config.toml and journal.jsonl).
        run_dir: PathBuf,
    },
    /// Rewrite a run's report.md and plots from its journal alone.
    Report {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Worker of the `processes` and `slurm` executors: train and measure the candidate of
    /// JOB (a job file the loop wrote) and write RESULT atomically. Exit 0 with a result,
    /// 5 with a result saying the candidate could not be trained, 2 for a corrupt job file or
    /// one of another format version (no result then).
    Evaluate {
        /// The job file (`RUN_DIR/jobs/iNNN-cK.job.json`).
        job: PathBuf,
        /// Where to write the result.
        result: PathBuf,
    },
    /// Network files.
    Arch {
        #[command(subcommand)]
        command: ArchCommand,
    },
    /// Datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ArchCommand {
    /// Validate a network (IR JSON, or an LLM answer holding it) and print its summary.
    Check {
        /// The file.
        file: PathBuf,
        /// Input shape C,H,W.
        #[arg(long, default_value = "3,32,32", value_parser = parse_shape)]
        input: [usize; 3],
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: usize,
        /// Also print the Graphviz DOT drawing.
        #[arg(long)]
        dot: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Load a dataset and print its shape, classes and split sizes. SPEC is `digits`,
    /// `KIND:DIR` (cifar10, cifar100, imagenet16, image_folder, idx) or a TOML inline table
    /// such as `{ kind = "cifar100", dir = "data/cifar-100-binary", labels = "coarse" }`.
    Inspect {
        /// The dataset.
        spec: String,
    },
    /// Download a dataset from its official address into DIR (only what is missing), check
    /// its published checksum, unpack it and print the SPEC that loads it.
    Download {
        /// `cifar10`, `cifar100` or `fashion-mnist`.
        name: String,
        /// The folder it goes under (as `DIR/cifar-10`, `DIR/cifar-100`, `DIR/fashion-mnist`).
        dir: PathBuf,
    },
}

fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    let dims: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match dims.as_deref() {
        Ok(&[c, h, w]) if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(format!(
            "expected C,H,W with three positive numbers, got `{s}`"
        )),
    }
}

fn parse_spec(s: &str) -> Result<DatasetSpec, String> {
    let t = s.trim();
    if t.starts_with('{') {
        let doc = format!("spec = {t}");
        #[derive(serde::Deserialize)]
        struct Wrap {
            spec: DatasetSpec,
        }
        return toml::from_str::<Wrap>(&doc)
            .map(|w| w.spec)
            .map_err(|e| format!("dataset spec: {e}"));
    }
    let (kind, dir) = match t.split_once(':') {
        Some((k, d)) => (k, Some(d)),
        None => (t, None),
    };
    let doc = match dir {
        Some(d) => format!("spec = {{ kind = {:?}, dir = {:?} }}", kind, d),
        None => format!("spec = {{ kind = {kind:?} }}"),
    };
    #[derive(serde::Deserialize)]
    struct Wrap {
        spec: DatasetSpec,
    }
    toml::from_str::<Wrap>(&doc)
        .map(|w| w.spec)
        .map_err(|e| format!("dataset spec `{s}`: {e}"))
}

/// An error with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<LemoError> for Failure {
    fn from(e: LemoError) -> Self {
        Failure {
            code: u8::try_from(e.exit_code()).unwrap_or(1),
            message: e.to_string(),
        }
    }
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Discover {
            config,
            out,
            iterations,
            seed,
        } => {
            let mut cfg = match &config {
                Some(path) => RunConfig::from_path(path).map_err(LemoError::from)?,
                None => RunConfig::quickstart().map_err(LemoError::from)?,
            };
            if let Some(o) = out {
                cfg.run.out_dir = o;
            }
            if let Some(n) = iterations {
                cfg.termination.iterations = n;
            }
            if let Some(s) = seed {
                cfg.run.seed = s;
            }
            cfg.validate().map_err(LemoError::from)?;
            let name = config
                .as_ref()
                .map_or("the embedded quickstart config".to_string(), |p| {
                    p.display().to_string()
                });
            eprintln!(
                "lemo: discovering with {name} ({} iterations at most)",
                cfg.termination.iterations
            );
            let observer = progress::Progress::new(cfg.termination.iterations, cli.quiet);
            let interrupt = interrupt_flag(&cfg)?;
            let mut discovery = Discovery::from_config(cfg)?.with_observer(Box::new(observer));
            if let Some(flag) = interrupt {
                discovery = discovery.with_interrupt(flag);
            }
            let summary = discovery.discover()?;
            print_summary(&summary.history, &summary.run_dir);
            Ok(())
        }
        Command::Resume { run_dir } => {
            let dir = RunDir::new(run_dir);
            let cfg = RunConfig::from_path(&dir.config()).map_err(LemoError::from)?;
            let observer = progress::Progress::new(cfg.termination.iterations, cli.quiet);
            let interrupt = interrupt_flag(&cfg)?;
            let mut discovery = Discovery::from_config(cfg)?.with_observer(Box::new(observer));
            if let Some(flag) = interrupt {
                discovery = discovery.with_interrupt(flag);
            }
            let summary = discovery.resume(dir)?;
            print_summary(&summary.history, &summary.run_dir);
            Ok(())
        }
        Command::Report { run_dir } => {
            let dir = RunDir::new(run_dir);
            let history = RunHistory::load(&dir.journal()).map_err(|e| fail(6, e.to_string()))?;
            let path = write_report(&dir, &history).map_err(|e| fail(6, e.to_string()))?;
            println!("report: {}", path.display());
            Ok(())
        }
        Command::Evaluate { job, result } => evaluate(&job, &result),
        Command::Arch {
            command:
                ArchCommand::Check {
                    file,
                    input,
                    classes,
                    dot,
                },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| fail(2, format!("cannot read {}: {e}", file.display())))?;
            let parsed =
                parse_answer(&text).map_err(|e| fail(2, format!("{}: {e}", file.display())))?;
            for note in &parsed.notes {
                eprintln!("note: {note}");
            }
            let task = Task {
                input,
                classes,
                limits: Limits::default(),
            };
            let analysis = parsed
                .graph
                .validate(&task)
                .map_err(|e| fail(2, format!("{}: {e}", file.display())))?;
            println!("{}", parsed.graph.summary(&analysis));
            println!("canonical hash: {}", parsed.graph.canonical_hash());
            if dot {
                println!("{}", parsed.graph.to_dot(Some(&analysis)));
            }
            Ok(())
        }
        Command::Data {
            command: DataCommand::Inspect { spec },
        } => {
            let spec = parse_spec(&spec).map_err(|m| fail(2, m))?;
            let (train, test) = spec.load_raw().map_err(|e| fail(3, format!("data: {e}")))?;
            println!("dataset:  {} ({})", train.name, spec.kind());
            println!("shape:    {:?} (C, H, W)", train.shape);
            println!("classes:  {}", train.classes());
            println!("train:    {} images", train.len());
            match &test {
                Some(t) => println!("test:     {} images", t.len()),
                None => println!("test:     none (a run holds out `data.test_split` of train)"),
            }
            let counts = train.class_counts();
            let names = &train.class_names;
            let per: Vec<String> = counts
                .iter()
                .enumerate()
                .take(20)
                .map(|(i, n)| format!("{}={n}", names.get(i).map_or("?", String::as_str)))
                .collect();
            println!(
                "per class: {}{}",
                per.join(" "),
                if counts.len() > 20 { " ..." } else { "" }
            );
            println!("mean pixel: {:.2}", train.mean_pixel());
            Ok(())
        }
        Command::Data {
            command: DataCommand::Download { name, dir },
        } => {
            let ds = match name.as_str() {
                "cifar10" => RemoteDataset::Cifar10,
                "cifar100" => RemoteDataset::Cifar100,
                "fashion-mnist" => RemoteDataset::FashionMnist,
                _ => {
                    return Err(fail(
                        2,
                        format!("unknown dataset {name:?}: cifar10, cifar100 or fashion-mnist"),
                    ));
                }
            };
            eprintln!(
                "fetching {name} from {} into {}",
                ds.home_url(),
                dir.display()
            );
            let spec = Downloader::new(&dir)
                .fetch(ds)
                .map_err(|e| fail(3, format!("data: {e}")))?;
            println!("{}:{}", spec.kind(), dir.join(ds.folder()).display());
            Ok(())
        }
    }
}

/// With an executor, the first Ctrl-C sets a flag the loop watches (it cancels the run's jobs
/// and stops, the journal consistent) and a second one exits at once; in process, Ctrl-C
/// keeps its default meaning.
fn interrupt_flag(cfg: &RunConfig) -> Result<Option<Arc<AtomicBool>>, Failure> {
    if cfg.executor.kind == ExecutorKind::InProcess {
        return Ok(None);
    }
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it runs while the flag is still unset: only a second signal exits.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .map_err(|e| fail(1, format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    Ok(Some(flag))
}

/// `lemo evaluate JOB RESULT`: one candidate, trained by the burn trainer.
fn evaluate(job: &std::path::Path, result: &std::path::Path) -> Result<(), Failure> {
    let spec = read_job(job).map_err(|e| {
        fail(
            u8::try_from(e.exit_code()).unwrap_or(1),
            format!("evaluate: {e}"),
        )
    })?;
    eprintln!(
        "lemo evaluate: iteration {} candidate {} ({}) on {} with {} thread(s)",
        spec.iteration,
        spec.candidate,
        spec.hash.get(..10).unwrap_or(&spec.hash),
        lemo::job::host_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut trainer = lemo_train::BurnTrainer::new();
    let outcome = spec.run(&mut trainer, &mut lemo::Quiet);
    write_json(result, &outcome).map_err(|e| fail(6, format!("evaluate: {e}")))?;
    match &outcome.outcome {
        JobOutcome::Evaluated { evaluation } => {
            eprintln!(
                "lemo evaluate: done in {:.1} s, A2 {:.4}; result {}",
                outcome.seconds,
                evaluation.val_accuracy,
                result.display()
            );
            Ok(())
        }
        JobOutcome::Failed { error } => Err(fail(5, format!("evaluate: {error}"))),
    }
}

fn print_summary(h: &RunHistory, dir: &RunDir) {
    let best = h.best_iteration();
    if let Some(f) = &h.final_result {
        println!(
            "best network: iteration {} — {} parameters, test accuracy {}",
            f.iteration,
            lemo_arch::thousands(f.observed.params),
            f.observed
                .test_accuracy
                .map_or("–".into(), |a| format!("{:.2} %", a * 100.0))
        );
    } else if let Some(b) = best {
        println!("best network: iteration {b}");
    }
    println!("run directory: {}", dir.root().display());
    println!("report: {}", dir.report().display());
}
