//! The pipeline shared by `/classify` and KServe infer: admission, decoding
//! on the bounded pool, the batch queue, and answers with their timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imgclass_core::ImageFormat;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use crate::batcher::{BatchError, Scored};
use crate::error::ApiError;
use crate::state::{AppState, Serving};

/// A decoded upload ready for the engine.
pub struct Prepared {
    /// sha256 of the bytes, lowercase hex: the image id.
    pub id: String,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub tensor: Vec<f32>,
}

/// Admits `n` images into the pipeline or refuses at once with 503: the
/// bound covers decoding, the queue and the engine, so overload is refused
/// before any decoding work is spent on it.
pub fn admit(serving: &Serving, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    let n = u32::try_from(n).map_err(|_| ApiError::QueueFull)?;
    serving
        .admission
        .clone()
        .try_acquire_many_owned(n)
        .map_err(|_| ApiError::QueueFull)
}

/// Hashes, probes and preprocesses one upload on the blocking pool.
/// `index` names the image in a batch for error messages.
pub async fn prepare(
    state: &AppState,
    serving: &Arc<Serving>,
    bytes: Bytes,
    deadline: Instant,
    index: Option<usize>,
) -> Result<Prepared, ApiError> {
    let serving = serving.clone();
    let metrics = state.metrics().clone();
    let timeout = state.options().request_timeout;
    state
        .preprocess_pool()
        .run(
            tokio::time::Instant::from_std(deadline),
            timeout,
            move || {
                let started = Instant::now();
                let id = hex::encode(Sha256::digest(&bytes));
                let p = serving
                    .preprocessor
                    .preprocess(&bytes)
                    .map_err(|error| ApiError::Image { index, error })?;
                metrics.observe_preprocess(started.elapsed());
                Ok(Prepared {
                    id,
                    format: p.format,
                    width: p.width,
                    height: p.height,
                    tensor: p.tensor,
                })
            },
        )
        .await?
}

/// Preprocesses several uploads in parallel on the pool, in order.
pub async fn prepare_all(
    state: &AppState,
    serving: &Arc<Serving>,
    images: Vec<Bytes>,
    deadline: Instant,
) -> Result<Vec<Prepared>, ApiError> {
    if images.len() == 1 {
        let one = images.into_iter().next().expect("one image");
        return Ok(vec![prepare(state, serving, one, deadline, None).await?]);
    }
    let handles: Vec<_> = images
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let (state, serving) = (state.clone(), serving.clone());
            tokio::spawn(async move { prepare(&state, &serving, bytes, deadline, Some(i)).await })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .map_err(|e| ApiError::internal(format!("preprocessing task: {e}")))??,
        );
    }
    Ok(out)
}

/// Queues tensors and waits for their answers until `deadline`. If any
/// cannot be queued, none is answered: the others are dropped and the
/// workers skip them.
pub async fn infer(
    state: &AppState,
    serving: &Serving,
    tensors: Vec<Vec<f32>>,
    deadline: Instant,
) -> Result<Vec<Scored>, ApiError> {
    let timeout = state.options().request_timeout;
    let mut pending = Vec::with_capacity(tensors.len());
    for t in tensors {
        pending.push(
            serving
                .batcher
                .submit(t, deadline)
                .map_err(batch_error(timeout))?,
        );
    }
    let wait = async {
        let mut out = Vec::with_capacity(pending.len());
        for rx in pending {
            let answer = rx
                .await
                .map_err(|_| ApiError::internal("an engine worker stopped"))?;
            out.push(answer.map_err(batch_error(timeout))?);
        }
        Ok(out)
    };
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), wait)
        .await
        .map_err(|_| ApiError::Timeout(timeout))?
}

fn batch_error(timeout: Duration) -> impl Fn(BatchError) -> ApiError {
    move |e| match e {
        BatchError::QueueFull => ApiError::QueueFull,
        BatchError::Closed => ApiError::ShuttingDown,
        BatchError::Expired => ApiError::Timeout(timeout),
        BatchError::Engine(detail) => ApiError::internal(detail),
    }
}

/// Timing headers for a set of answers: the longest queue wait and engine call.
pub fn timings(scored: &[Scored]) -> (Duration, Duration) {
    let queue = scored
        .iter()
        .map(|s| s.queue_time)
        .max()
        .unwrap_or_default();
    let inference = scored
        .iter()
        .map(|s| s.inference_time)
        .max()
        .unwrap_or_default();
    (queue, inference)
}
