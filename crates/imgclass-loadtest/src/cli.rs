//! Command-line arguments of `imgclass loadtest` (clap derive).
//!
//! One definition per flag, each with an `IMGCLASS_LOADTEST_*` environment
//! variable, so CI jobs and containers can configure a run without a wrapper
//! script. Values that need more than clap's parsing (durations, the success
//! threshold) have small typed parsers here so mistakes surface before any
//! request is sent.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::LoadtestError;

/// `imgclass loadtest` arguments, including the optional `report` subcommand.
///
/// Without `--rate` the run is a *closed loop*: `--concurrency` workers each
/// send the next request as soon as their previous one finished (the original
/// project's behaviour with the default of 1). With `--rate` it is an *open
/// loop*: requests are scheduled at a constant arrival rate whatever the server
/// does, `--concurrency` only caps how many are in flight, and latency counts
/// from each request's scheduled send time so a stalled server cannot hide
/// behind a stalled generator (no coordinated omission).
///
/// Without `--requests` and `--duration`, every image is sent once.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadtestArgs {
    /// Re-render outputs from an existing results.csv instead of running a test.
    #[command(subcommand)]
    pub command: Option<LoadtestCommand>,

    /// Base URL of the service; plain http:// only (TLS is left to a gateway).
    #[arg(
        long,
        env = "IMGCLASS_LOADTEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// Folder searched recursively for jpg/jpeg/png/bmp/gif/webp/tif/tiff
    /// files (or one image file); the set is cycled through.
    #[arg(long, env = "IMGCLASS_LOADTEST_IMAGES", required = true)]
    pub images: Option<PathBuf>,

    /// Request path appended to the URL.
    #[arg(long, env = "IMGCLASS_LOADTEST_PATH", default_value = "/classify")]
    pub path: String,

    /// Multipart form field that carries the image.
    #[arg(long, env = "IMGCLASS_LOADTEST_FIELD", default_value = "image")]
    pub field: String,

    /// Sent as `Authorization: Bearer <KEY>`.
    #[arg(long, env = "IMGCLASS_LOADTEST_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,

    /// Closed loop: number of concurrent workers (default 1). Open loop
    /// (--rate): maximum requests in flight (default 512).
    #[arg(short = 'c', long, env = "IMGCLASS_LOADTEST_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,

    /// Open loop: constant arrival rate in requests per second.
    #[arg(long, env = "IMGCLASS_LOADTEST_RATE", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Stop after this many measured requests (warm-up excluded).
    #[arg(short = 'n', long, env = "IMGCLASS_LOADTEST_REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Stop sending after this long, e.g. 30s, 500ms, 2m, 1h (a bare number
    /// means seconds). In-flight requests still finish.
    #[arg(short = 'd', long, env = "IMGCLASS_LOADTEST_DURATION")]
    pub duration: Option<HumanDuration>,

    /// Requests sent first with the same load model and not recorded.
    #[arg(long, env = "IMGCLASS_LOADTEST_WARMUP", default_value_t = 0)]
    pub warmup: u64,

    /// Per-request timeout, from send to the last byte of the response.
    #[arg(long, env = "IMGCLASS_LOADTEST_TIMEOUT", default_value = "30s")]
    pub timeout: HumanDuration,

    /// Output folder [default: loadtest-YYYYmmdd-HHMMSS, local time].
    #[arg(short = 'o', long, env = "IMGCLASS_LOADTEST_OUT")]
    pub out: Option<PathBuf>,

    /// Exit with failure when the success rate is below this. A bare number is
    /// a fraction in 0..=1 (0.99); a number with `%` is a percentage (99%).
    #[arg(long, env = "IMGCLASS_LOADTEST_FAIL_UNDER")]
    pub fail_under: Option<FailUnder>,

    /// Live progress: a bar on a terminal, periodic lines otherwise.
    #[arg(long, env = "IMGCLASS_LOADTEST_PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// TrueType/OpenType font for plot text [default: the first of DejaVu
    /// Sans, Liberation Sans, FreeSans found on the system; without one, plots
    /// are drawn without text].
    #[arg(long, env = "IMGCLASS_LOADTEST_FONT")]
    pub font: Option<PathBuf>,
}

/// Subcommands of `imgclass loadtest`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum LoadtestCommand {
    /// Re-render summary.json, plots and report.html from a results.csv.
    Report(ReportArgs),
}

/// `imgclass loadtest report <CSV> [--out DIR]`.
///
/// Settings and the command line are not in the CSV; they are taken from a
/// `summary.json` next to it when there is one.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// A results.csv written by `imgclass loadtest`.
    pub csv: PathBuf,

    /// Output folder [default: the CSV's folder].
    #[arg(short = 'o', long, env = "IMGCLASS_LOADTEST_REPORT_OUT")]
    pub out: Option<PathBuf>,

    /// Font for plot text (see `imgclass loadtest --help`).
    #[arg(long, env = "IMGCLASS_LOADTEST_FONT")]
    pub font: Option<PathBuf>,
}

/// How live progress is shown.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
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

/// A duration written like `30s`, `250ms`, `1.5m`, `2h` or a bare `10` (seconds).
///
/// Hand-written rather than pulling in a crate for five units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms, 2m"))?;
        let scale = match unit.trim() {
            "" | "s" | "sec" | "secs" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "m" | "min" | "mins" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h)")),
        };
        let secs = value * scale;
        if !secs.is_finite() || secs <= 0.0 {
            return Err(format!("{s:?}: a duration must be positive"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

/// The `--api-key` value; its `Debug` output is redacted so logging the
/// parsed arguments never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err("the API key is empty".into())
        } else {
            Ok(Self(s.to_string()))
        }
    }
}

/// The `--fail-under` threshold, stored as a fraction in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailUnder(pub f64);

impl FromStr for FailUnder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (number, percent) = match s.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (s, false),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a number (0.99 or 99%)"))?;
        let fraction = if percent { value / 100.0 } else { value };
        if !(0.0..=1.0).contains(&fraction) {
            return Err(if percent {
                format!("{s:?}: a percentage must be within 0%..=100%")
            } else {
                format!(
                    "{s:?}: a bare number is a fraction within 0..=1; write {value}% for a percentage"
                )
            });
        }
        Ok(Self(fraction))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 1e7 {
        Ok(rate)
    } else {
        Err(format!(
            "{s:?}: the rate must be within (0, 10000000] requests/s"
        ))
    }
}

/// Default in-flight cap of the open loop: high enough that a healthy server
/// is never throttled by the generator, low enough not to exhaust file
/// descriptors against a dead one.
pub const DEFAULT_OPEN_LOOP_IN_FLIGHT: u32 = 512;

/// The load model, decided once from the flags.
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

impl LoadtestArgs {
    /// The load model these flags ask for.
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
    /// `--requests` nor `--duration` is given (what the original did).
    pub fn stop_at(&self, image_count: usize) -> StopAt {
        let duration = self.duration.map(|d| d.0);
        let requests = match (self.requests, duration) {
            (None, None) => Some(image_count as u64),
            (r, _) => r,
        };
        StopAt { requests, duration }
    }

    /// The `--images` folder, required in run mode (clap enforces it unless a
    /// subcommand is given, this is the typed second line of defence).
    pub fn images_dir(&self) -> Result<&PathBuf, LoadtestError> {
        self.images
            .as_ref()
            .ok_or_else(|| LoadtestError::InvalidArgs("--images DIR is required".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("10"), Ok(Duration::from_secs(10)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert!(d("0s").is_err());
        assert!(d("fast").is_err());
        assert!(d("3 weeks").is_err());
    }

    #[test]
    fn fail_under_fraction_or_percent() {
        let f = |s: &str| s.parse::<FailUnder>().map(|f| f.0);
        assert_eq!(f("0.99"), Ok(0.99));
        assert_eq!(f("1"), Ok(1.0));
        assert_eq!(f("99%"), Ok(0.99));
        assert_eq!(f("100 %"), Ok(1.0));
        assert!(f("99").is_err(), "a bare 99 is ambiguous and refused");
        assert!(f("101%").is_err());
        assert!(f("-0.1").is_err());
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let key: ApiKey = "s3cret".parse().unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!("".parse::<ApiKey>().is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("200"), Ok(200.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
    }
}
