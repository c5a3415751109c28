//! A background thread that calls a sampling function at a fixed interval until stopped.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::EnergyError;

/// A running sampling thread owning its state `S`; [`Sampler::stop`] returns the state.
///
/// Dropping a sampler without stopping it ends the thread at its next wake-up.
pub(crate) struct Sampler<S> {
    stop: Sender<()>,
    handle: JoinHandle<S>,
}

impl<S: Send + 'static> Sampler<S> {
    /// Starts a thread that calls `tick(&mut state)` every `interval`.
    pub(crate) fn spawn(
        interval: Duration,
        mut state: S,
        mut tick: impl FnMut(&mut S) + Send + 'static,
    ) -> Result<Self, EnergyError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("lemo-energy-sampler".to_string())
            .spawn(move || {
                // A stop message or a dropped sender ends the loop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    tick(&mut state);
                }
                state
            })
            .map_err(|e| EnergyError::Sampler(format!("cannot start: {e}")))?;
        Ok(Self { stop, handle })
    }

    /// Stops the thread and returns its state.
    pub(crate) fn stop(self) -> Result<S, EnergyError> {
        // The thread may already have ended; a failed send is fine.
        let _ = self.stop.send(());
        self.handle
            .join()
            .map_err(|_| EnergyError::Sampler("the sampling thread panicked".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_until_stopped() -> Result<(), EnergyError> {
        let sampler = Sampler::spawn(Duration::from_millis(2), 0u32, |n| *n += 1)?;
        std::thread::sleep(Duration::from_millis(60));
        let ticks = sampler.stop()?;
        assert!(ticks >= 3, "only {ticks} ticks in 60 ms at 2 ms");
        Ok(())
    }
}
