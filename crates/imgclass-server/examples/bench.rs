//! Engine-only versus end-to-end throughput, in one run on one machine.
//!
//! ```text
//! cargo run --release -p imgclass-server --example bench -- --seconds 5
//! ```
//!
//! 1. Startup to ready: fetch check, engine load and warm-up, as `serve` does.
//! 2. Engine only: batch-1 latency of one session; then preprocessed tensors
//!    straight into the server's engine workers (the batcher, no HTTP, no
//!    decoding) at concurrency 16, and raw `Engine::infer` from one thread
//!    per session for reference.
//! 3. End to end: `POST /classify` with a 500×375 JPEG (multipart, as the
//!    seed's clients send it) over loopback at concurrency 1, 4 and 16, on
//!    kept-alive connections, storage on. Each upload gets a unique JPEG
//!    comment so every request is a new image that is hashed and stored.
//! 4. RSS of this process (server and client) sampled during the load.
//!
//! The client runs in the same process and competes for the same cores, as
//! any load generator on the same machine would.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Conn, image_form, jpeg_500x375};
use imgclass_core::{DecodeLimits, Preprocessor};
use imgclass_engines::{EngineChoice, EngineOptions};
use imgclass_server::{AppState, ServerOptions};

#[derive(Parser, Debug)]
#[command(about = "imgclass serve benchmark: engine-only vs end-to-end /classify")]
struct Args {
    /// Seconds of load per measurement (after one second of warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Client concurrency levels for the end-to-end runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Most images per engine call.
    #[arg(long, default_value_t = 4)]
    max_batch_size: usize,
    /// Send the same bytes every time (storage then writes once).
    #[arg(long)]
    same_image: bool,
    /// Also write the 500x375 JPEG upload here (for external load tools).
    #[arg(long)]
    save_upload: Option<std::path::PathBuf>,
    /// Engine: auto, ort or tract.
    #[arg(long, default_value = "auto")]
    engine: EngineChoice,
    /// Model in the model home.
    #[arg(long, default_value = imgclass_core::DEFAULT_MODEL)]
    model: String,
    /// Engine sessions (default: one per usable CPU).
    #[arg(long)]
    sessions: Option<usize>,
    /// Threads per session.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Run {
    images_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summarise(mut lat_ms: Vec<f64>, elapsed: Duration, errors: u64) -> Run {
    lat_ms.sort_by(f64::total_cmp);
    Run {
        images_per_s: lat_ms.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&lat_ms, 0.50),
        p95_ms: percentile(&lat_ms, 0.95),
        p99_ms: percentile(&lat_ms, 0.99),
        errors,
    }
}

/// Resident set size of this process, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples RSS every 50 ms until stopped; returns the maximum.
fn rss_sampler(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut max: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(rss_mb());
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    })
}

/// The JPEG with a comment segment after SOI: different bytes, same pixels.
fn unique_jpeg(jpeg: &[u8], n: u64) -> Vec<u8> {
    let comment = format!("imgclass-bench-{n:016}");
    let len = (comment.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// One client's request maker: takes a sequence number, says whether the
/// request succeeded.
type Call =
    Box<dyn FnMut(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send>;

/// Runs `concurrency` client loops for one second of warm-up plus `secs`,
/// counting only requests that started and finished inside the window.
async fn load<F, Fut>(concurrency: usize, secs: f64, make: F) -> Run
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Call> + Send,
{
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let make = make.clone();
            let errors = errors.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut call = make(i).await;
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    if t.duration_since(start) >= warmup + measure {
                        break;
                    }
                    let ok = call(counter.fetch_add(1, Ordering::Relaxed)).await;
                    let done = Instant::now();
                    if t.duration_since(start) >= warmup
                        && done.duration_since(start) <= warmup + measure
                    {
                        if ok {
                            lat.push(done.duration_since(t).as_secs_f64() * 1e3);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    summarise(all, measure, errors.load(Ordering::Relaxed))
}

fn main() {
    let args = Args::parse();
    common::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(args));
}

async fn bench(args: Args) {
    let home = imgclass_testkit::model_home().to_path_buf();
    let jpeg = Arc::new(jpeg_500x375("china.jpg"));
    if let Some(path) = &args.save_upload {
        std::fs::write(path, jpeg.as_slice()).expect("write the upload");
    }
    let images_dir = tempfile::tempdir().expect("temp images folder");
    let options = ServerOptions {
        max_batch_size: args.max_batch_size,
        images_dir: Some(images_dir.path().to_path_buf()),
        ..ServerOptions::default()
    };

    // 1. Startup to ready, as `serve`'s background loader does it.
    let t0 = Instant::now();
    let state = AppState::new(options).expect("state");
    let s = state.clone();
    let (name, choice) = (args.model.clone(), args.engine);
    let mut engine_options = EngineOptions::default();
    engine_options.sessions = args.sessions.unwrap_or(engine_options.sessions).max(1);
    engine_options.intra_threads = args.threads.max(1);
    let (model, engine) = tokio::task::spawn_blocking(move || {
        imgclass_model::ensure_model(&home, &name).expect("model present");
        let (model, engine) =
            imgclass_engines::load(&home, &name, choice, &engine_options).expect("load engine");
        s.install(model.clone(), engine.clone()).expect("install");
        (model, engine)
    })
    .await
    .expect("loader");
    let startup = t0.elapsed();

    println!("imgclass serve benchmark");
    println!("engine:        {}", engine.describe());
    println!(
        "machine:       {} CPUs usable; max batch {}, batch delay 0, storage on",
        imgclass_engines::usable_cpus(),
        args.max_batch_size
    );
    println!(
        "upload:        500x375 JPEG, {} bytes{}",
        jpeg.len(),
        if args.same_image {
            " (same bytes every time)"
        } else {
            " (unique comment per request)"
        }
    );
    println!(
        "startup to ready (load + warm-up): {:.0} ms; RSS then {:.0} MB",
        startup.as_secs_f64() * 1e3,
        rss_mb()
    );
    println!();

    // 2. Engine only.
    let pre = Preprocessor::new(model.config.input.clone(), DecodeLimits::default());
    let tensor = Arc::new(pre.preprocess(&jpeg).expect("preprocess").tensor);
    let t = tensor.clone();
    let e = engine.clone();
    let batch1 = tokio::task::spawn_blocking(move || {
        let mut times: Vec<f64> = (0..60)
            .map(|_| {
                let s = Instant::now();
                e.infer(&t, 1).expect("infer");
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    })
    .await
    .expect("batch-1 timing");

    let sessions = engine.sessions();
    let e = engine.clone();
    let t = tensor.clone();
    let secs = args.seconds;
    let raw_ips = tokio::task::spawn_blocking(move || {
        let stop = Instant::now() + Duration::from_secs_f64(secs);
        let done = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..sessions {
                s.spawn(|| {
                    while Instant::now() < stop {
                        e.infer(&t, 1).expect("infer");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        done.load(Ordering::Relaxed) as f64 / secs
    })
    .await
    .expect("raw engine");

    let st = state.clone();
    let tn = tensor.clone();
    let workers = load(16, args.seconds, move |_| {
        let (st, tn) = (st.clone(), tn.clone());
        async move {
            let call: Call = Box::new(move |_| {
                let (st, tn) = (st.clone(), tn.clone());
                Box::pin(async move { st.infer_preprocessed(tn.to_vec()).await.is_ok() })
            });
            call
        }
    })
    .await;

    println!(
        "ENGINE ONLY (preprocessed tensors); RSS now {:.0} MB",
        rss_mb()
    );
    println!("  batch-1 latency, one 1-thread session:   {batch1:.2} ms (median of 60)");
    println!(
        "  engine workers via the batcher, c=16:     {:.1} images/s",
        workers.images_per_s
    );
    println!("  raw Engine::infer, {sessions} threads, batch 1:  {raw_ips:.1} images/s");
    println!();

    // 3. End to end over loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(imgclass_server::serve(
        state.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));

    let stop_rss = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(stop_rss.clone());
    let rss_before = rss_mb();
    println!("END TO END (POST /classify, multipart 500x375 JPEG, loopback, keep-alive)");
    println!(
        "  {:>11} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "concurrency", "images/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut results = Vec::new();
    for &c in &args.concurrency {
        let jpeg = jpeg.clone();
        let same = args.same_image;
        let run = load(c, args.seconds, move |_| {
            let jpeg = jpeg.clone();
            async move {
                let conn = Arc::new(tokio::sync::Mutex::new(
                    Conn::open(addr).await.expect("connect"),
                ));
                let call: Call = Box::new(move |n| {
                    let (conn, jpeg) = (conn.clone(), jpeg.clone());
                    Box::pin(async move {
                        let bytes = if same {
                            jpeg.to_vec()
                        } else {
                            unique_jpeg(&jpeg, n)
                        };
                        let (ct, body) = image_form(&bytes, "bench.jpg");
                        let mut conn = conn.lock().await;
                        match conn
                            .send(
                                hyper::Method::POST,
                                "/classify",
                                &[("content-type", &ct)],
                                body,
                            )
                            .await
                        {
                            Ok(r) => r.status == 200,
                            Err(_) => false,
                        }
                    })
                });
                call
            }
        })
        .await;
        println!(
            "  {:>11} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            c, run.images_per_s, run.p50_ms, run.p95_ms, run.p99_ms, run.errors
        );
        results.push((c, run));
    }
    stop_rss.store(true, Ordering::Relaxed);
    let rss_max = sampler.join().unwrap_or(f64::NAN);
    state.storage_idle().await;
    let stats = common::get(addr, "/api/stats").await.json();
    let stored = std::fs::read_dir(images_dir.path()).map_or(0, |d| d.count());
    let _ = stop_tx.send(());
    let _ = server.await;

    println!();
    println!(
        "RSS: {rss_before:.0} MB before load, {rss_max:.0} MB max under load (server and client in one process)"
    );
    println!(
        "server stats: mean batch size {}, {} batches, {} images stored (in {stored} shard folders)",
        stats["mean_batch_size"], stats["batches"], stats["images_stored"]
    );
    println!();
    let best = results
        .iter()
        .map(|(_, r)| r.images_per_s)
        .fold(0.0, f64::max);
    let c1 = results.iter().find(|(c, _)| *c == 1).map(|(_, r)| r.p50_ms);
    let ratio = best / workers.images_per_s;
    println!("TARGETS");
    println!(
        "  end-to-end at saturation / engine-only: {best:.1} / {:.1} = {ratio:.2} (target >= 0.85) {}",
        workers.images_per_s,
        verdict(ratio >= 0.85)
    );
    if let Some(p50) = c1 {
        println!(
            "  p50 at c=1 vs engine batch-1 + 3 ms:    {p50:.2} ms vs {:.2} ms {}",
            batch1 + 3.0,
            verdict(p50 <= batch1 + 3.0)
        );
    }
    println!(
        "  RSS under load:                          {rss_max:.0} MB (target < 300) {}",
        verdict(rss_max < 300.0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSED" }
}
