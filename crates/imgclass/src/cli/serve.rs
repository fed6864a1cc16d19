//! `imgclass serve` flags → [`imgclass_server::ServerOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use imgclass_server::ServerOptions;

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
        let cli =
            Cli::try_parse_from(["serve", "--no-store", "--cors-origin", "http://a, http://b"])
                .unwrap();
        let o = cli.serve.options();
        assert!(o.images_dir.is_none());
        assert_eq!(o.cors_origins, vec!["http://a", "http://b"]);
    }

    #[test]
    fn several_models_are_served_the_first_being_the_default() {
        let cli = Cli::try_parse_from(["serve", "--model", "a, b,a,,c"]).unwrap();
        assert_eq!(cli.serve.options().models, vec!["a", "b", "c"]);
        assert!(cli.serve.engine.single_model().is_err());
    }
}
