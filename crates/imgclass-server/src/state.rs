//! What every handler shares: options, the model once it is loaded, the
//! batcher, metrics and storage; and the background loader that makes the
//! server ready.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use imgclass_core::{DecodeLimits, Engine, LoadedModel, Preprocessor};
use imgclass_engines::EngineArgs;
use tokio::sync::Semaphore;

use crate::batcher::{BatchConfig, Batcher};
use crate::connection::ConnectionOptions;
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use crate::pool::BlockingPool;
use crate::storage::{Storage, StoreQueue};

/// Everything that shapes the service, independent of how it was
/// configured (flags for the binary, struct literals for tests).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Body limit on /classify (multipart or raw image).
    pub max_body_size: usize,
    /// Body limit on KServe v2 infer.
    pub max_infer_body_size: usize,
    /// Largest width × height decoded.
    pub max_pixels: u64,
    /// Preprocessed images that may wait for an engine worker.
    pub queue_capacity: usize,
    /// Most images per engine call (also capped by the model's `engine.max_batch`).
    pub max_batch_size: usize,
    /// How long a worker waits to fill a batch (zero: only what is queued).
    pub max_batch_delay: Duration,
    /// Arrival to answer; past it the client gets 504.
    pub request_timeout: Duration,
    /// Threads decoding uploads at once.
    pub preprocess_threads: usize,
    /// Where uploads are stored; `None` turns storage off.
    pub images_dir: Option<PathBuf>,
    /// CORS origins; empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Bearer key required on inference and history routes.
    pub api_key: Option<String>,
    /// Time allowed for draining after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Connection limits and timeouts.
    pub connection: ConnectionOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_size: 10 << 20,
            max_infer_body_size: 64 << 20,
            max_pixels: DecodeLimits::default().max_pixels,
            queue_capacity: 64,
            max_batch_size: 4,
            max_batch_delay: Duration::ZERO,
            request_timeout: Duration::from_secs(30),
            preprocess_threads: imgclass_engines::usable_cpus(),
            images_dir: None,
            cors_origins: Vec::new(),
            api_key: None,
            shutdown_grace: Duration::from_secs(30),
            connection: ConnectionOptions::default(),
        }
    }
}

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Serving health; the model is being fetched, loaded or warmed up.
    Loading = 0,
    /// Accepting inference.
    Ready = 1,
    /// The model could not be loaded; the server is stopping.
    Failed = 2,
    /// A shutdown signal arrived: finishing what was accepted.
    Draining = 3,
}

/// A loaded model with the machinery that serves it.
pub(crate) struct Serving {
    pub model: LoadedModel,
    pub engine: Arc<dyn Engine>,
    pub preprocessor: Preprocessor,
    pub batcher: Batcher,
    /// Images admitted into the pipeline (preprocessing, queued or in the
    /// engine). Bounded so that waiting for the preprocessing pool can never
    /// grow without limit: past it, requests get 503 before any decoding.
    pub admission: Arc<Semaphore>,
}

impl Serving {
    pub fn name(&self) -> &str {
        &self.model.config.name
    }
}

/// The shared state behind every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    options: ServerOptions,
    phase: AtomicU8,
    serving: OnceLock<Arc<Serving>>,
    load_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    store: Option<StoreQueue>,
    preprocess: BlockingPool,
    started: Instant,
}

impl AppState {
    /// A server that is not ready yet: health answers, inference gets 503
    /// until [`AppState::install`] runs.
    pub fn new(options: ServerOptions) -> Result<Self, ServerError> {
        let metrics = Arc::new(Metrics::new());
        let store = match &options.images_dir {
            Some(dir) => {
                let storage = Storage::open(dir).map_err(|source| ServerError::Storage {
                    path: dir.display().to_string(),
                    source,
                })?;
                Some(StoreQueue::new(storage, metrics.clone()))
            }
            None => None,
        };
        let preprocess = BlockingPool::new(options.preprocess_threads.max(1));
        Ok(AppState {
            inner: Arc::new(Inner {
                options,
                phase: AtomicU8::new(Phase::Loading as u8),
                serving: OnceLock::new(),
                load_error: Mutex::new(None),
                metrics,
                store,
                preprocess,
                started: Instant::now(),
            }),
        })
    }

    /// A ready server around an already-loaded engine (tests, benchmarks).
    /// Runs the warm-up inference before returning.
    pub fn with_engine(
        model: LoadedModel,
        engine: Arc<dyn Engine>,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        let state = AppState::new(options)?;
        state.install(model, engine)?;
        Ok(state)
    }

    /// Starts the engine workers, runs the warm-up and turns readiness on.
    /// Blocking: call it off the async runtime.
    ///
    /// Every session runs one batch of 1 and one of the largest batch size:
    /// a session's first call, and its first call at a new size, allocate
    /// (ONNX Runtime grows its memory arena), and that cost belongs to
    /// startup, not to the first clients.
    pub fn install(&self, model: LoadedModel, engine: Arc<dyn Engine>) -> Result<(), ServerError> {
        let o = &self.inner.options;
        let max_batch = o
            .max_batch_size
            .min(model.config.engine.max_batch.unwrap_or(usize::MAX))
            .max(1);
        let zeros = vec![0f32; engine.image_len() * max_batch];
        let mut sizes = vec![1];
        if max_batch > 1 {
            sizes.push(max_batch);
        }
        for batch in sizes {
            for _ in 0..engine.sessions().max(1) {
                engine
                    .infer(&zeros[..batch * engine.image_len()], batch)
                    .map_err(|e| ServerError::Load(format!("warm-up inference failed: {e}")))?;
            }
        }
        let preprocessor = Preprocessor::new(
            model.config.input.clone(),
            DecodeLimits {
                max_pixels: o.max_pixels,
                max_bytes: o.max_body_size.max(o.max_infer_body_size),
            },
        );
        let config = BatchConfig {
            max_batch_size: max_batch,
            max_batch_delay: o.max_batch_delay,
            queue_capacity: o.queue_capacity.max(1),
            workers: engine.sessions().max(1),
            softmax: model.config.output.softmax,
        };
        let admission_limit = config.queue_capacity
            + config.workers * config.max_batch_size
            + 2 * o.preprocess_threads.max(1);
        self.inner.metrics.set_model(
            &model.config.name,
            engine.kind().as_str(),
            &engine.describe(),
        );
        let batcher = Batcher::start(engine.clone(), config, self.inner.metrics.clone());
        let serving = Arc::new(Serving {
            model,
            engine,
            preprocessor,
            batcher,
            admission: Arc::new(Semaphore::new(admission_limit)),
        });
        if self.inner.serving.set(serving).is_err() {
            return Err(ServerError::Load("a model is already installed".into()));
        }
        let _ = self.inner.phase.compare_exchange(
            Phase::Loading as u8,
            Phase::Ready as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        Ok(())
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

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    /// The reason loading failed, if it did.
    pub fn load_error(&self) -> Option<String> {
        self.inner
            .load_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn fail(&self, message: String) {
        *self
            .inner
            .load_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message);
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

    /// The serving model, when inference may be accepted: 503 while loading.
    /// While draining, inference goes on: a request that arrived before the
    /// signal may still be reading its body or decoding, and it must get its
    /// answer. New requests cannot arrive then (the listener is closed and
    /// kept-alive connections are closed after their current request).
    pub(crate) fn serving(&self) -> Result<&Arc<Serving>, ApiError> {
        match self.phase() {
            Phase::Ready | Phase::Draining => self.inner.serving.get().ok_or(ApiError::NotReady),
            Phase::Loading | Phase::Failed => Err(ApiError::NotReady),
        }
    }

    /// The loaded model whatever the phase (metadata, metrics).
    pub(crate) fn loaded(&self) -> Option<&Arc<Serving>> {
        self.inner.serving.get()
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(crate) fn store(&self) -> Option<&StoreQueue> {
        self.inner.store.as_ref()
    }

    /// The images folder, when storage is on.
    pub fn storage(&self) -> Option<&Arc<Storage>> {
        self.inner.store.as_ref().map(StoreQueue::storage)
    }

    pub(crate) fn preprocess_pool(&self) -> &BlockingPool {
        &self.inner.preprocess
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Requests being handled right now (all routes).
    pub fn in_flight(&self) -> i64 {
        self.inner.metrics.in_flight_now()
    }

    /// Images waiting for an engine worker.
    pub fn queue_depth(&self) -> usize {
        self.loaded().map_or(0, |s| s.batcher.depth())
    }

    /// Runs an already-preprocessed image through the same admission, queue
    /// and engine workers as HTTP requests, without HTTP or decoding: the
    /// engine-only side of the benchmark.
    pub async fn infer_preprocessed(&self, tensor: Vec<f32>) -> Result<crate::Scored, ApiError> {
        let serving = self.serving()?;
        let deadline = Instant::now() + self.inner.options.request_timeout;
        let _admitted = crate::inference::admit(serving, 1)?;
        let mut scored = crate::inference::infer(self, serving, vec![tensor], deadline).await?;
        scored.pop().ok_or_else(|| ApiError::internal("no answer"))
    }

    /// Values in one preprocessed image, once the model is loaded.
    pub fn image_len(&self) -> Option<usize> {
        self.loaded().map(|s| s.engine.image_len())
    }

    /// Waits until every storage write started so far has finished.
    pub async fn storage_idle(&self) {
        if let Some(store) = self.store() {
            store.idle().await;
        }
    }

    /// The last step of a shutdown: no more inference is accepted; the
    /// engine workers finish the queue and stop; pending writes complete.
    /// Returns false when `within` was not enough.
    pub(crate) async fn finish(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        if let Some(s) = self.loaded() {
            s.batcher.close();
        }
        let stored = tokio::time::timeout_at(deadline, self.storage_idle())
            .await
            .is_ok();
        let joined = match self.loaded() {
            Some(s) => {
                let s = s.clone();
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tokio::task::spawn_blocking(move || s.batcher.join(left))
                    .await
                    .unwrap_or(false)
            }
            None => true,
        };
        stored && joined
    }
}

/// Fetches (first use), loads and warms up the model off the async runtime,
/// then turns readiness on. The returned future completes only if loading
/// fails, so the caller can stop the server.
pub(crate) fn spawn_loader(
    state: AppState,
    home: PathBuf,
    engine: EngineArgs,
    since: Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let task_state = state.clone();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<(), String> {
            imgclass_model::ensure_model(&home, &engine.model).map_err(|e| e.to_string())?;
            let (model, engine) =
                imgclass_engines::load(&home, &engine).map_err(|e| e.to_string())?;
            task_state.install(model, engine).map_err(|e| e.to_string())
        })();
        match result {
            Ok(()) => tracing::info!(
                ms = since.elapsed().as_millis() as u64,
                "ready: model loaded and warmed up"
            ),
            Err(message) => {
                tracing::error!(error = %message, "cannot load the model; stopping");
                task_state.fail(message);
                let _ = failed_tx.send(());
            }
        }
    });
    async move {
        if failed_rx.await.is_err() {
            // Loaded fine: never complete.
            std::future::pending::<()>().await;
        }
    }
}
