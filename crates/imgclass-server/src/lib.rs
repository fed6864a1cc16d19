//! `imgclass serve`: the HTTP face of the classifier.
//!
//! One upload travels one way, each step in its own module:
//!
//! ```text
//! routes / kserve ─▶ auth, limits ─▶ inference (preprocess on a bounded
//! blocking pool) ─▶ batcher (bounded queue, engine worker threads)
//! ─▶ top-k ─▶ response; storage writes the upload in the background
//! ```
//!
//! [`run`] is what the binary calls. Tests and benchmarks build the same
//! app in-process with [`AppState::with_engine`] and [`router`] (or
//! [`serve`] on a listener they bound themselves).

mod args;
mod assets;
mod auth;
mod batcher;
mod connection;
mod error;
mod inference;
mod kserve;
mod limits;
mod metrics;
mod openapi;
mod pool;
mod routes;
mod shutdown;
mod state;
mod storage;
mod telemetry;
mod upload;

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

pub use args::{ServeArgs, parse_duration, parse_size};
pub use batcher::{BatchError, Scored};
pub use connection::ConnectionOptions;
pub use error::{ApiError, ServerError};
pub use routes::{SeedPrediction, router};
pub use shutdown::signal as shutdown_signal;
pub use state::{AppState, Phase, ServerOptions};
pub use storage::{HistoryPage, Storage, StoredRecord};

/// Runs the server until SIGTERM/SIGINT; builds its own tokio runtime.
/// `home` is the model home.
///
/// Health endpoints answer as soon as the socket is bound; the model is
/// fetched (first use), loaded and warmed up in the background, and only
/// then does readiness turn true. A model that cannot be loaded stops the
/// server with an error, so an orchestrator restarts it rather than
/// keeping a replica that will never be ready.
pub fn run(args: ServeArgs, home: PathBuf) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imgclass-http")
        .build()
        .map_err(ServerError::Runtime)?;
    let result = runtime.block_on(async move {
        let options = args.options();
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let state = AppState::new(options)?;
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(addr),
            "listening; loading the model in the background"
        );
        let failed = state::spawn_loader(state.clone(), home, args.engine.clone(), Instant::now());
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
