//! `imgclass loadtest`: a load generator for the imgclass HTTP service.
//!
//! It uploads a folder of images as multipart requests, closed loop
//! (`--concurrency`) or open loop (`--rate`, latency measured from the
//! scheduled send time), and writes `results.csv`, the original project's
//! `results.txt`, `summary.json` (HDR-histogram percentiles), PNG and SVG
//! charts, and a self-contained `report.html`. `report CSV` re-renders those
//! from a CSV.
//!
//! The binary maps its flags to [`LoadtestOptions`] and calls [`run`] (or
//! [`report`]).
//!
//! Modules, one concern each: [`options`] (what to do), [`images`] (payloads),
//! [`client`] (HTTP), [`schedule`] (load models), [`stats`] (summary),
//! [`output`] (files), [`plots`], [`report`] (HTML), [`progress`] (terminal).

pub mod client;
mod error;
pub mod images;
pub mod options;
pub mod output;
pub mod plots;
pub mod progress;
pub mod record;
pub mod report;
pub mod schedule;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub use error::LoadtestError;
pub use options::{ApiKey, LoadModel, LoadtestOptions, ProgressMode, ReportOptions, StopAt};
pub use record::{ErrorKind, Record};
pub use stats::Summary;

use client::{Client, Target};
use images::Payloads;
use progress::Progress;
use schedule::{Collector, Phase};
use stats::Settings;

/// Runs `imgclass loadtest` on its own tokio runtime.
/// `Ok(ExitCode::FAILURE)` means the run completed but missed `fail_under`.
pub fn run(args: LoadtestOptions) -> Result<ExitCode, LoadtestError> {
    let images_dir = args.images.clone();
    let payloads = Arc::new(images::load(&images_dir, &args.field)?);
    let model = args.load_model();
    let stop = args.stop_at(payloads.items.len());
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    // Fail on an unwritable folder before spending minutes on the test.
    std::fs::create_dir_all(&out).map_err(|e| LoadtestError::io(&out, e))?;
    let settings = settings(&args, &images_dir, &payloads, model, stop)?;

    // The closed loop brings its own per-core runtimes (see `schedule`); this
    // one then only ticks the progress display, and idle extra threads would
    // just compete with the load threads for the cores.
    let mut builder = match model {
        LoadModel::Closed { .. } => tokio::runtime::Builder::new_current_thread(),
        LoadModel::Open { .. } => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(LoadtestError::Runtime)?;
    let records = runtime.block_on(measure(&args, payloads, model, stop))?;
    drop(runtime);

    let summary = Summary::compute(
        &records,
        Some(settings),
        Some(command_line(std::env::args())),
    );
    output::write_run(&out, &records, &summary, fonts(args.font.as_deref()))?;
    print!("{}", progress::summary_table(&summary, Some(&out)));
    let threshold = args.fail_under;
    if summary.meets(threshold) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "success rate {:.2}% is below --fail-under {:.2}%",
            summary.success_rate * 100.0,
            threshold.unwrap_or(0.0) * 100.0
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Warm-up, then the measured phase with live progress; records in
/// schedule order.
async fn measure(
    args: &LoadtestOptions,
    payloads: Arc<Payloads>,
    model: LoadModel,
    stop: StopAt,
) -> Result<Vec<Record>, LoadtestError> {
    let target = Target::resolve(&args.url, &args.path).await?;
    let client = Arc::new(Client::new(
        target,
        &payloads.content_type,
        args.api_key.as_ref().map(|k| k.0.as_str()),
        args.timeout,
    )?);
    let collector = Arc::new(Collector::default());
    let mut phases = Vec::with_capacity(2);
    if args.warmup > 0 {
        if args.progress != ProgressMode::Off {
            eprintln!("warm-up: {} requests (not recorded)", args.warmup);
        }
        let stop = StopAt {
            requests: Some(args.warmup),
            duration: None,
        };
        phases.push(Phase { stop, sink: None });
    }
    phases.push(Phase {
        stop,
        sink: Some(collector.clone()),
    });
    let progress = Progress::new(args.progress, stop);
    let phases = schedule::run(client, payloads, model, phases);
    tokio::pin!(phases);
    let mut ticker = tokio::time::interval(progress.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut phases => break outcome,
            _ = ticker.tick() => progress.update(&collector.lock().live),
        }
    };
    progress.finish();
    outcome?;
    let mut records = collector.take();
    records.sort_unstable_by_key(|r| r.seq);
    Ok(records)
}

/// `imgclass loadtest report CSV [--out DIR]`: re-renders summary.json,
/// plots and report.html from a results.csv.
pub fn report(args: ReportOptions) -> Result<ExitCode, LoadtestError> {
    let records = output::csv::read(&args.csv)?;
    let csv_dir = match args.csv.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out = args.out.clone().unwrap_or_else(|| csv_dir.clone());
    std::fs::create_dir_all(&out).map_err(|e| LoadtestError::io(&out, e))?;
    // Settings and the command line are not in the CSV; keep them from the
    // run's summary when it is there.
    let previous = output::read_summary(&csv_dir.join(output::SUMMARY_JSON)).ok();
    let (settings, command) = previous.map_or((None, None), |s| (s.settings, s.command));
    let summary = Summary::compute(&records, settings, command);
    output::write_rendered(&out, &records, &summary, fonts(args.font.as_deref()))?;
    print!("{}", progress::summary_table(&summary, Some(&out)));
    Ok(ExitCode::SUCCESS)
}

/// Registers a font for the charts, warning once when there is none.
fn fonts(preferred: Option<&Path>) -> bool {
    let found = plots::font(preferred).is_some();
    if !found {
        eprintln!(
            "note: no font found (install fonts-dejavu-core or pass --font FILE.ttf); charts are drawn without text"
        );
    }
    found
}

fn default_out_dir() -> PathBuf {
    PathBuf::from(
        chrono::Local::now()
            .format("loadtest-%Y%m%d-%H%M%S")
            .to_string(),
    )
}

fn settings(
    args: &LoadtestOptions,
    images_dir: &Path,
    payloads: &Payloads,
    model: LoadModel,
    stop: StopAt,
) -> Result<Settings, LoadtestError> {
    let url = client::parse_url(&args.url, &args.path)?.display();
    let (mode, concurrency, rate) = match model {
        LoadModel::Closed { workers } => ("closed", workers, None),
        LoadModel::Open {
            rate,
            max_in_flight,
        } => ("open", max_in_flight, Some(rate)),
    };
    Ok(Settings {
        url,
        field: args.field.clone(),
        images: images_dir.display().to_string(),
        image_count: payloads.items.len(),
        mode: mode.into(),
        concurrency,
        rate,
        requests: stop.requests,
        duration_s: stop.duration.map(|d| d.as_secs_f64()),
        warmup: args.warmup,
        timeout_s: args.timeout.as_secs_f64(),
        api_key: args.api_key.is_some(),
        fail_under: args.fail_under,
    })
}

/// The command line for the report, shell-quoted, with the API key hidden.
fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        // The redaction marker is pushed unquoted so it reads as a marker.
        if hide_next {
            hide_next = false;
            out.push("***".to_string());
        } else if arg.starts_with("--api-key=") {
            out.push("--api-key=***".to_string());
        } else {
            hide_next = arg == "--api-key";
            out.push(shell_quote(&arg));
        }
    }
    out.join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--rate=200"), "--rate=200");
        assert_eq!(shell_quote("my dir"), "'my dir'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn api_key_is_redacted() {
        let args = [
            "imgclass",
            "loadtest",
            "--api-key",
            "k1",
            "--api-key=k2",
            "--images",
            "a b",
        ];
        assert_eq!(
            command_line(args.map(String::from)),
            "imgclass loadtest --api-key *** --api-key=*** --images 'a b'"
        );
    }
}
