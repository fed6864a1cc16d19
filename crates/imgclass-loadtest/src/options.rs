//! What a load test does, independent of how it was asked for (the
//! binary's flags, or struct literals).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A run of `imgclass loadtest`.
///
/// Without `rate` the run is a *closed loop*: `concurrency` workers each
/// send the next request as soon as their previous one finished (the
/// original project's behaviour with the default of 1). With `rate` it is an
/// *open loop*: requests are scheduled at a constant arrival rate whatever
/// the server does, `concurrency` only caps how many are in flight, and
/// latency counts from each request's scheduled send time so a stalled
/// server cannot hide behind a stalled generator (no coordinated omission).
///
/// Without `requests` and `duration`, every image is sent once.
#[derive(Debug, Clone)]
pub struct LoadtestOptions {
    /// Base URL of the service; plain http:// only.
    pub url: String,
    /// Folder searched recursively for images (or one image file).
    pub images: PathBuf,
    /// Request path appended to the URL.
    pub path: String,
    /// Multipart form field that carries the image.
    pub field: String,
    /// Sent as `Authorization: Bearer <KEY>`.
    pub api_key: Option<ApiKey>,
    /// Closed loop: workers (default 1). Open loop: most in flight (default 512).
    pub concurrency: Option<u32>,
    /// Open loop: constant arrival rate in requests per second.
    pub rate: Option<f64>,
    /// Stop after this many measured requests (warm-up excluded).
    pub requests: Option<u64>,
    /// Stop sending after this long; in-flight requests still finish.
    pub duration: Option<Duration>,
    /// Requests sent first with the same load model and not recorded.
    pub warmup: u64,
    /// Per-request timeout, from send to the last byte of the response.
    pub timeout: Duration,
    /// Output folder (default: loadtest-YYYYmmdd-HHMMSS, local time).
    pub out: Option<PathBuf>,
    /// Fail when the success rate (a fraction in 0..=1) is below this.
    pub fail_under: Option<f64>,
    pub progress: ProgressMode,
    /// Font for plot text (default: the first system font found).
    pub font: Option<PathBuf>,
}

/// `imgclass loadtest report <CSV>`: re-render the outputs of a run.
///
/// Settings and the command line are not in the CSV; they are taken from a
/// `summary.json` next to it when there is one.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// A results.csv written by `imgclass loadtest`.
    pub csv: PathBuf,
    /// Output folder (default: the CSV's folder).
    pub out: Option<PathBuf>,
    pub font: Option<PathBuf>,
}

/// How live progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Always the indicatif bar.
    Bar,
    /// One plain line per second on stderr.
    Plain,
    /// Nothing during the run (the end summary is still printed).
    Off,
}

/// An API key whose `Debug` output is redacted, so logging the options
/// never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Default in-flight cap of the open loop: high enough that a healthy server
/// is never throttled by the generator, low enough not to exhaust file
/// descriptors against a dead one.
pub const DEFAULT_OPEN_LOOP_IN_FLIGHT: u32 = 512;

/// The load model, decided once from the options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// `workers` tasks, each sending its next request when the last one ends.
    Closed { workers: u32 },
    /// Requests scheduled every `1/rate` s, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: u32 },
}

/// When the measured phase stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopAt {
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
}

impl LoadtestOptions {
    /// A closed-loop run of one pass over `images` against `url`, with
    /// every other setting at its default.
    pub fn new(url: impl Into<String>, images: impl Into<PathBuf>) -> Self {
        LoadtestOptions {
            url: url.into(),
            images: images.into(),
            path: "/classify".into(),
            field: "image".into(),
            api_key: None,
            concurrency: None,
            rate: None,
            requests: None,
            duration: None,
            warmup: 0,
            timeout: Duration::from_secs(30),
            out: None,
            fail_under: None,
            progress: ProgressMode::Auto,
            font: None,
        }
    }

    /// The load model these options ask for.
    pub fn load_model(&self) -> LoadModel {
        match self.rate {
            Some(rate) => LoadModel::Open {
                rate,
                max_in_flight: self.concurrency.unwrap_or(DEFAULT_OPEN_LOOP_IN_FLIGHT),
            },
            None => LoadModel::Closed {
                workers: self.concurrency.unwrap_or(1),
            },
        }
    }

    /// The stop condition; one pass over `image_count` images when neither
    /// `requests` nor `duration` is given (what the original did).
    pub fn stop_at(&self, image_count: usize) -> StopAt {
        let requests = match (self.requests, self.duration) {
            (None, None) => Some(image_count as u64),
            (r, _) => r,
        };
        StopAt {
            requests,
            duration: self.duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_debug_is_redacted() {
        let key = ApiKey("s3cret".into());
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
    }

    #[test]
    fn one_pass_unless_told_otherwise() {
        let mut o = LoadtestOptions::new("http://x", "imgs");
        assert_eq!(o.stop_at(5).requests, Some(5));
        assert_eq!(o.load_model(), LoadModel::Closed { workers: 1 });
        o.rate = Some(10.0);
        o.duration = Some(Duration::from_secs(2));
        assert_eq!(o.stop_at(5).requests, None);
        assert_eq!(
            o.load_model(),
            LoadModel::Open {
                rate: 10.0,
                max_in_flight: DEFAULT_OPEN_LOOP_IN_FLIGHT
            }
        );
    }
}
