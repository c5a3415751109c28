//! Progress bars: one for iterations, one for the epochs of the network being trained.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lemo::{Event, IterationOutcome, RunObserver};
use lemo_train::{EpochStats, TrainObserver};

/// Draws progress on stderr (hidden when stderr is not a terminal or with `--quiet`) and logs
/// each event with `tracing`.
pub struct Progress {
    iterations: ProgressBar,
    epochs: ProgressBar,
    _multi: MultiProgress,
}

impl Progress {
    /// Bars for a run of at most `iterations` iterations.
    pub fn new(iterations: usize, quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let it = multi.add(ProgressBar::new(iterations as u64));
        it.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        it.set_prefix("iteration");
        let ep = multi.add(ProgressBar::new(1));
        ep.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        ep.set_prefix("epoch");
        Self {
            iterations: it,
            epochs: ep,
            _multi: multi,
        }
    }
}

impl TrainObserver for Progress {
    fn on_epoch_start(&mut self, epoch: usize, epochs: usize) {
        self.epochs.set_length(epochs as u64);
        self.epochs.set_position(epoch as u64);
    }

    fn on_batch(&mut self, done: usize, total: usize) {
        self.epochs.set_message(format!("batch {done}/{total}"));
    }

    fn on_epoch_end(&mut self, stats: &EpochStats) {
        self.epochs.set_position(stats.epoch as u64 + 1);
        self.epochs.set_message(format!(
            "loss {:.3} acc {:.3} val {:.3}",
            stats.train_loss, stats.train_accuracy, stats.val_accuracy
        ));
        tracing::debug!(
            epoch = stats.epoch,
            val_accuracy = stats.val_accuracy,
            "epoch"
        );
    }

    fn on_phase(&mut self, phase: &str) {
        self.epochs.set_message(phase.to_string());
    }
}

impl RunObserver for Progress {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::IterationStarted { iteration, .. } => {
                self.iterations
                    .set_message(format!("#{iteration}: asking the architect"));
            }
            Event::Answer {
                iteration, round, ..
            } if *round > 0 => {
                self.iterations
                    .set_message(format!("#{iteration}: repair round {round}"));
            }
            Event::IterationFinished {
                iteration,
                outcome,
                best_iteration,
                seconds,
                ..
            } => {
                self.iterations.inc(1);
                let line = match outcome.as_ref() {
                    IterationOutcome::Evaluated {
                        observed,
                        effectiveness,
                        reused_from,
                        ..
                    } => format!(
                        "#{iteration}: A1 {:.3} A2 {:.3} F {:.0} P {} CM {:.4}{} ({seconds:.1} s)",
                        observed.a1,
                        observed.a2,
                        observed.fps,
                        observed.params,
                        effectiveness.cm,
                        if reused_from.is_some() {
                            " (duplicate, reused)"
                        } else {
                            ""
                        }
                    ),
                    IterationOutcome::Invalid { error, .. } => {
                        format!("#{iteration}: no valid network: {error}")
                    }
                    IterationOutcome::Failed { error, .. } => {
                        format!("#{iteration}: training failed: {error}")
                    }
                };
                tracing::info!("{line}");
                self.iterations.println(line);
                if let Some(b) = best_iteration {
                    self.iterations.set_message(format!("best so far: #{b}"));
                }
            }
            Event::SearchFinished { reason, .. } => {
                self.iterations
                    .finish_with_message(format!("search done: {reason}"));
            }
            Event::FinalStarted { iteration, .. } => {
                self.iterations.println(format!(
                    "retraining the best network (iteration {iteration})"
                ));
            }
            Event::FinalFinished { .. } => self.epochs.finish_and_clear(),
            Event::BaselineFinished { result } => {
                self.epochs.finish_and_clear();
                self.iterations.println(format!(
                    "baseline (iteration {}, final recipe): test accuracy {}",
                    result.iteration,
                    result
                        .observed
                        .test_accuracy
                        .map_or("not measured".into(), |a| format!("{:.2}%", a * 100.0))
                ));
            }
            Event::Warning { message } => tracing::warn!("{message}"),
            _ => {}
        }
    }
}
