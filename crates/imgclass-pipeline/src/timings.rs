//! Where the time of an answer went, stage by stage.

use std::time::Duration;

/// Where the time of one answer went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Hashing, decoding, resizing and normalising (zero for tensors).
    pub preprocess: Duration,
    /// From entering the queue to the start of its engine call.
    pub queue: Duration,
    /// The engine call that ran it.
    pub inference: Duration,
    /// Turning its scores into probabilities.
    pub postprocess: Duration,
    /// Images in that engine call.
    pub batch_size: usize,
}

impl Timings {
    /// The slowest of each stage, for the headers of a multi-image answer.
    pub fn slowest<'a>(all: impl IntoIterator<Item = &'a Timings>) -> Timings {
        all.into_iter().fold(Timings::default(), |a, t| Timings {
            preprocess: a.preprocess.max(t.preprocess),
            queue: a.queue.max(t.queue),
            inference: a.inference.max(t.inference),
            postprocess: a.postprocess.max(t.postprocess),
            batch_size: a.batch_size.max(t.batch_size),
        })
    }
}
