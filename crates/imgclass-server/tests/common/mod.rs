//! Shared by the integration tests: the real model loaded once per test
//! binary, servers on 127.0.0.1:0, a small HTTP/1 client, multipart bodies,
//! and a deliberately slow engine.
#![allow(dead_code)]

pub mod client;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use imgclass_core::engine::EngineKind;
use imgclass_core::{Engine, EngineError, LoadedModel};
use imgclass_engines::{EngineChoice, EngineOptions};
use imgclass_server::{AppState, ServerError, ServerOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use client::*;

/// Logs at warn unless RUST_LOG says otherwise.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The real default model on ONNX Runtime, two 1-thread sessions (the
/// service's default on two cores), loaded once per test binary.
pub fn real_model() -> (LoadedModel, Arc<dyn Engine>) {
    static MODEL: OnceLock<(LoadedModel, Arc<dyn Engine>)> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            init_logging();
            let home = imgclass_testkit::model_home();
            let options = EngineOptions {
                sessions: 2,
                intra_threads: 1,
                ort_library: None,
            };
            imgclass_engines::load(
                home,
                imgclass_core::DEFAULT_MODEL,
                EngineChoice::Auto,
                &options,
            )
            .expect("load the real default model")
        })
        .clone()
}

/// A ready state around the real model.
pub fn ready_state(options: ServerOptions) -> AppState {
    let (model, engine) = real_model();
    AppState::with_engine(model, engine, options).expect("install the model")
}

/// A ready state around the real model slowed down by `delay` per call
/// (after the warm-up, which runs at full speed).
pub fn slow_state(options: ServerOptions, delay: Duration) -> AppState {
    let (model, engine) = real_model();
    let sessions = engine.sessions();
    slow_state_with(model, SlowEngine::new(engine, delay, sessions), options)
}

/// A ready state around `slow`, armed once the warm-up has run.
pub fn slow_state_with(
    model: LoadedModel,
    slow: Arc<SlowEngine>,
    options: ServerOptions,
) -> AppState {
    let state = AppState::with_engine(model, slow.clone(), options).expect("install the model");
    slow.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    state
}

/// Options for tests: storage off unless asked, everything else default.
pub fn options() -> ServerOptions {
    ServerOptions {
        images_dir: None,
        preprocess_threads: 2,
        ..ServerOptions::default()
    }
}

/// A server on 127.0.0.1:0, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Serves `state` until [`TestServer::stop`] or drop.
    pub async fn start(state: AppState) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        Self::start_with(state, async move {
            let _ = rx.await;
        })
        .await
        .with_stop(tx)
    }

    /// Serves `state` until `shutdown` completes.
    pub async fn start_with(
        state: AppState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(imgclass_server::serve(state.clone(), listener, shutdown));
        TestServer {
            addr,
            state,
            stop: None,
            task: Some(task),
        }
    }

    fn with_stop(mut self, tx: oneshot::Sender<()>) -> Self {
        self.stop = Some(tx);
        self
    }

    /// Triggers the shutdown (if this server owns the trigger) and waits
    /// for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join().await
    }

    /// Waits for `serve` to return.
    pub async fn join(&mut self) -> Result<(), ServerError> {
        let task = self.task.take().expect("joined once");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Fails the test if `f` takes longer than `secs`.
pub async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test body took longer than {secs} s"))
}

/// The real engine, sleeping `delay` before each call: makes overload,
/// timeouts and shutdown observable without huge bursts.
pub struct SlowEngine {
    pub inner: Arc<dyn Engine>,
    pub delay: Duration,
    /// Reported sessions, i.e. how many engine workers the server starts.
    pub sessions: usize,
    /// Sleeps only once armed, so the server's warm-up stays fast.
    pub armed: std::sync::atomic::AtomicBool,
}

impl SlowEngine {
    pub fn new(inner: Arc<dyn Engine>, delay: Duration, sessions: usize) -> Arc<Self> {
        Arc::new(SlowEngine {
            inner,
            delay,
            sessions,
            armed: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Engine for SlowEngine {
    fn kind(&self) -> EngineKind {
        self.inner.kind()
    }
    fn image_len(&self) -> usize {
        self.inner.image_len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn sessions(&self) -> usize {
        self.sessions
    }
    fn infer(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(self.delay);
        }
        self.inner.infer(input, batch)
    }
    fn describe(&self) -> String {
        format!("slow({:?}) {}", self.delay, self.inner.describe())
    }
}

/// Expected top-1 classes of a test photo.
pub fn expected(name: &str) -> &'static [usize] {
    imgclass_testkit::PHOTOS
        .iter()
        .find(|p| p.2 == name)
        .map(|p| p.3)
        .unwrap_or_else(|| panic!("no photo {name}"))
}

/// A photo as a 500×375 JPEG (the benchmark's upload size).
pub fn jpeg_500x375(name: &str) -> Vec<u8> {
    let img = image::load_from_memory(&imgclass_testkit::photo_bytes(name)).expect("decode photo");
    let img = img
        .resize_to_fill(500, 375, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

/// sha256 hex of bytes (the image id).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The value of a series in the Prometheus text, 0 if absent: the sum of
/// every sample of that metric whose labels include the given ones (as
/// PromQL's `sum(metric{labels})`), so `imgclass_batch_size_count` also
/// counts `imgclass_batch_size_count{model="..."}`.
pub fn sample(text: &str, series: &str) -> f64 {
    let (name, wanted) = split_series(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (s, value) = l.rsplit_once(' ')?;
            let (n, labels) = split_series(s);
            (n == name && wanted.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().unwrap())
        })
        .sum()
}

/// `name{a="1",b="2"}` into the name and its `a="1"` pairs.
fn split_series(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or(rest);
            (name, inner.split(',').filter(|p| !p.is_empty()).collect())
        }
        None => (series, Vec::new()),
    }
}
