//! Group commit of uploads to the images folder: a request is answered
//! only once its image and record are durable (or, with `--store-sync off`,
//! at least renamed into place), and concurrent requests share the fsyncs.
//!
//! One committer thread takes every write waiting when it becomes free
//! (after at most `--store-commit-delay` of gathering, 0 by default) and
//! stores them as one group ([`Storage::store_group`]): on ext4 the first
//! fsync commits the journal for the whole group and the others find
//! nothing left to flush, so a burst of N uploads costs about one disk
//! flush, not N. While a group commits the next one gathers, so at low load
//! a write waits for nothing and under load writes batch themselves.
//!
//! Bounded: at most [`MAX_PENDING`] writes wait or run (a slow disk slows
//! uploads down rather than filling memory), at most [`MAX_GROUP`] in one
//! group. A handler whose client went away still has its write finished;
//! [`StoreQueue::idle`] waits for all of them (the drain).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::metrics::Metrics;
use crate::storage::{STALE_TEMP, Storage, StoredRecord};

/// Most writes waiting or being committed.
const MAX_PENDING: usize = 256;
/// Most writes in one group.
const MAX_GROUP: usize = 64;

/// How writes reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreSync {
    /// Files and folders fsynced, shared by every write of a group: a 200
    /// survives a power cut.
    Group,
    /// Renamed into place without fsync: a 200 survives a crash of the
    /// process, not of the machine (the last seconds of writes may be lost).
    Off,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("writing to the images folder failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the storage writer stopped")]
    Stopped,
}

type Answer = oneshot::Receiver<std::io::Result<bool>>;

/// One write and who waits for it.
struct Job {
    bytes: Bytes,
    record: StoredRecord,
    done: oneshot::Sender<std::io::Result<bool>>,
    _slot: OwnedSemaphorePermit,
}

/// The handle handlers store through.
pub(crate) struct StoreQueue {
    storage: Arc<Storage>,
    jobs: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl StoreQueue {
    /// Starts the committer thread of `storage`.
    pub fn new(
        storage: Storage,
        sync: StoreSync,
        delay: Duration,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let storage = Arc::new(storage);
        let (jobs, rx) = mpsc::channel();
        let committer = Committer {
            storage: storage.clone(),
            sync,
            delay,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("imgclass-store".into())
            .spawn(move || committer.run(rx))?;
        Ok(StoreQueue {
            storage,
            jobs,
            slots: Arc::new(Semaphore::new(MAX_PENDING)),
            metrics,
        })
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Stores every item (queued together, so they share a group) and
    /// returns once they are in the folder (durably under
    /// [`StoreSync::Group`]); the first failure if any failed. An image
    /// already stored counts as stored.
    pub async fn store_all(&self, items: Vec<(Bytes, StoredRecord)>) -> Result<(), StoreError> {
        let mut answers = Vec::with_capacity(items.len());
        for (bytes, record) in items {
            answers.push(self.enqueue(bytes, record).await);
        }
        let mut first = Ok(());
        for answer in answers {
            let result = match answer {
                Ok(answer) => self.outcome(answer).await,
                Err(e) => Err(e),
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    async fn enqueue(&self, bytes: Bytes, record: StoredRecord) -> Result<Answer, StoreError> {
        let slot = self.slots.clone().acquire_owned().await;
        let slot = slot.map_err(|_| StoreError::Stopped)?;
        let (done, answer) = oneshot::channel();
        let job = Job {
            bytes,
            record,
            done,
            _slot: slot,
        };
        self.jobs.send(job).map_err(|_| StoreError::Stopped)?;
        Ok(answer)
    }

    async fn outcome(&self, answer: Answer) -> Result<(), StoreError> {
        let result = match answer.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io(e)),
            Err(_) => Err(StoreError::Stopped),
        };
        if result.is_err() {
            self.metrics.store_failed();
        }
        result
    }

    /// Waits until every write submitted so far has finished.
    pub async fn idle(&self) {
        if let Ok(all) = self.slots.acquire_many(MAX_PENDING as u32).await {
            drop(all);
        }
    }
}

/// The committer thread.
struct Committer {
    storage: Arc<Storage>,
    sync: StoreSync,
    delay: Duration,
    metrics: Arc<Metrics>,
}

impl Committer {
    fn run(self, rx: mpsc::Receiver<Job>) {
        let mut swept = Instant::now();
        loop {
            let first = match rx.recv_timeout(STALE_TEMP) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.sweep(&mut swept);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut group = vec![first];
            let until = Instant::now() + self.delay;
            while group.len() < MAX_GROUP {
                let next = match until.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => rx.recv_timeout(left).ok(),
                    _ => rx.try_recv().ok(),
                };
                match next {
                    Some(job) => group.push(job),
                    None => break,
                }
            }
            self.commit(group);
            self.sweep(&mut swept);
        }
    }

    fn commit(&self, group: Vec<Job>) {
        let started = Instant::now();
        let items: Vec<(&[u8], &StoredRecord)> = group
            .iter()
            .map(|j| (j.bytes.as_ref(), &j.record))
            .collect();
        let results = self
            .storage
            .store_group(&items, self.sync == StoreSync::Group);
        self.metrics.store_committed(group.len(), started.elapsed());
        for (job, result) in group.into_iter().zip(results) {
            match &result {
                Ok(true) => self.metrics.stored(),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(id = %job.record.id, error = %e, "cannot store upload")
                }
            }
            let _ = job.done.send(result);
        }
    }

    fn sweep(&self, last: &mut Instant) {
        if last.elapsed() >= STALE_TEMP {
            self.storage.remove_stale_temps();
            *last = Instant::now();
        }
    }
}
