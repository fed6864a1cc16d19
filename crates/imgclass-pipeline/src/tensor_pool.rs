//! Model-input buffers, reused: one image's input (588 KiB for a 224×224
//! model) is above glibc's mmap threshold (`imgclass serve` fixes it at
//! 256 KiB so big uploads go back to the system), so a fresh buffer per
//! image is a fresh mapping: its page faults and its unmap cost more CPU
//! than normalising into it. A buffer taken from the pool is a
//! [`PooledTensor`], which goes back when it is dropped — after its engine
//! call, or wherever its request ends early (a refusal, an expiry, a client
//! that went away, a decoding error) — so the count of buffers out is
//! exact. The pool keeps no more spare buffers than are out in flight (so
//! its memory follows the load: after a burst at c=16 the spares drain by
//! one per image at c=4), and never more than `capacity`.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

pub(crate) struct TensorPool {
    image_len: usize,
    give: Sender<Vec<f32>>,
    take: Receiver<Vec<f32>>,
    /// Pooled tensors alive.
    out: AtomicUsize,
}

/// One image's model input: taken from a [`TensorPool`], to which it
/// returns when dropped, or a caller's own buffer (an infer request's
/// tensor), which is simply freed.
pub(crate) struct PooledTensor {
    data: Vec<f32>,
    pool: Option<Arc<TensorPool>>,
}

impl PooledTensor {
    /// Gives the buffer back to its pool now, leaving an empty tensor.
    pub fn release(&mut self) {
        *self = PooledTensor::from(Vec::new());
    }
}

impl From<Vec<f32>> for PooledTensor {
    fn from(data: Vec<f32>) -> Self {
        PooledTensor { data, pool: None }
    }
}

impl Deref for PooledTensor {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.data
    }
}

impl DerefMut for PooledTensor {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.data
    }
}

impl Drop for PooledTensor {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}

impl TensorPool {
    pub fn new(image_len: usize, capacity: usize) -> Self {
        let (give, take) = crossbeam_channel::bounded(capacity.max(1));
        TensorPool {
            image_len,
            give,
            take,
            out: AtomicUsize::new(0),
        }
    }

    /// A buffer of one image's length; its contents are unspecified (a
    /// reused buffer still holds an earlier image).
    pub fn take(self: &Arc<Self>) -> PooledTensor {
        self.out.fetch_add(1, Ordering::Relaxed);
        let data = match self.take.try_recv() {
            Ok(buffer) => buffer,
            Err(_) => vec![0f32; self.image_len],
        };
        PooledTensor {
            data,
            pool: Some(self.clone()),
        }
    }

    /// Keeps a returned buffer for a later [`TensorPool::take`] if it is
    /// still one image long and the pool holds fewer spares than tensors
    /// are still out; drops it otherwise.
    fn put(&self, buffer: Vec<f32>) {
        let still_out = self.out.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if buffer.len() == self.image_len && self.take.len() < still_out.max(1) {
            let _ = self.give.try_send(buffer);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.take.len()
    }

    #[cfg(test)]
    fn out(&self) -> usize {
        self.out.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_follow_the_buffers_in_flight() {
        let pool = Arc::new(TensorPool::new(4, 8));
        let mut out: Vec<_> = (0..6).map(|_| pool.take()).collect();
        assert!(out.iter().all(|b| b.len() == 4));
        let first = out[0].as_ptr();
        // Dropping 3 of 6: each time at least as many are still out.
        out.drain(..3);
        assert_eq!(pool.kept(), 3);
        // The other 3: the pool keeps spares only while buffers are out.
        out.clear();
        assert_eq!(pool.kept(), 3, "no more spares than were out");
        assert_eq!(pool.out(), 0);
        let again = pool.take();
        assert_eq!(again.as_ptr(), first, "the first one given back is reused");
    }

    #[test]
    fn the_capacity_bounds_the_spares() {
        let pool = Arc::new(TensorPool::new(4, 2));
        let out: Vec<_> = (0..5).map(|_| pool.take()).collect();
        drop(out);
        assert_eq!(pool.kept(), 2);
    }

    #[test]
    fn a_buffer_that_changed_length_is_not_kept() {
        let pool = Arc::new(TensorPool::new(4, 2));
        let _busy = pool.take();
        let mut t = pool.take();
        t.truncate(3);
        drop(t);
        assert_eq!(pool.kept(), 0);
        assert_eq!(pool.take().len(), 4);
    }

    #[test]
    fn every_way_a_tensor_ends_returns_it_and_own_tensors_are_not_counted() {
        let pool = Arc::new(TensorPool::new(4, 8));
        let a = pool.take();
        let mut b = pool.take();
        // Released early (after its engine call), then dropped empty.
        b.release();
        assert_eq!((pool.out(), pool.kept()), (1, 1));
        drop(b);
        // Abandoned on another thread (a request that went away).
        std::thread::spawn(move || drop(a)).join().unwrap();
        assert_eq!(pool.out(), 0);
        // A caller's own buffer never enters the pool or its count.
        let own = PooledTensor::from(vec![0.0; 4]);
        drop(own);
        assert_eq!(pool.out(), 0);
        assert_eq!(pool.kept(), 1);
    }
}
