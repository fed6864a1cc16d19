//! `results.csv`: one row per measured request, and reading it back for
//! `imgclass loadtest report`.
//!
//! The first three columns are the original `results.txt` ones, so
//! `cut -d, -f1-3` recovers the old format. Times are decimal seconds written
//! from whole microseconds and parsed back exactly (see [`crate::record`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::LoadtestError;
use crate::record::{ErrorKind, Record, ServerTiming, Top1};

/// Column names, in order.
pub const HEADER: [&str; 15] = [
    "filename",
    "status",
    "response_time",
    "http_status",
    "error",
    "start_offset",
    "wait",
    "bytes_sent",
    "bytes_received",
    "top1_label",
    "top1_probability",
    "queue_time_ms",
    "inference_time_ms",
    "total_time_ms",
    "request",
];

/// Microseconds as decimal seconds: exact, shortest, at least one decimal
/// (`200000` → `0.2`, `1000000` → `1.0`, `12345` → `0.012345`).
pub fn seconds(us: u64) -> String {
    let mut s = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

/// Inverse of [`seconds`]; also accepts any float (rounded to the microsecond).
pub fn parse_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 6
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let int: u64 = int.parse().ok()?;
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().ok()?
        };
        return int.checked_mul(1_000_000)?.checked_add(frac);
    }
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * 1e6).round() as u64)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> LoadtestError + '_ {
    move |source| LoadtestError::Csv {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `records` (already in request order).
pub fn write(path: &Path, records: &[Record]) -> Result<(), LoadtestError> {
    let file = File::create(path).map_err(|e| LoadtestError::io(path, e))?;
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, file));
    let err = csv_err(path);
    w.write_record(HEADER).map_err(&err)?;
    for r in records {
        w.write_record([
            &*r.file,
            if r.success() { "Success" } else { "Failure" },
            &seconds(r.response_time_us),
            &opt(r.http_status),
            r.error.map_or("", ErrorKind::as_str),
            &seconds(r.start_us),
            &seconds(r.wait_us),
            &r.bytes_sent.to_string(),
            &r.bytes_received.to_string(),
            r.top1.as_ref().map_or("", |t| t.label.as_str()),
            &opt(r.top1.as_ref().map(|t| t.probability)),
            &opt(r.server.queue_ms),
            &opt(r.server.inference_ms),
            &opt(r.server.total_ms),
            &r.seq.to_string(),
        ])
        .map_err(&err)?;
    }
    let mut inner = w
        .into_inner()
        .map_err(|e| LoadtestError::io(path, e.into_error()))?;
    inner.flush().map_err(|e| LoadtestError::io(path, e))
}

/// Reads a `results.csv` we wrote, or an original headerless
/// `results.txt` (`filename,Success|Failure,seconds`: requests are then taken
/// as sent one after another, as the original did).
pub fn read(path: &Path) -> Result<Vec<Record>, LoadtestError> {
    let err = csv_err(path);
    let file = File::open(path).map_err(|e| LoadtestError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let mut rows = reader.records();
    let Some(first) = rows.next().transpose().map_err(&err)? else {
        return Ok(Vec::new());
    };
    let header: Option<Vec<String>> =
        (first.get(0) == Some("filename")).then(|| first.iter().map(str::to_string).collect());
    let col = |name: &str| {
        header
            .as_ref()
            .and_then(|h| h.iter().position(|c| c == name))
    };
    let cols: Vec<Option<usize>> = HEADER.iter().map(|name| col(name)).collect();
    let (filename, status, response_time) = match header {
        Some(_) => (cols[0], cols[1], cols[2]),
        None => (Some(0), Some(1), Some(2)),
    };
    let bad = |row: u64, reason: String| LoadtestError::CsvFormat {
        path: path.to_path_buf(),
        row,
        reason,
    };

    let mut records = Vec::new();
    let mut files: std::collections::HashMap<String, Arc<str>> = Default::default();
    let mut clock_us = 0u64;
    let data_rows = header
        .is_none()
        .then_some(Ok(first))
        .into_iter()
        .chain(rows);
    for (i, row) in data_rows.enumerate() {
        let row = row.map_err(&err)?;
        let n = i as u64 + 1;
        let get = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let field = |idx: usize| get(cols[idx]);
        let file = get(filename).ok_or_else(|| bad(n, "no filename".into()))?;
        let file = files
            .entry(file.to_string())
            .or_insert_with(|| file.into())
            .clone();
        let ok = match get(status) {
            Some("Success") => true,
            Some("Failure") => false,
            other => {
                return Err(bad(
                    n,
                    format!("status {other:?} is neither Success nor Failure"),
                ));
            }
        };
        let response_time_us = get(response_time)
            .and_then(parse_seconds)
            .ok_or_else(|| bad(n, "response_time is not a number of seconds".into()))?;
        let parse_u64 = |idx: usize, what: &str| -> Result<Option<u64>, LoadtestError> {
            field(idx)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(n, format!("{what} {v:?} is not a whole number")))
                })
                .transpose()
        };
        let parse_f64 = |idx: usize| field(idx).and_then(|v| v.parse::<f64>().ok());
        let http_status = parse_u64(3, "http_status")?.map(|s| s as u16);
        let error = match field(4) {
            Some(kind) => Some(kind.parse::<ErrorKind>().map_err(|e| bad(n, e))?),
            None if ok => None,
            // An original results.txt says only "Failure".
            None => Some(
                http_status
                    .and_then(ErrorKind::from_status)
                    .unwrap_or(ErrorKind::Other),
            ),
        };
        let start_us = match field(5) {
            Some(v) => parse_seconds(v).ok_or_else(|| bad(n, format!("start_offset {v:?}")))?,
            None => clock_us,
        };
        clock_us = start_us + response_time_us;
        let wait_us = field(6).and_then(parse_seconds).unwrap_or(0);
        records.push(Record {
            seq: parse_u64(14, "request")?.unwrap_or(i as u64),
            file,
            error: if ok { None } else { error },
            response_time_us,
            http_status,
            start_us,
            wait_us,
            bytes_sent: parse_u64(7, "bytes_sent")?.unwrap_or(0),
            bytes_received: parse_u64(8, "bytes_received")?.unwrap_or(0),
            top1: field(9).map(|label| Top1 {
                label: label.to_string(),
                probability: parse_f64(10).unwrap_or(f64::NAN),
            }),
            server: ServerTiming {
                queue_ms: parse_f64(11),
                inference_ms: parse_f64(12),
                total_ms: parse_f64(13),
            },
        });
    }
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(200_000), "0.2");
        assert_eq!(seconds(1_000_000), "1.0");
        assert_eq!(seconds(12_345), "0.012345");
        assert_eq!(seconds(0), "0.0");
        for us in [0, 1, 999_999, 1_000_001, 123_456_789] {
            assert_eq!(parse_seconds(&seconds(us)), Some(us));
        }
        assert_eq!(parse_seconds("0.2034513950347900"), Some(203_451));
        assert_eq!(parse_seconds("1e-3"), Some(1000));
        assert_eq!(parse_seconds("-1"), None);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let records = vec![
            Record {
                seq: 0,
                file: "sub/cat, \"tabby\".png".into(),
                error: None,
                response_time_us: 12_345,
                http_status: Some(200),
                start_us: 0,
                wait_us: 7,
                bytes_sent: 1234,
                bytes_received: 99,
                top1: Some(Top1 {
                    label: "tench, Tinca tinca".into(),
                    probability: 0.123_456_789_012_345_6,
                }),
                server: ServerTiming {
                    queue_ms: Some(0.1),
                    inference_ms: Some(5.25),
                    total_ms: Some(6.0),
                },
            },
            Record {
                seq: 1,
                file: "dog.jpg".into(),
                error: Some(ErrorKind::Timeout),
                response_time_us: 30_000_000,
                http_status: None,
                start_us: 12_345,
                wait_us: 0,
                bytes_sent: 10,
                bytes_received: 0,
                top1: None,
                server: ServerTiming::default(),
            },
        ];
        write(&path, &records).unwrap();
        assert_eq!(read(&path).unwrap(), records);
    }

    #[test]
    fn reads_original_results_txt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.txt");
        std::fs::write(&path, "a.jpg,Success,0.2\nb.bmp,Failure,0.5\n").unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].start_us, 200_000);
        assert_eq!(records[1].error, Some(ErrorKind::Other));
        assert!(records[0].success());
    }
}
