//! What the terminal shows: live progress during the run and the summary
//! table at the end.
//!
//! Progress goes to stderr (a bar on a terminal, one plain line per second in
//! CI logs) so stdout carries only the final table and can be captured.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::options::{ProgressMode, StopAt};
use crate::record::Record;
use crate::stats::{Latency, Summary, new_histogram};

/// Running totals for the progress display.
pub struct Live {
    /// Start of the measured phase (set by the scheduler), so a warm-up
    /// before it does not dilute the rate shown.
    start: Option<Instant>,
    done: u64,
    errors: u64,
    /// Successful latencies in microseconds.
    hist: Histogram<u64>,
}

impl Live {
    pub fn new() -> Self {
        Self {
            start: None,
            done: 0,
            errors: 0,
            hist: new_histogram(),
        }
    }

    /// Marks the start of the measured phase (the first call wins).
    pub fn start(&mut self, at: Instant) {
        self.start.get_or_insert(at);
    }

    /// Time since the measured phase started (zero before).
    pub fn elapsed(&self) -> Duration {
        self.start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    pub fn add(&mut self, r: &Record) {
        self.done += 1;
        if r.success() {
            self.hist.saturating_record(r.response_time_us.max(1));
        } else {
            self.errors += 1;
        }
    }

    fn message(&self) -> String {
        let secs = self.elapsed().as_secs_f64().max(1e-9);
        let q = |p: f64| {
            if self.hist.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2} ms", self.hist.value_at_quantile(p) as f64 / 1000.0)
            }
        };
        format!(
            "{} done, {:.1} req/s, p50 {}, p99 {}, {} errors",
            self.done,
            self.done as f64 / secs,
            q(0.5),
            q(0.99),
            self.errors
        )
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

enum Display {
    Bar { bar: ProgressBar, by_count: bool },
    Plain,
    Off,
}

/// The live display of the measured phase.
pub struct Progress {
    display: Display,
}

impl Progress {
    /// `Auto` picks the bar only when stderr is a terminal.
    pub fn new(mode: ProgressMode, stop: StopAt) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let display = match mode {
            ProgressMode::Bar => {
                let (len, by_count) = match (stop.requests, stop.duration) {
                    (Some(n), _) => (n, true),
                    (None, Some(d)) => (d.as_millis() as u64, false),
                    (None, None) => (0, true),
                };
                let bar = ProgressBar::with_draw_target(
                    Some(len),
                    ProgressDrawTarget::stderr_with_hz(10),
                );
                let style = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar:.cyan/blue} {percent:>3}% {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                Display::Bar { bar, by_count }
            }
            ProgressMode::Plain => Display::Plain,
            ProgressMode::Auto | ProgressMode::Off => Display::Off,
        };
        Self { display }
    }

    /// How often [`Progress::update`] should be called.
    pub fn interval(&self) -> Duration {
        match self.display {
            Display::Bar { .. } => Duration::from_millis(100),
            _ => Duration::from_secs(1),
        }
    }

    /// Shows `live`; nothing before the measured phase has started.
    pub fn update(&self, live: &Live) {
        if live.start.is_none() {
            return;
        }
        match &self.display {
            Display::Bar { bar, by_count } => {
                bar.set_position(if *by_count {
                    live.done
                } else {
                    live.elapsed().as_millis() as u64
                });
                bar.set_message(live.message());
            }
            Display::Plain => {
                eprintln!(
                    "[{:>7.1}s] {}",
                    live.elapsed().as_secs_f64(),
                    live.message()
                );
            }
            Display::Off => {}
        }
    }

    /// Clears the bar (the summary table follows).
    pub fn finish(&self) {
        if let Display::Bar { bar, .. } = &self.display {
            bar.finish_and_clear();
        }
    }
}

/// The end-of-run table printed on stdout.
pub fn summary_table(s: &Summary, out_dir: Option<&Path>) -> String {
    let mut t = String::new();
    let row = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "  {k:<24} {v}");
    };
    let _ = writeln!(t, "Summary");
    row(&mut t, "Requests", s.requests.to_string());
    row(&mut t, "Successes", s.successes.to_string());
    row(&mut t, "Failures", s.failures.to_string());
    row(
        &mut t,
        "Success rate",
        format!("{:.2} %", s.success_rate * 100.0),
    );
    row(&mut t, "Elapsed", format!("{:.3} s", s.elapsed_s));
    row(
        &mut t,
        "Throughput (successes)",
        format!("{:.2} req/s", s.throughput_rps),
    );
    row(
        &mut t,
        "Achieved request rate",
        format!("{:.2} req/s", s.achieved_rate_rps),
    );
    if let Some(r) = s.offered_rate_rps {
        row(&mut t, "Offered rate", format!("{r:.2} req/s"));
    }
    let _ = writeln!(t, "Latency (ms)");
    let _ = writeln!(
        t,
        "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"
    );
    let lat = |t: &mut String, name: &str, l: &Latency| {
        let _ = writeln!(
            t,
            "  {name:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            l.min, l.mean, l.p50, l.p90, l.p95, l.p99, l.p99_9, l.max
        );
    };
    lat(&mut t, "successful", &s.latency_ms);
    lat(&mut t, "all", &s.latency_all_ms);
    let _ = writeln!(t, "Outcomes");
    for (k, v) in &s.outcomes {
        row(&mut t, k, v.to_string());
    }
    let st = &s.server_timing_ms;
    if st.queue_ms.is_some() || st.inference_ms.is_some() || st.total_ms.is_some() {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let _ = writeln!(t, "Server timing, mean (ms)");
        row(&mut t, "queue", f(st.queue_ms));
        row(&mut t, "inference", f(st.inference_ms));
        row(&mut t, "total", f(st.total_ms));
    }
    if let Some(dir) = out_dir {
        let _ = writeln!(t, "Output: {}", dir.display());
    }
    t
}
