//! [`Discovery`]: Algorithm 1 of the paper, composed from the traits of the other crates.
//!
//! Each iteration: the architect proposes a network (the first from the task, later ones from
//! the previous network, its metrics and the resolved instructions); the answer is parsed and
//! validated (an invalid one goes back with the exact error for a bounded number of repair
//! rounds, no training spent); a network seen before (same canonical hash) reuses its earlier
//! evaluation; otherwise the trainer trains and measures it with the energy meter; the rule book
//! turns the metrics into weighted instructions, resolved by Algorithm 3; CM (equation 1) and the
//! Pareto front keep the best. Every step is journalled as it happens; [`Discovery::resume`]
//! continues a killed run. After the search the best network is retrained with the final recipe,
//! measured and saved, and the report is written.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lemo_arch::{Task, ValidatedGraph};
use lemo_energy::EnergyMeter;
use lemo_expert::{PaperRuleBook, ResolvedCommand, RuleBook, RuleSet};
use lemo_llm::{Architect, ArchitectRuntime, Design, Feedback, Proposal, ProposalKind, TaskBrief};
use lemo_metrics::{Effectiveness, Normalisation, Objective, Observed, pareto_front};
use lemo_train::data::{DataError, Splits};
use lemo_train::{BurnTrainer, Evaluation, TrainObserver, Trainer};

use crate::config::{ConfigError, DataSection, ExecutorKind, RunConfig, SearchBase};
use crate::event::{
    AnswerOutcome, CandidateOutcome, DataSummary, Event, FinalResult, IterationOutcome,
    JOURNAL_VERSION, StopReason,
};
use crate::executor::{ExecutorError, JobRunner, JobSpec, JobStatus, SlurmRunner, build_runner};
use crate::history::{HistoryError, IterationInProgress, IterationRecord, RunHistory};
use crate::job::{
    EvaluationJob, EvaluationResult, JOB_FORMAT, JobOutcome, read_result, write_json,
};
use crate::journal::{JournalError, JournalWriter};
use crate::report::{ReportError, write_report};
use crate::run_dir::RunDir;

/// Errors that stop a run. Each maps to an exit code of the `lemo` command
/// ([`LemoError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum LemoError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data could not be loaded (missing, truncated, malformed).
    #[error("data: {0}")]
    Data(#[from] DataError),
    /// The architect failed (no answer at all: network, key, timeout).
    #[error("architect: {0}")]
    Architect(#[from] lemo_llm::LlmError),
    /// The trainer failed outside a candidate (the final training).
    #[error("training: {0}")]
    Train(#[from] lemo_train::TrainError),
    /// The energy meter could not be set up.
    #[error("energy meter: {0}")]
    Energy(#[from] lemo_energy::EnergyError),
    /// The rule book could not be loaded.
    #[error("rule book: {0}")]
    RuleBook(#[from] lemo_expert::RuleBookError),
    /// The journal could not be written or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The run could not be rebuilt from its journal.
    #[error("resume: {0}")]
    Resume(String),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The executor could not be set up or failed (`sbatch` missing, run directory not seen
    /// by the nodes, a worker that cannot be started).
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    /// The run was interrupted (Ctrl-C); its jobs were cancelled and `lemo resume` continues
    /// it.
    #[error("interrupted: the run's jobs were cancelled; continue with `lemo resume RUN_DIR`")]
    Interrupted,
    /// A file or directory of the run could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<HistoryError> for LemoError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Journal(j) => LemoError::Journal(j),
            other => LemoError::Resume(other.to_string()),
        }
    }
}

impl LemoError {
    /// The exit code of the `lemo` command for this error: 2 bad configuration or input,
    /// 3 data missing or unreadable, 4 architect / API failure, 5 training failure,
    /// 6 run directory / journal / report I/O, 7 energy meter, 8 executor failure,
    /// 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            LemoError::Config(_) | LemoError::RuleBook(_) | LemoError::Resume(_) => 2,
            LemoError::Executor(e) if e.is_setup() => 2,
            LemoError::Executor(_) => 8,
            LemoError::Interrupted => 130,
            LemoError::Data(_) => 3,
            LemoError::Architect(_) => 4,
            LemoError::Train(_) => 5,
            LemoError::Journal(_) | LemoError::Report(_) | LemoError::Io { .. } => 6,
            LemoError::Energy(_) => 7,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LemoError + '_ {
    move |source| LemoError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Progress of a run: journal events as they are written, plus the trainer's epoch progress.
/// Every method has a no-op default.
pub trait RunObserver: TrainObserver {
    /// An event was written to the journal.
    fn on_event(&mut self, event: &Event) {
        let _ = event;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl TrainObserver for Quiet {}
impl RunObserver for Quiet {}

/// Seed of one step of one iteration, derived from the run seed (SplitMix64 finaliser), so a
/// resumed run uses the same seeds as an uninterrupted one.
pub fn derive_seed(run_seed: u64, iteration: u64, stream: u64) -> u64 {
    let mut z = run_seed
        ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed stream of the architect's proposals.
const STREAM_ARCHITECT: u64 = 1;
/// Seed stream of candidate training.
const STREAM_TRAIN: u64 = 2;
/// Seed stream of the final training.
const STREAM_FINAL: u64 = 3;
/// Seed stream of the loop's own exploratory edits.
const STREAM_EXPLORE: u64 = 4;
/// Seed stream of the candidates after the first of an iteration.
const STREAM_CANDIDATE: u64 = 5;

/// The loaded data of a run and its summary.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Train, validation and test splits.
    pub splits: Splits,
    /// Sizes and names, for the journal.
    pub summary: DataSummary,
}

/// Loads the configured dataset and splits it; a format without a test split gets one held out
/// from the training data (`data.test_split`).
pub fn load_data(config: &RunConfig) -> Result<RunData, LemoError> {
    load_split_data(&config.data)
}

/// Loads a `[data]` section's dataset and splits it as every run does (the loop and the
/// `lemo evaluate` workers alike).
pub fn load_split_data(d: &DataSection) -> Result<RunData, LemoError> {
    let (all, test) = d.dataset.load_raw()?;
    let name = all.name.clone();
    let (all, test, test_source) = match test {
        Some(t) => (all, t, "dataset test split".to_string()),
        None => {
            let (rest, held) = all.split(d.test_split, d.split_seed ^ 0x7E57);
            (
                rest,
                held,
                format!(
                    "held out from the training data ({:.0}%)",
                    d.test_split * 100.0
                ),
            )
        }
    };
    let (train, val) = all.split(d.validation_split, d.split_seed);
    let summary = DataSummary {
        name,
        shape: train.shape,
        classes: train.classes(),
        train: train.len(),
        val: val.len(),
        test: test.len(),
        test_source,
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

/// The energy meter a configuration asks for.
pub fn build_meter(config: &RunConfig) -> Result<Box<dyn EnergyMeter>, LemoError> {
    Ok(config.energy.build_meter()?)
}

/// The rule book a configuration asks for (`"paper"` or a TOML file).
pub fn build_rulebook(config: &RunConfig) -> Result<Box<dyn RuleBook>, LemoError> {
    if config.expert.rulebook == "paper" {
        Ok(Box::new(PaperRuleBook))
    } else {
        Ok(Box::new(RuleSet::from_path(&config.expert.rulebook)?))
    }
}

/// The discovery loop (Algorithm 1) over any architect, trainer, energy meter and rule book.
pub struct Discovery {
    config: RunConfig,
    architect: Box<dyn Architect>,
    trainer: Box<dyn Trainer>,
    meter: Box<dyn EnergyMeter>,
    rulebook: Box<dyn RuleBook>,
    normalisation: Box<dyn Normalisation>,
    observer: Box<dyn RunObserver>,
    data: Option<RunData>,
    stop_after: Option<usize>,
    runtime: Option<ArchitectRuntime>,
    runner: Option<Box<dyn JobRunner>>,
    interrupt: Option<Arc<AtomicBool>>,
}

/// What a finished (or paused) run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: RunDir,
    /// The run's history, rebuilt from its journal.
    pub history: RunHistory,
    /// Whether the run finished (false: stopped early by [`Discovery::stop_after`]).
    pub finished: bool,
}

impl RunSummary {
    /// Path of the Markdown report.
    pub fn report_path(&self) -> std::path::PathBuf {
        self.run_dir.report()
    }
}

struct Loop {
    journal: JournalWriter,
    history: RunHistory,
    task: Task,
    brief: TaskBrief,
    /// The run directory, absolute (jobs name their files by it).
    dir: RunDir,
    /// The data the loop loaded (workers must see the same).
    data: DataSummary,
}

impl Discovery {
    /// Composes the parts the configuration names: its architect, the burn trainer, the energy
    /// meter it asks for and its rule book.
    pub fn from_config(config: RunConfig) -> Result<Self, LemoError> {
        let architect = config.architect.build()?;
        let meter = build_meter(&config)?;
        let rulebook = build_rulebook(&config)?;
        Ok(Self::new(
            config,
            architect,
            Box::new(BurnTrainer::new()),
            meter,
            rulebook,
        ))
    }

    /// Composes the given parts (any implementation of each trait).
    pub fn new(
        config: RunConfig,
        architect: Box<dyn Architect>,
        trainer: Box<dyn Trainer>,
        meter: Box<dyn EnergyMeter>,
        rulebook: Box<dyn RuleBook>,
    ) -> Self {
        Self {
            normalisation: config.effectiveness.normalisation.build(),
            config,
            architect,
            trainer,
            meter,
            rulebook,
            observer: Box::new(Quiet),
            data: None,
            stop_after: None,
            runtime: ArchitectRuntime::new().ok(),
            runner: None,
            interrupt: None,
        }
    }

    /// Normalises CM's FPS and energies with `normalisation` instead of the configured one.
    pub fn with_normalisation(mut self, normalisation: Box<dyn Normalisation>) -> Self {
        self.normalisation = normalisation;
        self
    }

    /// Reports progress to `observer`.
    pub fn with_observer(mut self, observer: Box<dyn RunObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Watches `flag`: once it is set (by a Ctrl-C handler), the run cancels the jobs it is
    /// waiting for and stops with [`LemoError::Interrupted`], the journal consistent.
    pub fn with_interrupt(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt = Some(flag);
        self
    }

    /// Uses already loaded data instead of loading the configured dataset.
    pub fn with_data(mut self, data: RunData) -> Self {
        self.data = Some(data);
        self
    }

    /// Stops (without finishing the run) once this many iterations are in the journal: for
    /// tests of resume, and to split a long run into sessions.
    pub fn stop_after(mut self, iterations: usize) -> Self {
        self.stop_after = Some(iterations);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    fn data(&mut self) -> Result<RunData, LemoError> {
        if let Some(d) = &self.data {
            return Ok(d.clone());
        }
        let d = load_data(&self.config)?;
        self.data = Some(d.clone());
        Ok(d)
    }

    /// Starts a new run in a fresh timestamped directory under `config.run.out_dir`. A config
    /// that [`RunConfig::validate`] rejects (one built in code) stops it with
    /// [`LemoError::Config`], and data that does not load stops it, before any directory is
    /// made.
    pub fn discover(&mut self) -> Result<RunSummary, LemoError> {
        let out = self.config.run.out_dir.clone();
        let data = self.preflight(&RunDir::new(&out))?;
        let dir = RunDir::create_timestamped(&out).map_err(io_err(&out))?;
        self.start(dir, data)
    }

    /// Starts a new run in `dir` (created if needed; it must not hold a journal yet), after the
    /// same checks as [`discover`](Self::discover).
    pub fn discover_in(&mut self, dir: RunDir) -> Result<RunSummary, LemoError> {
        let data = self.preflight(&dir)?;
        self.start(dir, data)
    }

    /// Writes the config and the journal's first event into `dir` and runs the loop.
    fn start(&mut self, dir: RunDir, data: RunData) -> Result<RunSummary, LemoError> {
        std::fs::create_dir_all(dir.root()).map_err(io_err(dir.root()))?;
        let toml = self.config.to_toml_string()?;
        let config_path = dir.config();
        std::fs::write(&config_path, toml).map_err(io_err(&config_path))?;
        let journal = JournalWriter::create(&dir.journal())?;
        let task = self.task(&data.summary);
        let mut lp = Loop {
            journal,
            history: RunHistory::default(),
            brief: self.brief(&task, &data.summary),
            task: task.clone(),
            dir: absolute(&dir),
            data: data.summary.clone(),
        };
        let start = Event::RunStarted {
            version: JOURNAL_VERSION,
            config: Box::new(self.config.clone()),
            task,
            data: data.summary.clone(),
            architect: self.architect.name(),
            trainer: self.trainer.name(),
            meter: self.meter.name(),
            rulebook: self.rulebook.name().to_string(),
        };
        self.emit(&mut lp, start)?;
        self.run_loop(dir, lp, data.splits)
    }

    /// Continues a run from its journal: finished iterations are kept, an unfinished one runs
    /// again with the same seed; a finished run only gets its report rewritten.
    pub fn resume(&mut self, dir: RunDir) -> Result<RunSummary, LemoError> {
        let (journal, contents) = JournalWriter::reopen::<Event>(&dir.journal())?;
        let history = RunHistory::from_entries(&contents.entries);
        let Some(start) = history.start.clone() else {
            return Err(LemoError::Resume(format!(
                "{} has no run_started event: nothing to resume",
                dir.journal().display()
            )));
        };
        if history.finished {
            write_report(&dir, &history)?;
            return Ok(RunSummary {
                run_dir: dir,
                history,
                finished: true,
            });
        }
        let data = self.data()?;
        if data.summary != start.data {
            return Err(LemoError::Resume(format!(
                "the data differ from the run's ({:?} now, {:?} then)",
                data.summary, start.data
            )));
        }
        let mut lp = Loop {
            journal,
            brief: self.brief(&start.task, &data.summary),
            task: start.task.clone(),
            history,
            dir: absolute(&dir),
            data: data.summary.clone(),
        };
        let resumed = Event::Resumed {
            finished_iterations: lp.history.iterations.len(),
            torn_tail: contents.torn_tail.is_some(),
        };
        self.emit(&mut lp, resumed)?;
        self.run_loop(dir, lp, data.splits)
    }

    fn task(&self, data: &DataSummary) -> Task {
        Task {
            input: data.shape,
            classes: data.classes,
            limits: self.config.task.limits,
        }
    }

    fn brief(&self, task: &Task, data: &DataSummary) -> TaskBrief {
        TaskBrief {
            dataset: data.name.clone(),
            task: task.clone(),
            notes: String::new(),
            seed: self.config.run.seed,
            candidate: 0,
        }
    }

    fn emit(&mut self, lp: &mut Loop, event: Event) -> Result<(), LemoError> {
        let written = lp.journal.append(&event)?;
        self.observer.on_event(&event);
        let entry = crate::journal::Entry {
            seq: written.seq,
            unix_ms: written.unix_ms,
            event,
        };
        // Keep the in-memory history equal to what a reader of the journal would rebuild.
        lp.history.apply(&entry);
        Ok(())
    }

    fn run_loop(
        &mut self,
        dir: RunDir,
        mut lp: Loop,
        mut splits: Splits,
    ) -> Result<RunSummary, LemoError> {
        // The search never sees the test split: its candidates are trained and measured on the
        // training and validation splits alone; only the final training measures the test.
        let test = splits.test.take();
        if lp.history.search_finished.is_none() {
            self.start_executor(&mut lp)?;
        }
        while lp.history.search_finished.is_none() {
            if let Some(reason) = self.stop_reason(&lp.history) {
                let best = lp.history.best_iteration();
                self.emit(
                    &mut lp,
                    Event::SearchFinished {
                        reason,
                        best_iteration: best,
                    },
                )?;
                break;
            }
            if self
                .stop_after
                .is_some_and(|n| lp.history.iterations.len() >= n)
            {
                return Ok(RunSummary {
                    run_dir: dir,
                    history: lp.history,
                    finished: false,
                });
            }
            self.iteration(&mut lp, &splits)?;
        }
        splits.test = test;
        if self.config.final_training.with_validation {
            splits = splits
                .with_validation_in_training()
                .map_err(DataError::from)?;
        }
        if lp.history.final_result.is_none() {
            self.final_training(&dir, &mut lp, &splits)?;
        }
        if self.config.final_training.baseline
            && self.config.final_training.enabled
            && lp.history.baseline.is_none()
        {
            self.baseline_training(&mut lp, &splits)?;
        }
        let (reason, best) = lp.history.search_finished.clone().unwrap_or((
            StopReason::Iterations {
                iterations: lp.history.iterations.len(),
            },
            None,
        ));
        self.emit(
            &mut lp,
            Event::RunFinished {
                reason,
                best_iteration: best,
            },
        )?;
        write_report(&dir, &lp.history)?;
        Ok(RunSummary {
            run_dir: dir,
            history: lp.history,
            finished: true,
        })
    }

    /// What is done before a run directory is made, so that a run that cannot start leaves
    /// none: the config's values are checked (as the TOML reader checks them; a config built in
    /// code has not been through it), the SLURM commands are looked up, and the data is loaded.
    fn preflight(&mut self, dir: &RunDir) -> Result<RunData, LemoError> {
        self.config.validate()?;
        let x = &self.config.executor;
        if x.kind == ExecutorKind::Slurm {
            SlurmRunner::new(
                x.slurm.clone(),
                crate::executor::worker_binary(x)?,
                dir.root().to_path_buf(),
                x.workers,
                self.config.search.candidates,
            )?;
        }
        self.data()
    }

    /// Builds the configured executor (none in process), checks that a SLURM cluster sees the
    /// run directory, and journals `executor_started`.
    fn start_executor(&mut self, lp: &mut Loop) -> Result<(), LemoError> {
        let x = self.config.executor.clone();
        if x.kind == ExecutorKind::InProcess {
            self.runner = None;
            return Ok(());
        }
        let jobs = lp.dir.jobs();
        std::fs::create_dir_all(&jobs).map_err(io_err(&jobs))?;
        if x.kind == ExecutorKind::Slurm {
            let mut probe = SlurmRunner::new(
                x.slurm.clone(),
                crate::executor::worker_binary(&x)?,
                lp.dir.root().to_path_buf(),
                x.workers,
                self.config.search.candidates,
            )?;
            if let Some(message) = probe.probe_shared_dir(&jobs)? {
                self.emit(lp, Event::Warning { message })?;
            }
        }
        let Some(runner) = build_runner(&x, self.config.search.candidates, lp.dir.root())? else {
            return Ok(());
        };
        self.emit(
            lp,
            Event::ExecutorStarted {
                executor: runner.kind().to_string(),
                capacity: runner.capacity(),
                detail: runner.describe(),
            },
        )?;
        self.runner = Some(runner);
        Ok(())
    }

    /// Algorithm 1's termination condition, checked before each iteration.
    fn stop_reason(&self, h: &RunHistory) -> Option<StopReason> {
        let t = &self.config.termination;
        if let Some(last) = h.iterations.last()
            && let IterationOutcome::Evaluated {
                observed,
                effectiveness,
                ..
            } = &last.outcome
            && t.targets.met(observed, effectiveness.cm)
        {
            return Some(StopReason::Targets {
                iteration: last.iteration,
            });
        }
        if t.stop_when_thresholds_met
            && let Some(last) = h.iterations.last()
            && matches!(last.outcome, IterationOutcome::Evaluated { .. })
            && last.next_command.as_ref().is_some_and(|c| c.is_empty())
        {
            return Some(StopReason::TargetsMet {
                iteration: last.iteration,
            });
        }
        if h.iterations.len() >= t.iterations {
            return Some(StopReason::Iterations {
                iterations: h.iterations.len(),
            });
        }
        let seconds = h.search_seconds();
        // What must fit: the whole next iteration, or one candidate when fewer may run.
        let one_candidate = t.whole_iterations && t.fit_candidates;
        let next = match (t.whole_iterations, one_candidate) {
            (false, _) => 0.0,
            (true, false) => self.next_iteration_seconds(h),
            (true, true) => self.next_candidate_seconds(h),
        };
        if let Some(m) = t.max_wall_seconds {
            if seconds >= m {
                return Some(StopReason::WallClock {
                    seconds,
                    expected_next: None,
                    left: None,
                    one_candidate: false,
                });
            }
            if seconds + next > m {
                return Some(StopReason::WallClock {
                    seconds,
                    expected_next: Some(next),
                    left: Some(m - seconds),
                    one_candidate,
                });
            }
        }
        let kwh = h.search_kwh();
        if t.max_energy_kwh.is_some_and(|m| kwh >= m) {
            return Some(StopReason::Energy { kwh });
        }
        None
    }

    /// The expected length of the next iteration (0 before the first): the expected seconds of
    /// one of its candidates times its candidates.
    fn next_iteration_seconds(&self, h: &RunHistory) -> f64 {
        let next = h.iterations.len() + 1;
        self.next_candidate_seconds(h) * self.config.search.candidates_in(next) as f64
    }

    /// The expected seconds of one candidate of the next iteration (0 before the first): the
    /// larger of the finished iterations' largest seconds per candidate and the last
    /// iteration's seconds per candidate scaled by how much slower the next base network
    /// trained than the last one's (the base of a search that moved to a wider network costs
    /// more to edit).
    fn next_candidate_seconds(&self, h: &RunHistory) -> f64 {
        let per_candidate = |r: &IterationRecord| r.seconds / r.candidates.len().max(1) as f64;
        let largest = h.iterations.iter().map(per_candidate).fold(0.0, f64::max);
        let kind = self.config.search.base;
        let trained = |r: &IterationRecord| {
            r.evaluation
                .as_ref()
                .map(|e| e.total_seconds)
                .filter(|s| s.is_finite() && *s > 0.0)
        };
        let scaled = h.iterations.last().and_then(|last| {
            let before = trained(h.base_for(kind, last.iteration)?)?;
            let next = trained(h.base_for(kind, last.iteration + 1)?)?;
            Some(per_candidate(last) * next / before)
        });
        largest.max(scaled.unwrap_or(0.0))
    }

    /// How many candidates iteration `n` evaluates: `search.candidates_in(n)`, or with
    /// `termination.fit_candidates` as many of them as are expected to fit in what is left of
    /// the wall-clock budget (at least one: `stop_reason` stopped the search before an
    /// iteration where none fits). A function of the finished iterations only, so a resumed
    /// iteration keeps its count.
    fn candidates_for(&self, h: &RunHistory, n: usize) -> usize {
        let k = self.config.search.candidates_in(n);
        let t = &self.config.termination;
        let (true, true, Some(budget)) = (t.whole_iterations, t.fit_candidates, t.max_wall_seconds)
        else {
            return k;
        };
        let each = self.next_candidate_seconds(h);
        if each <= 0.0 {
            return k;
        }
        let left = budget - h.search_seconds();
        let fit = (left / each).floor();
        if fit.is_finite() && fit >= 1.0 {
            k.min(fit as usize)
        } else {
            1
        }
    }

    /// Whether iterations write the candidate events (`candidate_proposed`, the jobs and every
    /// candidate's outcome): with k > 1 candidates or an executor. A k = 1 in-process run
    /// writes the paper's events only, as before candidates existed.
    fn scaled(&self) -> bool {
        self.config.search.candidates > 1 || self.config.executor.kind != ExecutorKind::InProcess
    }

    /// One iteration of Algorithm 1, from the proposals to the closing event, in four steps
    /// that pass their results on: propose (and repair) k candidates, evaluate them (reused,
    /// in process, or by the executor's workers), advise on the best by CM, close. An
    /// iteration a resume finds with settled candidates goes on where it stopped: settled
    /// proposals, journalled evaluations and finished job results are kept, running jobs
    /// re-attached.
    fn iteration(&mut self, lp: &mut Loop, splits: &Splits) -> Result<(), LemoError> {
        let started = Instant::now();
        let n = lp.history.iterations.len() + 1;
        let seed = derive_seed(self.config.run.seed, n as u64, STREAM_ARCHITECT);
        let (feedback, command) = lp.feedback(n, self.config.search.base);
        let resumed = lp
            .history
            .in_progress
            .clone()
            .filter(|p| p.iteration == n && p.resumable());
        let before_kill = resumed.as_ref().map_or(0.0, |p| {
            p.last_unix_ms.saturating_sub(p.started_unix_ms) as f64 / 1000.0
        });
        if resumed.is_none() {
            self.emit(
                lp,
                Event::IterationStarted {
                    iteration: n,
                    seed,
                    command: command.clone(),
                },
            )?;
        }
        let scaled = self.scaled();
        let k = self.candidates_for(&lp.history, n);
        if resumed.is_none() && k < self.config.search.candidates_in(n) {
            let message = format!(
                "iteration {n} evaluates {k} of its {} candidates: ~{:.0} s each expected, \
                 {:.0} s of the search's wall-clock budget left (termination.fit_candidates)",
                self.config.search.candidates_in(n),
                self.next_candidate_seconds(&lp.history),
                self.config.termination.max_wall_seconds.unwrap_or(0.0)
                    - lp.history.search_seconds(),
            );
            self.emit(lp, Event::Warning { message })?;
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(k);
        for c in 0..k {
            let settled = resumed
                .as_ref()
                .and_then(|p| p.candidates.get(&c))
                .and_then(|x| x.proposed.clone());
            let slot = match settled {
                Some((outcome, rounds)) => Slot::from_journal(outcome, rounds, &lp.task),
                None => {
                    let mut brief = lp.brief.clone();
                    brief.seed = candidate_seed(self.config.run.seed, n, c);
                    brief.candidate = c;
                    let siblings: Vec<String> = slots
                        .iter()
                        .filter_map(Slot::hash)
                        .map(str::to_string)
                        .collect();
                    let (design, last, rounds) =
                        self.propose(lp, n, c, &brief, feedback.as_ref(), &siblings)?;
                    let slot = match design {
                        Some(d) => Slot::Design(d),
                        None => Slot::Invalid {
                            error: last
                                .problem()
                                .map(|p| p.message.clone())
                                .unwrap_or_default(),
                            rounds,
                        },
                    };
                    if scaled {
                        self.emit(
                            lp,
                            Event::CandidateProposed {
                                iteration: n,
                                candidate: c,
                                repair_rounds: rounds,
                                outcome: slot.answer_outcome(),
                            },
                        )?;
                    }
                    slot
                }
            };
            slots.push(slot);
        }
        let results = self.evaluate(lp, n, &slots, resumed.as_ref(), splits)?;
        let mut kwh = 0.0;
        let mut outcomes = Vec::with_capacity(k);
        for (c, (slot, result)) in slots.iter().zip(results).enumerate() {
            let outcome = match (slot, result) {
                (Slot::Invalid { error, rounds }, _) => IterationOutcome::Invalid {
                    error: error.clone(),
                    repair_rounds: *rounds,
                },
                (Slot::Design(design), Some(Ok(evaluated))) => {
                    kwh += evaluated.kwh;
                    IterationOutcome::Evaluated {
                        graph: design.graph().clone(),
                        hash: evaluated.hash,
                        reused_from: evaluated.reused_from,
                        effectiveness: Effectiveness::with(
                            &self.config.metrics,
                            &evaluated.observed,
                            self.normalisation.as_ref(),
                        ),
                        observed: evaluated.observed,
                        diverged: evaluated.diverged,
                    }
                }
                (Slot::Design(design), result) => IterationOutcome::Failed {
                    graph: design.graph().clone(),
                    error: match result {
                        Some(Err(e)) => e,
                        _ => "the candidate was not evaluated".into(),
                    },
                },
            };
            outcomes.push(CandidateOutcome {
                candidate: c,
                outcome,
            });
        }
        let chosen = choose(&outcomes);
        let Some(outcome) = outcomes.get(chosen).map(|c| c.outcome.clone()) else {
            return Err(LemoError::Resume(format!("iteration {n} has no candidate")));
        };
        let next_command = match &outcome {
            IterationOutcome::Evaluated { observed, .. } => Some(self.advise(lp, n, observed)?),
            _ => command,
        };
        let closing = Closing {
            outcome,
            next_command,
            seconds: before_kill + started.elapsed().as_secs_f64(),
            kwh,
            chosen,
            candidates: if scaled { outcomes } else { Vec::new() },
        };
        self.close(lp, n, closing)
    }

    /// Step 1 for one candidate: asks the architect (the first network, or the next from the
    /// feedback), then for repairs while the answer is unusable, journalling every answer; no
    /// training is spent on an unusable one. A network evaluated before, or proposed already
    /// for an earlier candidate of this iteration, gets one novelty round (the architect is
    /// told it is network #k again, with its metrics); if the answer is then still the base
    /// network, or still an earlier candidate's, the loop makes a seeded exploratory edit
    /// itself, so no network is evaluated in two iterations in a row and the k candidates
    /// differ. Returns the design (if any), the last proposal and the rounds after the first
    /// answer.
    fn propose(
        &mut self,
        lp: &mut Loop,
        n: usize,
        candidate: usize,
        brief: &TaskBrief,
        feedback: Option<&Feedback>,
        siblings: &[String],
    ) -> Result<(Option<Design>, Proposal, usize), LemoError> {
        let mut proposal: Proposal = match feedback {
            Some(f) => block_on(&self.runtime, self.architect.propose_next(brief, f))?,
            None => block_on(&self.runtime, self.architect.propose_initial(brief))?,
        };
        let mut round = 0usize;
        let mut novelty_asked = false;
        loop {
            let outcome = match &proposal.outcome {
                Ok(d) => AnswerOutcome::Valid {
                    graph: d.graph().clone(),
                    hash: d.network.canonical_hash().to_string(),
                    params: d.analysis().params,
                    macs: d.analysis().macs,
                    notes: d.notes.clone(),
                },
                Err(p) => AnswerOutcome::Invalid {
                    kind: p.kind.clone(),
                    error: p.message.clone(),
                },
            };
            self.emit(
                lp,
                Event::Answer {
                    iteration: n,
                    round,
                    kind: kind_name(proposal.kind).into(),
                    prompt: proposal.prompt.clone(),
                    raw: proposal.raw.clone(),
                    usage: proposal.usage,
                    latency_ms: proposal.latency_ms,
                    outcome,
                    candidate,
                },
            )?;
            let error = match &proposal.outcome {
                Ok(d) => {
                    let hash = d.network.canonical_hash();
                    let sibling = siblings.iter().position(|s| s == hash);
                    match (lp.history.evaluation_of(hash), sibling) {
                        (Some((k, ev)), _) if !novelty_asked => {
                            novelty_asked = true;
                            novelty_message(k, hash, &observe(ev, d.analysis()))
                        }
                        (None, Some(s)) if !novelty_asked => {
                            novelty_asked = true;
                            sibling_message(s, hash)
                        }
                        (Some(_), _) if lp.base_hash(self.config.search.base) == Some(hash) => {
                            let design = self.explore(lp, n, candidate, d, siblings, None)?;
                            return Ok((Some(design), proposal, round));
                        }
                        (_, Some(s)) => {
                            let design = self.explore(lp, n, candidate, d, siblings, Some(s))?;
                            return Ok((Some(design), proposal, round));
                        }
                        _ => return Ok((Some(d.clone()), proposal, round)),
                    }
                }
                Err(_) if round >= self.config.run.max_repair_rounds => {
                    return Ok((None, proposal, round));
                }
                Err(problem) => problem.message.clone(),
            };
            round += 1;
            proposal = block_on(
                &self.runtime,
                self.architect.repair(brief, &proposal, &error),
            )?;
        }
    }

    /// The loop's own seeded exploratory edit of a design the architect proposed again after
    /// a novelty round (journalled as a warning); the design itself when no edit gives a
    /// network not evaluated before and not proposed for an earlier candidate. `sibling`: the
    /// earlier candidate it duplicates, if that is why.
    fn explore(
        &mut self,
        lp: &mut Loop,
        n: usize,
        candidate: usize,
        design: &Design,
        siblings: &[String],
        sibling: Option<usize>,
    ) -> Result<Design, LemoError> {
        let mut seed = derive_seed(self.config.run.seed, n as u64, STREAM_EXPLORE);
        if candidate > 0 {
            seed = derive_seed(seed, candidate as u64, STREAM_CANDIDATE);
        }
        let history = &lp.history;
        let edit = design
            .graph()
            .explore(&lp.task, seed, |g| {
                let h = g.canonical_hash();
                history.evaluation_of(&h).is_none() && !siblings.contains(&h)
            })
            .ok()
            .flatten();
        let explored = edit.and_then(|e| {
            ValidatedGraph::new(e.graph, &lp.task)
                .ok()
                .map(|network| (network, e.note))
        });
        let Some((network, note)) = explored else {
            return Ok(design.clone());
        };
        let message = match sibling {
            None if candidate == 0 => format!(
                "iteration {n}: the architect proposed the previous iteration's network again \
                 after a novelty round; the loop made an exploratory edit instead ({note})"
            ),
            None => format!(
                "iteration {n}, candidate {candidate}: the architect proposed the previous \
                 iteration's network again after a novelty round; the loop made an exploratory \
                 edit instead ({note})"
            ),
            Some(s) => format!(
                "iteration {n}, candidate {candidate}: the architect proposed candidate {s}'s \
                 network again after a novelty round; the loop made an exploratory edit \
                 instead ({note})"
            ),
        };
        self.emit(lp, Event::Warning { message })?;
        let mut notes = design.notes.clone();
        notes.push(format!("exploratory edit by the loop: {note}"));
        Ok(Design { network, notes })
    }

    /// Step 2 for every candidate with a network: its metrics, as journalled before a kill,
    /// reused from an earlier iteration or an earlier candidate with the same canonical hash,
    /// or measured by the trainer (in process) or a worker (the executor); each journalled as
    /// `evaluated`. `Some(Err(message))` is a candidate that could not be trained (the search
    /// goes on); `None` a candidate without a network.
    fn evaluate(
        &mut self,
        lp: &mut Loop,
        n: usize,
        slots: &[Slot],
        resumed: Option<&IterationInProgress>,
        splits: &Splits,
    ) -> Result<Vec<Option<Result<Evaluated, String>>>, LemoError> {
        let mut results: Vec<Option<Result<Evaluated, String>>> = vec![None; slots.len()];
        let mut to_train = Vec::new();
        let mut twins = Vec::new();
        for (c, slot) in slots.iter().enumerate() {
            let Slot::Design(design) = slot else {
                continue;
            };
            let hash = design.network.canonical_hash().to_string();
            let journalled = resumed.and_then(|p| p.candidates.get(&c));
            let earlier = lp
                .history
                .evaluation_of(&hash)
                .map(|(it, ev)| (it, ev.clone()));
            let result =
                if let Some((ev, reused_from)) = journalled.and_then(|j| j.evaluated.clone()) {
                    Some(Ok(evaluated(design, ev, reused_from)))
                } else if let Some(error) = journalled.and_then(|j| j.failed.clone()) {
                    Some(Err(error))
                } else if let Some((it, ev)) = earlier {
                    self.emit_evaluated(lp, n, c, &hash, Some(it), &ev)?;
                    Some(Ok(evaluated(design, ev, Some(it))))
                } else if let Some(first) = slots
                    .iter()
                    .take(c)
                    .position(|s| s.hash() == Some(hash.as_str()))
                {
                    twins.push((c, first));
                    None
                } else {
                    to_train.push(c);
                    None
                };
            if let Some(slot) = results.get_mut(c) {
                *slot = result;
            }
        }
        if self.runner.is_some() {
            self.run_jobs(lp, n, slots, &to_train, resumed, &mut results)?;
        } else {
            for c in to_train {
                let Some(Slot::Design(design)) = slots.get(c) else {
                    continue;
                };
                let result = self.train_in_process(lp, n, c, design, splits)?;
                if let Some(slot) = results.get_mut(c) {
                    *slot = Some(result);
                }
            }
        }
        // A candidate proposed twice in one iteration (no exploratory edit could tell them
        // apart) takes its twin's result.
        for (c, first) in twins {
            let twin = results.get(first).cloned().flatten();
            let Some(Slot::Design(design)) = slots.get(c) else {
                continue;
            };
            let result = match twin {
                Some(Ok(e)) => {
                    let hash = design.network.canonical_hash().to_string();
                    self.emit_evaluated(lp, n, c, &hash, Some(n), &e.evaluation)?;
                    Ok(evaluated(design, e.evaluation, Some(n)))
                }
                Some(Err(error)) => Err(error),
                None => Err("its twin candidate was not evaluated".into()),
            };
            if let Some(slot) = results.get_mut(c) {
                *slot = Some(result);
            }
        }
        Ok(results)
    }

    fn emit_evaluated(
        &mut self,
        lp: &mut Loop,
        n: usize,
        candidate: usize,
        hash: &str,
        reused_from: Option<usize>,
        evaluation: &Evaluation,
    ) -> Result<(), LemoError> {
        self.emit(
            lp,
            Event::Evaluated {
                iteration: n,
                hash: hash.to_string(),
                reused_from,
                evaluation: Box::new(evaluation.clone()),
                candidate,
            },
        )
    }

    /// The training recipe of iteration `n`'s candidates: the search recipe with the
    /// iteration's training seed (the same for all its candidates, so they differ by their
    /// networks alone) and no test split.
    fn candidate_training(&self, n: usize) -> lemo_train::TrainConfig {
        let mut cfg = self.config.search.training.clone();
        cfg.seed = derive_seed(self.config.run.seed, n as u64, STREAM_TRAIN);
        cfg.evaluate_test = false;
        cfg
    }

    /// Trains one candidate in the loop's process; journals `evaluated`, or (when candidates
    /// are journalled) `candidate_failed`.
    fn train_in_process(
        &mut self,
        lp: &mut Loop,
        n: usize,
        c: usize,
        design: &Design,
        splits: &Splits,
    ) -> Result<Result<Evaluated, String>, LemoError> {
        let cfg = self.candidate_training(n);
        let hash = design.network.canonical_hash().to_string();
        let observer: &mut dyn TrainObserver = self.observer.as_mut();
        match self
            .trainer
            .train(&design.network, splits, &cfg, self.meter.as_ref(), observer)
        {
            Ok(ev) => {
                self.emit_evaluated(lp, n, c, &hash, None, &ev)?;
                Ok(Ok(evaluated(design, ev, None)))
            }
            Err(e) => {
                let error = e.to_string();
                if self.scaled() {
                    self.emit(
                        lp,
                        Event::CandidateFailed {
                            iteration: n,
                            candidate: c,
                            hash,
                            error: error.clone(),
                        },
                    )?;
                }
                Ok(Err(error))
            }
        }
    }

    /// Step 3: the rule book, run once, turns the metrics into weighted instructions, resolved
    /// by Algorithm 3 into the next command; journalled as `advised`.
    fn advise(
        &mut self,
        lp: &mut Loop,
        n: usize,
        observed: &Observed,
    ) -> Result<ResolvedCommand, LemoError> {
        let assessment = self.rulebook.assess(&self.config.metrics, observed);
        let resolved = assessment.command.resolve();
        self.emit(
            lp,
            Event::Advised {
                iteration: n,
                fired: assessment.fired,
                command: assessment.command,
                rendered: resolved.render(),
                resolved: resolved.clone(),
            },
        )?;
        Ok(resolved)
    }

    /// Step 4: the best network by CM and the Pareto front, journalled with the outcome as
    /// `iteration_finished`.
    fn close(&mut self, lp: &mut Loop, n: usize, closing: Closing) -> Result<(), LemoError> {
        let (best, front) = best_and_front(&lp.history, n, &closing.outcome);
        self.emit(
            lp,
            Event::IterationFinished {
                iteration: n,
                outcome: Box::new(closing.outcome),
                next_command: closing.next_command,
                best_iteration: best,
                pareto_front: front,
                seconds: closing.seconds,
                kwh: closing.kwh,
                candidate: closing.chosen,
                candidates: closing.candidates,
            },
        )
    }

    /// Step 2 by the executor: each candidate to train becomes a job file and a
    /// `lemo evaluate` worker (a local process or a SLURM job), at most the executor's capacity
    /// at once. A result already written is read instead (resume: no finished candidate is
    /// trained twice); a job of an earlier loop process that still runs is re-attached by its
    /// id, one that is gone is submitted again. Jobs the engine ended (SLURM's `NODE_FAIL`,
    /// `PREEMPTED`, `TIMEOUT`, ...) are resubmitted up to `executor.slurm.max_resubmits`
    /// times; a worker that ends without a result is a failed candidate. Every submission and
    /// state change is journalled.
    fn run_jobs(
        &mut self,
        lp: &mut Loop,
        n: usize,
        slots: &[Slot],
        to_train: &[usize],
        resumed: Option<&IterationInProgress>,
        results: &mut [Option<Result<Evaluated, String>>],
    ) -> Result<(), LemoError> {
        let Some(mut runner) = self.runner.take() else {
            return Ok(());
        };
        let outcome = self.drive_jobs(lp, n, slots, to_train, resumed, results, runner.as_mut());
        self.runner = Some(runner);
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn drive_jobs(
        &mut self,
        lp: &mut Loop,
        n: usize,
        slots: &[Slot],
        to_train: &[usize],
        resumed: Option<&IterationInProgress>,
        results: &mut [Option<Result<Evaluated, String>>],
        runner: &mut dyn JobRunner,
    ) -> Result<(), LemoError> {
        let jobs_dir = lp.dir.jobs();
        std::fs::create_dir_all(&jobs_dir).map_err(io_err(&jobs_dir))?;
        let design_of = |c: usize| match slots.get(c) {
            Some(Slot::Design(d)) => Some(d),
            _ => None,
        };
        let max_resubmits = self.config.executor.slurm.max_resubmits;
        // Grace for a result to show up after its job ended (shared filesystems may lag).
        // NFS caches directory lookups for up to acdirmax (60 s by default).
        let grace = if runner.kind() == ExecutorKind::Slurm.name() {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(500)
        };
        let mut queue: VecDeque<(usize, u32)> = VecDeque::new();
        let mut active: Vec<ActiveJob> = Vec::new();
        for &c in to_train {
            let Some(design) = design_of(c) else {
                continue;
            };
            let hash = design.network.canonical_hash().to_string();
            let spec = lp.job_spec(n, c, 1);
            let last = resumed
                .and_then(|p| p.candidates.get(&c))
                .and_then(|x| x.jobs.last().cloned());
            match read_job_result(&spec.result, n, c, &hash) {
                Ok(Some(r)) => {
                    if let Some(job) = &last {
                        self.job_state(lp, n, c, &job.job_id, "COMPLETED", "result read")?;
                    }
                    self.settle(lp, n, c, design, r, results)?;
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    self.fail_candidate(lp, n, c, &hash, error, results)?;
                    continue;
                }
            }
            match last {
                Some(job) => {
                    let spec = lp.job_spec(n, c, job.attempt);
                    if runner.attach(&job.job_id, &spec) {
                        self.job_state(lp, n, c, &job.job_id, &job.state, "re-attached")?;
                        let mut a = ActiveJob::new(c, hash, job.job_id, job.attempt, &job.state);
                        a.seen = true;
                        active.push(a);
                    } else {
                        self.job_state(lp, n, c, &job.job_id, "LOST", "resubmitted")?;
                        queue.push_back((c, job.attempt + 1));
                    }
                }
                None => queue.push_back((c, 1)),
            }
        }
        loop {
            if self.interrupted() {
                let ids: Vec<String> = active.iter().map(|a| a.id.clone()).collect();
                runner.cancel(&ids);
                for a in &active {
                    self.job_state(
                        lp,
                        n,
                        a.candidate,
                        &a.id,
                        "CANCELLED",
                        "cancelled by lemo (interrupted)",
                    )?;
                }
                return Err(LemoError::Interrupted);
            }
            while active.len() < runner.capacity() {
                let Some((c, attempt)) = queue.pop_front() else {
                    break;
                };
                let Some(design) = design_of(c) else {
                    continue;
                };
                let hash = design.network.canonical_hash().to_string();
                let spec = lp.job_spec(n, c, attempt);
                let job = EvaluationJob {
                    format: JOB_FORMAT,
                    iteration: n,
                    candidate: c,
                    hash: hash.clone(),
                    graph: design.graph().clone(),
                    task: lp.task.clone(),
                    data: self.config.data.clone(),
                    data_summary: lp.data.clone(),
                    training: self.candidate_training(n),
                    energy: self.config.energy.clone(),
                    threads: None,
                };
                write_json(&spec.job, &job).map_err(|e| LemoError::Io {
                    path: spec.job.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let _ = std::fs::remove_file(&spec.result);
                match runner.submit(&spec) {
                    Ok(id) => {
                        self.emit(
                            lp,
                            Event::JobSubmitted {
                                iteration: n,
                                candidate: c,
                                hash: hash.clone(),
                                attempt,
                                executor: runner.kind().to_string(),
                                job_id: id.clone(),
                                job: lp.relative(&spec.job),
                            },
                        )?;
                        active.push(ActiveJob::new(c, hash, id, attempt, "SUBMITTED"));
                    }
                    Err(e) if e.is_setup() => return Err(e.into()),
                    Err(e) if attempt <= max_resubmits => {
                        self.emit(
                            lp,
                            Event::Warning {
                                message: format!(
                                    "iteration {n}, candidate {c}: submission {attempt} failed \
                                     ({e}); trying again"
                                ),
                            },
                        )?;
                        queue.push_back((c, attempt + 1));
                        self.pause(runner.poll_interval());
                    }
                    Err(e) => {
                        let error = format!("the job could not be submitted: {e}");
                        self.fail_candidate(lp, n, c, &hash, error, results)?;
                    }
                }
            }
            if active.is_empty() && queue.is_empty() {
                return Ok(());
            }
            self.pause(runner.poll_interval());
            let ids: Vec<String> = active.iter().map(|a| a.id.clone()).collect();
            let states = runner.poll(&ids)?;
            let mut still = Vec::with_capacity(active.len());
            for mut a in std::mem::take(&mut active) {
                let c = a.candidate;
                let Some(design) = design_of(c) else {
                    continue;
                };
                let spec = lp.job_spec(n, c, a.attempt);
                match read_job_result(&spec.result, n, c, &a.hash) {
                    Ok(Some(r)) => {
                        self.job_state(lp, n, c, &a.id, "COMPLETED", "result read")?;
                        self.settle(lp, n, c, design, r, results)?;
                        continue;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.fail_candidate(lp, n, c, &a.hash, error, results)?;
                        continue;
                    }
                }
                let status = match (states.get(&a.id).cloned(), &a.end) {
                    // An end once reported stays the end, whatever a later listing says.
                    (_, Some((state, retry))) => JobStatus::Ended {
                        state: state.clone(),
                        retry: *retry,
                    },
                    (Some(s), None) => s,
                    (None, None) => JobStatus::Unknown,
                };
                let (state, retry) = match status {
                    JobStatus::Active(state) => {
                        if state != a.state {
                            self.job_state(lp, n, c, &a.id, &state, "")?;
                            a.state = state;
                        }
                        a.seen = true;
                        still.push(a);
                        continue;
                    }
                    // Not listed yet (a scheduler may take a moment), or gone from every
                    // listing after it ran.
                    JobStatus::Unknown
                        if !a.seen && a.since.elapsed() < Duration::from_secs(60) =>
                    {
                        still.push(a);
                        continue;
                    }
                    JobStatus::Unknown => ("LOST".to_string(), true),
                    JobStatus::Ended { state, retry } => (state, retry),
                };
                // Ended without a result (yet): a worker that finished may have written it
                // an instant ago, on a filesystem that shows it late. A job the engine ended
                // (retry) had no result to write.
                a.end = Some((state.clone(), retry));
                let ended = *a.ended.get_or_insert_with(Instant::now);
                if !retry && ended.elapsed() < grace {
                    still.push(a);
                    continue;
                }
                if retry && a.attempt <= max_resubmits {
                    self.job_state(lp, n, c, &a.id, &state, "resubmitted")?;
                    queue.push_back((c, a.attempt + 1));
                } else {
                    self.job_state(lp, n, c, &a.id, &state, "failed")?;
                    let error = format!(
                        "{} job {} ended {state} without a result (attempt {}; log {}){}",
                        runner.kind(),
                        a.id,
                        a.attempt,
                        lp.relative(&spec.log),
                        log_tail(&spec.log)
                    );
                    self.fail_candidate(lp, n, c, &a.hash, error, results)?;
                }
            }
            active = still;
        }
    }

    /// Journals a job's state (and what the loop does about it).
    fn job_state(
        &mut self,
        lp: &mut Loop,
        n: usize,
        candidate: usize,
        job_id: &str,
        state: &str,
        note: &str,
    ) -> Result<(), LemoError> {
        self.emit(
            lp,
            Event::JobState {
                iteration: n,
                candidate,
                job_id: job_id.to_string(),
                state: state.to_string(),
                note: note.to_string(),
            },
        )
    }

    /// A worker's result: `evaluated` or `candidate_failed`.
    fn settle(
        &mut self,
        lp: &mut Loop,
        n: usize,
        c: usize,
        design: &Design,
        result: EvaluationResult,
        results: &mut [Option<Result<Evaluated, String>>],
    ) -> Result<(), LemoError> {
        match result.outcome {
            JobOutcome::Evaluated { evaluation } => {
                self.emit_evaluated(lp, n, c, &result.hash, None, &evaluation)?;
                if let Some(slot) = results.get_mut(c) {
                    *slot = Some(Ok(evaluated(design, *evaluation, None)));
                }
                Ok(())
            }
            JobOutcome::Failed { error } => {
                let error = format!("{error} (worker on {})", result.host);
                self.fail_candidate(lp, n, c, &result.hash, error, results)
            }
        }
    }

    fn fail_candidate(
        &mut self,
        lp: &mut Loop,
        n: usize,
        c: usize,
        hash: &str,
        error: String,
        results: &mut [Option<Result<Evaluated, String>>],
    ) -> Result<(), LemoError> {
        self.emit(
            lp,
            Event::CandidateFailed {
                iteration: n,
                candidate: c,
                hash: hash.to_string(),
                error: error.clone(),
            },
        )?;
        if let Some(slot) = results.get_mut(c) {
            *slot = Some(Err(error));
        }
        Ok(())
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Sleeps `d`, waking early when the run is interrupted.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.interrupted() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }

    fn final_training(
        &mut self,
        dir: &RunDir,
        lp: &mut Loop,
        splits: &Splits,
    ) -> Result<(), LemoError> {
        let Some(best) = lp
            .history
            .search_finished
            .as_ref()
            .and_then(|(_, b)| *b)
            .and_then(|b| lp.history.iteration(b).cloned())
        else {
            self.emit(
                lp,
                Event::Warning {
                    message: "no network was evaluated: nothing to retrain".into(),
                },
            )?;
            return Ok(());
        };
        let IterationOutcome::Evaluated { graph, hash, .. } = best.outcome.clone() else {
            return Ok(());
        };
        let best_dir = dir.best();
        std::fs::create_dir_all(&best_dir).map_err(io_err(&best_dir))?;
        let network = ValidatedGraph::new(graph.clone(), &lp.task)
            .map_err(|e| LemoError::Resume(format!("the best network no longer validates: {e}")))?;
        let analysis = network.analysis();
        write_file(&best_dir.join("graph.json"), &graph.to_json_pretty())?;
        write_file(&best_dir.join("network.dot"), &graph.to_dot(Some(analysis)))?;
        write_file(&best_dir.join("summary.txt"), &graph.summary(analysis))?;

        let result = if self.config.final_training.enabled {
            self.emit(
                lp,
                Event::FinalStarted {
                    iteration: best.iteration,
                    hash: hash.clone(),
                },
            )?;
            let weights = best_dir.join("weights");
            let mut result = self.retrain(
                network,
                best.iteration,
                hash,
                splits,
                lp.history.search_seconds(),
                Some(&weights),
            )?;
            if result.weights_dir.is_some() {
                result.weights_dir = Some("best/weights".into());
            }
            result
        } else {
            let Some(evaluation) = best.evaluation.clone() else {
                return Ok(());
            };
            final_result(network, best.iteration, hash, evaluation, None)
        };
        self.emit(
            lp,
            Event::FinalFinished {
                result: Box::new(result),
            },
        )
    }

    /// Trains `network` with the final recipe after a search of `searched` seconds (the run's
    /// final seed, test split measured) and measures it; saves the weights into `weights`
    /// when given and the trainer can.
    fn retrain(
        &mut self,
        network: ValidatedGraph,
        iteration: usize,
        hash: String,
        splits: &Splits,
        searched: f64,
        weights: Option<&Path>,
    ) -> Result<FinalResult, LemoError> {
        let mut cfg = self.config.final_training.recipe_after(searched);
        cfg.seed = derive_seed(self.config.run.seed, 0, STREAM_FINAL);
        cfg.evaluate_test = true;
        let observer: &mut dyn TrainObserver = self.observer.as_mut();
        let ev = self
            .trainer
            .train(&network, splits, &cfg, self.meter.as_ref(), observer)?;
        let saved = match weights {
            Some(dir) => self
                .trainer
                .save_last(dir)?
                .then(|| dir.display().to_string()),
            None => None,
        };
        let mut result = final_result(network, iteration, hash, ev, saved);
        result.trained_on_validation = self.config.final_training.with_validation;
        Ok(result)
    }

    /// The baseline (`[final] baseline = true`): the run's first evaluated network trained with
    /// the final recipe, journalled as `baseline_finished`. When the first network is the best,
    /// the final training already is its baseline.
    fn baseline_training(&mut self, lp: &mut Loop, splits: &Splits) -> Result<(), LemoError> {
        let Some(fin) = lp.history.final_result.clone() else {
            return Ok(());
        };
        let first = lp.history.iterations.iter().find_map(|r| match &r.outcome {
            IterationOutcome::Evaluated { graph, hash, .. } => {
                Some((r.iteration, graph.clone(), hash.clone()))
            }
            _ => None,
        });
        let Some((iteration, graph, hash)) = first else {
            return Ok(());
        };
        let result = if iteration == fin.iteration {
            FinalResult {
                weights_dir: None,
                ..fin
            }
        } else {
            let network = ValidatedGraph::new(graph, &lp.task).map_err(|e| {
                LemoError::Resume(format!("the first network no longer validates: {e}"))
            })?;
            self.retrain(
                network,
                iteration,
                hash,
                splits,
                lp.history.search_seconds(),
                None,
            )?
        };
        self.emit(
            lp,
            Event::BaselineFinished {
                result: Box::new(result),
            },
        )
    }
}

/// A [`FinalResult`] from a network and its evaluation.
fn final_result(
    network: ValidatedGraph,
    iteration: usize,
    hash: String,
    evaluation: Evaluation,
    weights_dir: Option<String>,
) -> FinalResult {
    let observed = observe(&evaluation, network.analysis());
    let inference_energy = evaluation.inference.as_ref().map(|i| i.energy.clone());
    FinalResult {
        iteration,
        graph: network.into_parts().0,
        hash,
        inference_joules_per_image: observed.inference_energy_per_image_j,
        inference_energy,
        observed,
        evaluation,
        weights_dir,
        trained_on_validation: false,
    }
}

/// Runs an architect's future on the run's one runtime, so the architect's HTTP connections
/// and tasks live from one request to the next (a one-off runtime if it could not be made).
fn block_on<T>(
    runtime: &Option<ArchitectRuntime>,
    f: lemo_llm::BoxFuture<'_, Result<T, lemo_llm::LlmError>>,
) -> Result<T, LemoError> {
    Ok(match runtime {
        Some(rt) => rt.block_on(f)?,
        None => lemo_llm::block_on(f)?,
    })
}

/// The novelty round's message: the architect proposed a network evaluated before.
fn novelty_message(iteration: usize, hash: &str, o: &Observed) -> String {
    format!(
        "this is network #{iteration} again (canonical hash {}), already trained and measured: \
         A1 {:.2}%, A2 {:.2}%, F {:.0} images/s, P {}. Training it again would teach nothing: \
         change it, following the instructions, into a network not tried before.",
        hash.get(..10).unwrap_or(hash),
        o.a1 * 100.0,
        o.a2 * 100.0,
        o.fps,
        lemo_arch::thousands(o.params)
    )
}

/// What step 2 of an iteration measured for one candidate.
#[derive(Debug, Clone)]
struct Evaluated {
    evaluation: Evaluation,
    observed: Observed,
    hash: String,
    reused_from: Option<usize>,
    diverged: bool,
    kwh: f64,
}

/// A candidate's metrics from its evaluation (reused or fresh); a search-time candidate has
/// no test accuracy, whatever an earlier journal held.
fn evaluated(design: &Design, evaluation: Evaluation, reused_from: Option<usize>) -> Evaluated {
    let mut observed = observe(&evaluation, design.analysis());
    observed.test_accuracy = None;
    Evaluated {
        observed,
        kwh: if reused_from.is_none() {
            evaluation_kwh(&evaluation)
        } else {
            0.0
        },
        diverged: !evaluation.status.is_usable(),
        hash: design.network.canonical_hash().to_string(),
        reused_from,
        evaluation,
    }
}

/// What step 1 settled for one candidate: a design (and the rounds it took) or why none.
#[derive(Debug, Clone)]
enum Slot {
    Design(Design),
    Invalid { error: String, rounds: usize },
}

impl Slot {
    fn hash(&self) -> Option<&str> {
        match self {
            Slot::Design(d) => Some(d.network.canonical_hash()),
            Slot::Invalid { .. } => None,
        }
    }

    /// As `candidate_proposed` journals it.
    fn answer_outcome(&self) -> AnswerOutcome {
        match self {
            Slot::Design(d) => AnswerOutcome::Valid {
                graph: d.graph().clone(),
                hash: d.network.canonical_hash().to_string(),
                params: d.analysis().params,
                macs: d.analysis().macs,
                notes: d.notes.clone(),
            },
            Slot::Invalid { error, .. } => AnswerOutcome::Invalid {
                kind: "invalid".into(),
                error: error.clone(),
            },
        }
    }

    /// A settled candidate read back from the journal (resume).
    fn from_journal(outcome: AnswerOutcome, rounds: usize, task: &Task) -> Slot {
        match outcome {
            AnswerOutcome::Valid { graph, notes, .. } => match ValidatedGraph::new(graph, task) {
                Ok(network) => Slot::Design(Design { network, notes }),
                Err(e) => Slot::Invalid {
                    error: format!("the journalled network no longer validates: {e}"),
                    rounds,
                },
            },
            AnswerOutcome::Invalid { error, .. } => Slot::Invalid { error, rounds },
        }
    }
}

/// The candidate whose network is the iteration's: the best by CM (the first on a tie), else
/// the first that failed to train (it has a network), else the first.
fn choose(outcomes: &[CandidateOutcome]) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in outcomes.iter().enumerate() {
        if let IterationOutcome::Evaluated { effectiveness, .. } = &c.outcome
            && best.is_none_or(|(_, b)| effectiveness.cm > b)
        {
            best = Some((i, effectiveness.cm));
        }
    }
    best.map(|b| b.0)
        .or_else(|| {
            outcomes
                .iter()
                .position(|c| matches!(c.outcome, IterationOutcome::Failed { .. }))
        })
        .unwrap_or(0)
}

/// What the closing event of an iteration says.
struct Closing {
    outcome: IterationOutcome,
    next_command: Option<ResolvedCommand>,
    seconds: f64,
    kwh: f64,
    chosen: usize,
    candidates: Vec<CandidateOutcome>,
}

/// A job the executor runs for a candidate.
struct ActiveJob {
    candidate: usize,
    hash: String,
    id: String,
    attempt: u32,
    state: String,
    seen: bool,
    since: Instant,
    ended: Option<Instant>,
    /// The end the engine reported (state, resubmittable), once it did.
    end: Option<(String, bool)>,
}

impl ActiveJob {
    fn new(candidate: usize, hash: String, id: String, attempt: u32, state: &str) -> Self {
        Self {
            candidate,
            hash,
            id,
            attempt,
            state: state.to_string(),
            seen: false,
            since: Instant::now(),
            ended: None,
            end: None,
        }
    }
}

/// The result file of candidate `c` of iteration `n` when it is there and for this network;
/// `Ok(None)` when there is none (or one of another network, left from another run of the
/// iteration); `Err` when it cannot be read (corrupt, another format).
fn read_job_result(
    path: &Path,
    n: usize,
    c: usize,
    hash: &str,
) -> Result<Option<EvaluationResult>, String> {
    if !path.exists() {
        return Ok(None);
    }
    match read_result(path) {
        Ok(r) if r.iteration == n && r.candidate == c && r.hash == hash => Ok(Some(r)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The last lines of a worker's log, for a failed candidate's message.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines
        .iter()
        .skip(lines.len().saturating_sub(3))
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// The architect's seed for candidate `c` of iteration `n`: the iteration's seed for the
/// first (as with one candidate), a derived one for the others, so the architect's k
/// samples differ.
pub fn candidate_seed(run_seed: u64, n: usize, c: usize) -> u64 {
    let seed = derive_seed(run_seed, n as u64, STREAM_ARCHITECT);
    if c == 0 {
        seed
    } else {
        derive_seed(seed, c as u64, STREAM_CANDIDATE)
    }
}

/// The novelty round's message for a candidate that repeats an earlier candidate of the
/// same iteration.
fn sibling_message(sibling: usize, hash: &str) -> String {
    format!(
        "this is the network you proposed for candidate #{sibling} of this round already          (canonical hash {}). Propose a different network, following the same instructions,          so that the candidates of this round differ.",
        hash.get(..10).unwrap_or(hash)
    )
}

/// The run directory with an absolute path (workers run elsewhere).
fn absolute(dir: &RunDir) -> RunDir {
    match std::path::absolute(dir.root()) {
        Ok(p) => RunDir::new(p),
        Err(_) => dir.clone(),
    }
}

impl Loop {
    /// The files of candidate `c`'s job in iteration `n`, attempt `attempt`.
    fn job_spec(&self, n: usize, c: usize, attempt: u32) -> JobSpec {
        JobSpec {
            job: self.dir.job_file(n, c),
            result: self.dir.result_file(n, c),
            log: self.dir.job_log(n, c, attempt),
            name: format!("i{n:03}-c{c}"),
        }
    }

    /// A path relative to the run directory (for the journal).
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.dir.root())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The evaluated iteration the next network starts from: the last one (`previous`, the
    /// paper) or the best by CM so far (`best`).
    fn base_record(&self, base: SearchBase) -> Option<&IterationRecord> {
        self.history
            .base_for(base, self.history.iterations.len() + 1)
    }

    /// The canonical hash of the base network, when there is one.
    fn base_hash(&self, base: SearchBase) -> Option<&str> {
        match &self.base_record(base)?.outcome {
            IterationOutcome::Evaluated { hash, .. } => Some(hash),
            _ => None,
        }
    }

    /// The feedback for iteration `n` (the base network, its metrics and the command the expert
    /// system gave for it) and that command; both `None` before any network was evaluated.
    fn feedback(
        &self,
        n: usize,
        base_kind: SearchBase,
    ) -> (Option<Feedback>, Option<ResolvedCommand>) {
        let Some(base) = self.base_record(base_kind) else {
            return (None, None);
        };
        let IterationOutcome::Evaluated {
            graph, observed, ..
        } = &base.outcome
        else {
            return (None, None);
        };
        // `previous`: the command of the last iteration, carried over an iteration without a
        // network (the paper); `best`: the command the best network received.
        let command = match base_kind {
            SearchBase::Previous => self.history.iterations.last(),
            SearchBase::Best => Some(base),
        }
        .and_then(|r| r.next_command.clone())
        .unwrap_or_default();
        let feedback = Feedback {
            round: u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX),
            previous: graph.clone(),
            observed: *observed,
            command: command.clone(),
        };
        (Some(feedback), Some(command))
    }
}

fn kind_name(k: ProposalKind) -> &'static str {
    match k {
        ProposalKind::Initial => "initial",
        ProposalKind::Next => "next",
        ProposalKind::Repair => "repair",
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), LemoError> {
    std::fs::write(path, text).map_err(io_err(path))
}

/// Energy of an evaluation's windows (training, validation, inference), kWh before PUE.
pub fn evaluation_kwh(ev: &Evaluation) -> f64 {
    ev.train_energy.total_kwh()
        + ev.val_energy.total_kwh()
        + ev.inference.as_ref().map_or(0.0, |i| i.energy.total_kwh())
}

/// The observed metrics (Table 1) of an evaluation.
///
/// F is the large-batch throughput of the deployment form (0 when not measured); E1 and E2 are
/// the training and validation windows in kWh before PUE; the inference energy per image is the
/// inference window's mean power divided by the large-batch throughput.
pub fn observe(ev: &Evaluation, analysis: &lemo_arch::Analysis) -> Observed {
    let inf = ev.inference.as_ref();
    let per_image = inf.and_then(|i| {
        let secs = i.energy.wall.as_secs_f64();
        (secs > 0.0 && i.fps_large_batch > 0.0 && !i.energy.components.is_empty())
            .then(|| i.energy.total_joules() / secs / i.fps_large_batch)
    });
    Observed {
        // The search's A1 and A2: a learning-curve proxy's predictions for the final training's
        // length when the search recipe asks for one (`budget.curve`), else the measured ones.
        a1: ev.ranked_train_accuracy(),
        a2: ev.ranked_val_accuracy(),
        e1_kwh: ev.train_energy.total_kwh(),
        e2_kwh: ev.val_energy.total_kwh(),
        fps: inf.map_or(0.0, |i| i.fps_large_batch),
        params: ev.params,
        test_accuracy: ev.test_accuracy,
        inference_energy_per_image_j: per_image,
        latency_p50_ms: inf.map(|i| i.latency_p50_ms),
        latency_p95_ms: inf.map(|i| i.latency_p95_ms),
        model_size_bytes: Some(analysis.model_bytes),
        macs: Some(analysis.macs),
    }
}

/// Best iteration by CM (Algorithm 1: strictly greater replaces) and the Pareto front, over
/// the finished iterations plus the one closing now.
// pareto_front returns positions of the candidates it was given, so cands[i] exists.
#[allow(clippy::indexing_slicing)]
fn best_and_front(
    h: &RunHistory,
    n: usize,
    outcome: &IterationOutcome,
) -> (Option<usize>, Vec<usize>) {
    let mut cands: Vec<(usize, Observed, f64)> = h
        .iterations
        .iter()
        .filter_map(|r| match &r.outcome {
            IterationOutcome::Evaluated {
                observed,
                effectiveness,
                ..
            } => Some((r.iteration, *observed, effectiveness.cm)),
            _ => None,
        })
        .collect();
    if let IterationOutcome::Evaluated {
        observed,
        effectiveness,
        ..
    } = outcome
    {
        cands.push((n, *observed, effectiveness.cm));
    }
    let mut best: Option<(usize, f64)> = None;
    for (it, _, cm) in &cands {
        if best.is_none_or(|(_, b)| *cm > b) {
            best = Some((*it, *cm));
        }
    }
    let front = pareto_front(cands.iter().map(|c| &c.1), &Objective::DEFAULT)
        .into_iter()
        .map(|i| cands[i].0)
        .collect();
    (best.map(|b| b.0), front)
}
