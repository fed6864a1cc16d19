//! `imgclass serve` flags. Every flag also reads an `IMGCLASS_*` variable,
//! so containers configure the service through the environment alone.

use std::path::PathBuf;
use std::time::Duration;

use imgclass_engines::EngineArgs;

use crate::connection::ConnectionOptions;
use crate::state::ServerOptions;

/// Flags of `imgclass serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on. The default keeps the service on this machine;
    /// use 0.0.0.0 in a container or behind a gateway.
    #[arg(long, env = "IMGCLASS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port.
    #[arg(long, env = "IMGCLASS_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Largest request body on /classify (e.g. 10MiB, 512KiB, 1000000).
    #[arg(long, env = "IMGCLASS_MAX_BODY_SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub max_body_size: usize,
    /// Largest request body on KServe v2 infer (JSON with base64 images or FP32 tensors is bulky).
    #[arg(long, env = "IMGCLASS_MAX_INFER_BODY_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_infer_body_size: usize,
    /// Largest image accepted, width × height, checked from the header before decoding.
    #[arg(long, env = "IMGCLASS_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Preprocessed images that may wait for the engine; when full, requests get 503 at once.
    #[arg(long, env = "IMGCLASS_QUEUE_CAPACITY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue_capacity: u32,
    /// Most images sent to the engine in one call (also capped by the model's
    /// `engine.max_batch`). 4 because, on ONNX Runtime with two cores, larger
    /// batches gave no more images/s but grew each session's memory arena
    /// (RSS ≈ 380 MB at 8 versus ≈ 250 MB at 4).
    #[arg(long, env = "IMGCLASS_MAX_BATCH_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch_size: u32,
    /// How long a worker holding one image waits for more to fill a batch
    /// (0: take only what is already queued, adding no latency).
    #[arg(long, env = "IMGCLASS_MAX_BATCH_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub max_batch_delay: Duration,
    /// Time from a request's arrival to its answer before it gets 504.
    #[arg(long, env = "IMGCLASS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Threads decoding and resizing uploads (default: the CPUs this process may use).
    #[arg(long, env = "IMGCLASS_PREPROCESS_THREADS")]
    pub preprocess_threads: Option<usize>,
    /// Folder where uploads and their results are stored (several replicas may share it).
    #[arg(long, env = "IMGCLASS_IMAGES_DIR", default_value = "data/images")]
    pub images_dir: PathBuf,
    /// Do not store uploads.
    #[arg(long, env = "IMGCLASS_NO_STORE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_store: bool,
    /// Allowed CORS origin(s), comma-separated, or `*`. CORS is off when unset.
    #[arg(long, env = "IMGCLASS_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Require `Authorization: Bearer <key>` on inference, history and image routes.
    #[arg(long, env = "IMGCLASS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// After SIGTERM/SIGINT, how long in-flight and queued work may take before exiting.
    #[arg(long, env = "IMGCLASS_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Limits and timeouts of client connections (see `connection` for the
/// reasoning behind each default).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionArgs {
    /// Most client connections open at once. A new one past it closes the
    /// longest-idle kept-alive connection, or, when none is idle, gets
    /// 503 with Retry-After.
    #[arg(long, env = "IMGCLASS_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Time to send a request's whole head (request line and headers), from
    /// connecting or from the first byte after an idle spell; then the
    /// connection is closed (0: no limit).
    #[arg(long, env = "IMGCLASS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a request body may take, plus 1 s per --body-min-rate bytes
    /// received; a slower body gets 408 (0: no limit).
    #[arg(long, env = "IMGCLASS_BODY_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up to earn more time past
    /// --body-timeout (e.g. 1KiB; 0: the body must arrive within --body-timeout).
    #[arg(long, env = "IMGCLASS_BODY_MIN_RATE", default_value = "1KiB", value_parser = parse_size)]
    pub body_min_rate: usize,
    /// How long writing a response may stay blocked on a client that does
    /// not read; then the connection is closed (0: no limit).
    #[arg(long, env = "IMGCLASS_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests
    /// (0: no keep-alive). Longer than a gateway's pooled connections
    /// live idle, so the gateway closes them first.
    #[arg(long, env = "IMGCLASS_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,
    /// Requests answered on one connection before it is closed (0: no limit).
    #[arg(
        long,
        env = "IMGCLASS_MAX_REQUESTS_PER_CONNECTION",
        default_value_t = 1000
    )]
    pub max_requests_per_connection: u64,
}

impl ConnectionArgs {
    pub fn options(&self) -> ConnectionOptions {
        ConnectionOptions {
            max_connections: self.max_connections as usize,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            body_min_rate: self.body_min_rate as u64,
            send_timeout: self.send_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            max_requests_per_connection: self.max_requests_per_connection,
        }
    }
}

impl ServeArgs {
    /// The in-process options these flags ask for.
    pub fn options(&self) -> ServerOptions {
        ServerOptions {
            max_body_size: self.max_body_size,
            max_infer_body_size: self.max_infer_body_size,
            max_pixels: self.max_pixels,
            queue_capacity: self.queue_capacity as usize,
            max_batch_size: self.max_batch_size as usize,
            max_batch_delay: self.max_batch_delay,
            request_timeout: self.request_timeout,
            preprocess_threads: self
                .preprocess_threads
                .unwrap_or_else(imgclass_engines::usable_cpus)
                .max(1),
            images_dir: (!self.no_store).then(|| self.images_dir.clone()),
            cors_origins: self
                .cors_origin
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            shutdown_grace: self.shutdown_grace,
            connection: self.connection.options(),
        }
    }
}

/// Parses a byte size: `10485760`, `512KiB`, `10MiB`, `1GiB`, `10MB`, `10M`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 10MiB or 1048576"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?}: use B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: `0`, `250ms`, `5s`, `1.5s`, `2m`, `100us`.
/// A bare number means seconds, like most server timeouts.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 250ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use us, ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn defaults_fit_a_laptop_and_store_can_be_turned_off() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        let o = cli.serve.options();
        assert_eq!(
            (cli.serve.host.as_str(), cli.serve.port),
            ("127.0.0.1", 8080)
        );
        assert_eq!(o.max_body_size, 10 << 20);
        assert_eq!(o.max_batch_delay, Duration::ZERO);
        assert_eq!(o.request_timeout, Duration::from_secs(30));
        assert!(o.images_dir.is_some() && o.api_key.is_none() && o.cors_origins.is_empty());
        let c = &o.connection;
        let d = ConnectionOptions::default();
        assert_eq!(
            (
                c.max_connections,
                c.header_timeout,
                c.body_timeout,
                c.body_min_rate
            ),
            (
                d.max_connections,
                d.header_timeout,
                d.body_timeout,
                d.body_min_rate
            ),
            "the flags' defaults are the library's"
        );
        assert_eq!(
            (
                c.send_timeout,
                c.keep_alive_timeout,
                c.max_requests_per_connection
            ),
            (
                d.send_timeout,
                d.keep_alive_timeout,
                d.max_requests_per_connection
            )
        );
        let cli =
            Cli::try_parse_from(["serve", "--no-store", "--cors-origin", "http://a, http://b"])
                .unwrap();
        let o = cli.serve.options();
        assert!(o.images_dir.is_none());
        assert_eq!(o.cors_origins, vec!["http://a", "http://b"]);
    }
}
