//! The inference back-end interface.
//!
//! An engine owns one or more sessions of one model and is shared by the
//! worker threads that feed it batches. Inputs are already preprocessed:
//! `batch` images laid out back to back in the model's layout.

use std::fmt;

/// Errors an engine can report. None of them is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The runtime library or the model file could not be loaded.
    #[error("cannot load {what}: {reason}")]
    Load { what: String, reason: String },
    /// The input does not match the model's expected size.
    #[error("input has {got} values, expected {expected} ({batch} images)")]
    InputSize {
        got: usize,
        expected: usize,
        batch: usize,
    },
    /// The runtime failed while running the model.
    #[error("inference failed: {0}")]
    Run(String),
}

/// Which implementation runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// ONNX Runtime, loaded dynamically.
    Ort,
    /// tract, pure Rust.
    Tract,
}

impl EngineKind {
    /// Short, stable name used in logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Ort => "ort",
            EngineKind::Tract => "tract",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded model ready to run. Implementations are thread-safe: several
/// workers may call [`Engine::infer`] at once, up to [`Engine::sessions`]
/// of them truly in parallel.
pub trait Engine: Send + Sync {
    /// Which runtime this is.
    fn kind(&self) -> EngineKind;
    /// Number of values in one preprocessed image (e.g. 3·224·224).
    fn image_len(&self) -> usize;
    /// Number of classes the model outputs per image.
    fn num_classes(&self) -> usize;
    /// How many calls can run in parallel without waiting on each other.
    fn sessions(&self) -> usize;
    /// Threads one call keeps busy (a session's intra-op threads), so a
    /// scheduler can count cores.
    fn threads_per_call(&self) -> usize {
        1
    }
    /// Runs `batch` images (`input.len() == batch * image_len()`) and returns
    /// `batch * num_classes()` scores (logits, or probabilities when the model
    /// says so), image after image.
    fn infer(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError>;
    /// Human-readable description (threads, sessions, library version).
    fn describe(&self) -> String;
}

/// Checks the input length every engine must validate.
pub fn check_input(input: &[f32], batch: usize, image_len: usize) -> Result<(), EngineError> {
    let expected = batch * image_len;
    if batch == 0 || input.len() != expected {
        return Err(EngineError::InputSize {
            got: input.len(),
            expected,
            batch,
        });
    }
    Ok(())
}
