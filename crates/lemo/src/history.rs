//! [`RunHistory`]: the state of a run rebuilt from its journal alone (for resume and reports).
//!
//! An iteration counts once its `iteration_finished` event is in the journal. Events of an
//! iteration that never closed (the process was killed) are ignored: that iteration runs again
//! on resume, with the same seed.

use std::path::Path;

use lemo_arch::Task;
use lemo_expert::ResolvedCommand;
use lemo_train::Evaluation;

use crate::config::RunConfig;
use crate::event::{DataSummary, Event, FinalResult, IterationOutcome, StopReason};
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
}

impl IterationRecord {
    /// Repair rounds spent in this iteration.
    pub fn repair_rounds(&self) -> usize {
        self.answers.len().saturating_sub(1)
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
    /// The iteration in progress (opened, not closed yet).
    pending: Option<Pending>,
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

#[derive(Debug, Clone, PartialEq, Default)]
struct Pending {
    iteration: usize,
    seed: u64,
    command: Option<ResolvedCommand>,
    answers: Vec<Event>,
    evaluation: Option<Evaluation>,
    advice: Option<Event>,
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
        let pending = &mut h.pending;
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
                    *pending = None;
                }
                Event::IterationStarted {
                    iteration,
                    seed,
                    command,
                } => {
                    *pending = Some(Pending {
                        iteration: *iteration,
                        seed: *seed,
                        command: command.clone(),
                        ..Pending::default()
                    });
                }
                e @ Event::Answer { iteration, .. } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.answers.push(e.clone());
                    }
                }
                Event::Evaluated {
                    iteration,
                    evaluation,
                    ..
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.iteration == *iteration) {
                        p.evaluation = Some((**evaluation).clone());
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
                } => {
                    let p = pending
                        .take()
                        .filter(|p| p.iteration == *iteration)
                        .unwrap_or_default();
                    // A closing event without its opening one would be a foreign journal; keep
                    // what it says.
                    h.iterations.retain(|r| r.iteration != *iteration);
                    h.iterations.push(IterationRecord {
                        iteration: *iteration,
                        seed: p.seed,
                        command: p.command,
                        answers: p.answers,
                        evaluation: p.evaluation,
                        advice: p.advice,
                        outcome: (**outcome).clone(),
                        next_command: next_command.clone(),
                        best_iteration: *best_iteration,
                        pareto_front: pareto_front.clone(),
                        seconds: *seconds,
                        kwh: *kwh,
                    });
                }
                Event::SearchFinished {
                    reason,
                    best_iteration,
                } => h.search_finished = Some((reason.clone(), *best_iteration)),
                Event::FinalStarted { .. } => {}
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

    /// Wall-clock seconds spent in finished iterations.
    pub fn search_seconds(&self) -> f64 {
        self.iterations.iter().map(|r| r.seconds).sum()
    }

    /// Energy measured in finished iterations, kWh (before PUE).
    pub fn search_kwh(&self) -> f64 {
        self.iterations.iter().map(|r| r.kwh).sum()
    }

    /// The evaluation of the network with this canonical hash: the first iteration that
    /// trained it, and what it measured.
    pub fn evaluation_of(&self, hash: &str) -> Option<(usize, &Evaluation)> {
        self.iterations
            .iter()
            .find_map(|r| match (&r.outcome, &r.evaluation) {
                (IterationOutcome::Evaluated { hash: h, .. }, Some(ev)) if h == hash => {
                    Some((r.iteration, ev))
                }
                _ => None,
            })
    }
}
