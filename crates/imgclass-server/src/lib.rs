//! `imgclass serve`: the HTTP face of the classifier.
//!
//! One upload travels one way:
//!
//! ```text
//! router ─▶ telemetry, auth, limits ─▶ handlers (seed, kserve, statistics,
//! repository, history, health) ─▶ the model's Pipeline (imgclass-pipeline: admission, decode
//! pool, batch queue, engine workers, softmax, top-k) ─▶ commit (the
//! upload and its record durable in the images folder) ─▶ response
//! ```
//!
//! The KServe v2 routes use the `imgclass-oip` codec for the wire format
//! (binary tensor data, classification, model config, statistics and
//! repository JSON); `served_model` says how a pipeline looks in it.
//!
//! [`run`] is what the binary calls, with the options its flags produced
//! and a [`ModelLoader`] that fetches and loads models (this crate knows
//! nothing of fetching or engines). Tests and benchmarks build the same app
//! in-process with [`AppState::with_engine`] and [`router`] (or [`serve`]
//! on a listener they bound themselves).

mod app;
mod assets;
mod auth;
mod commit;
mod connection;
mod deployment_stats;
mod error;
mod handlers;
mod inference_stats;
mod limits;
mod metrics;
mod openapi;
mod options;
mod process_metrics;
mod prometheus;
mod query;
mod response;
mod router;
mod served_model;
mod shutdown;
mod storage;
mod telemetry;
mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub use app::{AppState, Phase};
pub use commit::StoreSync;
pub use connection::ConnectionOptions;
pub use error::{ApiError, ServerError};
pub use handlers::seed::SeedPrediction;
pub use imgclass_pipeline::ModelLoader;
pub use options::{DEFAULT_PROMETHEUS_SELECTOR, ServerOptions};
pub use router::router;
pub use shutdown::signal as shutdown_signal;
pub use storage::{HistoryPage, Storage, StoredRecord};
/// The `/classify` body reader, public for the fuzz harness (crate imgclass-fuzz).
pub use upload::{Upload, read_upload};

/// Runs the server on `host:port` until SIGTERM/SIGINT; builds its own
/// tokio runtime.
///
/// Health endpoints answer as soon as the socket is bound; the models of
/// `options.models` are loaded through `loader` and warmed up in the
/// background, and only then does readiness turn true. A model that cannot
/// be loaded stops the server with an error, so an orchestrator restarts it
/// rather than keeping a replica that will never be ready.
pub fn run(
    options: ServerOptions,
    host: &str,
    port: u16,
    loader: Arc<dyn ModelLoader>,
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imgclass-http")
        .build()
        .map_err(ServerError::Runtime)?;
    let addr = format!("{host}:{port}");
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let state = AppState::with_loader(options, loader)?;
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(addr),
            models = %state.configured().join(","),
            "listening; loading the models in the background"
        );
        let failed = app::spawn_loader(state.clone(), Instant::now());
        let stop = async move {
            tokio::select! {
                _ = shutdown::signal() => {}
                _ = failed => {}
            }
        };
        serve(state.clone(), listener, stop).await?;
        match state.load_error() {
            Some(message) => Err(ServerError::Load(message)),
            None => Ok(()),
        }
    });
    // A model fetch still running in the blocking pool cannot be cancelled;
    // do not let it hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Serves `state` on `listener` until `shutdown` completes, then drains
/// gracefully: stop accepting, finish in-flight requests and queued work
/// and pending storage writes within the shutdown grace.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    shutdown::serve_with_grace(state, listener, shutdown).await
}
