//! Everything that shapes the service, independent of how it was
//! configured (flags in the binary, struct literals in tests).

use std::path::PathBuf;
use std::time::Duration;

use imgclass_core::{DecodeLimits, usable_cpus};

/// The replicas' scrape job in the shipped Prometheus configurations.
pub const DEFAULT_PROMETHEUS_SELECTOR: &str = r#"job="imgclass""#;
use crate::commit::StoreSync;
use crate::connection::ConnectionOptions;

/// The service's settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Models to serve, loaded at start; the first is the default of
    /// `/classify`. Empty for servers given their models directly
    /// ([`crate::AppState::with_engine`]).
    pub models: Vec<String>,
    /// Body limit on /classify (multipart or raw image).
    pub max_body_size: usize,
    /// Body limit on KServe v2 infer.
    pub max_infer_body_size: usize,
    /// Largest width × height decoded.
    pub max_pixels: u64,
    /// Preprocessed images that may wait for an engine worker, per model.
    pub queue_capacity: usize,
    /// Most images per engine call (also capped by the model's `engine.max_batch`).
    pub max_batch_size: usize,
    /// How long a worker waits to fill a batch (zero: only what is queued).
    pub max_batch_delay: Duration,
    /// Arrival to answer; past it the client gets 504.
    pub request_timeout: Duration,
    /// Threads decoding uploads at once (shared by every model).
    pub preprocess_threads: usize,
    /// Cores engine calls may keep busy at once, all models together.
    pub engine_cores: usize,
    /// Where uploads are stored; `None` turns storage off.
    pub images_dir: Option<PathBuf>,
    /// How stored uploads reach the disk before they are answered.
    pub store_sync: StoreSync,
    /// How long the committer gathers writes into one group (zero: what
    /// is waiting when it becomes free).
    pub store_commit_delay: Duration,
    /// Answer 507 instead of an unstored 200 when an upload cannot be stored.
    pub require_store: bool,
    /// CORS origins; empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Bearer key required on inference and history routes.
    pub api_key: Option<String>,
    /// Time allowed for draining after a shutdown signal.
    pub shutdown_grace: Duration,
    /// The Prometheus that scrapes every replica of this deployment:
    /// `/api/stats/deployment` reads the deployment's figures from it.
    /// `None`: that route answers 404 and the page shows this replica's.
    pub prometheus_url: Option<String>,
    /// The series of this deployment's replicas in that Prometheus.
    pub prometheus_selector: String,
    /// Client connection limits and timeouts.
    pub connection: ConnectionOptions,
}

impl ServerOptions {
    /// The decoding limits these options imply.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_pixels: self.max_pixels,
            max_bytes: self.max_body_size.max(self.max_infer_body_size),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            models: Vec::new(),
            max_body_size: 10 << 20,
            max_infer_body_size: 64 << 20,
            max_pixels: DecodeLimits::default().max_pixels,
            queue_capacity: 64,
            max_batch_size: 4,
            max_batch_delay: Duration::ZERO,
            request_timeout: Duration::from_secs(30),
            preprocess_threads: usable_cpus(),
            engine_cores: usable_cpus(),
            images_dir: None,
            store_sync: StoreSync::Group,
            store_commit_delay: Duration::ZERO,
            require_store: false,
            cors_origins: Vec::new(),
            api_key: None,
            shutdown_grace: Duration::from_secs(30),
            prometheus_url: None,
            prometheus_selector: DEFAULT_PROMETHEUS_SELECTOR.to_string(),
            connection: ConnectionOptions::default(),
        }
    }
}
