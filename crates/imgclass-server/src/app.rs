//! What every handler shares: the options, the served models, metrics,
//! storage and the server's phase; and the start-up loading that makes the
//! server ready.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use imgclass_core::{Engine, LoadedModel};
use imgclass_pipeline::{
    Deadline, LifecycleError, ModelLoader, ModelSet, ModelState, Pipeline, PipelineOptions,
    Resources, Scored,
};

use crate::commit::StoreQueue;
use crate::deployment_stats::Deployment;
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use crate::options::ServerOptions;
use crate::response::Stored;
use crate::storage::{Storage, StoredRecord};

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Serving health; the models are being fetched, loaded or warmed up.
    Loading = 0,
    /// Every configured model is served.
    Ready = 1,
    /// A model could not be loaded; the server is stopping.
    Failed = 2,
    /// A shutdown signal arrived: finishing what was accepted.
    Draining = 3,
}

/// The shared state behind every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    options: ServerOptions,
    phase: AtomicU8,
    models: Arc<ModelSet>,
    /// The models this server was started with, the default first.
    configured: RwLock<Vec<String>>,
    load_error: Mutex<Option<LifecycleError>>,
    metrics: Arc<Metrics>,
    store: Option<StoreQueue>,
    /// The deployment's figures, when a Prometheus is configured.
    deployment: Option<Deployment>,
    started: Instant,
}

impl AppState {
    /// A server that serves no model yet: health answers, inference gets
    /// 503 until the models of `options.models` are loaded through
    /// `loader` ([`AppState::load_configured`]) or installed.
    pub fn new(options: ServerOptions) -> Result<Self, ServerError> {
        Self::build(options, None)
    }

    /// A server that loads its models through `loader`.
    pub fn with_loader(
        options: ServerOptions,
        loader: Arc<dyn ModelLoader>,
    ) -> Result<Self, ServerError> {
        Self::build(options, Some(loader))
    }

    /// A ready server around one already-loaded engine (tests, benchmarks).
    /// Runs the warm-up inference before returning.
    pub fn with_engine(
        model: LoadedModel,
        engine: Arc<dyn Engine>,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        Self::with_engines(vec![(model, engine)], options)
    }

    /// A ready server around several loaded engines; the first is the
    /// default model.
    pub fn with_engines(
        models: Vec<(LoadedModel, Arc<dyn Engine>)>,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        let state = AppState::new(options)?;
        for (model, engine) in models {
            state.install(model, engine)?;
        }
        Ok(state)
    }

    fn build(
        options: ServerOptions,
        loader: Option<Arc<dyn ModelLoader>>,
    ) -> Result<Self, ServerError> {
        let metrics = Arc::new(Metrics::new());
        let store = match &options.images_dir {
            Some(dir) => {
                let failed = |source| ServerError::Storage {
                    path: dir.display().to_string(),
                    source,
                };
                let storage = Storage::open(dir).map_err(failed)?;
                let queue = StoreQueue::new(
                    storage,
                    options.store_sync,
                    options.store_commit_delay,
                    metrics.clone(),
                );
                Some(queue.map_err(failed)?)
            }
            None => None,
        };
        let deployment = options
            .prometheus_url
            .as_deref()
            .map(|url| Deployment::new(url, &options.prometheus_selector))
            .transpose()
            .map_err(ServerError::Prometheus)?;
        let pipeline_options = PipelineOptions {
            max_batch_size: options.max_batch_size,
            max_batch_delay: options.max_batch_delay,
            queue_capacity: options.queue_capacity.max(1),
            limits: options.decode_limits(),
        };
        let resources = Resources::new(options.preprocess_threads.max(1), options.engine_cores);
        let observers = {
            let metrics = metrics.clone();
            Arc::new(move |name: &str| metrics.model(name) as Arc<dyn imgclass_pipeline::Observer>)
        };
        let models = Arc::new(ModelSet::new(
            pipeline_options,
            resources,
            observers,
            loader,
        ));
        Ok(AppState {
            inner: Arc::new(Inner {
                configured: RwLock::new(options.models.clone()),
                options,
                phase: AtomicU8::new(Phase::Loading as u8),
                models,
                load_error: Mutex::new(None),
                metrics,
                store,
                deployment,
                started: Instant::now(),
            }),
        })
    }

    /// Serves an already-loaded model under its configuration's name, warms
    /// it up, and turns readiness on once every configured model is served.
    /// Blocking: call it off the async runtime.
    pub fn install(&self, model: LoadedModel, engine: Arc<dyn Engine>) -> Result<(), ServerError> {
        let name = model.config.name.clone();
        {
            let mut configured = self
                .inner
                .configured
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if !configured.contains(&name) {
                configured.push(name.clone());
            }
        }
        self.inner.models.install(&name, model, engine)?;
        self.mark_ready_if_complete();
        Ok(())
    }

    /// Loads every configured model through the loader, one after the other
    /// (each warm-up has the cores to itself), then turns readiness on.
    /// Blocking: call it off the async runtime.
    pub fn load_configured(&self) -> Result<(), LifecycleError> {
        for name in self.configured() {
            self.inner.models.load_blocking(&name)?;
        }
        self.mark_ready_if_complete();
        Ok(())
    }

    fn mark_ready_if_complete(&self) {
        let all = self
            .configured()
            .iter()
            .all(|n| self.inner.models.state(n) == Some(ModelState::Ready));
        if all {
            let _ = self.inner.phase.compare_exchange(
                Phase::Loading as u8,
                Phase::Ready as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    pub fn phase(&self) -> Phase {
        match self.inner.phase.load(Ordering::SeqCst) {
            0 => Phase::Loading,
            1 => Phase::Ready,
            2 => Phase::Failed,
            _ => Phase::Draining,
        }
    }

    /// Ready: every configured model is loaded and warmed up, and the
    /// server is not draining.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    /// The reason loading failed, if it did.
    pub fn load_error(&self) -> Option<LifecycleError> {
        self.inner
            .load_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn fail(&self, error: LifecycleError) {
        *self
            .inner
            .load_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.inner
            .phase
            .store(Phase::Failed as u8, Ordering::SeqCst);
    }

    /// Readiness off: requests already accepted finish, load balancers stop
    /// sending new ones.
    pub(crate) fn begin_drain(&self) {
        self.inner
            .phase
            .store(Phase::Draining as u8, Ordering::SeqCst);
    }

    /// The served models and their lifecycle.
    pub fn models(&self) -> &Arc<ModelSet> {
        &self.inner.models
    }

    /// The configured models, the default first.
    pub fn configured(&self) -> Vec<String> {
        self.inner
            .configured
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The model `/classify` uses without `?model=`.
    pub fn default_model(&self) -> Option<String> {
        self.configured().into_iter().next()
    }

    /// The pipeline that serves `name` (the default model when `None` or
    /// empty), for inference: 503 while it is loading or the server failed;
    /// 404 for a model this server does not have. While draining, inference
    /// goes on: a request that arrived before the signal may still be
    /// reading its body or decoding, and it must get its answer. New
    /// requests cannot arrive then (the listener is closed and kept-alive
    /// connections are closed after their current request).
    pub(crate) fn pipeline(&self, name: Option<&str>) -> Result<Arc<Pipeline>, ApiError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => self.default_model().ok_or(ApiError::NotReady)?,
        };
        if self.phase() == Phase::Failed {
            return Err(ApiError::NotReady);
        }
        if let Some(p) = self.inner.models.get(&name) {
            return Ok(p);
        }
        // While the server is starting, a configured model (or any model,
        // when the models are not named yet) is on its way: 503, not 404.
        let coming = || {
            let configured = self.configured();
            self.phase() == Phase::Loading && (configured.is_empty() || configured.contains(&name))
        };
        match self.inner.models.state(&name) {
            Some(ModelState::Loading) => Err(ApiError::NotReady),
            None if coming() => Err(ApiError::NotReady),
            _ => Err(self.model_not_found(&name)),
        }
    }

    /// The pipeline serving `name`, whatever the server's phase (metadata).
    pub(crate) fn serving(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.inner.models.get(name)
    }

    /// 404 for a model this server does not serve, listing those it does.
    pub(crate) fn model_not_found(&self, name: &str) -> ApiError {
        let names: Vec<String> = self
            .inner
            .models
            .serving()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        ApiError::ModelNotFound {
            name: name.chars().take(128).collect(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The deployment's figures, if a Prometheus is configured.
    pub(crate) fn deployment(&self) -> Option<&Deployment> {
        self.inner.deployment.as_ref()
    }

    pub(crate) fn store(&self) -> Option<&StoreQueue> {
        self.inner.store.as_ref()
    }

    /// The images folder, when storage is on.
    pub fn storage(&self) -> Option<&Arc<Storage>> {
        self.inner.store.as_ref().map(StoreQueue::storage)
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Requests being handled right now (all routes).
    pub fn in_flight(&self) -> i64 {
        self.inner.metrics.in_flight_now()
    }

    /// Images waiting for an engine worker, all models together.
    pub fn queue_depth(&self) -> usize {
        self.inner.models.serving().iter().map(|p| p.depth()).sum()
    }

    /// Runs an already-preprocessed image through the default model's
    /// admission, queue and engine workers, as HTTP requests do, without
    /// HTTP or decoding: the engine-only side of the benchmark.
    pub async fn infer_preprocessed(&self, tensor: Vec<f32>) -> Result<Scored, ApiError> {
        let pipeline = self.pipeline(None)?;
        let deadline = Deadline::after(self.inner.options.request_timeout);
        let admitted = pipeline.admit(1)?;
        let mut scored = pipeline
            .infer_tensors(&admitted, vec![tensor], deadline)
            .await?;
        scored.pop().ok_or_else(|| ApiError::internal("no answer"))
    }

    /// Values in one preprocessed image of the default model, once loaded.
    pub fn image_len(&self) -> Option<usize> {
        self.pipeline(None).ok().map(|p| p.engine().image_len())
    }

    /// Stores uploads with their records before they are answered (the
    /// durability contract): [`Stored::Yes`] once they are in the images
    /// folder; when that fails, [`Stored::No`], or under
    /// `--require-store` [`ApiError::NotStored`] (507).
    pub(crate) async fn store_uploads(
        &self,
        items: Vec<(Bytes, StoredRecord)>,
    ) -> Result<Stored, ApiError> {
        let Some(store) = self.store() else {
            return Ok(Stored::Off);
        };
        match store.store_all(items).await {
            Ok(()) => Ok(Stored::Yes),
            Err(e) if self.inner.options.require_store => Err(ApiError::NotStored {
                detail: e.to_string(),
            }),
            Err(e) => Ok(Stored::No(e.to_string())),
        }
    }

    /// Waits until every storage write started so far has finished.
    pub async fn storage_idle(&self) {
        if let Some(store) = self.store() {
            store.idle().await;
        }
    }

    /// The last step of a shutdown: no more inference is accepted; the
    /// engine workers finish the queues and stop; pending writes complete.
    /// Returns false when `within` was not enough.
    pub(crate) async fn finish(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        self.inner.models.close_all();
        let stored = tokio::time::timeout_at(deadline, self.storage_idle())
            .await
            .is_ok();
        let models = self.inner.models.clone();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let joined = tokio::task::spawn_blocking(move || models.join_all(left))
            .await
            .unwrap_or(false);
        stored && joined
    }
}

/// Loads the configured models off the async runtime, then turns readiness
/// on. The returned future completes only if loading fails, so the caller
/// can stop the server.
pub(crate) fn spawn_loader(
    state: AppState,
    since: Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::task::spawn_blocking(move || match state.load_configured() {
        Ok(()) => tracing::info!(
            ms = since.elapsed().as_millis() as u64,
            models = %state.configured().join(","),
            "ready: models loaded and warmed up"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot load the models; stopping");
            state.fail(e);
            let _ = failed_tx.send(());
        }
    });
    async move {
        if failed_rx.await.is_err() {
            // Loaded fine: never complete.
            std::future::pending::<()>().await;
        }
    }
}
