//! The summary of a run, computed from its records only.
//!
//! Everything here is a pure function of the records (plus the settings, for
//! the offered rate), so `report` recomputes exactly what the run wrote.
//! Percentiles come from an HDR histogram in microseconds with 3 significant
//! digits (error under 0.1%); min, max and mean are exact.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// The run's configuration, as recorded in `summary.json` and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub url: String,
    pub field: String,
    pub images: String,
    pub image_count: usize,
    /// `closed` or `open`.
    pub mode: String,
    /// Closed loop: workers; open loop: in-flight cap.
    pub concurrency: u32,
    /// Open loop only: the offered arrival rate, requests/s.
    pub rate: Option<f64>,
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
    pub warmup: u64,
    pub timeout_s: f64,
    pub api_key: bool,
    /// The `--fail-under` threshold as a fraction.
    pub fail_under: Option<f64>,
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// Means of the server's timing headers over the successful requests that
/// carried them, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerTimingMeans {
    pub queue_ms: Option<f64>,
    pub inference_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub tool: String,
    pub version: String,
    /// The command line, `--api-key` redacted.
    pub command: Option<String>,
    pub settings: Option<Settings>,
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    /// successes / requests, 0 when there were none.
    pub success_rate: f64,
    /// `success` and each error kind that occurred.
    pub outcomes: BTreeMap<String, u64>,
    /// Count per HTTP status received.
    pub http_status: BTreeMap<String, u64>,
    /// From the first scheduled send to the last response.
    pub elapsed_s: f64,
    /// Successful requests per second over `elapsed_s`.
    pub throughput_rps: f64,
    /// The rate at which requests actually went out.
    pub achieved_rate_rps: f64,
    /// The `--rate` asked for (open loop only).
    pub offered_rate_rps: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Successful requests only: failures (timeouts above all) would mix
    /// another distribution into it.
    pub latency_ms: Latency,
    /// Every request, failures included.
    pub latency_all_ms: Latency,
    pub server_timing_ms: ServerTimingMeans,
}

/// Highest latency the histograms hold (1 hour); longer ones saturate.
const HIST_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

fn latency(values: impl Iterator<Item = u64>) -> Latency {
    let mut hist = new_histogram();
    let (mut count, mut sum, mut min, mut max) = (0u64, 0u128, u64::MAX, 0u64);
    for v in values {
        hist.saturating_record(v.max(1));
        count += 1;
        sum += u128::from(v);
        min = min.min(v);
        max = max.max(v);
    }
    if count == 0 {
        return Latency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let q = |p: f64| ms(hist.value_at_quantile(p).min(max));
    Latency {
        count,
        min: ms(min),
        mean: sum as f64 / count as f64 / 1000.0,
        stdev: hist.stdev() / 1000.0,
        p50: q(0.50),
        p90: q(0.90),
        p95: q(0.95),
        p99: q(0.99),
        p99_9: q(0.999),
        max: ms(max),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = values.fold((0u64, 0f64), |(n, s), v| (n + 1, s + v));
    (n > 0).then(|| sum / n as f64)
}

impl Summary {
    /// Summarises `records` (any order).
    pub fn compute(
        records: &[Record],
        settings: Option<Settings>,
        command: Option<String>,
    ) -> Self {
        let requests = records.len() as u64;
        let successes = records.iter().filter(|r| r.success()).count() as u64;
        let mut outcomes = BTreeMap::new();
        let mut http_status = BTreeMap::new();
        for r in records {
            *outcomes.entry(r.outcome().to_string()).or_insert(0) += 1;
            if let Some(s) = r.http_status {
                *http_status.entry(s.to_string()).or_insert(0) += 1;
            }
        }
        let first_start = records.iter().map(|r| r.start_us).min().unwrap_or(0);
        let last_end = records.iter().map(Record::end_us).max().unwrap_or(0);
        let elapsed_s = last_end.saturating_sub(first_start) as f64 / 1e6;
        let per_s = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        // Requests actually went out between the first and the last send;
        // n-1 intervals lie between n sends.
        let sends = records.iter().map(|r| r.start_us + r.wait_us);
        let (first_send, last_send) =
            sends.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        let achieved_rate_rps = if requests > 1 && last_send > first_send {
            (requests - 1) as f64 / ((last_send - first_send) as f64 / 1e6)
        } else {
            per_s(requests)
        };
        let ok = || records.iter().filter(|r| r.success());
        Summary {
            tool: "imgclass-loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command,
            offered_rate_rps: settings.as_ref().and_then(|s| s.rate),
            settings,
            requests,
            successes,
            failures: requests - successes,
            success_rate: if requests > 0 {
                successes as f64 / requests as f64
            } else {
                0.0
            },
            outcomes,
            http_status,
            elapsed_s,
            throughput_rps: per_s(successes),
            achieved_rate_rps,
            bytes_sent: records.iter().map(|r| r.bytes_sent).sum(),
            bytes_received: records.iter().map(|r| r.bytes_received).sum(),
            latency_ms: latency(ok().map(|r| r.response_time_us)),
            latency_all_ms: latency(records.iter().map(|r| r.response_time_us)),
            server_timing_ms: ServerTimingMeans {
                queue_ms: mean(ok().filter_map(|r| r.server.queue_ms)),
                inference_ms: mean(ok().filter_map(|r| r.server.inference_ms)),
                total_ms: mean(ok().filter_map(|r| r.server.total_ms)),
            },
        }
    }

    /// Whether the run meets `--fail-under` (always true without one).
    pub fn meets(&self, fail_under: Option<f64>) -> bool {
        fail_under.is_none_or(|min| self.success_rate >= min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ErrorKind, ServerTiming};

    fn rec(seq: u64, start_ms: u64, rt_ms: u64, error: Option<ErrorKind>) -> Record {
        Record {
            seq,
            file: "a/b.png".into(),
            error,
            response_time_us: rt_ms * 1000,
            http_status: error.map_or(Some(200), |_| None),
            start_us: start_ms * 1000,
            wait_us: 0,
            bytes_sent: 10,
            bytes_received: 2,
            top1: None,
            server: ServerTiming {
                total_ms: Some(1.0),
                ..Default::default()
            },
        }
    }

    #[test]
    fn counts_rates_and_percentiles() {
        let mut records: Vec<_> = (0..100).map(|i| rec(i, i * 10, i + 1, None)).collect();
        records[99].error = Some(ErrorKind::Timeout);
        records[99].http_status = None;
        let s = Summary::compute(&records, None, None);
        assert_eq!((s.requests, s.successes, s.failures), (100, 99, 1));
        assert_eq!(s.outcomes["success"], 99);
        assert_eq!(s.outcomes["timeout"], 1);
        assert_eq!(s.http_status["200"], 99);
        assert!((s.success_rate - 0.99).abs() < 1e-12);
        // last end = 990 ms + 100 ms
        assert!((s.elapsed_s - 1.09).abs() < 1e-9);
        // 99 intervals of 10 ms between sends
        assert!((s.achieved_rate_rps - 100.0).abs() < 1e-9);
        assert_eq!(s.latency_ms.count, 99);
        assert_eq!(s.latency_ms.min, 1.0);
        assert_eq!(s.latency_ms.max, 99.0);
        assert!((s.latency_ms.p50 - 50.0).abs() <= 0.05);
        assert!((s.latency_ms.mean - 50.0).abs() < 1e-9);
        assert_eq!(s.latency_all_ms.max, 100.0);
        assert_eq!(s.server_timing_ms.total_ms, Some(1.0));
        assert_eq!(s.server_timing_ms.queue_ms, None);
        assert!(s.meets(Some(0.99)) && !s.meets(Some(0.995)) && s.meets(None));
    }

    #[test]
    fn empty_is_all_zero() {
        let s = Summary::compute(&[], None, None);
        assert_eq!(s.requests, 0);
        assert_eq!(s.success_rate, 0.0);
        assert_eq!(s.latency_ms, Latency::default());
    }
}
