//! What a pipeline reports while it works, for metrics. The server
//! implements [`Observer`] per model; the CLI uses [`NoObserver`].

use std::time::Duration;

use crate::timings::Timings;

/// Why a queued image never reached the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The client stopped waiting (its reply channel closed).
    ClientGone,
    /// Its deadline passed while it waited.
    Deadline,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ClientGone => "client_gone",
            DropReason::Deadline => "deadline",
        }
    }
}

/// Called from decoding and engine threads: implementations must be cheap
/// and must not block.
pub trait Observer: Send + Sync {
    /// One image decoded, resized and normalised.
    fn preprocessed(&self, _took: Duration) {}
    /// One image left the queue for an engine call after waiting `waited`.
    fn dequeued(&self, _waited: Duration) {}
    /// One engine call of `size` images took `took`.
    fn batch(&self, _size: usize, _took: Duration) {}
    /// One queued image was skipped.
    fn dropped(&self, _reason: DropReason) {}
    /// One call of [`crate::Pipeline::classify`], `classify_all` or
    /// `infer_tensors` ended: `images` in it, `took` since the request
    /// arrived (its [`crate::Deadline`]'s start); `answered` holds the
    /// slowest image's time in each stage, `None` when it failed. Reported
    /// once per request, after every stage, so per-request statistics stay
    /// consistent with each other.
    fn finished(&self, _images: usize, _took: Duration, _answered: Option<&Timings>) {}
}

/// Reports nothing.
pub struct NoObserver;

impl Observer for NoObserver {}
