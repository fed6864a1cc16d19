//! The two load models and the stop conditions.
//!
//! *Closed loop*: `workers` tasks, each sending its next request when its
//! previous one is done. Throughput adapts to the server; latency is measured
//! from the actual send.
//!
//! *Open loop*: request `i` is due at `t0 + i / rate` whatever happened before,
//! and its response time counts from that due time, not from when it actually
//! left. If the server stalls (or every in-flight slot is taken), the requests
//! due during the stall carry the stall in their latency, as a real user
//! arriving then would have: this is what avoids coordinated omission. How
//! late each request actually left (timer, free in-flight slot) is recorded
//! per request as `wait`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, Exchange};
use crate::error::LoadtestError;
use crate::images::Payloads;
use crate::options::{LoadModel, StopAt};
use crate::progress::Live;
use crate::record::Record;

/// Finished requests of the measured phase and the running totals the
/// progress display reads.
///
/// A mutex rather than a channel: a channel wakes a collector task for every
/// request, which at tens of thousands of requests per second costs more
/// than the (almost always uncontended) lock.
#[derive(Default)]
pub struct Collector {
    inner: Mutex<Collected>,
}

/// What a [`Collector`] holds.
#[derive(Default)]
pub struct Collected {
    pub records: Vec<Record>,
    pub live: Live,
}

impl Collector {
    pub fn lock(&self) -> MutexGuard<'_, Collected> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the start of the measured phase for the progress display.
    fn start(&self, t0: Instant) {
        self.lock().live.start(t0.into_std());
    }

    fn push(&self, record: Record) {
        let mut c = self.lock();
        c.live.add(&record);
        c.records.push(record);
    }

    /// Takes the records gathered so far.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut self.lock().records)
    }
}

/// Where finished requests go: the collector during the measured phase,
/// nowhere during warm-up.
pub type Sink = Option<Arc<Collector>>;

/// One phase of a run: the warm-up (no sink) or the measured phase.
#[derive(Clone)]
pub struct Phase {
    pub stop: StopAt,
    pub sink: Sink,
}

/// Runs the phases one after the other, each to completion (in-flight
/// requests included). Connections opened in one phase are reused by the
/// next, so a warm-up also warms the connection pool.
///
/// The open loop runs on the caller's (multi-threaded) runtime: one timeline
/// schedules every request, and the rates it serves (a classifier does
/// hundreds per second) are far below what that costs.
pub async fn run(
    client: Arc<Client>,
    payloads: Arc<Payloads>,
    model: LoadModel,
    phases: Vec<Phase>,
) -> Result<(), LoadtestError> {
    match model {
        LoadModel::Closed { workers } => closed(client, payloads, workers, phases).await,
        LoadModel::Open {
            rate,
            max_in_flight,
        } => {
            for phase in phases {
                let (client, payloads) = (client.clone(), payloads.clone());
                open(client, payloads, rate, max_in_flight, phase).await?;
            }
            Ok(())
        }
    }
}

/// What the workers of one closed-loop phase share.
#[derive(Clone)]
struct Shared {
    /// The next request number to claim.
    next: Arc<AtomicU64>,
    stop: StopAt,
    deadline: Option<Instant>,
    sink: Sink,
    /// Phase start, the origin of `start_us`.
    t0: Instant,
}

/// The closed loop runs on one single-threaded runtime per core, each with
/// its own workers and connection pool (the layout oha uses without its TUI):
/// a worker, its connection and its timer then live on one thread, so a
/// request costs no cross-thread wake-ups.
///
/// All threads finish a phase before any starts the next (a barrier), so no
/// warm-up request overlaps the measured phase. Threads wait for a start
/// signal sent only once every one of them exists: if spawning one fails,
/// the others see the signal's channel close and exit instead of waiting
/// at the barrier forever.
async fn closed(
    client: Arc<Client>,
    payloads: Arc<Payloads>,
    workers: u32,
    phases: Vec<Phase>,
) -> Result<(), LoadtestError> {
    let workers = workers as usize;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, workers.max(1));
    let counters: Arc<Vec<Arc<AtomicU64>>> =
        Arc::new(phases.iter().map(|_| Arc::default()).collect());
    let starts: Arc<Vec<OnceLock<Instant>>> =
        Arc::new(phases.iter().map(|_| OnceLock::new()).collect());
    let barrier = Arc::new(Barrier::new(threads));
    let mut handles = Vec::with_capacity(threads);
    let mut go = Vec::with_capacity(threads);
    for i in 0..threads {
        let share = workers / threads + usize::from(i < workers % threads);
        // Built here so a failure is reported before any thread starts.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LoadtestError::Runtime)?;
        let client = Arc::new(client.fork());
        let (payloads, phases) = (payloads.clone(), phases.clone());
        let (counters, starts, barrier) = (counters.clone(), starts.clone(), barrier.clone());
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        go.push(go_tx);
        let thread = std::thread::Builder::new()
            .name(format!("loadtest-{i}"))
            .spawn(move || {
                if go_rx.recv().is_err() {
                    return;
                }
                runtime.block_on(async move {
                    for (p, phase) in phases.into_iter().enumerate() {
                        // Blocking is fine here: this runtime has nothing
                        // else to do until the phase starts.
                        barrier.wait();
                        let t0 = *starts[p].get_or_init(Instant::now);
                        if let Some(sink) = &phase.sink {
                            sink.start(t0);
                        }
                        let shared = Shared {
                            next: counters[p].clone(),
                            stop: phase.stop,
                            deadline: phase.stop.duration.map(|d| t0 + d),
                            sink: phase.sink,
                            t0,
                        };
                        let mut tasks = JoinSet::new();
                        for _ in 0..share {
                            let worker =
                                closed_worker(client.clone(), payloads.clone(), shared.clone());
                            tasks.spawn(worker);
                        }
                        while tasks.join_next().await.is_some() {}
                    }
                });
            })
            .map_err(LoadtestError::Runtime)?;
        handles.push(thread);
    }
    for go in go {
        let _ = go.send(());
    }
    // Join the threads without blocking this runtime (progress keeps ticking).
    let panicked = tokio::task::spawn_blocking(move || {
        handles.into_iter().map(|h| h.join()).any(|r| r.is_err())
    })
    .await
    .map_err(|e| LoadtestError::Runtime(std::io::Error::other(e)))?;
    if panicked {
        return Err(LoadtestError::Runtime(std::io::Error::other(
            "a load thread panicked",
        )));
    }
    Ok(())
}

/// One closed-loop worker: next request as soon as the previous one is done.
async fn closed_worker(client: Arc<Client>, payloads: Arc<Payloads>, shared: Shared) {
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let seq = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.stop.requests.is_some_and(|n| seq >= n) {
            break;
        }
        let payload = &payloads.items[(seq % payloads.items.len() as u64) as usize];
        let start = Instant::now();
        let exchange = client.send(payload.body.clone()).await;
        let end = Instant::now();
        if let Some(sink) = &shared.sink {
            let since_t0 = start - shared.t0;
            sink.push(make_record(
                seq,
                payload,
                exchange,
                since_t0,
                Duration::ZERO,
                end - start,
            ));
        }
    }
}

/// The open loop. Due times are kept by a dedicated thread sleeping on the
/// OS's high-resolution timer (tens of microseconds late) rather than on
/// tokio's 1 ms timer wheel, whose lateness would be added to every latency
/// measured from the due time. The requests themselves run on the runtime.
async fn open(
    client: Arc<Client>,
    payloads: Arc<Payloads>,
    rate: f64,
    max_in_flight: u32,
    phase: Phase,
) -> Result<(), LoadtestError> {
    let Phase { stop, sink } = phase;
    let slots = Arc::new(Semaphore::new(max_in_flight as usize));
    let runtime = tokio::runtime::Handle::current();
    let t0 = std::time::Instant::now();
    if let Some(sink) = &sink {
        sink.start(Instant::from_std(t0));
    }
    let scheduler = tokio::task::spawn_blocking(move || {
        let mut tasks = JoinSet::new();
        for seq in 0u64.. {
            if stop.requests.is_some_and(|n| seq >= n) {
                break;
            }
            // Computed from the index, not accumulated, so rounding never drifts.
            let offset = Duration::from_secs_f64(seq as f64 / rate);
            if stop.duration.is_some_and(|d| offset >= d) {
                break;
            }
            let due = t0 + offset;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // Reap finished tasks so a long run does not keep every handle.
            while tasks.try_join_next().is_some() {}
            let payload = payloads.items[(seq % payloads.items.len() as u64) as usize].clone();
            let (client, slots, sink) = (client.clone(), slots.clone(), sink.clone());
            let request = async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let sent = std::time::Instant::now();
                let exchange = client.send(payload.body.clone()).await;
                let end = std::time::Instant::now();
                if let Some(sink) = &sink {
                    let wait = sent.saturating_duration_since(due);
                    let took = end.saturating_duration_since(due);
                    sink.push(make_record(seq, &payload, exchange, offset, wait, took));
                }
            };
            tasks.spawn_on(request, &runtime);
        }
        tasks
    });
    let mut tasks = scheduler
        .await
        .map_err(|e| LoadtestError::Runtime(std::io::Error::other(e)))?;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn make_record(
    seq: u64,
    payload: &crate::images::Payload,
    exchange: Exchange,
    start: Duration,
    wait: Duration,
    response_time: Duration,
) -> Record {
    Record {
        seq,
        file: payload.name.clone(),
        error: exchange.error,
        response_time_us: micros(response_time),
        http_status: exchange.status,
        start_us: micros(start),
        wait_us: micros(wait),
        bytes_sent: payload.body.len() as u64,
        bytes_received: exchange.bytes_received,
        top1: exchange.top1,
        server: exchange.server,
    }
}
