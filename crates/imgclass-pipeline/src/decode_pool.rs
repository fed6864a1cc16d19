//! A bounded pool for CPU-heavy work (hashing, decoding, resizing).
//!
//! Decoding a JPEG takes about a millisecond of CPU: done on the async
//! runtime it would stall every connection sharing that worker. It runs on
//! tokio's blocking threads instead, but at most `threads` at a time, so a
//! burst of uploads queues here rather than spawning hundreds of threads
//! that fight the engines for the cores. One pool is shared by every model
//! of a process.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::deadline::Deadline;
use crate::error::PipelineError;

pub struct DecodePool {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl DecodePool {
    pub fn new(threads: usize) -> Self {
        DecodePool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            threads: threads.max(1),
        }
    }

    /// Most tasks running at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a blocking thread once a slot is free, giving up at the
    /// deadline. The slot stays taken until `f` returns, even if the caller
    /// stops waiting, so the bound holds.
    pub async fn run<T, F>(&self, deadline: Deadline, f: F) -> Result<T, PipelineError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            tokio::time::timeout_at(deadline.tokio(), self.permits.clone().acquire_owned())
                .await
                .map_err(|_| PipelineError::Timeout(deadline.budget))?
                .map_err(|_| PipelineError::Closed)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        });
        match tokio::time::timeout_at(deadline.tokio(), task).await {
            Err(_) => Err(PipelineError::Timeout(deadline.budget)),
            Ok(Err(join)) => Err(PipelineError::Internal(format!(
                "preprocessing task failed: {join}"
            ))),
            Ok(Ok(value)) => Ok(value),
        }
    }
}
