//! One pipeline per loaded model, below any HTTP: what turns uploaded
//! bytes into class probabilities, shared by `imgclass serve` and
//! `imgclass classify`.
//!
//! ```text
//! admit ─▶ decode pool (hash, probe, decode, resize, normalise)
//!       ─▶ batch queue (bounded) ─▶ engine workers (one per session,
//!          cores from the process-wide gate) ─▶ softmax ─▶ top-k
//! ```
//!
//! - [`Pipeline`]: one model's preprocessor, admission bound, batcher and
//!   engine sessions, with a small API: [`Pipeline::admit`],
//!   [`Pipeline::classify`], [`Pipeline::classify_all`],
//!   [`Pipeline::infer_tensors`], [`Pipeline::top_k`]; errors are
//!   [`PipelineError`].
//! - [`Resources`]: what the pipelines of one process share: the decode
//!   pool and the [`CpuGate`] that keeps engine calls to one per core
//!   whatever the number of models.
//! - [`ModelSet`]: the served models and their lifecycle (load through a
//!   [`ModelLoader`], warm-up, replace, unload).

mod batcher;
mod deadline;
mod decode_pool;
mod error;
mod gate;
mod lifecycle;
mod observer;
mod pipeline;
mod tensor_pool;
#[cfg(test)]
mod test_support;
mod timings;

pub use deadline::Deadline;
pub use decode_pool::DecodePool;
pub use error::PipelineError;
pub use gate::CpuGate;
pub use lifecycle::{LifecycleError, ModelLoader, ModelSet, ModelState, ObserverFactory};
pub use observer::{DropReason, NoObserver, Observer};
pub use pipeline::{
    Admission, Classified, ImageInfo, Pipeline, PipelineOptions, Resources, Scored,
};
pub use timings::Timings;
