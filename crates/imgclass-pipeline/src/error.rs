//! What can go wrong between an admitted image and its answer.

use std::time::Duration;

use imgclass_core::ImageError;

/// Why a pipeline could not answer. The HTTP layer maps each kind to one
/// status; the CLI prints the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// The admission bound or the queue is full: refuse now, retry later.
    #[error("the server is overloaded (queue full); retry shortly")]
    QueueFull,
    /// The pipeline is closing (shutdown or unload): it takes no new work.
    #[error("the model is shutting down")]
    Closed,
    /// The deadline passed before the answer was ready.
    #[error("the request took longer than {0:?}")]
    Timeout(Duration),
    /// An image was refused; `index` names it within a batch.
    #[error("{}", image_message(*.index, .error))]
    Image {
        index: Option<usize>,
        error: ImageError,
    },
    /// A preprocessed tensor does not fit the model (the sender's mistake).
    #[error("{0}")]
    Tensor(String),
    /// The engine failed or the machinery around it broke: a server fault.
    #[error("{0}")]
    Internal(String),
}

fn image_message(index: Option<usize>, error: &ImageError) -> String {
    match index {
        Some(i) => format!("image {i}: {error}"),
        None => error.to_string(),
    }
}
