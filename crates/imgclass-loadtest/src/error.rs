//! Typed errors of the load generator.
//!
//! Only failures that stop the whole run are errors here. A request that times
//! out or gets a 500 is a *measurement*, recorded as an [`crate::ErrorKind`] in
//! its row, never an `Err`.

use std::path::PathBuf;

/// Everything that can stop `imgclass loadtest` before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// The options are understood one by one but make no sense together.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),

    /// `--url` could not be parsed or uses something other than plain `http://`.
    #[error("invalid --url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The host name in `--url` did not resolve to any address.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },

    /// `--images` holds no file with a supported extension.
    #[error("no images (jpg, jpeg, png, bmp, gif, webp, tif, tiff) found in {0}")]
    NoImages(PathBuf),

    /// Reading an input or writing an output file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `results.csv` could not be written or read.
    #[error("{path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    /// A row of a `results.csv` given to `report` is not one we wrote.
    #[error("{path}, row {row}: {reason}")]
    CsvFormat {
        path: PathBuf,
        row: u64,
        reason: String,
    },

    /// `summary.json` could not be (de)serialised.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// plotters failed to draw a chart (it reports errors as strings).
    #[error("plot {name}: {reason}")]
    Plot { name: String, reason: String },

    /// The tokio runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl LoadtestError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
