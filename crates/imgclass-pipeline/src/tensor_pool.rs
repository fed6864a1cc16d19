//! Model-input buffers, reused: one image's input (588 KiB for a 224×224
//! model) is above glibc's mmap threshold (`imgclass serve` fixes it at
//! 256 KiB so big uploads go back to the system), so a fresh buffer per
//! image is a fresh mapping: its page faults and its unmap cost more CPU
//! than normalising into it. The engine workers give each image's buffer
//! back after its engine call; the decoding threads take one for the next
//! image. The pool keeps no more spare buffers than are out in flight
//! (so its memory follows the load: after a burst at c=16 the spares drain
//! by one per image at c=4), and never more than `capacity`.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

pub(crate) struct TensorPool {
    image_len: usize,
    give: Sender<Vec<f32>>,
    take: Receiver<Vec<f32>>,
    /// Buffers taken and not yet given back.
    out: AtomicUsize,
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
    pub fn take(&self) -> Vec<f32> {
        self.out.fetch_add(1, Ordering::Relaxed);
        match self.take.try_recv() {
            Ok(buffer) => buffer,
            Err(_) => vec![0f32; self.image_len],
        }
    }

    /// Keeps `buffer` for a later [`TensorPool::take`] if it is one image
    /// long and the pool holds fewer spares than buffers are still out;
    /// drops it otherwise. A buffer the pool did not give (an infer
    /// request's own tensor) may be kept too.
    pub fn give_back(&self, buffer: Vec<f32>) {
        let still_out = self
            .out
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0)
            .saturating_sub(1);
        if buffer.len() == self.image_len && self.take.len() < still_out.max(1) {
            let _ = self.give.try_send(buffer);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.take.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_follow_the_buffers_in_flight() {
        let pool = TensorPool::new(4, 8);
        let mut out: Vec<_> = (0..6).map(|_| pool.take()).collect();
        assert!(out.iter().all(|b| b.len() == 4));
        let first = out[0].as_ptr();
        // Giving back 3 of 6: each time at least as many are still out.
        for b in out.drain(..3) {
            pool.give_back(b);
        }
        assert_eq!(pool.kept(), 3);
        // The other 3: the pool keeps spares only while buffers are out.
        for b in out.drain(..) {
            pool.give_back(b);
        }
        assert_eq!(pool.kept(), 3, "no more spares than were out");
        let again = pool.take();
        assert_eq!(again.as_ptr(), first, "the first one given back is reused");
    }

    #[test]
    fn the_capacity_bounds_the_spares() {
        let pool = TensorPool::new(4, 2);
        let out: Vec<_> = (0..5).map(|_| pool.take()).collect();
        for b in out {
            pool.give_back(b);
        }
        assert_eq!(pool.kept(), 2);
    }

    #[test]
    fn a_buffer_of_another_length_is_not_kept() {
        let pool = TensorPool::new(4, 2);
        pool.give_back(vec![0.0; 3]);
        pool.give_back(Vec::new());
        assert_eq!(pool.kept(), 0);
        assert_eq!(pool.take().len(), 4);
    }
}
