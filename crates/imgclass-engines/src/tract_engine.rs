//! tract: pure-Rust inference, no native library needed.
//!
//! Measured with tract 0.23 on EfficientNet-Lite0: plans with a symbolic
//! batch dimension ran ~7x slower than fixed batch-1 plans, and batch > 1
//! cost 2–3x more per image, so each session is a fixed-shape batch-1 plan
//! and a batch is run image by image.

use std::sync::Arc;

use imgclass_core::engine::{EngineKind, check_input};
use imgclass_core::{Engine, EngineError, LoadedModel};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;

use crate::{EngineOptions, Pool};

type Plan = Arc<TypedRunnableModel>;

/// tract engine: `sessions` plans, each with an `intra_threads` executor.
pub struct TractEngine {
    pool: Pool<Plan>,
    shape: [usize; 4],
    image_len: usize,
    classes: usize,
    intra_threads: usize,
}

impl TractEngine {
    pub fn load(model: &LoadedModel, options: &EngineOptions) -> Result<Self, EngineError> {
        let cfg = &model.config;
        let onnx = model.onnx_path();
        let fail = |e: TractError| EngineError::Load {
            what: format!("model {} in tract", onnx.display()),
            reason: format!("{e:#}"),
        };
        let [a, b, c] = cfg.input.dims();
        let shape = [1, a, b, c];
        let typed = tract_onnx::onnx()
            .model_for_path(&onnx)
            .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
            .and_then(|m| m.into_optimized())
            .map_err(fail)?;
        let threads = options.intra_threads.max(1);
        let mut plans = Vec::new();
        for _ in 0..options.sessions.max(1) {
            let executor = if threads > 1 {
                Executor::multithread(threads)
            } else {
                Executor::SingleThread
            };
            let run_options = RunOptions {
                executor: Some(executor),
                ..RunOptions::default()
            };
            plans.push(
                typed
                    .clone()
                    .into_runnable_with_options(&run_options)
                    .map_err(fail)?,
            );
        }
        Ok(TractEngine {
            pool: Pool::new(plans),
            shape,
            image_len: cfg.image_len(),
            classes: cfg.output.classes,
            intra_threads: threads,
        })
    }
}

impl Engine for TractEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Tract
    }
    fn image_len(&self) -> usize {
        self.image_len
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn sessions(&self) -> usize {
        self.pool.len()
    }
    fn threads_per_call(&self) -> usize {
        self.intra_threads
    }
    fn describe(&self) -> String {
        format!(
            "tract 0.23, {} session(s) x {} thread(s), fixed batch-1 plans",
            self.pool.len(),
            self.intra_threads
        )
    }

    fn infer(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        check_input(input, batch, self.image_len)?;
        let run_err = |e: TractError| EngineError::Run(format!("{e:#}"));
        self.pool.with(|plan| {
            let mut out = Vec::with_capacity(batch * self.classes);
            for image in input.chunks_exact(self.image_len) {
                let tensor = Tensor::from_shape(&self.shape, image).map_err(run_err)?;
                let result = plan.run(tvec!(tensor.into())).map_err(run_err)?;
                let view = result[0].try_as_plain_ram().map_err(run_err)?;
                let scores = view.as_slice::<f32>().map_err(run_err)?;
                if scores.len() != self.classes {
                    return Err(EngineError::Run(format!(
                        "model returned {} values, expected {}",
                        scores.len(),
                        self.classes
                    )));
                }
                out.extend_from_slice(scores);
            }
            Ok(out)
        })
    }
}
