//! `/api/stats/deployment`: the page's live figures for the whole
//! deployment, every replica together, from the Prometheus that scrapes
//! them (`--prometheus-url`).
//!
//! Behind a gateway `/api/stats` is one replica's figures; summing replicas
//! needs someone who sees them all, and Prometheus already does. The
//! replica asks it one fixed query (each figure tagged with a `figure`
//! label, joined with `or`), never a query a client sent, and keeps the
//! answer for [`CACHE_FOR`] so that every open page polling each second
//! costs Prometheus one query per replica per second at most. The answer
//! has the shape of `/api/stats` (the page draws both the same way) plus
//! `scope` and the replica counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::{ModelStats, ModelView, Percentiles, Stats};
use crate::prometheus::{Prometheus, QueryError, Sample};

/// How long one answer from Prometheus is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// Longest wait for Prometheus before the page falls back.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The window rates and quantiles are taken over, in seconds: a minute, as
/// `/api/stats`.
const WINDOW_SECS: u32 = 60;
/// Inference routes, as the replicas label them.
const INFERENCE: &str = r#"route=~"/classify|/v2/models/.+/infer""#;

/// The answer of `/api/stats/deployment`.
#[derive(Debug, Serialize)]
pub struct DeploymentStats {
    /// Always `"deployment"` (`/api/stats` has no scope: one replica).
    pub scope: &'static str,
    pub replicas: Replicas,
    /// The Prometheus the figures come from.
    pub source: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The replicas Prometheus knows of.
#[derive(Debug, Serialize, Clone, Copy, PartialEq)]
pub struct Replicas {
    /// Targets of the selector (discovered replicas).
    pub discovered: u64,
    /// Those whose last scrape succeeded.
    pub up: u64,
    /// Those that reported themselves ready.
    pub ready: u64,
}

/// The figures of one answer, before they meet this replica's model list.
#[derive(Debug, Default, Clone, PartialEq)]
struct Figures {
    /// figure → model ("" for the deployment-wide one) → value.
    by_figure: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Figures {
    fn from_samples(samples: Vec<Sample>) -> Self {
        let mut by_figure: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for mut s in samples {
            let Some(figure) = s.labels.remove("figure") else {
                continue;
            };
            let model = s.labels.remove("model").unwrap_or_default();
            by_figure.entry(figure).or_default().insert(model, s.value);
        }
        Figures { by_figure }
    }

    /// A finite figure, if Prometheus had one.
    fn get(&self, figure: &str, model: &str) -> Option<f64> {
        self.by_figure
            .get(figure)
            .and_then(|m| m.get(model))
            .copied()
            .filter(|v| v.is_finite())
    }

    fn count(&self, figure: &str) -> u64 {
        self.get(figure, "")
            .map_or(0, |v| v.max(0.0).round() as u64)
    }

    fn percentiles(&self, model: &str) -> Percentiles {
        let ms = |figure: &str| self.get(figure, model).map(|s| (s * 1e6).round() / 1e3);
        Percentiles {
            p50: ms("p50"),
            p95: ms("p95"),
            p99: ms("p99"),
        }
    }

    fn mean_batch(&self, model: &str) -> (f64, u64) {
        let batches = self.get("batches", model).unwrap_or(0.0);
        let images = self.get("batched_images", model).unwrap_or(0.0);
        let mean = if batches > 0.0 {
            ((images / batches) * 100.0).round() / 100.0
        } else {
            0.0
        };
        (mean, batches.round() as u64)
    }

    fn rate(&self, model: &str) -> f64 {
        (self.get("rps", model).unwrap_or(0.0) * 100.0).round() / 100.0
    }
}

/// The single query: every figure, tagged. `selector` picks the replicas'
/// series (e.g. `job="imgclass"`).
fn deployment_query(selector: &str) -> String {
    let s = selector;
    let w = WINDOW_SECS;
    let quantile = |q: &str, by: &str| {
        format!(
            "histogram_quantile({q}, sum by (le{by}) (rate(imgclass_request_duration_seconds_bucket{{{s},{INFERENCE}}}[{w}s])))"
        )
    };
    // Answered inference requests per second, as /api/stats counts them:
    // each replica's count over the last minute, or over its uptime if
    // shorter, divided by that span. (`rate()` divides by the whole window,
    // so a replica younger than a minute would show a fraction of its rate.)
    let answered = |by: &str| {
        format!(
            "sum by (instance{by}) (increase(imgclass_requests_total{{{s},{INFERENCE},status=\"200\"}}[{w}s])) \
             / on (instance) group_left clamp(time() - process_start_time_seconds{{{s}}}, 1, {w})"
        )
    };
    let figures: Vec<(&str, String)> = vec![
        ("discovered", format!("count(up{{{s}}})")),
        ("up", format!("sum(up{{{s}}})")),
        ("ready", format!("sum(imgclass_ready{{{s}}})")),
        ("rps", format!("sum({})", answered(""))),
        ("rps", format!("sum by (model) ({})", answered(", model"))),
        ("p50", quantile("0.5", "")),
        ("p95", quantile("0.95", "")),
        ("p99", quantile("0.99", "")),
        ("p50", quantile("0.5", ", model")),
        ("p95", quantile("0.95", ", model")),
        ("p99", quantile("0.99", ", model")),
        ("queue", format!("sum(imgclass_queue_depth{{{s}}})")),
        (
            "queue",
            format!("sum by (model) (imgclass_queue_depth{{{s}}})"),
        ),
        (
            "in_flight",
            format!("sum(imgclass_requests_in_flight{{{s}}})"),
        ),
        ("batches", format!("sum(imgclass_batch_size_count{{{s}}})")),
        (
            "batches",
            format!("sum by (model) (imgclass_batch_size_count{{{s}}})"),
        ),
        (
            "batched_images",
            format!("sum(imgclass_batch_size_sum{{{s}}})"),
        ),
        (
            "batched_images",
            format!("sum by (model) (imgclass_batch_size_sum{{{s}}})"),
        ),
        (
            "stored",
            format!("sum(imgclass_images_stored_total{{{s}}})"),
        ),
        (
            "uptime",
            format!("time() - min(process_start_time_seconds{{{s}}})"),
        ),
    ];
    figures
        .into_iter()
        .map(|(name, expr)| format!("label_replace({expr}, \"figure\", \"{name}\", \"\", \"\")"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// One answer of Prometheus, or why there was none.
type Answer = Result<Arc<Figures>, String>;

/// The deployment's figures through one Prometheus, cached.
pub struct Deployment {
    prometheus: Prometheus,
    query: String,
    /// The last answer and when it was taken; the lock also makes
    /// concurrent callers wait for one refresh instead of each querying.
    last: tokio::sync::Mutex<Option<(Instant, Answer)>>,
}

impl Deployment {
    /// Figures of the replicas `selector` picks, from the Prometheus at `url`.
    pub fn new(url: &str, selector: &str) -> Result<Self, String> {
        let selector = selector
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}');
        if selector.is_empty() {
            return Err("the selector is empty: expected e.g. job=\"imgclass\"".into());
        }
        Ok(Deployment {
            prometheus: Prometheus::new(url, QUERY_TIMEOUT)?,
            query: deployment_query(selector),
            last: tokio::sync::Mutex::new(None),
        })
    }

    async fn figures(&self) -> Answer {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return answer.clone();
        }
        let answer = self
            .prometheus
            .query(&self.query)
            .await
            .map(|samples| Arc::new(Figures::from_samples(samples)))
            .map_err(|e: QueryError| e.to_string());
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    /// The deployment's figures for the models this replica serves
    /// (`models[0]` the default), or why Prometheus could not give them.
    pub async fn stats(&self, models: &[ModelView]) -> Result<DeploymentStats, String> {
        let f = self.figures().await?;
        let replicas = Replicas {
            discovered: f.count("discovered"),
            up: f.count("up"),
            ready: f.count("ready"),
        };
        if replicas.discovered == 0 {
            return Err(format!(
                "Prometheus at {} scrapes no replica of this deployment",
                self.prometheus.url()
            ));
        }
        let model_stats = models
            .iter()
            .map(|v| {
                let (mean_batch_size, batches) = f.mean_batch(&v.name);
                ModelStats {
                    name: v.name.clone(),
                    engine: v.engine.clone(),
                    engine_detail: v.engine_detail.clone(),
                    requests_per_second: f.rate(&v.name),
                    latency_ms: f.percentiles(&v.name),
                    queue_depth: f.get("queue", &v.name).unwrap_or(0.0).max(0.0) as usize,
                    mean_batch_size,
                    batches,
                }
            })
            .collect();
        let (mean_batch_size, batches) = f.mean_batch("");
        let default = models.first();
        let stats = Stats {
            ready: replicas.ready > 0,
            model: default.map(|m| m.name.clone()),
            engine: default.map(|m| m.engine.clone()),
            engine_detail: default.map(|m| m.engine_detail.clone()),
            uptime_seconds: f
                .get("uptime", "")
                .map_or(0.0, |s| (s * 10.0).round() / 10.0),
            requests_per_second: f.rate(""),
            latency_ms: f.percentiles(""),
            queue_depth: f.count("queue") as usize,
            in_flight: f.count("in_flight") as i64,
            mean_batch_size,
            batches,
            images_stored: f.count("stored"),
            models: model_stats,
        };
        Ok(DeploymentStats {
            scope: "deployment",
            replicas,
            source: self.prometheus.url().to_string(),
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(figure: &str, model: Option<&str>, value: f64) -> Sample {
        let mut labels = BTreeMap::from([("figure".to_string(), figure.to_string())]);
        if let Some(m) = model {
            labels.insert("model".into(), m.into());
        }
        Sample { labels, value }
    }

    #[test]
    fn the_query_tags_every_figure_and_uses_the_selector() {
        let q = deployment_query(r#"job="imgclass""#);
        assert_eq!(q.matches("label_replace(").count(), 20);
        assert!(q.contains(r#"sum(up{job="imgclass"})"#), "{q}");
        assert!(q.contains(
            r#"histogram_quantile(0.95, sum by (le, model) (rate(imgclass_request_duration_seconds_bucket{job="imgclass",route=~"/classify|/v2/models/.+/infer"}[60s])))"#
        ));
        assert!(Deployment::new("http://p:9090", "  ").is_err());
        assert!(Deployment::new("http://p:9090", r#"{job="x"}"#).is_ok());
    }

    #[test]
    fn figures_are_read_per_model_with_nan_as_absent() {
        let f = Figures::from_samples(vec![
            sample("rps", None, 12.345),
            sample("rps", Some("a"), 10.0),
            sample("p50", None, 0.0125),
            sample("p95", None, f64::NAN),
            sample("batches", Some("a"), 4.0),
            sample("batched_images", Some("a"), 10.0),
            sample("up", None, 2.0),
        ]);
        assert_eq!(f.rate(""), 12.35);
        assert_eq!(f.rate("a"), 10.0);
        assert_eq!(f.rate("b"), 0.0);
        let p = f.percentiles("");
        assert_eq!((p.p50, p.p95), (Some(12.5), None));
        assert_eq!(f.mean_batch("a"), (2.5, 4));
        assert_eq!(f.mean_batch(""), (0.0, 0));
        assert_eq!(f.count("up"), 2);
    }
}
