//! A tiny engine and a counting observer for the unit tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imgclass_core::engine::{EngineKind, check_input};
use imgclass_core::{Engine, EngineError};

use crate::observer::{DropReason, Observer};

/// Engine calls running at once, and the most ever seen.
#[derive(Default)]
pub struct Running {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Running {
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// 4 values per image, 3 classes; the class is round(first value) and its
/// score is 1. Records the batch sizes it was called with.
pub struct FakeEngine {
    pub delay: Duration,
    pub sessions: usize,
    pub batches: Mutex<Vec<usize>>,
    pub calls: AtomicUsize,
    pub running: Arc<Running>,
}

impl FakeEngine {
    pub fn new(delay: Duration, sessions: usize) -> Arc<Self> {
        Self::counting(delay, sessions, Arc::new(Running::default()))
    }

    pub fn counting(delay: Duration, sessions: usize, running: Arc<Running>) -> Arc<Self> {
        Arc::new(FakeEngine {
            delay,
            sessions,
            batches: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            running,
        })
    }
}

impl Engine for FakeEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Tract
    }
    fn image_len(&self) -> usize {
        4
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn sessions(&self) -> usize {
        self.sessions
    }
    fn infer(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        check_input(input, batch, 4)?;
        let now = self.running.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.running.peak.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(batch);
        std::thread::sleep(self.delay);
        self.running.now.fetch_sub(1, Ordering::SeqCst);
        Ok(input
            .chunks_exact(4)
            .flat_map(|x| {
                let mut s = [0f32; 3];
                s[(x[0].round().max(0.0) as usize).min(2)] = 1.0;
                s
            })
            .collect())
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

#[derive(Default)]
pub struct CountingObserver {
    pub preprocessed: AtomicUsize,
    pub batches: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Observer for CountingObserver {
    fn preprocessed(&self, _took: Duration) {
        self.preprocessed.fetch_add(1, Ordering::SeqCst);
    }
    fn batch(&self, _size: usize, _took: Duration) {
        self.batches.fetch_add(1, Ordering::SeqCst);
    }
    fn dropped(&self, _reason: DropReason) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}
