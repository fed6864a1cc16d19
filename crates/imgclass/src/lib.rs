//! The `imgclass` command line, as a library so the integration tests and
//! examples parse flags exactly as the binary does. Everything else of the
//! binary lives in `main.rs` and its modules.

pub mod cli;
