//! A bounded pool for CPU-heavy work (decoding, resizing, hashing).
//!
//! Decoding a JPEG takes about a millisecond of CPU: done on the async
//! runtime it would stall every connection sharing that worker. It runs on
//! tokio's blocking threads instead, but at most `threads` at a time, so a
//! burst of uploads queues here rather than spawning hundreds of threads
//! that fight the engine for the cores.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::ApiError;

pub(crate) struct BlockingPool {
    permits: Arc<Semaphore>,
}

impl BlockingPool {
    pub fn new(threads: usize) -> Self {
        BlockingPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `f` on a blocking thread once a slot is free, giving up with a
    /// timeout error at `deadline`. The slot stays taken until `f` returns,
    /// even if the caller stops waiting, so the bound holds.
    pub async fn run<T, F>(
        &self,
        deadline: Instant,
        timeout: std::time::Duration,
        f: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Timeout(timeout))?
            .map_err(|_| ApiError::internal("preprocessing pool closed"))?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        });
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => Err(ApiError::Timeout(timeout)),
            Ok(Err(join)) => Err(ApiError::internal(format!(
                "preprocessing task failed: {join}"
            ))),
            Ok(Ok(value)) => Ok(value),
        }
    }
}
