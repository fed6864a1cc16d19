//! `imgclass loadtest` flags → [`imgclass_loadtest::LoadtestOptions`].
//!
//! One definition per flag, each with an `IMGCLASS_LOADTEST_*` environment
//! variable, so CI jobs and containers can configure a run without a
//! wrapper script. Values that need more than clap's parsing (the success
//! threshold, the rate) have small typed parsers here so mistakes surface
//! before any request is sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use imgclass_loadtest::{ApiKey, LoadtestOptions, ProgressMode, ReportOptions};

use super::values::parse_positive_duration;

/// `imgclass loadtest` arguments, including the optional `report` subcommand.
///
/// Without `--rate` the run is a *closed loop*: `--concurrency` workers each
/// send the next request as soon as their previous one finished. With
/// `--rate` it is an *open loop*: requests are scheduled at a constant
/// arrival rate whatever the server does, `--concurrency` only caps how many
/// are in flight, and latency counts from each request's scheduled send
/// time (no coordinated omission).
///
/// Without `--requests` and `--duration`, every image is sent once.
#[derive(Args, Debug, Clone)]
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
    #[arg(long, env = "IMGCLASS_LOADTEST_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
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
    #[arg(short = 'd', long, env = "IMGCLASS_LOADTEST_DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Requests sent first with the same load model and not recorded.
    #[arg(long, env = "IMGCLASS_LOADTEST_WARMUP", default_value_t = 0)]
    pub warmup: u64,

    /// Per-request timeout, from send to the last byte of the response.
    #[arg(long, env = "IMGCLASS_LOADTEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Output folder [default: loadtest-YYYYmmdd-HHMMSS, local time].
    #[arg(short = 'o', long, env = "IMGCLASS_LOADTEST_OUT")]
    pub out: Option<PathBuf>,

    /// Exit with failure when the success rate is below this. A bare number is
    /// a fraction in 0..=1 (0.99); a number with `%` is a percentage (99%).
    #[arg(long, env = "IMGCLASS_LOADTEST_FAIL_UNDER", value_parser = parse_fail_under)]
    pub fail_under: Option<f64>,

    /// Live progress: a bar on a terminal, periodic lines otherwise.
    #[arg(long, env = "IMGCLASS_LOADTEST_PROGRESS", value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,

    /// TrueType/OpenType font for plot text [default: the first of DejaVu
    /// Sans, Liberation Sans, FreeSans found on the system; without one, plots
    /// are drawn without text].
    #[arg(long, env = "IMGCLASS_LOADTEST_FONT")]
    pub font: Option<PathBuf>,
}

/// Subcommands of `imgclass loadtest`.
#[derive(Subcommand, Debug, Clone)]
pub enum LoadtestCommand {
    /// Re-render summary.json, plots and report.html from a results.csv.
    Report(ReportArgs),
}

/// `imgclass loadtest report <CSV> [--out DIR]`.
#[derive(Args, Debug, Clone)]
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

/// `--progress`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Always the indicatif bar.
    Bar,
    /// One plain line per second on stderr.
    Plain,
    /// Nothing during the run (the end summary is still printed).
    Off,
}

/// What `imgclass loadtest` was asked to do.
pub enum Loadtest {
    Run(LoadtestOptions),
    Report(ReportOptions),
}

impl LoadtestArgs {
    /// The run (or report) these flags ask for.
    pub fn plan(&self) -> Result<Loadtest, String> {
        if let Some(LoadtestCommand::Report(r)) = &self.command {
            return Ok(Loadtest::Report(ReportOptions {
                csv: r.csv.clone(),
                out: r.out.clone(),
                font: r.font.clone(),
            }));
        }
        // clap requires --images unless a subcommand is given; this is the
        // typed second line of defence.
        let images = self.images.clone().ok_or("--images DIR is required")?;
        Ok(Loadtest::Run(LoadtestOptions {
            url: self.url.clone(),
            images,
            path: self.path.clone(),
            field: self.field.clone(),
            api_key: self.api_key.clone(),
            concurrency: self.concurrency,
            rate: self.rate,
            requests: self.requests,
            duration: self.duration,
            warmup: self.warmup,
            timeout: self.timeout,
            out: self.out.clone(),
            fail_under: self.fail_under,
            progress: match self.progress {
                Progress::Auto => ProgressMode::Auto,
                Progress::Bar => ProgressMode::Bar,
                Progress::Plain => ProgressMode::Plain,
                Progress::Off => ProgressMode::Off,
            },
            font: self.font.clone(),
        }))
    }
}

fn parse_api_key(s: &str) -> Result<ApiKey, String> {
    if s.is_empty() {
        Err("the API key is empty".into())
    } else {
        Ok(ApiKey(s.to_string()))
    }
}

/// The `--fail-under` threshold as a fraction in 0..=1.
fn parse_fail_under(s: &str) -> Result<f64, String> {
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
    Ok(fraction)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = parse_positive_duration;
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
        let f = parse_fail_under;
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
        let key: ApiKey = parse_api_key("s3cret").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!(parse_api_key("").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("200"), Ok(200.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
    }
}
