//! Dynamic batching: a bounded queue of preprocessed images in front of
//! dedicated engine worker threads.
//!
//! - The queue is bounded and [`Batcher::submit`] never waits: a full queue
//!   is an immediate [`BatchError::QueueFull`] (503), so overload turns into
//!   fast refusals instead of ever-growing latency and memory.
//! - One worker thread per engine session (`Engine::sessions`), because that
//!   is how many calls the engine runs truly in parallel; more threads would
//!   only wait on the engine's session locks.
//! - Latency when idle, throughput when busy: a worker that takes an image
//!   while nothing else is queued and no engine call runs anywhere in the
//!   process runs it on the engine's latency session (every core for one
//!   call, `Engine::latency_threads`) if the engine has one.
//! - Otherwise a worker takes its cores from the
//!   process-wide [`CpuGate`], then whatever else is queued up to
//!   `max_batch_size`, waiting at most `max_batch_delay` for more. With the
//!   default delay of zero, batching adds no latency at low load and
//!   amortises per-call overhead under load.
//! - Before inference, images whose client went away (the reply channel is
//!   closed) or whose deadline passed are dropped: the engine never spends
//!   time on answers nobody will read.
//! - Workers run on plain threads, not the async runtime: an engine call is
//!   milliseconds of CPU that must not stall HTTP.
//!
//! The batcher returns the engine's raw scores; the pipeline turns them
//! into probabilities.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use imgclass_core::Engine;
use tokio::sync::oneshot;

use crate::gate::CpuGate;
use crate::observer::{DropReason, Observer};
use crate::tensor_pool::{PooledTensor, TensorPool};

/// How the batcher behaves.
#[derive(Clone, Debug)]
pub(crate) struct BatchConfig {
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
    pub queue_capacity: usize,
    /// Engine worker threads (normally `Engine::sessions()`).
    pub workers: usize,
}

/// One image's raw answer.
#[derive(Clone, Debug)]
pub(crate) struct RawScores {
    pub scores: Vec<f32>,
    /// From entering the queue to the start of its engine call.
    pub queue_time: Duration,
    /// Duration of the engine call that ran it.
    pub inference_time: Duration,
    /// Images in that engine call.
    pub batch_size: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchError {
    QueueFull,
    Closed,
    Expired,
    Engine(String),
}

pub(crate) type Reply = oneshot::Receiver<Result<RawScores, BatchError>>;

struct Job {
    tensor: PooledTensor,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<RawScores, BatchError>>,
}

/// What every worker of one batcher shares.
struct Worker {
    rx: Receiver<Job>,
    engine: Arc<dyn Engine>,
    gate: Arc<CpuGate>,
    config: BatchConfig,
    observer: Arc<dyn Observer>,
}

/// The queue and its workers.
pub(crate) struct Batcher {
    sender: Mutex<Option<Sender<Job>>>,
    receiver: Receiver<Job>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    image_len: usize,
    tensors: Arc<TensorPool>,
}

impl Batcher {
    /// Starts `config.workers` engine threads named after `name`.
    pub fn start(
        name: &str,
        engine: Arc<dyn Engine>,
        gate: Arc<CpuGate>,
        config: BatchConfig,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.queue_capacity.max(1));
        let image_len = engine.image_len();
        // As many buffers as the workers hold in full batches, twice over:
        // the ones being run and the next batch being filled.
        let tensors = Arc::new(TensorPool::new(
            image_len,
            2 * config.workers.max(1) * config.max_batch_size.max(1),
        ));
        let shared = Arc::new(Worker {
            rx: rx.clone(),
            engine,
            gate,
            config,
            observer,
        });
        let workers = (0..shared.config.workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("engine-{name}-{i}"))
                    .spawn(move || shared.run())
                    .expect("spawn an engine worker thread")
            })
            .collect();
        Batcher {
            sender: Mutex::new(Some(tx)),
            receiver: rx,
            workers: Mutex::new(workers),
            image_len,
            tensors,
        }
    }

    /// Where the images' input buffers come from (they go back when the
    /// workers are done with them, or wherever their request ends).
    pub fn tensor_pool(&self) -> Arc<TensorPool> {
        self.tensors.clone()
    }

    /// Queues one preprocessed image without waiting. The receiver yields
    /// its answer; dropping it tells the workers to skip the image.
    pub fn submit(
        &self,
        tensor: impl Into<PooledTensor>,
        deadline: Instant,
    ) -> Result<Reply, BatchError> {
        let tensor = tensor.into();
        debug_assert_eq!(tensor.len(), self.image_len);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tensor,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(BatchError::Closed);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(BatchError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(BatchError::Closed),
        }
    }

    /// Images waiting in the queue.
    pub fn depth(&self) -> usize {
        self.receiver.len()
    }

    /// Stops accepting; workers finish what is queued, then exit.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// After [`Batcher::close`], waits up to `within` for the workers to
    /// finish. Returns false if some were still busy.
    pub fn join(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        while Instant::now() < deadline && workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let all = workers.iter().all(JoinHandle::is_finished);
        if all {
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
        all
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Let detached workers see the disconnect and exit.
        self.close();
    }
}

impl Worker {
    fn run(&self) {
        let classes = self.engine.num_classes();
        let image_len = self.engine.image_len();
        let threads = self.engine.threads_per_call();
        let max_batch = self.config.max_batch_size.max(1);
        let mut input: Vec<f32> = Vec::new();
        while let Ok(first) = self.rx.recv() {
            let (cores, latency) = match self.latency_cores() {
                Some(cores) => (cores, true),
                None => (self.gate.acquire(threads), false),
            };
            let mut jobs = vec![first];
            let fill_until = Instant::now() + self.config.max_batch_delay;
            while !latency && jobs.len() < max_batch {
                let next = if self.config.max_batch_delay.is_zero() {
                    self.rx.try_recv().ok()
                } else {
                    self.rx.recv_deadline(fill_until).ok()
                };
                match next {
                    Some(job) => jobs.push(job),
                    None => break,
                }
            }
            let mut jobs = self.live(jobs);
            if jobs.is_empty() {
                continue;
            }
            let n = jobs.len();
            let batch: &[f32] = if n == 1 {
                &jobs[0].tensor
            } else {
                input.clear();
                input.reserve(n * image_len);
                for job in &jobs {
                    input.extend_from_slice(&job.tensor);
                }
                &input
            };
            let start = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if latency {
                    self.engine.infer_latency(batch, n)
                } else {
                    self.engine.infer(batch, n)
                }
            }));
            let inference_time = start.elapsed();
            drop(cores);
            self.observer.batch(n, inference_time);
            for job in &mut jobs {
                job.tensor.release();
            }
            let outputs = match result {
                Ok(Ok(out)) if out.len() == n * classes => Ok(out),
                Ok(Ok(out)) => Err(format!(
                    "engine returned {} values for {n} images",
                    out.len()
                )),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the engine panicked".to_string()),
            };
            match outputs {
                Ok(out) => {
                    for (job, scores) in jobs.into_iter().zip(out.chunks_exact(classes)) {
                        let queue_time = start.saturating_duration_since(job.enqueued);
                        self.observer.dequeued(queue_time);
                        let _ = job.reply.send(Ok(RawScores {
                            scores: scores.to_vec(),
                            queue_time,
                            inference_time,
                            batch_size: n,
                        }));
                    }
                }
                Err(message) => {
                    tracing::error!(error = %message, batch = n, "inference failed");
                    for job in jobs {
                        let _ = job.reply.send(Err(BatchError::Engine(message.clone())));
                    }
                }
            }
        }
    }

    /// Every core of the gate, for the engine's latency session, when this
    /// image is alone: nothing else queued and no engine call running
    /// anywhere in the process. Under load the queue is never empty or a
    /// core is busy, so calls go to the per-core sessions and throughput
    /// stays what they give.
    fn latency_cores(&self) -> Option<crate::gate::Cores<'_>> {
        let threads = self.engine.latency_threads();
        if threads < 2 || threads > self.gate.cores() || !self.rx.is_empty() {
            return None;
        }
        self.gate.try_acquire(threads)
    }

    /// The jobs still worth running: gone clients and passed deadlines are
    /// answered (or not) and counted.
    fn live(&self, jobs: Vec<Job>) -> Vec<Job> {
        let now = Instant::now();
        let mut live = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.reply.is_closed() {
                self.observer.dropped(DropReason::ClientGone);
            } else if job.deadline <= now {
                self.observer.dropped(DropReason::Deadline);
                let _ = job.reply.send(Err(BatchError::Expired));
            } else {
                live.push(job);
            }
        }
        live
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{CountingObserver, FakeEngine, Running};
    use std::sync::atomic::Ordering;

    fn config(max_batch_size: usize, queue_capacity: usize, workers: usize) -> BatchConfig {
        BatchConfig {
            max_batch_size,
            max_batch_delay: Duration::ZERO,
            queue_capacity,
            workers,
        }
    }

    fn start(engine: Arc<FakeEngine>, config: BatchConfig) -> Batcher {
        Batcher::start(
            "test",
            engine,
            Arc::new(CpuGate::new(4)),
            config,
            Arc::new(CountingObserver::default()),
        )
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn answers_each_image_with_its_own_scores() {
        let engine = FakeEngine::new(Duration::ZERO, 1);
        let b = start(engine, config(8, 16, 1));
        let rx: Vec<_> = (0..6)
            .map(|i| {
                b.submit(vec![(i % 3) as f32, 0.0, 0.0, 0.0], far())
                    .unwrap()
            })
            .collect();
        for (i, r) in rx.into_iter().enumerate() {
            let s = r.blocking_recv().unwrap().unwrap();
            let top = s.scores.iter().position(|&p| p == 1.0).unwrap();
            assert_eq!(top, i % 3);
        }
    }

    #[test]
    fn batches_what_is_queued_up_to_the_maximum() {
        let engine = FakeEngine::new(Duration::from_millis(50), 1);
        let b = start(engine.clone(), config(4, 16, 1));
        // The first call blocks the only worker; the next ten queue up.
        let rx: Vec<_> = (0..11)
            .map(|_| b.submit(vec![0.0; 4], far()).unwrap())
            .collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        let batches = engine.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 11);
        assert!(batches.iter().all(|&n| n <= 4), "{batches:?}");
        assert!(batches.contains(&4), "{batches:?}");
    }

    #[test]
    fn full_queue_refuses_at_once() {
        let engine = FakeEngine::new(Duration::from_millis(200), 1);
        let b = start(engine, config(1, 1, 1));
        let first = b.submit(vec![0.0; 4], far()).unwrap();
        // Wait until the worker holds the first image, so the queue is empty.
        while b.depth() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = b.submit(vec![0.0; 4], far()).unwrap();
        let t = Instant::now();
        assert_eq!(
            b.submit(vec![0.0; 4], far()).unwrap_err(),
            BatchError::QueueFull
        );
        assert!(t.elapsed() < Duration::from_millis(50));
        first.blocking_recv().unwrap().unwrap();
        second.blocking_recv().unwrap().unwrap();
    }

    #[test]
    fn gone_clients_and_expired_deadlines_are_skipped() {
        let engine = FakeEngine::new(Duration::from_millis(100), 1);
        let observer = Arc::new(CountingObserver::default());
        let b = Batcher::start(
            "test",
            engine.clone(),
            Arc::new(CpuGate::new(1)),
            config(8, 16, 1),
            observer.clone(),
        );
        let busy = b.submit(vec![0.0; 4], far()).unwrap();
        while b.depth() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(b.submit(vec![1.0; 4], far()).unwrap()); // client gone
        let expired = b
            .submit(vec![1.0; 4], Instant::now() + Duration::from_millis(10))
            .unwrap();
        let kept = b.submit(vec![2.0; 4], far()).unwrap();
        busy.blocking_recv().unwrap().unwrap();
        assert_eq!(
            expired.blocking_recv().unwrap().unwrap_err(),
            BatchError::Expired
        );
        let s = kept.blocking_recv().unwrap().unwrap();
        assert_eq!(s.batch_size, 1, "only the live image reached the engine");
        assert_eq!(engine.calls.load(Ordering::SeqCst), 2);
        assert_eq!(observer.dropped.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_lone_image_runs_on_the_latency_session_a_crowd_on_the_others() {
        let engine = FakeEngine::with_latency(Duration::from_millis(20), 2, 2);
        let b = Batcher::start(
            "test",
            engine.clone(),
            Arc::new(CpuGate::new(2)),
            config(1, 64, 2),
            Arc::new(CountingObserver::default()),
        );
        // One at a time: every call is a latency call.
        for _ in 0..3 {
            b.submit(vec![0.0; 4], far())
                .unwrap()
                .blocking_recv()
                .unwrap()
                .unwrap();
        }
        assert_eq!(engine.latency_calls.load(Ordering::SeqCst), 3);
        // Twenty at once: the queue is never empty until the end, so at
        // most the last ones find the machine idle; two calls run at once.
        let rx: Vec<_> = (0..20)
            .map(|_| b.submit(vec![0.0; 4], far()).unwrap())
            .collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        let latency = engine.latency_calls.load(Ordering::SeqCst) - 3;
        assert!(
            latency <= 2,
            "{latency} of 20 queued images ran on the latency session"
        );
        assert_eq!(engine.running.peak(), 2);
    }

    #[test]
    fn close_finishes_the_queue_then_stops() {
        let engine = FakeEngine::new(Duration::from_millis(20), 2);
        let b = start(engine, config(2, 16, 2));
        let rx: Vec<_> = (0..8)
            .map(|_| b.submit(vec![0.0; 4], far()).unwrap())
            .collect();
        b.close();
        assert_eq!(
            b.submit(vec![0.0; 4], far()).unwrap_err(),
            BatchError::Closed
        );
        assert!(b.join(Duration::from_secs(5)));
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
    }

    #[test]
    fn workers_of_two_models_share_the_cores() {
        // Two models with two sessions each on a gate of two cores: never
        // more than two engine calls at once.
        let gate = Arc::new(CpuGate::new(2));
        let running = Arc::new(Running::default());
        let a = FakeEngine::counting(Duration::from_millis(15), 2, running.clone());
        let c = FakeEngine::counting(Duration::from_millis(15), 2, running.clone());
        let observer: Arc<dyn Observer> = Arc::new(CountingObserver::default());
        let ba = Batcher::start(
            "a",
            a.clone(),
            gate.clone(),
            config(1, 64, 2),
            observer.clone(),
        );
        let bc = Batcher::start("c", c.clone(), gate, config(1, 64, 2), observer);
        let rx: Vec<_> = (0..16)
            .flat_map(|_| {
                [
                    ba.submit(vec![0.0; 4], far()).unwrap(),
                    bc.submit(vec![0.0; 4], far()).unwrap(),
                ]
            })
            .collect();
        for r in rx {
            r.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(running.peak(), 2);
    }
}
