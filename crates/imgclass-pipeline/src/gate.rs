//! A process-wide budget of cores for engine calls.
//!
//! Every model has its own engine sessions, one per core by default, so a
//! single busy model can use the whole machine. With several models the
//! sessions outnumber the cores; the gate makes sure that, whatever the
//! number of models, engine calls never keep more threads busy than there
//! are cores: a worker takes as many cores as its session has threads
//! before it calls the engine and gives them back after.
//!
//! Hand-rolled (a mutex and a condition variable) because the workers are
//! plain OS threads: std has no counting semaphore, and blocking on tokio's
//! would need a runtime handle on every worker.

use std::sync::{Condvar, Mutex};

pub struct CpuGate {
    cores: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// Cores held by one engine call; given back on drop.
pub struct Cores<'a> {
    gate: &'a CpuGate,
    n: usize,
}

impl CpuGate {
    pub fn new(cores: usize) -> Self {
        CpuGate {
            cores: cores.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Cores this gate hands out.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Cores held right now.
    pub fn busy(&self) -> usize {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `n` cores (at most all of them) are free and takes them.
    pub fn acquire(&self, n: usize) -> Cores<'_> {
        let n = n.clamp(1, self.cores);
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy + n > self.cores {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy += n;
        Cores { gate: self, n }
    }
}

impl Drop for Cores<'_> {
    fn drop(&mut self) {
        let mut busy = self.gate.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy -= self.n;
        drop(busy);
        self.gate.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn never_hands_out_more_cores_than_it_has() {
        let gate = Arc::new(CpuGate::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for i in 0..6 {
                let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
                s.spawn(move || {
                    for _ in 0..20 {
                        let want = 1 + i % 2;
                        let _cores = gate.acquire(want);
                        let now = running.fetch_add(want, Ordering::SeqCst) + want;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        running.fetch_sub(want, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(gate.busy(), 0);
        // Asking for more than there is takes everything instead of waiting forever.
        let all = gate.acquire(5);
        assert_eq!(gate.busy(), 2);
        drop(all);
    }
}
