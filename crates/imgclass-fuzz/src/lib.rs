//! Fuzzing on stable Rust for everything that reads client bytes:
//!
//! - [`image`]: `Preprocessor::probe` and `Preprocessor::preprocess` (the
//!   image crate's decoders behind them) under tight [`DecodeLimits`];
//! - [`multipart`]: the `/classify` body reader (multipart forms and raw
//!   image bodies);
//! - [`infer`]: `imgclass_oip::parse_infer_request`, KServe JSON and
//!   JSON + binary bodies.
//!
//! Each target is a plain `fn(&[u8])` that panics when an invariant breaks
//! (so it drops into a `cargo fuzz` / libFuzzer target unchanged), plus a
//! structured form built with [`arbitrary`] from the same bytes. Inputs come
//! from [`mutate::Mutator`]: bit flips, byte edits, truncations, header
//! edits, splices and repeated chunks of real seeds (the test photos, real
//! forms and requests around them). [`driver::run`] feeds a target a
//! bounded number of cases from a seed, catches a panic, saves the input
//! and reports how to replay it.
//!
//! Invariants checked per case: no panic; limits hold (no decode past
//! `max_pixels`/`max_bytes`, and the peak heap during the case stays within
//! what those limits allow — see [`alloc`]); the error is the right typed
//! one (e.g. `TooLarge` only from a header over the limit, `Corrupt` of the
//! probed format when decoding fails, a 4xx never a 5xx from the reader).
//!
//! [`DecodeLimits`]: imgclass_core::DecodeLimits

pub mod alloc;
pub mod driver;
pub mod image;
pub mod infer;
pub mod multipart;
pub mod mutate;
