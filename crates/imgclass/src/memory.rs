//! Keeps the server's resident memory in proportion to the work in flight.
//!
//! glibc's malloc serves blocks above `M_MMAP_THRESHOLD` with their own
//! `mmap` and returns them at `free`, but by default it raises that
//! threshold to the size of every such block freed (up to 32 MiB). After
//! the first big upload, every later body and decode buffer of a few MB
//! comes from the per-thread arenas, which keep the memory once it is
//! freed: measured with `scripts/bench-vs-peer.sh`'s loads (short runs),
//! peak RSS went from 330–380 MiB to 255–275 MiB with the threshold fixed
//! at 256 KiB (about 310 MiB at 1 MiB). Setting the
//! threshold once (`mallopt`, glibc's own knob; no allocator crate needed)
//! turns the adjustment off. It applies to ONNX Runtime's allocations too,
//! which a Rust global allocator would not reach.

/// Blocks from this size up get their own mapping (glibc's initial
/// threshold is 128 KiB). Smaller ones — a small JPEG upload, the resized
/// pixels, pipeline buffers — stay on the reused heap. The two buffers
/// above it that every image needs, its decoded pixels and its model input
/// (about 0.6 MB each for a small photo), are reused by the pipeline
/// instead (`preprocess::pixel_buffer`, `tensor_pool`): mapped afresh per
/// image, their page faults and unmaps were a quarter of the request
/// threads' CPU at c=16 (`perf record`). A higher threshold (1 MiB, with a
/// 4 MiB trim threshold) avoided them too, but kept 300–309 MiB over the
/// bench loads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 << 10;

/// Fixes glibc's mmap threshold, unless `GLIBC_TUNABLES` already sets one.
pub fn bound_heap_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if !tuned {
            // SAFETY: mallopt only changes allocator parameters; it is
            // called before the server starts any thread.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::warn!("mallopt(M_MMAP_THRESHOLD) failed; RSS may grow under big uploads");
            }
        }
    }
}
