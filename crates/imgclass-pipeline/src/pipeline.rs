//! One loaded model and the machinery that serves it: the preprocessor,
//! the admission bound, the shared decode pool, the batch queue with its
//! engine workers, softmax and top-k.
//!
//! A request goes `admit` → `classify` (hash and decode on the pool, queue,
//! engine, softmax) → `top_k`. Admission comes first and is refused at once
//! when full, so overload costs no decoding; it covers decoding, the queue
//! and the engine, so waiting for the pool can never grow without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imgclass_core::{
    DecodeLimits, Engine, ImageFormat, LoadedModel, Prediction, Preprocessor, softmax, top_k,
};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batcher::{BatchConfig, BatchError, Batcher, Reply};
use crate::deadline::Deadline;
use crate::decode_pool::DecodePool;
use crate::error::PipelineError;
use crate::gate::CpuGate;
use crate::observer::Observer;
use crate::tensor_pool::{PooledTensor, TensorPool};
use crate::timings::Timings;

/// How a pipeline batches and what it accepts.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Most images per engine call (also capped by the model's `engine.max_batch`).
    pub max_batch_size: usize,
    /// How long a worker waits to fill a batch (zero: only what is queued).
    pub max_batch_delay: Duration,
    /// Preprocessed images that may wait for an engine worker.
    pub queue_capacity: usize,
    /// What may be decoded.
    pub limits: DecodeLimits,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            max_batch_size: 4,
            max_batch_delay: Duration::ZERO,
            queue_capacity: 64,
            limits: DecodeLimits::default(),
        }
    }
}

/// What every pipeline of a process shares: the decode pool and the
/// budget of cores for engine calls.
#[derive(Clone)]
pub struct Resources {
    pub decode: Arc<DecodePool>,
    pub gate: Arc<CpuGate>,
}

impl Resources {
    pub fn new(decode_threads: usize, cores: usize) -> Self {
        Resources {
            decode: Arc::new(DecodePool::new(decode_threads)),
            gate: Arc::new(CpuGate::new(cores)),
        }
    }
}

/// Room in a pipeline for `n` images, from admission to answer.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    n: usize,
}

impl Admission {
    pub fn images(&self) -> usize {
        self.n
    }
}

/// An upload as the pipeline saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    /// sha256 of the bytes, lowercase hex: the image id.
    pub id: String,
    pub format: ImageFormat,
    /// Size after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// Encoded size.
    pub bytes: usize,
}

/// One image's class probabilities.
#[derive(Clone, Debug)]
pub struct Scored {
    pub probabilities: Vec<f32>,
    pub timings: Timings,
}

/// One classified upload.
#[derive(Clone, Debug)]
pub struct Classified {
    pub image: ImageInfo,
    pub probabilities: Vec<f32>,
    pub timings: Timings,
}

struct Prepared {
    image: ImageInfo,
    tensor: PooledTensor,
    took: Duration,
}

pub struct Pipeline {
    model: LoadedModel,
    engine: Arc<dyn Engine>,
    preprocessor: Arc<Preprocessor>,
    batcher: Batcher,
    admission: Arc<Semaphore>,
    decode: Arc<DecodePool>,
    observer: Arc<dyn Observer>,
    max_batch_size: usize,
    tensors: Arc<TensorPool>,
}

impl Pipeline {
    /// Starts the engine workers of `model` on `engine`. Call
    /// [`Pipeline::warm_up`] before serving.
    pub fn start(
        model: LoadedModel,
        engine: Arc<dyn Engine>,
        options: &PipelineOptions,
        resources: &Resources,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let max_batch_size = options
            .max_batch_size
            .min(model.config.engine.max_batch.unwrap_or(usize::MAX))
            .max(1);
        let config = BatchConfig {
            max_batch_size,
            max_batch_delay: options.max_batch_delay,
            queue_capacity: options.queue_capacity.max(1),
            workers: engine.sessions().max(1),
        };
        // Everything that may be in the pipeline at once: the queue, a full
        // batch on every worker, and two images per decoding thread (one
        // decoding, one waiting for it).
        let admission_limit = config.queue_capacity
            + config.workers * config.max_batch_size
            + 2 * resources.decode.threads();
        let batcher = Batcher::start(
            &model.config.name,
            engine.clone(),
            resources.gate.clone(),
            config,
            observer.clone(),
        );
        let preprocessor = Arc::new(Preprocessor::new(
            model.config.input.clone(),
            options.limits,
        ));
        Pipeline {
            model,
            engine,
            preprocessor,
            tensors: batcher.tensor_pool(),
            batcher,
            admission: Arc::new(Semaphore::new(admission_limit)),
            decode: resources.decode.clone(),
            observer,
            max_batch_size,
        }
    }

    /// Runs one batch of 1 and one of the largest batch size on every
    /// session: a session's first call, and its first call at a new size,
    /// allocate (ONNX Runtime grows its memory arena), and that cost
    /// belongs to startup, not to the first clients. Blocking.
    pub fn warm_up(&self) -> Result<(), PipelineError> {
        let len = self.engine.image_len();
        let zeros = vec![0f32; len * self.max_batch_size];
        let mut sizes = vec![1];
        if self.max_batch_size > 1 {
            sizes.push(self.max_batch_size);
        }
        for batch in sizes {
            for _ in 0..self.engine.sessions().max(1) {
                self.engine
                    .infer(&zeros[..batch * len], batch)
                    .map_err(|e| {
                        PipelineError::Internal(format!("warm-up inference failed: {e}"))
                    })?;
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.model.config.name
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Classes per answer.
    pub fn num_classes(&self) -> usize {
        self.engine.num_classes()
    }

    /// Most images per engine call.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Images waiting for an engine worker.
    pub fn depth(&self) -> usize {
        self.batcher.depth()
    }

    /// Admits `n` images or refuses at once with [`PipelineError::QueueFull`].
    pub fn admit(&self, n: usize) -> Result<Admission, PipelineError> {
        let permits = u32::try_from(n).map_err(|_| PipelineError::QueueFull)?;
        let permit = self
            .admission
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| PipelineError::QueueFull)?;
        Ok(Admission { _permit: permit, n })
    }

    /// Admits `n` images, waiting for room (batch jobs such as the CLI).
    pub async fn admit_wait(&self, n: usize) -> Result<Admission, PipelineError> {
        let permits = u32::try_from(n).map_err(|_| PipelineError::QueueFull)?;
        let permit = self
            .admission
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| PipelineError::Closed)?;
        Ok(Admission { _permit: permit, n })
    }

    /// Classifies one encoded image.
    pub async fn classify(
        &self,
        admission: &Admission,
        bytes: Bytes,
        deadline: Deadline,
    ) -> Result<Classified, PipelineError> {
        check_admitted(admission, 1)?;
        let result = async {
            let prepared = self.prepare(bytes, deadline, None).await?;
            self.answer(vec![prepared], deadline)
                .await
                .map(|mut all| all.remove(0))
        }
        .await;
        self.finished(1, deadline, result.as_ref().ok().map(|c| c.timings));
        result
    }

    /// Classifies several encoded images, decoded in parallel on the pool.
    /// If any is refused, none is answered and the error names its index.
    pub async fn classify_all(
        &self,
        admission: &Admission,
        images: Vec<Bytes>,
        deadline: Deadline,
    ) -> Result<Vec<Classified>, PipelineError> {
        check_admitted(admission, images.len())?;
        let n = images.len();
        let index = |i| (n > 1).then_some(i);
        let result = async {
            let prepared = futures_util::future::try_join_all(
                images
                    .iter()
                    .enumerate()
                    .map(|(i, b)| self.prepare(b.clone(), deadline, index(i))),
            )
            .await?;
            self.answer(prepared, deadline).await
        }
        .await;
        let slowest = result
            .as_ref()
            .ok()
            .map(|all| Timings::slowest(all.iter().map(|c| &c.timings)));
        self.finished(n, deadline, slowest);
        result
    }

    /// Runs already-preprocessed images (each `Engine::image_len` values in
    /// the model's layout) without decoding.
    pub async fn infer_tensors(
        &self,
        admission: &Admission,
        tensors: Vec<Vec<f32>>,
        deadline: Deadline,
    ) -> Result<Vec<Scored>, PipelineError> {
        check_admitted(admission, tensors.len())?;
        let n = tensors.len();
        let len = self.engine.image_len();
        let result = async {
            if let Some((i, t)) = tensors.iter().enumerate().find(|(_, t)| t.len() != len) {
                return Err(PipelineError::Tensor(format!(
                    "tensor {i} has {} values, the model takes {len}",
                    t.len()
                )));
            }
            let replies = self.submit(tensors.into_iter().map(PooledTensor::from), deadline)?;
            self.collect(replies, deadline).await
        }
        .await;
        let slowest = result
            .as_ref()
            .ok()
            .map(|all| Timings::slowest(all.iter().map(|s| &s.timings)));
        self.finished(n, deadline, slowest);
        result
    }

    /// Tells the observer a request ended: answered (the slowest image's
    /// timings) or failed (`None`).
    fn finished(&self, images: usize, deadline: Deadline, answered: Option<Timings>) {
        let took = deadline.started().elapsed();
        self.observer.finished(images, took, answered.as_ref());
    }

    /// The `k` most probable classes with this model's labels.
    pub fn top_k(&self, probabilities: &[f32], k: usize) -> Vec<Prediction> {
        top_k(probabilities, k, &self.model.labels)
    }

    /// Stops taking work; queued images are still answered.
    pub fn close(&self) {
        self.batcher.close();
    }

    /// After [`Pipeline::close`], waits up to `within` for the engine
    /// workers to finish the queue. Blocking.
    pub fn join(&self, within: Duration) -> bool {
        self.batcher.join(within)
    }

    /// Hashes, probes and preprocesses one upload on the decode pool.
    async fn prepare(
        &self,
        bytes: Bytes,
        deadline: Deadline,
        index: Option<usize>,
    ) -> Result<Prepared, PipelineError> {
        let pre = self.preprocessor.clone();
        let observer = self.observer.clone();
        let tensors = self.tensors.clone();
        self.decode
            .run(deadline, move || {
                let started = Instant::now();
                let id = hex::encode(Sha256::digest(&bytes));
                let mut tensor = tensors.take();
                let p = pre
                    .preprocess_into(&bytes, &mut tensor)
                    .map_err(|error| PipelineError::Image { index, error })?;
                let took = started.elapsed();
                observer.preprocessed(took);
                Ok(Prepared {
                    image: ImageInfo {
                        id,
                        format: p.format,
                        width: p.width,
                        height: p.height,
                        bytes: bytes.len(),
                    },
                    tensor,
                    took,
                })
            })
            .await?
    }

    async fn answer(
        &self,
        prepared: Vec<Prepared>,
        deadline: Deadline,
    ) -> Result<Vec<Classified>, PipelineError> {
        let mut images = Vec::with_capacity(prepared.len());
        let mut tensors = Vec::with_capacity(prepared.len());
        for p in prepared {
            images.push((p.image, p.took));
            tensors.push(p.tensor);
        }
        let replies = self.submit(tensors, deadline)?;
        let scored = self.collect(replies, deadline).await?;
        Ok(images
            .into_iter()
            .zip(scored)
            .map(|((image, took), s)| Classified {
                image,
                probabilities: s.probabilities,
                timings: Timings {
                    preprocess: took,
                    ..s.timings
                },
            })
            .collect())
    }

    /// Queues every tensor, or none: if one cannot be queued the replies
    /// already taken are dropped and the workers skip those images.
    fn submit(
        &self,
        tensors: impl IntoIterator<Item = PooledTensor>,
        deadline: Deadline,
    ) -> Result<Vec<Reply>, PipelineError> {
        tensors
            .into_iter()
            .map(|t| {
                self.batcher
                    .submit(t, deadline.at)
                    .map_err(|e| batch_error(e, deadline))
            })
            .collect()
    }

    async fn collect(
        &self,
        replies: Vec<Reply>,
        deadline: Deadline,
    ) -> Result<Vec<Scored>, PipelineError> {
        let softmax_needed = self.model.config.output.softmax;
        let wait = async {
            let mut out = Vec::with_capacity(replies.len());
            for rx in replies {
                let raw = rx
                    .await
                    .map_err(|_| PipelineError::Internal("an engine worker stopped".into()))?
                    .map_err(|e| batch_error(e, deadline))?;
                let started = Instant::now();
                let probabilities = if softmax_needed {
                    softmax(&raw.scores)
                } else {
                    raw.scores
                };
                out.push(Scored {
                    probabilities,
                    timings: Timings {
                        preprocess: Duration::ZERO,
                        queue: raw.queue_time,
                        inference: raw.inference_time,
                        postprocess: started.elapsed(),
                        batch_size: raw.batch_size,
                    },
                });
            }
            Ok(out)
        };
        tokio::time::timeout_at(deadline.tokio(), wait)
            .await
            .map_err(|_| PipelineError::Timeout(deadline.budget))?
    }
}

fn check_admitted(admission: &Admission, n: usize) -> Result<(), PipelineError> {
    if n > admission.n {
        return Err(PipelineError::Internal(format!(
            "{n} images but only {} admitted",
            admission.n
        )));
    }
    Ok(())
}

fn batch_error(e: BatchError, deadline: Deadline) -> PipelineError {
    match e {
        BatchError::QueueFull => PipelineError::QueueFull,
        BatchError::Closed => PipelineError::Closed,
        BatchError::Expired => PipelineError::Timeout(deadline.budget),
        BatchError::Engine(detail) => PipelineError::Internal(detail),
    }
}
