//! [`RunHistory`]: the state of a run rebuilt from its journal alone (for resume and reports).
//!
//! An iteration counts once its `iteration_finished` event is in the journal. Events of an
//! iteration that never closed (the process was killed) are ignored: that iteration runs again
//! on resume, with the same seed.

use std::collections::BTreeMap;
use std::path::Path;

use lemo_arch::Task;
use lemo_expert::ResolvedCommand;
use lemo_train::Evaluation;

use crate::config::{RunConfig, SearchBase};
use crate::event::{
    AnswerOutcome, CandidateOutcome, DataSummary, Event, FinalResult, IterationOutcome, StopReason,
};
use crate::journal::{Entry, JournalError, read_journal};

/// One finished iteration, as the journal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationRecord {
    /// 1-based number.
    pub iteration: usize,
    /// The iteration's seed.
    pub seed: u64,
    /// Instructions given to the architect (none for the first network).
    pub command: Option<ResolvedCommand>,
    /// Every answer of the architect (proposal and repair rounds), in order.
    pub answers: Vec<Event>,
    /// The trainer's evaluation, when a network was trained or reused.
    pub evaluation: Option<Evaluation>,
    /// The expert system's advice (the `advised` event), when a network was evaluated.
    pub advice: Option<Event>,
    /// How it ended.
    pub outcome: IterationOutcome,
    /// Command for the next iteration.
    pub next_command: Option<ResolvedCommand>,
    /// Best iteration so far.
    pub best_iteration: Option<usize>,
    /// Pareto front so far.
    pub pareto_front: Vec<usize>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Energy measured, kWh (before PUE).
    pub kwh: f64,
    /// The candidate whose network is the iteration's (0 with one candidate).
    pub chosen: usize,
    /// Every candidate, when the iteration had several or used an executor (empty otherwise:
    /// the iteration's outcome is its only candidate).
    pub candidates: Vec<CandidateRecord>,
}

/// One candidate of a finished iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRecord {
    /// 0-based index within the iteration.
    pub candidate: usize,
    /// How it ended.
    pub outcome: IterationOutcome,
    /// Its evaluation, when it was trained (or reused).
    pub evaluation: Option<Evaluation>,
    /// The jobs that evaluated it (empty in process), in submission order.
    pub jobs: Vec<JobRecord>,
    /// The architect's notes on its network (the offline architect: the edits it made).
    pub notes: Vec<String>,
}

/// One submission of a candidate's evaluation job, and the last state the executor reported.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// 1 for the first submission, 2.. for resubmissions.
    pub attempt: u32,
    /// `processes` or `slurm`.
    pub executor: String,
    /// Process id or SLURM job id.
    pub job_id: String,
    /// The last state reported (`SUBMITTED` until one is).
    pub state: String,
}

/// A candidate of the iteration in progress, as far as the journal tells it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CandidateInProgress {
    /// Its settled proposal (`candidate_proposed`) and the rounds it took, once written.
    pub proposed: Option<(AnswerOutcome, usize)>,
    /// Its evaluation and the iteration it was reused from, once written.
    pub evaluated: Option<(Evaluation, Option<usize>)>,
    /// Why it could not be evaluated, once written.
    pub failed: Option<String>,
    /// Its jobs so far.
    pub jobs: Vec<JobRecord>,
}

/// The iteration in progress: opened by `iteration_started`, not closed yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IterationInProgress {
    /// 1-based number.
    pub iteration: usize,
    /// Its seed.
    pub seed: u64,
    /// Instructions given to the architect.
    pub command: Option<ResolvedCommand>,
    /// Every answer so far.
    pub answers: Vec<Event>,
    /// Candidate 0's evaluation (the only one with one candidate in process).
    pub evaluation: Option<Evaluation>,
    /// The expert system's advice, once written.
    pub advice: Option<Event>,
    /// Its candidates so far, by index.
    pub candidates: BTreeMap<usize, CandidateInProgress>,
    /// Unix time (ms) the iteration opened.
    pub started_unix_ms: u64,
    /// Unix time (ms) of its last event.
    pub last_unix_ms: u64,
}

impl IterationInProgress {
    /// Whether a resume continues this iteration where it stopped (some candidate proposal
    /// is settled) instead of running it again from the start.
    pub fn resumable(&self) -> bool {
        self.candidates.values().any(|c| c.proposed.is_some())
    }
}

impl IterationRecord {
    /// Repair (and novelty) rounds spent in this iteration, over all its candidates.
    pub fn repair_rounds(&self) -> usize {
        self.answers
            .iter()
            .filter(|e| matches!(e, Event::Answer { round, .. } if *round > 0))
            .count()
    }

    /// A one-line summary: the metrics and CM, or why there is no network.
    pub fn outcome_line(&self) -> String {
        match &self.outcome {
            IterationOutcome::Evaluated {
                observed: o,
                effectiveness,
                reused_from,
                ..
            } => format!(
                "A1 {:.4} A2 {:.4} F {:.0} img/s P {} CM {:.4}{}",
                o.a1,
                o.a2,
                o.fps,
                o.params,
                effectiveness.cm,
                reused_from.map_or(String::new(), |i| format!(" (duplicate of {i})"))
            ),
            IterationOutcome::Invalid {
                error,
                repair_rounds,
            } => format!("no valid network after {repair_rounds} repair round(s): {error}"),
            IterationOutcome::Failed { error, .. } => format!("training failed: {error}"),
        }
    }
}

/// What `run_started` recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// The configuration.
    pub config: RunConfig,
    /// The task.
    pub task: Task,
    /// The data.
    pub data: DataSummary,
    /// Architect name.
    pub architect: String,
    /// Trainer name.
    pub trainer: String,
    /// Energy meter description.
    pub meter: String,
    /// Rule book name.
    pub rulebook: String,
    /// Unix time (ms) of the start.
    pub unix_ms: u64,
}

/// A run's state rebuilt from its journal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunHistory {
    /// The start event, if the journal has one.
    pub start: Option<RunStart>,
    /// Finished iterations in order.
    pub iterations: Vec<IterationRecord>,
    /// Why and where the search stopped, once it did.
    pub search_finished: Option<(StopReason, Option<usize>)>,
    /// The final training's result, once finished.
    pub final_result: Option<FinalResult>,
    /// The baseline's result (the first network, final recipe), once finished.
    pub baseline: Option<FinalResult>,
    /// Whether the run finished.
    pub finished: bool,
    /// Times the run was resumed.
    pub resumes: usize,
    /// Warnings recorded.
    pub warnings: Vec<String>,
    /// Unix time (ms) of the last entry.
    pub last_unix_ms: u64,
    /// Entries in the journal.
    pub entries: usize,
    /// The executor of the run's last start, as `executor_started` describes it (`None`: in
    /// process).
    pub executor: Option<String>,
    /// The iteration in progress (opened, not closed yet).
    pub in_progress: Option<IterationInProgress>,
}

/// Errors of rebuilding a run from its journal.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal has no `run_started` event.
    #[error("the journal has no run_started event")]
    NotStarted,
}

impl RunHistory {
    /// Reads the journal file and rebuilds the run (a torn last line is ignored).
    pub fn load(journal: &Path) -> Result<Self, HistoryError> {
        let contents = read_journal::<Event>(journal)?;
        let history = Self::from_entries(&contents.entries);
        if history.start.is_none() {
            return Err(HistoryError::NotStarted);
        }
        Ok(history)
    }

    /// Rebuilds the run from journal entries.
    pub fn from_entries(entries: &[Entry<Event>]) -> Self {
        let mut h = Self::default();
        for entry in entries {
            h.apply(entry);
        }
        h
    }

    /// Applies one more journal entry.
    pub fn apply(&mut self, entry: &Entry<Event>) {
        let h = self;
        h.entries += 1;
        h.last_unix_ms = entry.unix_ms;
        let pending = &mut h.in_progress;
        if let Some(p) = pending.as_mut() {
            p.last_unix_ms = entry.unix_ms;
        }
        {
            match &entry.event {
                Event::RunStarted {
                    config,
                    task,
                    data,
                    architect,
                    trainer,
                    meter,
                    rulebook,
                    ..
                } => {
                    h.start = Some(RunStart {
                        config: (**config).clone(),
                        task: task.clone(),
                        data: data.clone(),
                        architect: architect.clone(),
                        trainer: trainer.clone(),
                        meter: meter.clone(),
                        rulebook: rulebook.clone(),
                        unix_ms: entry.unix_ms,
                    });
                }
                Event::Resumed { .. } => {
                    h.resumes += 1;
                    // An iteration with a settled candidate goes on where it stopped; any
                    // other unfinished iteration is void and runs again.
                    if !pending.as_ref().is_some_and(IterationInProgress::resumable) {
                        *pending = None;
                    }
                }
                Event::IterationStarted {
                    iteration,
                    seed,
                    command,
                } => {
                    *pending = Some(IterationInProgress {
                        iteration: *iteration,
                        seed: *seed,
                        command: command.clone(),
                        started_unix_ms: entry.unix_ms,
                        last_unix_ms: entry.unix_ms,
                        ..IterationInProgress::default()
                    });
                }
                Event::CandidateProposed {
                    iteration,
                    candidate,
                    repair_rounds,
                    outcome,
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.candidates.entry(*candidate).or_default().proposed =
                            Some((outcome.clone(), *repair_rounds));
                    }
                }
                Event::JobSubmitted {
                    iteration,
                    candidate,
                    attempt,
                    executor,
                    job_id,
                    ..
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.candidates
                            .entry(*candidate)
                            .or_default()
                            .jobs
                            .push(JobRecord {
                                attempt: *attempt,
                                executor: executor.clone(),
                                job_id: job_id.clone(),
                                state: "SUBMITTED".into(),
                            });
                    }
                }
                Event::JobState {
                    iteration,
                    candidate,
                    job_id,
                    state,
                    ..
                } => {
                    if let Some(job) = pending
                        .as_mut()
                        .filter(|p| p.iteration == *iteration)
                        .and_then(|p| p.candidates.get_mut(candidate))
                        .and_then(|c| c.jobs.iter_mut().rev().find(|j| j.job_id == *job_id))
                    {
                        job.state = state.clone();
                    }
                }
                Event::CandidateFailed {
                    iteration,
                    candidate,
                    error,
                    ..
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.candidates.entry(*candidate).or_default().failed = Some(error.clone());
                    }
                }
                e @ Event::Answer { iteration, .. } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.answers.push(e.clone());
                    }
                }
                Event::Evaluated {
                    iteration,
                    evaluation,
                    candidate,
                    reused_from,
                    ..
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        if *candidate == 0 {
                            p.evaluation = Some((**evaluation).clone());
                        }
                        p.candidates.entry(*candidate).or_default().evaluated =
                            Some(((**evaluation).clone(), *reused_from));
                    }
                }
                e @ Event::Advised { iteration, .. } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.advice = Some(e.clone());
                    }
                }
                Event::IterationFinished {
                    iteration,
                    outcome,
                    next_command,
                    best_iteration,
                    pareto_front,
                    seconds,
                    kwh,
                    candidate: chosen,
                    candidates,
                } => {
                    let p = pending
                        .take()
                        .filter(|p| p.iteration == *iteration)
                        .unwrap_or_default();
                    let candidates = candidate_records(&p, candidates);
                    let evaluation = if candidates.is_empty() {
                        p.evaluation
                    } else {
                        candidates
                            .iter()
                            .find(|c| c.candidate == *chosen)
                            .and_then(|c| c.evaluation.clone())
                    };
                    // A closing event without its opening one would be a foreign journal; keep
                    // what it says.
                    h.iterations.retain(|r| r.iteration != *iteration);
                    h.iterations.push(IterationRecord {
                        iteration: *iteration,
                        seed: p.seed,
                        command: p.command,
                        answers: p.answers,
                        evaluation,
                        advice: p.advice,
                        outcome: (**outcome).clone(),
                        next_command: next_command.clone(),
                        best_iteration: *best_iteration,
                        pareto_front: pareto_front.clone(),
                        seconds: *seconds,
                        kwh: *kwh,
                        chosen: *chosen,
                        candidates,
                    });
                }
                Event::SearchFinished {
                    reason,
                    best_iteration,
                } => h.search_finished = Some((reason.clone(), *best_iteration)),
                Event::FinalStarted { .. } => {}
                Event::ExecutorStarted {
                    executor, detail, ..
                } => h.executor = Some(format!("{executor}: {detail}")),
                Event::FinalFinished { result } => h.final_result = Some((**result).clone()),
                Event::BaselineFinished { result } => h.baseline = Some((**result).clone()),
                Event::Warning { message } => h.warnings.push(message.clone()),
                Event::RunFinished { .. } => h.finished = true,
            }
        }
    }

    /// The iteration record with this number.
    pub fn iteration(&self, n: usize) -> Option<&IterationRecord> {
        self.iterations.iter().find(|r| r.iteration == n)
    }

    /// The best iteration by CM so far (from the last closing event).
    pub fn best_iteration(&self) -> Option<usize> {
        self.iterations.last().and_then(|r| r.best_iteration)
    }

    /// The evaluated iteration whose network iteration `n`'s candidates start from under
    /// `base`: the best by CM before `n` (`best`), or the last evaluated one before `n`
    /// (`previous`, and `best` before any best is known). `None` before any network was
    /// evaluated.
    pub fn base_for(&self, base: SearchBase, n: usize) -> Option<&IterationRecord> {
        let evaluated =
            |r: &&IterationRecord| matches!(r.outcome, IterationOutcome::Evaluated { .. });
        let before = || self.iterations.iter().filter(|r| r.iteration < n).rev();
        let last = || before().find(evaluated);
        match base {
            SearchBase::Previous => last(),
            SearchBase::Best => before()
                .next()
                .and_then(|r| r.best_iteration)
                .and_then(|b| self.iteration(b))
                .filter(evaluated)
                .or_else(last),
        }
    }

    /// Wall-clock seconds spent in finished iterations.
    pub fn search_seconds(&self) -> f64 {
        self.iterations.iter().map(|r| r.seconds).sum()
    }

    /// Energy measured in finished iterations, kWh (before PUE).
    pub fn search_kwh(&self) -> f64 {
        self.iterations.iter().map(|r| r.kwh).sum()
    }

    /// The evaluation of the network with this canonical hash: the first iteration that
    /// trained it (as the iteration's network or as one of its candidates), and what it
    /// measured.
    pub fn evaluation_of(&self, hash: &str) -> Option<(usize, &Evaluation)> {
        let matches = |o: &IterationOutcome| matches!(o, IterationOutcome::Evaluated { hash: h, .. } if h == hash);
        self.iterations.iter().find_map(|r| {
            if r.candidates.is_empty() {
                r.evaluation
                    .as_ref()
                    .filter(|_| matches(&r.outcome))
                    .map(|ev| (r.iteration, ev))
            } else {
                r.candidates.iter().find_map(|c| {
                    c.evaluation
                        .as_ref()
                        .filter(|_| matches(&c.outcome))
                        .map(|ev| (r.iteration, ev))
                })
            }
        })
    }
}

/// The candidates of a closing iteration, with the evaluations and jobs its events recorded.
fn candidate_records(p: &IterationInProgress, closed: &[CandidateOutcome]) -> Vec<CandidateRecord> {
    closed
        .iter()
        .map(|c| {
            let seen = p.candidates.get(&c.candidate);
            CandidateRecord {
                candidate: c.candidate,
                outcome: c.outcome.clone(),
                evaluation: seen
                    .and_then(|s| s.evaluated.as_ref())
                    .map(|(ev, _)| ev.clone())
                    .filter(|_| matches!(c.outcome, IterationOutcome::Evaluated { .. })),
                jobs: seen.map(|s| s.jobs.clone()).unwrap_or_default(),
                notes: match seen.and_then(|s| s.proposed.as_ref()) {
                    Some((AnswerOutcome::Valid { notes, .. }, _)) => notes.clone(),
                    _ => Vec::new(),
                },
            }
        })
        .collect()
}
