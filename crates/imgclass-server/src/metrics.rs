//! Counters and histograms, rendered as Prometheus text for `/metrics` and
//! summarised as JSON for `/api/stats` (the web page).
//!
//! Hand-rolled rather than a metrics crate: a dozen series with fixed
//! labels, lock-free on the hot path (atomics), and the text format is
//! small and stable.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::connection::ConnectionStats;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0];

/// How far back `/api/stats` looks.
const STATS_WINDOW: Duration = Duration::from_secs(60);
/// Most samples kept for the window (≈ 1,600 requests/s for a minute).
const STATS_MAX_SAMPLES: usize = 100_000;

/// A Prometheus histogram with fixed buckets.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last is +Inf.
    counts: Vec<AtomicU64>,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum());
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// Everything `/metrics` and `/api/stats` report.
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_duration: Mutex<BTreeMap<String, Histogram>>,
    queue_duration: Histogram,
    inference_duration: Histogram,
    preprocess_duration: Histogram,
    batch_size: Histogram,
    images_stored: AtomicU64,
    store_failures: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: AtomicI64,
    connections: std::sync::Arc<ConnectionStats>,
    model: Mutex<Option<(String, String, String)>>,
    /// (finished at, seconds) of inference requests, for `/api/stats`.
    window: Mutex<VecDeque<(Instant, f32)>>,
}

/// The JSON of `/api/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub ready: bool,
    pub model: Option<String>,
    pub engine: Option<String>,
    pub engine_detail: Option<String>,
    pub uptime_seconds: f64,
    /// Inference requests per second over the last minute (or the uptime, if shorter).
    pub requests_per_second: f64,
    /// Latency of inference requests over the last minute, in ms.
    pub latency_ms: Percentiles,
    pub queue_depth: usize,
    pub in_flight: i64,
    pub mean_batch_size: f64,
    pub batches: u64,
    pub images_stored: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            request_duration: Mutex::new(BTreeMap::new()),
            queue_duration: Histogram::new(LATENCY_BUCKETS),
            inference_duration: Histogram::new(LATENCY_BUCKETS),
            preprocess_duration: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            images_stored: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
            dropped: Mutex::new(BTreeMap::new()),
            in_flight: AtomicI64::new(0),
            connections: Default::default(),
            model: Mutex::new(None),
            window: Mutex::new(VecDeque::new()),
        }
    }

    pub fn set_model(&self, name: &str, engine: &str, detail: &str) {
        *lock(&self.model) = Some((name.to_string(), engine.to_string(), detail.to_string()));
    }

    /// A finished request. `inference` marks the routes that `/api/stats`
    /// summarises (those that run the model).
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration, inference: bool) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_insert(0) += 1;
        let secs = elapsed.as_secs_f64();
        lock(&self.request_duration)
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(secs);
        if inference {
            let now = Instant::now();
            let mut w = lock(&self.window);
            w.push_back((now, secs as f32));
            while w.len() > STATS_MAX_SAMPLES
                || w.front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > STATS_WINDOW)
            {
                w.pop_front();
            }
        }
    }

    pub fn observe_queue(&self, d: Duration) {
        self.queue_duration.observe(d.as_secs_f64());
    }

    pub fn observe_batch(&self, size: usize, inference: Duration) {
        self.batch_size.observe(size as f64);
        self.inference_duration.observe(inference.as_secs_f64());
    }

    pub fn observe_preprocess(&self, d: Duration) {
        self.preprocess_duration.observe(d.as_secs_f64());
    }

    pub fn dropped(&self, reason: &'static str) {
        *lock(&self.dropped).entry(reason).or_insert(0) += 1;
    }

    #[cfg(test)]
    pub fn dropped_total(&self) -> u64 {
        lock(&self.dropped).values().sum()
    }

    pub fn stored(&self) {
        self.images_stored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_failed(&self) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The counters the connection layer updates.
    pub fn connections(&self) -> &std::sync::Arc<ConnectionStats> {
        &self.connections
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, queue_depth: usize, ready: bool) -> String {
        let mut out = String::with_capacity(8 << 10);
        header(
            &mut out,
            "imgclass_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "imgclass_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        header(
            &mut out,
            "imgclass_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route.",
        );
        for (route, h) in lock(&self.request_duration).iter() {
            h.render(
                &mut out,
                "imgclass_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        for (name, help, h) in [
            (
                "imgclass_queue_duration_seconds",
                "Time an image waited in the batch queue before its engine call.",
                &self.queue_duration,
            ),
            (
                "imgclass_inference_duration_seconds",
                "Duration of one engine call (one batch).",
                &self.inference_duration,
            ),
            (
                "imgclass_preprocess_duration_seconds",
                "Decoding, resizing and normalising one image.",
                &self.preprocess_duration,
            ),
            (
                "imgclass_batch_size",
                "Images per engine call.",
                &self.batch_size,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            h.render(&mut out, name, "");
        }
        scalar(
            &mut out,
            "imgclass_queue_depth",
            "gauge",
            "Images waiting for an engine worker.",
            queue_depth,
        );
        scalar(
            &mut out,
            "imgclass_requests_in_flight",
            "gauge",
            "Requests being handled.",
            self.in_flight_now(),
        );
        header(
            &mut out,
            "imgclass_requests_dropped_total",
            "counter",
            "Queued images skipped before inference, by reason.",
        );
        for (reason, n) in lock(&self.dropped).iter() {
            let _ = writeln!(
                out,
                "imgclass_requests_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        scalar(
            &mut out,
            "imgclass_images_stored_total",
            "counter",
            "Uploads written to the images folder.",
            self.images_stored.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "imgclass_store_failures_total",
            "counter",
            "Uploads that could not be stored.",
            self.store_failures.load(Ordering::Relaxed),
        );
        for (name, kind, help, value) in self.connections.series() {
            scalar(&mut out, name, kind, help, value);
        }
        let (name, help) = crate::connection::TIMEOUTS_SERIES;
        header(&mut out, name, "counter", help);
        for (phase, n) in self.connections.timeouts() {
            let _ = writeln!(out, "{name}{{phase=\"{phase}\"}} {n}");
        }
        scalar(
            &mut out,
            "imgclass_ready",
            "gauge",
            "1 when the model is loaded and inference is accepted.",
            u8::from(ready),
        );
        header(
            &mut out,
            "imgclass_model_info",
            "gauge",
            "The model being served and its engine.",
        );
        if let Some((model, engine, _)) = lock(&self.model).as_ref() {
            let _ = writeln!(
                out,
                "imgclass_model_info{{model=\"{}\",engine=\"{}\"}} 1",
                escape(model),
                escape(engine)
            );
        }
        out
    }

    /// The `/api/stats` summary.
    pub fn stats(&self, queue_depth: usize, uptime: Duration, ready: bool) -> Stats {
        let now = Instant::now();
        let mut secs: Vec<f32> = lock(&self.window)
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= STATS_WINDOW)
            .map(|(_, s)| *s)
            .collect();
        secs.sort_by(f32::total_cmp);
        let pct = |q: f64| -> Option<f64> {
            if secs.is_empty() {
                return None;
            }
            let i = ((secs.len() as f64 * q).ceil() as usize).clamp(1, secs.len()) - 1;
            Some((secs[i] as f64 * 1e6).round() / 1e3)
        };
        let span = uptime.min(STATS_WINDOW).as_secs_f64().max(1.0);
        let batches = self.batch_size.count();
        let model = lock(&self.model).clone();
        Stats {
            ready,
            model: model.as_ref().map(|m| m.0.clone()),
            engine: model.as_ref().map(|m| m.1.clone()),
            engine_detail: model.as_ref().map(|m| m.2.clone()),
            uptime_seconds: (uptime.as_secs_f64() * 10.0).round() / 10.0,
            requests_per_second: ((secs.len() as f64 / span) * 100.0).round() / 100.0,
            latency_ms: Percentiles {
                p50: pct(0.50),
                p95: pct(0.95),
                p99: pct(0.99),
            },
            queue_depth,
            in_flight: self.in_flight_now(),
            mean_batch_size: if batches == 0 {
                0.0
            } else {
                ((self.batch_size.sum() / batches as f64) * 100.0).round() / 100.0
            },
            batches,
            images_stored: self.images_stored.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the in-flight gauge when a request finishes, however it ends.
pub(crate) struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its header and its one sample, the name
/// written once.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new();
        m.set_model("lite0", "ort", "detail");
        m.observe_request("/classify", 200, Duration::from_millis(8), true);
        m.observe_request("/classify", 200, Duration::from_millis(40), true);
        m.observe_request("/classify", 415, Duration::from_millis(1), false);
        m.observe_batch(3, Duration::from_millis(9));
        let text = m.render(2, true);
        assert!(
            text.contains("imgclass_requests_total{route=\"/classify\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("imgclass_requests_total{route=\"/classify\",status=\"415\"} 1"));
        assert!(text.contains(
            "imgclass_request_duration_seconds_bucket{route=\"/classify\",le=\"0.01\"} 2"
        ));
        assert!(text.contains(
            "imgclass_request_duration_seconds_bucket{route=\"/classify\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("imgclass_request_duration_seconds_count{route=\"/classify\"} 3"));
        assert!(text.contains("imgclass_batch_size_bucket{le=\"3\"} 1"));
        assert!(text.contains("imgclass_queue_depth 2"));
        assert!(text.contains("imgclass_model_info{model=\"lite0\",engine=\"ort\"} 1"));
        let s = m.stats(2, Duration::from_secs(10), true);
        assert_eq!(s.latency_ms.p50, Some(8.0));
        assert_eq!(s.latency_ms.p99, Some(40.0));
        assert_eq!(s.mean_batch_size, 3.0);
        assert_eq!(s.requests_per_second, 0.2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
