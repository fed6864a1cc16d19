//! A reproducible ONNX Runtime run of a model held in memory, for tools
//! rather than serving: int8 calibration runs the fp32 model with its
//! intermediate activations exposed as extra graph outputs.

use std::path::Path;

use imgclass_core::EngineError;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::ort_engine::environment;

/// Runs an ONNX model held in memory on one single-threaded ONNX Runtime
/// session, without graph optimisations, and returns the float tensors it
/// was asked for.
///
/// One thread and no graph rewrites make every run reproducible (the same
/// input gives bit-identical outputs), which is what makes quantization
/// deterministic.
pub struct OrtProbe {
    session: Session,
    input: String,
    outputs: Vec<String>,
}

/// One output of a probe run.
pub struct Probed {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl OrtProbe {
    pub fn new(
        lib: &Path,
        onnx: &[u8],
        input: &str,
        outputs: Vec<String>,
    ) -> Result<Self, EngineError> {
        let env = environment(lib)?;
        let fail = |e: ort::Error| EngineError::Load {
            what: "the calibration model".into(),
            reason: e.to_string(),
        };
        let session = Session::builder(env)
            .map_err(fail)?
            .with_optimization_level(GraphOptimizationLevel::Disable)
            .map_err(|e| fail(e.into()))?
            .with_intra_threads(1)
            .map_err(|e| fail(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.into()))?
            .commit_from_memory(onnx)
            .map_err(fail)?;
        Ok(OrtProbe {
            session,
            input: input.into(),
            outputs,
        })
    }

    /// Runs one input of shape `shape`; returns the requested outputs in order.
    pub fn run(&mut self, input: &[f32], shape: &[usize]) -> Result<Vec<Probed>, EngineError> {
        let run_err = |e: ort::Error| EngineError::Run(e.to_string());
        let tensor = TensorRef::from_array_view((shape.to_vec(), input)).map_err(run_err)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(run_err)?;
        self.outputs
            .iter()
            .map(|name| {
                let (shape, data) = outputs[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(run_err)?;
                let shape = shape
                    .iter()
                    .map(|&d| usize::try_from(d))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| EngineError::Run(format!("{name} has shape {shape:?}")))?;
                Ok(Probed {
                    shape,
                    values: data.to_vec(),
                })
            })
            .collect()
    }
}
