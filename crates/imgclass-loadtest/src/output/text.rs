//! `results.txt` in exactly the original project's format:
//! `filename,Success|Failure,seconds`, one line per upload, no header, the
//! bare file name and the response time as a decimal number of seconds.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::LoadtestError;
use crate::output::csv::seconds;
use crate::record::Record;

/// Writes `records` (already in request order).
pub fn write(path: &Path, records: &[Record]) -> Result<(), LoadtestError> {
    let io = |e| LoadtestError::io(path, e);
    let mut w = BufWriter::with_capacity(1 << 16, File::create(path).map_err(io)?);
    for r in records {
        let status = if r.success() { "Success" } else { "Failure" };
        writeln!(
            w,
            "{},{status},{}",
            r.file_name(),
            seconds(r.response_time_us)
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}
