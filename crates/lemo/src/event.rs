//! The events of a run journal (one JSON object per line, tagged by `"type"`).
//!
//! The schema and the resume rules are documented in `docs/journal.md`.

use lemo_arch::{Graph, Task};
use lemo_energy::EnergyReport;
use lemo_expert::{Command, ResolvedCommand};
use lemo_llm::{Message, TokenUsage};
use lemo_metrics::{Effectiveness, Observed};
use lemo_train::Evaluation;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;

/// Version of the journal format written by this crate.
pub const JOURNAL_VERSION: u32 = 1;

/// Sizes of the data a run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Dataset name.
    pub name: String,
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// Where the test split comes from (`"dataset"` or `"held out from training (20%)"`).
    pub test_source: String,
}

/// What became of one answer of the architect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AnswerOutcome {
    /// A valid network.
    Valid {
        /// The network.
        graph: Graph,
        /// Its canonical hash (lemo-arch).
        hash: String,
        /// Trainable parameters.
        params: u64,
        /// Multiply-accumulates per image.
        macs: u64,
        /// What the reader had to repair, or what the offline architect did.
        notes: Vec<String>,
    },
    /// No usable network: the error sent back in a repair round.
    Invalid {
        /// A stable kind (`empty`, `shape`, `no_json`, ...).
        kind: String,
        /// The exact error text.
        error: String,
    },
}

/// How an iteration ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IterationOutcome {
    /// A network was trained (or its earlier result reused) and measured.
    Evaluated {
        /// The network.
        graph: Graph,
        /// Its canonical hash.
        hash: String,
        /// The iteration whose result was reused for this duplicate network, if any.
        reused_from: Option<usize>,
        /// A1, A2, E1, E2, F, P and the rest.
        observed: Observed,
        /// CM (equation 1) and its parts.
        effectiveness: Effectiveness,
        /// Whether training diverged (the candidate then has accuracies 0).
        diverged: bool,
    },
    /// Every repair round failed: no network this iteration.
    Invalid {
        /// The last error.
        error: String,
        /// Repair rounds spent.
        repair_rounds: usize,
    },
    /// The network could not be trained (a trainer error, not divergence).
    Failed {
        /// The network.
        graph: Graph,
        /// The trainer's error.
        error: String,
    },
}

/// One candidate of an iteration with k > 1 candidates (or with an executor other than
/// `in_process`), as the closing event lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateOutcome {
    /// 0-based index of the candidate within its iteration.
    pub candidate: usize,
    /// How it ended (as an iteration's outcome: evaluated, invalid or failed).
    pub outcome: IterationOutcome,
}

/// `serde` helper: leave a 0 candidate index out of the journal, so a k = 1 run writes the
/// same lines as before candidates existed.
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why the search stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The configured number of iterations ran.
    Iterations {
        /// How many.
        iterations: usize,
    },
    /// The wall-clock budget was spent, or what was left of it was expected to be too short
    /// for the next iteration (`termination.whole_iterations`; with `fit_candidates`, for one
    /// candidate of it).
    WallClock {
        /// Seconds spent.
        seconds: f64,
        /// When budget was left: the next iteration's expected seconds (one candidate's with
        /// `termination.fit_candidates`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_next: Option<f64>,
        /// When budget was left: the seconds left of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<f64>,
        /// Whether `expected_next` is one candidate's seconds (`termination.fit_candidates`)
        /// rather than the whole iteration's.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        one_candidate: bool,
    },
    /// The energy budget was spent.
    Energy {
        /// kWh spent.
        kwh: f64,
    },
    /// A candidate met every target metric.
    Targets {
        /// Which iteration.
        iteration: usize,
    },
    /// A candidate met every threshold of the user's metrics (no rule fired) and the user asked
    /// the search to stop then (`termination.stop_when_thresholds_met`).
    TargetsMet {
        /// Which iteration.
        iteration: usize,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Iterations { iterations } => write!(f, "{iterations} iterations done"),
            StopReason::WallClock {
                seconds,
                expected_next: Some(next),
                left: Some(left),
                one_candidate,
            } => write!(
                f,
                "wall-clock budget: {} (~{next:.0} s expected) would not fit in the {left:.0} s \
                 left ({seconds:.0} s spent)",
                if *one_candidate {
                    "one candidate of the next iteration"
                } else {
                    "the next iteration"
                }
            ),
            StopReason::WallClock { seconds, .. } => {
                write!(f, "wall-clock budget spent ({seconds:.0} s)")
            }
            StopReason::Energy { kwh } => write!(f, "energy budget spent ({kwh:.3e} kWh)"),
            StopReason::Targets { iteration } => {
                write!(f, "iteration {iteration} met every target")
            }
            StopReason::TargetsMet { iteration } => {
                write!(
                    f,
                    "iteration {iteration} met every threshold (no rule fired)"
                )
            }
        }
    }
}

/// The final training of the best network and its measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalResult {
    /// The search iteration the network comes from.
    pub iteration: usize,
    /// The network.
    pub graph: Graph,
    /// Its canonical hash.
    pub hash: String,
    /// The retraining's evaluation (test accuracy, FPS, energy windows).
    pub evaluation: Evaluation,
    /// Metrics of the retrained network.
    pub observed: Observed,
    /// Inference energy per image in joules (measured over a window of at least a second).
    pub inference_joules_per_image: Option<f64>,
    /// The window the per-image figure comes from.
    pub inference_energy: Option<EnergyReport>,
    /// Where the weights and graph were saved, relative to the run directory (`None`: the
    /// trainer cannot save).
    pub weights_dir: Option<String>,
    /// The network was trained on the validation images too (`final.with_validation`): its
    /// validation accuracy is not a held-out measure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trained_on_validation: bool,
}

/// One journal event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The run started: configuration and what was composed.
    RunStarted {
        /// Journal format version.
        version: u32,
        /// The whole configuration.
        config: Box<RunConfig>,
        /// The task (input shape, classes, limits).
        task: Task,
        /// The data.
        data: DataSummary,
        /// Architect name.
        architect: String,
        /// Trainer name.
        trainer: String,
        /// Energy meter description (sources chosen).
        meter: String,
        /// Rule book name.
        rulebook: String,
    },
    /// A killed run was resumed; events after the last closed iteration are void.
    Resumed {
        /// Iterations already finished.
        finished_iterations: usize,
        /// A torn last line that was dropped, if any.
        torn_tail: bool,
    },
    /// The executor that evaluates the candidates (written at each start and resume of a
    /// run whose `[executor] kind` is not `in_process`).
    ExecutorStarted {
        /// `processes` or `slurm`.
        executor: String,
        /// Most jobs at once.
        capacity: usize,
        /// The worker, the placement, the `sbatch` arguments.
        detail: String,
    },
    /// An iteration started.
    IterationStarted {
        /// 1-based iteration number.
        iteration: usize,
        /// The iteration's seed (derived from the run seed and the number).
        seed: u64,
        /// The resolved instructions given to the architect (`None` for the first network).
        command: Option<ResolvedCommand>,
    },
    /// An exchange with the architect: the prompt, the raw answer and what became of it.
    Answer {
        /// Iteration.
        iteration: usize,
        /// 0 for the proposal, 1.. for repair rounds.
        round: usize,
        /// `initial`, `next` or `repair`.
        kind: String,
        /// The conversation sent.
        prompt: Vec<Message>,
        /// The raw answer.
        raw: String,
        /// Tokens spent.
        usage: Option<TokenUsage>,
        /// Milliseconds the answer took.
        latency_ms: u64,
        /// The parsed network and its hash, or the exact error.
        outcome: AnswerOutcome,
        /// The candidate the answer is for (0-based; absent for the first).
        #[serde(default, skip_serializing_if = "is_zero")]
        candidate: usize,
    },
    /// The proposal of one candidate is settled (after its repair and novelty rounds): the
    /// network the iteration evaluates for it, or why there is none. Written when an
    /// iteration has several candidates or an executor other than `in_process`; resume starts
    /// an unfinished iteration after its settled candidates.
    CandidateProposed {
        /// Iteration.
        iteration: usize,
        /// 0-based candidate index.
        candidate: usize,
        /// Repair and novelty rounds spent on it.
        repair_rounds: usize,
        /// The network and its hash, or the last error.
        outcome: AnswerOutcome,
    },
    /// A candidate's evaluation job was handed to the executor (`lemo evaluate JOB RESULT`).
    JobSubmitted {
        /// Iteration.
        iteration: usize,
        /// 0-based candidate index.
        candidate: usize,
        /// Canonical hash of the network.
        hash: String,
        /// 1 for the first submission, 2.. for resubmissions.
        attempt: u32,
        /// `processes` or `slurm`.
        executor: String,
        /// The process id (`processes`) or the SLURM job id.
        job_id: String,
        /// The job file, relative to the run directory.
        job: String,
    },
    /// The executor reported a new state of a job (SLURM's state names: `PENDING`, `RUNNING`,
    /// `COMPLETED`, `NODE_FAIL`, ...; local processes: `RUNNING`, `EXITED`, `LOST`).
    JobState {
        /// Iteration.
        iteration: usize,
        /// 0-based candidate index.
        candidate: usize,
        /// The job.
        job_id: String,
        /// The state.
        state: String,
        /// What the loop does about it (`resubmitted`, `failed`, `re-attached`, ...), if
        /// anything.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// A candidate could not be evaluated: the trainer failed on it, or its worker ended
    /// without a result (after the resubmissions allowed). The search goes on.
    CandidateFailed {
        /// Iteration.
        iteration: usize,
        /// 0-based candidate index.
        candidate: usize,
        /// Canonical hash of the network.
        hash: String,
        /// Why.
        error: String,
    },
    /// A network was trained and measured (or a duplicate's earlier result reused).
    Evaluated {
        /// Iteration.
        iteration: usize,
        /// Canonical hash of the network.
        hash: String,
        /// The iteration whose result was reused, for a duplicate network.
        reused_from: Option<usize>,
        /// The trainer's evaluation (history, accuracies, energy windows with their sources).
        evaluation: Box<Evaluation>,
        /// The candidate evaluated (0-based; absent for the first).
        #[serde(default, skip_serializing_if = "is_zero")]
        candidate: usize,
    },
    /// The expert system's advice on the iteration's network.
    Advised {
        /// Iteration.
        iteration: usize,
        /// Rules that fired.
        fired: Vec<String>,
        /// Algorithm 2's weighted instructions.
        command: Command,
        /// Algorithm 3's resolution, heaviest first.
        resolved: ResolvedCommand,
        /// The text the next prompt carries.
        rendered: String,
    },
    /// The closing event of an iteration: once synced, the iteration counts.
    IterationFinished {
        /// Iteration.
        iteration: usize,
        /// What happened.
        outcome: Box<IterationOutcome>,
        /// The command for the next iteration.
        next_command: Option<ResolvedCommand>,
        /// Best iteration so far by CM.
        best_iteration: Option<usize>,
        /// Iterations on the Pareto front so far.
        pareto_front: Vec<usize>,
        /// Wall-clock seconds of the iteration.
        seconds: f64,
        /// Energy measured during the iteration, kWh (before PUE).
        kwh: f64,
        /// The candidate whose network is the iteration's (the best by CM; absent for the
        /// first).
        #[serde(default, skip_serializing_if = "is_zero")]
        candidate: usize,
        /// Every candidate's outcome, when the iteration had several or used an executor
        /// (absent otherwise).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<CandidateOutcome>,
    },
    /// The search stopped.
    SearchFinished {
        /// Why.
        reason: StopReason,
        /// The best iteration by CM, if any network was evaluated.
        best_iteration: Option<usize>,
    },
    /// The final training of the best network started.
    FinalStarted {
        /// The search iteration it comes from.
        iteration: usize,
        /// Its hash.
        hash: String,
    },
    /// The final training finished and was measured.
    FinalFinished {
        /// Everything measured.
        result: Box<FinalResult>,
    },
    /// The baseline finished: the run's first network trained with the final recipe, for
    /// comparison with the best one (`[final] baseline = true`).
    BaselineFinished {
        /// Everything measured (`iteration` is the first network's).
        result: Box<FinalResult>,
    },
    /// A non-fatal problem worth keeping (e.g. the final training failed).
    Warning {
        /// What happened.
        message: String,
    },
    /// The run ended.
    RunFinished {
        /// Why the search stopped.
        reason: StopReason,
        /// Best search iteration.
        best_iteration: Option<usize>,
    },
}
