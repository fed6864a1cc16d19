//! A client of Prometheus's HTTP API for one thing: an instant query
//! (`GET /api/v1/query`) whose answer is a vector of labelled numbers.
//!
//! Written over hyper's client (already in the tree under axum) rather
//! than a Prometheus API crate: those bring reqwest and a TLS stack for
//! what is one URL and a four-field JSON shape here, and the Prometheus a
//! deployment runs beside its replicas is reached over plain HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Longest answer read from Prometheus (a vector of a few dozen series is
/// a few KiB).
const MAX_ANSWER: usize = 4 << 20;

/// Why a query got no figures.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot reach Prometheus at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Prometheus refused the query ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
}

/// One series of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus server's query API.
pub struct Prometheus {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// `http://host:port[/prefix]`, without a trailing slash.
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

impl Prometheus {
    /// A client of the Prometheus at `url` (`http://host:port`, optionally
    /// with the path prefix it is served under). Queries give up after
    /// `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let base = url.trim().trim_end_matches('/');
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("not a URL ({e}); expected e.g. http://prometheus:9090"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme {other}:// is not supported: use http:// (Prometheus beside the replicas)"
                ));
            }
            None => return Err("no scheme: expected e.g. http://prometheus:9090".into()),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("no host: expected e.g. http://prometheus:9090".into());
        }
        if uri.query().is_some() {
            return Err("a query string is not allowed in the base URL".into());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Prometheus {
            client,
            base: base.to_string(),
            timeout,
        })
    }

    /// The base URL queries go to.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Runs the instant query `expr`; a NaN value (e.g. a quantile of no
    /// traffic) comes back as NaN.
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, QueryError> {
        let params = serde_urlencoded::to_string([("query", expr)])
            .map_err(|e| QueryError::Malformed(format!("cannot encode the query: {e}")))?;
        let uri = format!("{}/api/v1/query?{params}", self.base);
        let request = Request::get(&uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| QueryError::Malformed(format!("cannot build the request: {e}")))?;
        let unreachable = |detail: String| QueryError::Unreachable {
            url: self.base.clone(),
            detail,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| QueryError::Timeout(self.timeout))??;
        parse_answer(status, &body)
    }
}

fn parse_answer(status: StatusCode, body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        if status.is_success() {
            QueryError::Malformed(format!("not the query API's JSON: {e}"))
        } else {
            QueryError::Refused {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }
        }
    })?;
    if answer.status != "success" || !status.is_success() {
        return Err(QueryError::Refused {
            status: status.as_u16(),
            detail: answer.error.unwrap_or_else(|| answer.status.clone()),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| QueryError::Malformed("no data".into()))?;
    if data.result_type != "vector" {
        return Err(QueryError::Malformed(format!(
            "a {} where a vector was expected",
            data.result_type
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            // Prometheus writes NaN and ±Inf as "NaN", "+Inf", "-Inf",
            // which f64's parser reads.
            let value = s.value.1.parse::<f64>().map_err(|_| {
                QueryError::Malformed(format!("value {:?} is not a number", s.value.1))
            })?;
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_any_query() {
        let t = Duration::from_secs(1);
        assert_eq!(
            Prometheus::new("http://prometheus:9090/", t).unwrap().url(),
            "http://prometheus:9090"
        );
        assert_eq!(
            Prometheus::new("http://gw/prometheus", t).unwrap().url(),
            "http://gw/prometheus"
        );
        for bad in [
            "prometheus:9090",
            "https://prometheus:9090",
            "http://",
            "http://p:9090/?x=1",
            "not a url",
        ] {
            assert!(Prometheus::new(bad, t).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_with_nan_and_errors_kept_apart() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"figure":"p50","model":"m"},"value":[1.5,"0.012"]},
            {"metric":{"figure":"p95"},"value":[1.5,"NaN"]}]}}"#;
        let samples = parse_answer(StatusCode::OK, ok).unwrap();
        assert_eq!(samples[0].labels["model"], "m");
        assert_eq!(samples[0].value, 0.012);
        assert!(samples[1].value.is_nan());
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        match parse_answer(StatusCode::BAD_REQUEST, bad) {
            Err(QueryError::Refused {
                status: 400,
                detail,
            }) => {
                assert!(detail.contains("parse error"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_answer(StatusCode::OK, b"<html>"),
            Err(QueryError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(StatusCode::BAD_GATEWAY, b"<html>"),
            Err(QueryError::Refused { status: 502, .. })
        ));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_answer(StatusCode::OK, matrix),
            Err(QueryError::Malformed(_))
        ));
    }
}
