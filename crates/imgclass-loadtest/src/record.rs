//! One row of `results.csv`: what happened to one request.
//!
//! Times are whole microseconds so that the summary computed during a run and
//! the one `report` recomputes from the CSV are bit-for-bit the same: the CSV
//! writes microseconds as exact decimal seconds and reads them back exactly.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Why a request counted as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No complete response within `--timeout`.
    Timeout,
    /// The TCP connection (or the HTTP handshake) could not be made.
    Connect,
    /// The connection was closed or reset before a complete response.
    Closed,
    /// The response was not valid HTTP/1.
    Protocol,
    /// An informational or redirect status (1xx, 3xx).
    Status3xx,
    /// A 4xx status: a problem with our request (or the API key).
    Status4xx,
    /// A 5xx status: the server failed.
    Status5xx,
    /// Anything else (an unexpected I/O error).
    Other,
}

impl ErrorKind {
    /// All kinds, in the order they are reported.
    pub const ALL: [ErrorKind; 8] = [
        Self::Timeout,
        Self::Connect,
        Self::Closed,
        Self::Protocol,
        Self::Status3xx,
        Self::Status4xx,
        Self::Status5xx,
        Self::Other,
    ];

    /// The name written to `results.csv` and `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Closed => "closed",
            Self::Protocol => "protocol",
            Self::Status3xx => "3xx",
            Self::Status4xx => "4xx",
            Self::Status5xx => "5xx",
            Self::Other => "other",
        }
    }

    /// The failure kind of a non-2xx status, `None` for a success.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            400..=499 => Some(Self::Status4xx),
            500..=599 => Some(Self::Status5xx),
            _ => Some(Self::Status3xx),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown error kind {s:?}"))
    }
}

/// The top-1 prediction parsed from the server's JSON answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Top1 {
    pub label: String,
    pub probability: f64,
}

/// The server's own timing headers, in milliseconds, when it sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerTiming {
    /// `X-Queue-Time`: waiting for a batch slot.
    pub queue_ms: Option<f64>,
    /// `X-Inference-Time`: the model itself.
    pub inference_ms: Option<f64>,
    /// `X-Total-Time`: the whole request inside the server.
    pub total_ms: Option<f64>,
}

/// What happened to one measured request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the schedule, from 0: the order requests were issued in.
    pub seq: u64,
    /// Image path relative to `--images`.
    pub file: Arc<str>,
    /// `None` for a success (a 2xx with its whole body read).
    pub error: Option<ErrorKind>,
    /// From the scheduled send time to the last byte of the response.
    pub response_time_us: u64,
    /// The HTTP status, when a response head arrived.
    pub http_status: Option<u16>,
    /// Scheduled send time, from the start of the measured phase.
    pub start_us: u64,
    /// How late the request actually went out (waiting for an in-flight slot
    /// or for the timer); always 0 in the closed loop.
    pub wait_us: u64,
    /// Size of the multipart body uploaded.
    pub bytes_sent: u64,
    /// Size of the response body received.
    pub bytes_received: u64,
    /// Top-1 of a JSON `[{label, probability}, ...]` answer.
    pub top1: Option<Top1>,
    /// The server's timing headers.
    pub server: ServerTiming,
}

impl Record {
    /// True for a 2xx response read completely.
    pub fn success(&self) -> bool {
        self.error.is_none()
    }

    /// `success` or the error kind: the key of the outcome counts.
    pub fn outcome(&self) -> &'static str {
        self.error.map_or("success", ErrorKind::as_str)
    }

    /// The bare file name, as `results.txt` wants it.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// When the response was complete, from the start of the measured phase.
    pub fn end_us(&self) -> u64 {
        self.start_us + self.response_time_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind));
        }
        assert_eq!(ErrorKind::from_status(204), None);
        assert_eq!(ErrorKind::from_status(503), Some(ErrorKind::Status5xx));
        assert_eq!(ErrorKind::from_status(401), Some(ErrorKind::Status4xx));
        assert_eq!(ErrorKind::from_status(302), Some(ErrorKind::Status3xx));
    }
}
