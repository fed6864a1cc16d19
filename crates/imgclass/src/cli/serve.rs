//! `imgclass serve` flags → [`imgclass_server::ServerOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use imgclass_server::{ConnectionOptions, ServerOptions, StoreSync};

use super::engine::{DecodeArgs, EngineArgs};
use super::values::{parse_duration, parse_size};

#[derive(Args, Debug, Clone)]
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
    /// Preprocessed images that may wait for the engine, per model; when full, requests get 503 at once.
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
    /// Threads decoding and resizing uploads, shared by every model (default: the CPUs this process may use).
    #[arg(long, env = "IMGCLASS_PREPROCESS_THREADS")]
    pub preprocess_threads: Option<usize>,
    /// Cores engine calls may keep busy at once, all models together
    /// (default: the CPUs this process may use). Each model has its own
    /// sessions; this bound keeps several models from oversubscribing the cores.
    #[arg(long, env = "IMGCLASS_ENGINE_CORES")]
    pub engine_cores: Option<usize>,
    /// Folder where uploads and their results are stored (several replicas may share it).
    #[arg(long, env = "IMGCLASS_IMAGES_DIR", default_value = "data/images")]
    pub images_dir: PathBuf,
    /// How a stored upload reaches the disk before it is answered. `group`:
    /// the image and its record are fsynced (files and folders), one flush
    /// shared by every upload committed together, so a 200 survives a power
    /// cut. `off`: renamed into place without fsync, so a 200 survives a
    /// crash of the process but a power cut may lose the last seconds.
    #[arg(long, env = "IMGCLASS_STORE_SYNC", default_value = "group", value_parser = ["group", "off"])]
    pub store_sync: String,
    /// How long the storage committer gathers uploads into one group before
    /// flushing (0: whatever is waiting when it becomes free; groups grow by
    /// themselves under load).
    #[arg(long, env = "IMGCLASS_STORE_COMMIT_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub store_commit_delay: Duration,
    /// Answer 507 when an upload cannot be stored (disk full, read-only
    /// folder) instead of classifying it with `X-Image-Stored: false`.
    #[arg(long, env = "IMGCLASS_REQUIRE_STORE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub require_store: bool,
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
    /// The Prometheus scraping every replica (e.g. http://prometheus:9090):
    /// `/api/stats/deployment`, and so the page's live panel, then shows
    /// the whole deployment's figures instead of this replica's.
    #[arg(long, env = "IMGCLASS_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Selects this deployment's replicas' series in that Prometheus.
    #[arg(long, env = "IMGCLASS_PROMETHEUS_SELECTOR", default_value = imgclass_server::DEFAULT_PROMETHEUS_SELECTOR)]
    pub prometheus_selector: String,
    #[command(flatten)]
    pub decode: DecodeArgs,
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
        let cpus = imgclass_core::usable_cpus();
        ServerOptions {
            models: self.engine.models(),
            max_body_size: self.max_body_size,
            max_infer_body_size: self.max_infer_body_size,
            max_pixels: self.decode.max_pixels,
            queue_capacity: self.queue_capacity as usize,
            max_batch_size: self.max_batch_size as usize,
            max_batch_delay: self.max_batch_delay,
            request_timeout: self.request_timeout,
            preprocess_threads: self.preprocess_threads.unwrap_or(cpus).max(1),
            engine_cores: self.engine_cores.unwrap_or(cpus).max(1),
            images_dir: (!self.no_store).then(|| self.images_dir.clone()),
            store_sync: match self.store_sync.as_str() {
                "off" => StoreSync::Off,
                _ => StoreSync::Group,
            },
            store_commit_delay: self.store_commit_delay,
            require_store: self.require_store,
            cors_origins: self
                .cors_origin
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            shutdown_grace: self.shutdown_grace,
            prometheus_url: self.prometheus_url.clone().filter(|u| !u.trim().is_empty()),
            prometheus_selector: self.prometheus_selector.clone(),
            connection: self.connection.options(),
        }
    }
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
        assert_eq!(o.models, vec![imgclass_core::DEFAULT_MODEL]);
        assert_eq!(o.engine_cores, imgclass_core::usable_cpus());
        assert_eq!(
            format!("{:?}", o.connection),
            format!("{:?}", imgclass_server::ConnectionOptions::default()),
            "the flags' defaults are the library's"
        );
        let cli =
            Cli::try_parse_from(["serve", "--no-store", "--cors-origin", "http://a, http://b"])
                .unwrap();
        let o = cli.serve.options();
        assert!(o.images_dir.is_none());
        assert_eq!(o.cors_origins, vec!["http://a", "http://b"]);
        let d = ServerOptions::default();
        assert_eq!(
            (o.store_sync, o.store_commit_delay, o.require_store),
            (d.store_sync, d.store_commit_delay, d.require_store)
        );
        let cli = Cli::try_parse_from(["serve", "--store-sync", "off", "--require-store"]).unwrap();
        let o = cli.serve.options();
        assert_eq!((o.store_sync, o.require_store), (StoreSync::Off, true));
    }

    #[test]
    fn several_models_are_served_the_first_being_the_default() {
        let cli = Cli::try_parse_from(["serve", "--model", "a, b,a,,c"]).unwrap();
        assert_eq!(cli.serve.options().models, vec!["a", "b", "c"]);
        assert!(cli.serve.engine.single_model().is_err());
    }
}
