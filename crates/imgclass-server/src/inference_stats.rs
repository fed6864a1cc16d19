//! Triton's per-model inference statistics (`GET /v2/models[/{name}]/stats`)
//! from counters the model's pipeline feeds through its observer: atomics
//! only, nothing allocated per request.
//!
//! What each figure counts, as Triton does: `success` / `fail` count
//! requests (one per infer or classify call) with their whole time from
//! arrival to answer; `queue`, `compute_input` (decoding and
//! preprocessing; zero for preprocessed FP32 tensors), `compute_infer` (the
//! engine call) and `compute_output` (softmax) count answered requests,
//! each with its slowest image's time in that stage. They are all recorded
//! together when the request is answered, so their counts agree (which
//! perf_analyzer insists on); `execution_count` counts engine calls and
//! `inference_count` the images they ran; `last_inference` is the ms since
//! the Unix epoch of the last answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imgclass_oip::{DurationStat, InferStatistics, ModelStatistics};
use imgclass_pipeline::Timings;

/// A count and its total nanoseconds.
#[derive(Default)]
struct Stat {
    count: AtomicU64,
    ns: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Stat {
    fn add(&self, count: u64, ns: u64) {
        self.count.fetch_add(count, Ordering::Relaxed);
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DurationStat {
        DurationStat {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// One model's counters since the server started.
#[derive(Default)]
pub(crate) struct InferenceCounters {
    success: Stat,
    fail: Stat,
    queue: Stat,
    compute_input: Stat,
    compute_infer: Stat,
    compute_output: Stat,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
}

impl InferenceCounters {
    pub fn batch(&self, size: usize) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(size as u64, Ordering::Relaxed);
    }

    pub fn finished(&self, took: Duration, answered: Option<&Timings>) {
        let Some(t) = answered else {
            self.fail.add(1, nanos(took));
            return;
        };
        self.queue.add(1, nanos(t.queue));
        self.compute_input.add(1, nanos(t.preprocess));
        self.compute_infer.add(1, nanos(t.inference));
        self.compute_output.add(1, nanos(t.postprocess));
        self.success.add(1, nanos(took));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// The statistics of model `name`, version `version`.
    pub fn snapshot(&self, name: &str, version: &str) -> ModelStatistics {
        ModelStatistics {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            inference_stats: InferStatistics {
                success: self.success.snapshot(),
                fail: self.fail.snapshot(),
                queue: self.queue.snapshot(),
                compute_input: self.compute_input.snapshot(),
                compute_infer: self.compute_infer.snapshot(),
                compute_output: self.compute_output.snapshot(),
                // No response cache: never a hit, never a lookup.
                cache_hit: DurationStat::default(),
                cache_miss: DurationStat::default(),
            },
            ..ModelStatistics::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_triton_semantics() {
        let c = InferenceCounters::default();
        let ms = Duration::from_millis(1);
        c.batch(2);
        let t = Timings {
            preprocess: 2 * ms,
            queue: ms,
            inference: 3 * ms,
            postprocess: ms,
            batch_size: 2,
        };
        c.finished(10 * ms, Some(&t));
        c.finished(ms, None);
        let s = c.snapshot("m", "1");
        assert_eq!((s.inference_count, s.execution_count), (2, 1));
        let i = &s.inference_stats;
        assert_eq!((i.success.count, i.success.ns), (1, 10_000_000));
        assert_eq!((i.fail.count, i.fail.ns), (1, 1_000_000));
        assert_eq!((i.queue.count, i.queue.ns), (1, 1_000_000));
        assert_eq!((i.compute_input.count, i.compute_input.ns), (1, 2_000_000));
        assert_eq!((i.compute_infer.count, i.compute_infer.ns), (1, 3_000_000));
        assert_eq!(i.compute_output.count, 1);
        assert!(s.last_inference > 1_600_000_000_000);
        assert_eq!(s.version, "1");
    }
}
