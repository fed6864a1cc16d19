//! Graceful shutdown: on the signal, readiness turns off and the listener
//! closes; requests already accepted finish (their queued images are still
//! run), pending storage writes complete, the engine workers stop. All of it
//! within the shutdown grace; past it the server exits anyway, so an
//! orchestrator's kill timeout is never what ends the process.

use std::future::Future;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::app::AppState;
use crate::connection;
use crate::error::ServerError;
use crate::router::router;

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what `docker stop` and
/// Kubernetes send).
pub async fn signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received: shutting down"),
        _ = terminate => tracing::info!("SIGTERM received: shutting down"),
    }
}

/// See [`crate::serve`].
pub async fn serve_with_grace(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let grace = state.options().shutdown_grace;
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<Instant>();
    let draining = state.clone();
    let signal = async move {
        shutdown.await;
        draining.begin_drain();
        tracing::info!(
            in_flight = draining.metrics().in_flight_now(),
            queued = draining.queue_depth(),
            grace_s = grace.as_secs_f64(),
            "draining"
        );
        let _ = began_tx.send(Instant::now());
    };
    let server = connection::serve(
        listener,
        router(state.clone()),
        state.options().connection.clone(),
        state.metrics().connections().clone(),
        signal,
    );
    tokio::pin!(server);
    let mut began_rx = began_rx;
    let began = tokio::select! {
        () = &mut server => {
            // The signal future ran to completion before the server returned.
            began_rx.try_recv().unwrap_or_else(|_| Instant::now())
        }
        began = &mut began_rx => {
            let began = began.unwrap_or_else(|_| Instant::now());
            let left = grace.saturating_sub(began.elapsed());
            match tokio::time::timeout(left, &mut server).await {
                Ok(()) => {}
                Err(_) => {
                    tracing::warn!(
                        in_flight = state.metrics().in_flight_now(),
                        "shutdown grace passed with requests in flight; exiting"
                    );
                    return Ok(());
                }
            }
            began
        }
    };
    let left = grace.saturating_sub(began.elapsed());
    if state.finish(left).await {
        tracing::info!(ms = began.elapsed().as_millis() as u64, "drained; bye");
    } else {
        tracing::warn!("shutdown grace passed before queued work and storage finished; exiting");
    }
    Ok(())
}
