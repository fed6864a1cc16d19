//! The statistics extension: `GET /v2/models[/{name}]/stats`.
//!
//! Every field Triton writes is always present: perf_analyzer indexes
//! `version` and all eight `inference_stats` entries (`cache_hit` and
//! `cache_miss` included) without checking, and aborts when one is missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"model_stats": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatisticsResponse {
    pub model_stats: Vec<ModelStatistics>,
}

/// Statistics of one model version since the server started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelStatistics {
    pub name: String,
    pub version: String,
    /// Milliseconds since the Unix epoch of the last inference, 0 = none.
    pub last_inference: u64,
    /// Successful inferences, each batch item counted.
    pub inference_count: u64,
    /// Model executions (one per batch the engine ran).
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    /// Per-response statistics of decoupled models: empty otherwise.
    #[serde(default)]
    pub response_stats: BTreeMap<String, serde_json::Value>,
    pub batch_stats: Vec<BatchStatistics>,
    #[serde(default)]
    pub memory_usage: Vec<MemoryUsage>,
}

/// A count and the total nanoseconds spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DurationStat {
    pub count: u64,
    pub ns: u64,
}

impl DurationStat {
    /// Adds one occurrence lasting `ns`.
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.ns = self.ns.saturating_add(ns);
    }
}

/// Request-level statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InferStatistics {
    /// Successful requests, whole time in the server.
    pub success: DurationStat,
    /// Failed requests.
    pub fail: DurationStat,
    /// Time waiting in the queue.
    pub queue: DurationStat,
    /// Preparing inputs (decode + preprocess for images).
    pub compute_input: DurationStat,
    /// Running the model.
    pub compute_infer: DurationStat,
    /// Extracting outputs.
    pub compute_output: DurationStat,
    pub cache_hit: DurationStat,
    pub cache_miss: DurationStat,
}

/// Executions of one batch size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: DurationStat,
    pub compute_infer: DurationStat,
    pub compute_output: DurationStat,
}

/// Memory a model holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// `CPU`, `CPU_PINNED` or `GPU`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: i64,
    pub byte_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_perf_analyzer_reads_is_written() {
        let mut s = ModelStatistics {
            name: "m".into(),
            version: "1".into(),
            ..Default::default()
        };
        s.inference_stats.success.record(1500);
        s.inference_stats.success.record(500);
        let v = serde_json::to_value(StatisticsResponse {
            model_stats: vec![s],
        })
        .unwrap();
        let m = &v["model_stats"][0];
        assert_eq!(m["version"], "1");
        for key in [
            "success",
            "fail",
            "queue",
            "compute_input",
            "compute_infer",
            "compute_output",
            "cache_hit",
            "cache_miss",
        ] {
            assert!(m["inference_stats"][key]["count"].is_u64(), "{key}");
            assert!(m["inference_stats"][key]["ns"].is_u64(), "{key}");
        }
        assert_eq!(m["inference_stats"]["success"]["count"], 2);
        assert_eq!(m["inference_stats"]["success"]["ns"], 2000);
        assert!(m["response_stats"].is_object());
        assert!(m["batch_stats"].is_array());
        assert!(m["memory_usage"].is_array());
        for key in ["last_inference", "inference_count", "execution_count"] {
            assert!(m[key].is_u64(), "{key}");
        }
    }
}
