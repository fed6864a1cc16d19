//! The decoded-pixel buffer, reused per thread: a small photo's pixels
//! (500×375 RGB, 549 KiB) or a 12 MP JPEG's at 1/8 are above glibc's mmap
//! threshold (`imgclass serve` fixes it at 256 KiB), so a fresh buffer per
//! image is a fresh mapping whose page faults and unmap cost about as much
//! as the colour conversion writing into it. The preprocessing thread
//! keeps its last image's buffer for the next one, up to [`KEEP_AT_MOST`]
//! bytes: full-size decodes of big photos are still returned at once.

use std::cell::Cell;

/// The largest buffer a thread keeps between images.
const KEEP_AT_MOST: usize = 4 << 20;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// `len` zero bytes, in this thread's spare buffer when it is big enough.
pub(crate) fn take(len: usize) -> Vec<u8> {
    let mut buffer = SPARE.take();
    if buffer.capacity() < len {
        return vec![0u8; len];
    }
    buffer.clear();
    buffer.resize(len, 0);
    buffer
}

/// Keeps `buffer` as this thread's spare unless it is too big to hold on to.
pub(crate) fn give_back(buffer: Vec<u8>) {
    if buffer.capacity() <= KEEP_AT_MOST {
        SPARE.set(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_zeroed() {
        let mut a = take(1000);
        a.fill(7);
        let ptr = a.as_ptr();
        give_back(a);
        let b = take(600);
        assert_eq!(b.as_ptr(), ptr, "the spare is reused");
        assert_eq!(b.len(), 600);
        assert!(b.iter().all(|&x| x == 0), "and zeroed");
        give_back(b);
        let c = take(2000);
        assert_eq!(c.len(), 2000, "a spare too small is not used");
    }

    #[test]
    fn a_big_buffer_is_not_kept() {
        give_back(vec![0u8; KEEP_AT_MOST + 1]);
        let small = take(10);
        assert!(small.capacity() < KEEP_AT_MOST);
    }
}
