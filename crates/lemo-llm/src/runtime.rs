//! [`ArchitectRuntime`]: the one tokio runtime a synchronous caller keeps for an architect.

use std::future::Future;

use crate::LlmError;

/// A current-thread tokio runtime kept for as long as its owner asks an architect for
/// networks (the discovery loop keeps one per run). HTTP clients keep their connection pools,
/// and the tasks they spawn, on the runtime that made them: a runtime per request (what
/// [`crate::block_on`] does, for one-off calls) would drop them after every answer.
#[derive(Debug)]
pub struct ArchitectRuntime {
    runtime: tokio::runtime::Runtime,
}

impl ArchitectRuntime {
    /// A new runtime (timers and I/O enabled).
    pub fn new() -> Result<Self, LlmError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LlmError::Config(format!("cannot start the async runtime: {e}")))?;
        Ok(Self { runtime })
    }

    /// Runs an architect's future to completion on this runtime. Inside another async
    /// runtime, `.await` the future instead (this returns a configuration error there rather
    /// than panicking).
    pub fn block_on<T>(
        &self,
        future: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(LlmError::Config(
                "block_on called inside an async runtime; await the architect's future instead"
                    .into(),
            ));
        }
        self.runtime.block_on(future)
    }
}
