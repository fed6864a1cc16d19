//! Counters and histograms, rendered as Prometheus text for `/metrics` and
//! summarised as JSON for `/api/stats` (the web page).
//!
//! Hand-rolled rather than a metrics crate: one registry per server (the
//! tests run several servers in one process, which a global recorder would
//! merge), a dozen families with fixed labels, and a small, stable text
//! format. What the hot path costs:
//! - per model ([`ModelMetrics`], the pipeline's observer): atomics only;
//! - per request: a read lock on two maps (an uncontended atomic in the
//!   common case; the write lock is taken only the first time a route,
//!   status and model combination is seen), looked up without allocating;
//!   and, for inference routes, one short mutex-guarded push into the
//!   one-minute window that `/api/stats` takes percentiles from.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};
use imgclass_pipeline::{DropReason, Observer, Timings};
use serde::Serialize;

use crate::connection::ConnectionStats;
use crate::inference_stats::InferenceCounters;

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

/// One model's series; the model's pipeline reports into it.
pub(crate) struct ModelMetrics {
    name: String,
    queue_duration: Histogram,
    inference_duration: Histogram,
    preprocess_duration: Histogram,
    batch_size: Histogram,
    dropped_client_gone: AtomicU64,
    dropped_deadline: AtomicU64,
    /// Triton's statistics extension (`/v2/models/{name}/stats`).
    pub(crate) inference: InferenceCounters,
}

impl ModelMetrics {
    fn new(name: &str) -> Self {
        ModelMetrics {
            name: name.to_string(),
            queue_duration: Histogram::new(LATENCY_BUCKETS),
            inference_duration: Histogram::new(LATENCY_BUCKETS),
            preprocess_duration: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            dropped_client_gone: AtomicU64::new(0),
            dropped_deadline: AtomicU64::new(0),
            inference: InferenceCounters::default(),
        }
    }

    #[cfg(test)]
    fn dropped_total(&self) -> u64 {
        self.dropped_client_gone.load(Ordering::Relaxed)
            + self.dropped_deadline.load(Ordering::Relaxed)
    }
}

impl Observer for ModelMetrics {
    fn preprocessed(&self, took: Duration) {
        self.preprocess_duration.observe(took.as_secs_f64());
    }
    fn dequeued(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
    }
    fn batch(&self, size: usize, took: Duration) {
        self.batch_size.observe(size as f64);
        self.inference_duration.observe(took.as_secs_f64());
        self.inference.batch(size);
    }
    fn finished(&self, _images: usize, took: Duration, answered: Option<&Timings>) {
        self.inference.finished(took, answered);
    }
    fn dropped(&self, reason: DropReason) {
        match reason {
            DropReason::ClientGone => &self.dropped_client_gone,
            DropReason::Deadline => &self.dropped_deadline,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// What `/metrics` and `/api/stats` need to know about a served model
/// beyond its counters.
pub(crate) struct ModelView {
    pub name: String,
    pub engine: String,
    pub engine_detail: String,
    pub queue_depth: usize,
}

/// (route template, status, model) of a finished request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RequestKey {
    route: String,
    status: u16,
    model: Option<String>,
}

/// A borrowed [`RequestKey`] for lookups without allocating.
struct RequestKeyRef<'a> {
    route: &'a str,
    status: u16,
    model: Option<&'a str>,
}

impl Hash for RequestKeyRef<'_> {
    // Must hash exactly as the derived `Hash` of `RequestKey` does.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.route.hash(h);
        self.status.hash(h);
        self.model.hash(h);
    }
}

impl Equivalent<RequestKey> for RequestKeyRef<'_> {
    fn equivalent(&self, key: &RequestKey) -> bool {
        self.route == key.route && self.status == key.status && self.model == key.model.as_deref()
    }
}

impl RequestKeyRef<'_> {
    fn to_owned(&self) -> RequestKey {
        RequestKey {
            route: self.route.to_string(),
            status: self.status,
            model: self.model.map(str::to_string),
        }
    }
}

/// Everything `/metrics` and `/api/stats` report.
pub(crate) struct Metrics {
    requests: RwLock<HashMap<RequestKey, AtomicU64>>,
    /// Keyed with status 0: durations are by route and model only.
    request_duration: RwLock<HashMap<RequestKey, Histogram>>,
    models: RwLock<BTreeMap<String, Arc<ModelMetrics>>>,
    images_stored: AtomicU64,
    store_failures: AtomicU64,
    store_commit_duration: Histogram,
    store_group_size: Histogram,
    in_flight: AtomicI64,
    connections: Arc<ConnectionStats>,
    /// (finished at, seconds, model) of answered inference requests.
    window: Mutex<VecDeque<(Instant, f32, Arc<str>)>>,
}

/// The JSON of `/api/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub ready: bool,
    /// The default model and its engine (what the page shows first).
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
    /// Every served model, with the same figures for it alone.
    pub models: Vec<ModelStats>,
}

#[derive(Debug, Serialize)]
pub struct ModelStats {
    pub name: String,
    pub engine: String,
    pub engine_detail: String,
    pub requests_per_second: f64,
    pub latency_ms: Percentiles,
    pub queue_depth: usize,
    pub mean_batch_size: f64,
    pub batches: u64,
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
            requests: RwLock::new(HashMap::new()),
            request_duration: RwLock::new(HashMap::new()),
            models: RwLock::new(BTreeMap::new()),
            images_stored: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
            store_commit_duration: Histogram::new(LATENCY_BUCKETS),
            store_group_size: Histogram::new(BATCH_BUCKETS),
            in_flight: AtomicI64::new(0),
            connections: Default::default(),
            window: Mutex::new(VecDeque::new()),
        }
    }

    /// The series of model `name`, created on first use (a model loaded
    /// again keeps counting where it left off).
    pub fn model(&self, name: &str) -> Arc<ModelMetrics> {
        if let Some(m) = read(&self.models).get(name) {
            return m.clone();
        }
        write(&self.models)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(ModelMetrics::new(name)))
            .clone()
    }

    /// A finished request. `model` is the model that handled it, if any;
    /// `answered` marks successful inference, which `/api/stats` summarises.
    pub fn observe_request(
        &self,
        route: &str,
        status: u16,
        model: Option<&str>,
        elapsed: Duration,
        answered: bool,
    ) {
        let key = RequestKeyRef {
            route,
            status,
            model,
        };
        bump(
            &self.requests,
            &key,
            || AtomicU64::new(0),
            |c| {
                c.fetch_add(1, Ordering::Relaxed);
            },
        );
        let secs = elapsed.as_secs_f64();
        let duration_key = RequestKeyRef { status: 0, ..key };
        bump(
            &self.request_duration,
            &duration_key,
            || Histogram::new(LATENCY_BUCKETS),
            |h| h.observe(secs),
        );
        if answered {
            let now = Instant::now();
            let model: Arc<str> = Arc::from(model.unwrap_or(""));
            let mut w = lock(&self.window);
            w.push_back((now, secs as f32, model));
            while w.len() > STATS_MAX_SAMPLES
                || w.front()
                    .is_some_and(|(t, _, _)| now.duration_since(*t) > STATS_WINDOW)
            {
                w.pop_front();
            }
        }
    }

    pub fn stored(&self) {
        self.images_stored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_failed(&self) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A group of `size` writes committed (written, fsynced, renamed) in `took`.
    pub fn store_committed(&self, size: usize, took: Duration) {
        self.store_group_size.observe(size as f64);
        self.store_commit_duration.observe(took.as_secs_f64());
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
    pub fn connections(&self) -> &Arc<ConnectionStats> {
        &self.connections
    }

    #[cfg(test)]
    pub fn dropped_total(&self) -> u64 {
        read(&self.models).values().map(|m| m.dropped_total()).sum()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, models: &[ModelView], ready: bool) -> String {
        let mut out = String::with_capacity(8 << 10);
        header(
            &mut out,
            "imgclass_requests_total",
            "counter",
            "Requests answered, by route, status and (for inference) model.",
        );
        let requests = read(&self.requests);
        let mut keys: Vec<&RequestKey> = requests.keys().collect();
        keys.sort();
        for k in keys {
            let _ = writeln!(
                out,
                "imgclass_requests_total{{{}}} {}",
                request_labels(k, true),
                requests[k].load(Ordering::Relaxed)
            );
        }
        drop(requests);
        header(
            &mut out,
            "imgclass_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route and model.",
        );
        let durations = read(&self.request_duration);
        let mut keys: Vec<&RequestKey> = durations.keys().collect();
        keys.sort();
        for k in keys {
            durations[k].render(
                &mut out,
                "imgclass_request_duration_seconds",
                &request_labels(k, false),
            );
        }
        drop(durations);
        let per_model = read(&self.models);
        type Pick = fn(&ModelMetrics) -> &Histogram;
        let families: [(&str, &str, Pick); 4] = [
            (
                "imgclass_queue_duration_seconds",
                "Time an image waited in the batch queue before its engine call.",
                |m| &m.queue_duration,
            ),
            (
                "imgclass_inference_duration_seconds",
                "Duration of one engine call (one batch).",
                |m| &m.inference_duration,
            ),
            (
                "imgclass_preprocess_duration_seconds",
                "Hashing, decoding, resizing and normalising one image.",
                |m| &m.preprocess_duration,
            ),
            ("imgclass_batch_size", "Images per engine call.", |m| {
                &m.batch_size
            }),
        ];
        for (name, help, pick) in families {
            header(&mut out, name, "histogram", help);
            for m in per_model.values() {
                pick(m).render(&mut out, name, &format!("model=\"{}\"", escape(&m.name)));
            }
        }
        header(
            &mut out,
            "imgclass_queue_depth",
            "gauge",
            "Images waiting for an engine worker, by model.",
        );
        for v in models {
            let _ = writeln!(
                out,
                "imgclass_queue_depth{{model=\"{}\"}} {}",
                escape(&v.name),
                v.queue_depth
            );
        }
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
            "Queued images skipped before inference, by model and reason.",
        );
        for m in per_model.values() {
            for (reason, n) in [
                (DropReason::ClientGone, &m.dropped_client_gone),
                (DropReason::Deadline, &m.dropped_deadline),
            ] {
                let _ = writeln!(
                    out,
                    "imgclass_requests_dropped_total{{model=\"{}\",reason=\"{}\"}} {}",
                    escape(&m.name),
                    reason.as_str(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        drop(per_model);
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
            "Uploads and KServe images that could not be stored (disk full, read-only folder); their answers said so.",
            self.store_failures.load(Ordering::Relaxed),
        );
        for (name, help, h) in [
            (
                "imgclass_store_commit_seconds",
                "Time to write, fsync and rename one group of uploads.",
                &self.store_commit_duration,
            ),
            (
                "imgclass_store_group_size",
                "Uploads committed together by one group commit.",
                &self.store_group_size,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            h.render(&mut out, name, "");
        }
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
            "1 when every configured model is loaded and inference is accepted.",
            u8::from(ready),
        );
        header(
            &mut out,
            "imgclass_model_info",
            "gauge",
            "The models being served and their engines.",
        );
        for v in models {
            let _ = writeln!(
                out,
                "imgclass_model_info{{model=\"{}\",engine=\"{}\"}} 1",
                escape(&v.name),
                escape(&v.engine)
            );
        }
        crate::process_metrics::render(&mut out);
        out
    }

    /// The `/api/stats` summary; `models[0]`, if any, is the default model.
    pub fn stats(&self, models: &[ModelView], uptime: Duration, ready: bool) -> Stats {
        let now = Instant::now();
        let window: Vec<(f32, Arc<str>)> = lock(&self.window)
            .iter()
            .filter(|(t, _, _)| now.duration_since(*t) <= STATS_WINDOW)
            .map(|(_, s, m)| (*s, m.clone()))
            .collect();
        let span = uptime.min(STATS_WINDOW).as_secs_f64().max(1.0);
        let rate = |n: usize| ((n as f64 / span) * 100.0).round() / 100.0;
        let per_model = read(&self.models);
        let batches = |m: Option<&Arc<ModelMetrics>>| {
            m.map_or((0, 0.0), |m| (m.batch_size.count(), m.batch_size.sum()))
        };
        let (all_batches, all_images) = per_model
            .values()
            .map(|m| batches(Some(m)))
            .fold((0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let model_stats = models
            .iter()
            .map(|v| {
                let secs: Vec<f32> = window
                    .iter()
                    .filter(|(_, m)| **m == *v.name)
                    .map(|(s, _)| *s)
                    .collect();
                let (n, images) = batches(per_model.get(&v.name));
                ModelStats {
                    name: v.name.clone(),
                    engine: v.engine.clone(),
                    engine_detail: v.engine_detail.clone(),
                    requests_per_second: rate(secs.len()),
                    latency_ms: percentiles(secs),
                    queue_depth: v.queue_depth,
                    mean_batch_size: mean(images, n),
                    batches: n,
                }
            })
            .collect();
        let default = models.first();
        Stats {
            ready,
            model: default.map(|m| m.name.clone()),
            engine: default.map(|m| m.engine.clone()),
            engine_detail: default.map(|m| m.engine_detail.clone()),
            uptime_seconds: (uptime.as_secs_f64() * 10.0).round() / 10.0,
            requests_per_second: rate(window.len()),
            latency_ms: percentiles(window.into_iter().map(|(s, _)| s).collect()),
            queue_depth: models.iter().map(|m| m.queue_depth).sum(),
            in_flight: self.in_flight_now(),
            mean_batch_size: mean(all_images, all_batches),
            batches: all_batches,
            images_stored: self.images_stored.load(Ordering::Relaxed),
            models: model_stats,
        }
    }
}

fn percentiles(mut secs: Vec<f32>) -> Percentiles {
    secs.sort_by(f32::total_cmp);
    let pct = |q: f64| -> Option<f64> {
        if secs.is_empty() {
            return None;
        }
        let i = ((secs.len() as f64 * q).ceil() as usize).clamp(1, secs.len()) - 1;
        Some((secs[i] as f64 * 1e6).round() / 1e3)
    };
    Percentiles {
        p50: pct(0.50),
        p95: pct(0.95),
        p99: pct(0.99),
    }
}

fn mean(sum: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        ((sum / n as f64) * 100.0).round() / 100.0
    }
}

/// Finds `key`'s entry under the read lock, creating it under the write
/// lock the first time, and applies `f` to it.
fn bump<V>(
    map: &RwLock<HashMap<RequestKey, V>>,
    key: &RequestKeyRef<'_>,
    make: impl FnOnce() -> V,
    f: impl FnOnce(&V),
) {
    if let Some(v) = read(map).get(key) {
        f(v);
        return;
    }
    let mut map = write(map);
    f(map.entry(key.to_owned()).or_insert_with(make));
}

fn request_labels(k: &RequestKey, with_status: bool) -> String {
    let mut labels = format!("route=\"{}\"", escape(&k.route));
    if with_status {
        let _ = write!(labels, ",status=\"{}\"", k.status);
    }
    if let Some(m) = &k.model {
        let _ = write!(labels, ",model=\"{}\"", escape(m));
    }
    labels
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

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, depth: usize) -> ModelView {
        ModelView {
            name: name.into(),
            engine: "ort".into(),
            engine_detail: "detail".into(),
            queue_depth: depth,
        }
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new();
        let lite0 = m.model("lite0");
        m.observe_request(
            "/classify",
            200,
            Some("lite0"),
            Duration::from_millis(8),
            true,
        );
        m.observe_request(
            "/classify",
            200,
            Some("lite0"),
            Duration::from_millis(40),
            true,
        );
        m.observe_request(
            "/classify",
            415,
            Some("lite0"),
            Duration::from_millis(1),
            false,
        );
        lite0.batch(3, Duration::from_millis(9));
        let text = m.render(&[view("lite0", 2)], true);
        assert!(
            text.contains(
                "imgclass_requests_total{route=\"/classify\",status=\"200\",model=\"lite0\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "imgclass_requests_total{route=\"/classify\",status=\"415\",model=\"lite0\"} 1"
        ));
        assert!(text.contains(
            "imgclass_request_duration_seconds_bucket{route=\"/classify\",model=\"lite0\",le=\"0.01\"} 2"
        ));
        assert!(text.contains(
            "imgclass_request_duration_seconds_bucket{route=\"/classify\",model=\"lite0\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains(
            "imgclass_request_duration_seconds_count{route=\"/classify\",model=\"lite0\"} 3"
        ));
        assert!(text.contains("imgclass_batch_size_bucket{model=\"lite0\",le=\"3\"} 1"));
        assert!(text.contains("imgclass_queue_depth{model=\"lite0\"} 2"));
        assert!(text.contains("imgclass_model_info{model=\"lite0\",engine=\"ort\"} 1"));
        let s = m.stats(&[view("lite0", 2)], Duration::from_secs(10), true);
        assert_eq!(s.latency_ms.p50, Some(8.0));
        assert_eq!(s.latency_ms.p99, Some(40.0));
        assert_eq!(s.mean_batch_size, 3.0);
        assert_eq!(s.requests_per_second, 0.2);
        assert_eq!(s.models[0].requests_per_second, 0.2);
    }

    #[test]
    fn routes_without_a_model_have_no_model_label_and_models_are_apart() {
        let m = Metrics::new();
        m.observe_request("/healthz", 200, None, Duration::from_millis(1), false);
        m.observe_request("/classify", 200, Some("a"), Duration::from_millis(5), true);
        m.observe_request("/classify", 200, Some("b"), Duration::from_millis(7), true);
        m.model("a").dropped(DropReason::Deadline);
        let text = m.render(&[view("a", 0), view("b", 1)], true);
        assert!(text.contains("imgclass_requests_total{route=\"/healthz\",status=\"200\"} 1"));
        assert!(
            text.contains("imgclass_requests_dropped_total{model=\"a\",reason=\"deadline\"} 1")
        );
        assert!(!text.contains("imgclass_requests_dropped_total{model=\"b\""));
        let s = m.stats(&[view("a", 0), view("b", 1)], Duration::from_secs(60), true);
        assert_eq!(s.models[1].latency_ms.p50, Some(7.0));
        assert_eq!(s.queue_depth, 1);
        assert_eq!(m.dropped_total(), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
