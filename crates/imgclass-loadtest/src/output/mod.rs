//! The output folder: `results.csv`, `results.txt`, `summary.json`, the
//! charts as PNG and SVG, and `report.html`.

pub mod csv;
pub mod text;

use std::path::Path;

use crate::error::LoadtestError;
use crate::plots;
use crate::record::Record;
use crate::report;
use crate::stats::Summary;

pub const RESULTS_CSV: &str = "results.csv";
pub const RESULTS_TXT: &str = "results.txt";
pub const SUMMARY_JSON: &str = "summary.json";
pub const REPORT_HTML: &str = "report.html";

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), LoadtestError> {
    std::fs::write(path, bytes).map_err(|e| LoadtestError::io(path, e))
}

/// Writes `summary.json` (pretty-printed: people read it).
pub fn write_summary(path: &Path, summary: &Summary) -> Result<(), LoadtestError> {
    let json = serde_json::to_string_pretty(summary).map_err(|source| LoadtestError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_file(path, json + "\n")
}

/// Reads a `summary.json` written by [`write_summary`].
pub fn read_summary(path: &Path) -> Result<Summary, LoadtestError> {
    let bytes = std::fs::read(path).map_err(|e| LoadtestError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| LoadtestError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Everything a run writes.
pub fn write_run(
    dir: &Path,
    records: &[Record],
    summary: &Summary,
    with_text: bool,
) -> Result<(), LoadtestError> {
    csv::write(&dir.join(RESULTS_CSV), records)?;
    text::write(&dir.join(RESULTS_TXT), records)?;
    write_rendered(dir, records, summary, with_text)
}

/// What `report` re-renders: summary, charts, HTML page.
pub fn write_rendered(
    dir: &Path,
    records: &[Record],
    summary: &Summary,
    with_text: bool,
) -> Result<(), LoadtestError> {
    write_summary(&dir.join(SUMMARY_JSON), summary)?;
    let charts = plots::render_all(records, with_text)?;
    for chart in &charts {
        write_file(&dir.join(format!("{}.png", chart.name)), &chart.png)?;
        write_file(&dir.join(format!("{}.svg", chart.name)), &chart.svg)?;
    }
    let generated = chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string();
    write_file(
        &dir.join(REPORT_HTML),
        report::render(summary, &charts, &generated),
    )
}
