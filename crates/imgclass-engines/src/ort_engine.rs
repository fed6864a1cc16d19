//! ONNX Runtime, loaded from a shared library at run time (`load-dynamic`),
//! so the binary builds without downloading anything and runs with the
//! library `imgclass model fetch` took from the pinned PyPI wheel.

use std::path::Path;
use std::sync::OnceLock;

use imgclass_core::engine::{EngineKind, check_input};
use imgclass_core::{Engine, EngineError, LoadedModel, ORT_VERSION};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::{EngineOptions, Pool};

/// The process-wide ONNX Runtime environment. The library can be loaded
/// once per process, so the first path wins and later calls reuse it.
static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, String), String>> =
    OnceLock::new();

pub(crate) fn environment(
    lib: &Path,
) -> Result<&'static ort::environment::Environment, EngineError> {
    let entry = ENVIRONMENT.get_or_init(|| {
        if !lib.is_file() {
            return Err(format!(
                "{} does not exist; run `imgclass model fetch` or set IMGCLASS_ORT_LIB",
                lib.display()
            ));
        }
        let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
        let env = builder
            .with_name("imgclass")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())?;
        Ok((env, lib.display().to_string()))
    });
    match entry {
        Ok((env, loaded)) => {
            if Path::new(loaded) != lib {
                tracing::debug!(loaded = %loaded, asked = %lib.display(), "ONNX Runtime already loaded from another path");
            }
            Ok(env)
        }
        Err(reason) => Err(EngineError::Load {
            what: format!("ONNX Runtime from {}", lib.display()),
            reason: reason.clone(),
        }),
    }
}

struct OrtSession {
    session: Session,
    input_name: String,
    output_name: String,
}

/// ONNX Runtime engine: `sessions` independent sessions, each with
/// `intra_threads` threads, and optionally one latency session over
/// `latency_threads` threads.
pub struct OrtEngine {
    pool: Pool<OrtSession>,
    dims: [usize; 3],
    image_len: usize,
    classes: usize,
    intra_threads: usize,
    /// The latency session and its thread count.
    latency: Option<(std::sync::Mutex<OrtSession>, usize)>,
}

impl OrtEngine {
    pub fn load(
        model: &LoadedModel,
        lib: &Path,
        options: &EngineOptions,
    ) -> Result<Self, EngineError> {
        let env = environment(lib)?;
        let cfg = &model.config;
        let sessions = (0..options.sessions.max(1))
            .map(|_| open_session(env, model, options.intra_threads.max(1), false))
            .collect::<Result<Vec<_>, _>>()?;
        let latency = match options.latency_threads {
            0 | 1 => None,
            threads => {
                let session = open_session(env, model, threads, options.latency_spinning)?;
                Some((std::sync::Mutex::new(session), threads))
            }
        };
        Ok(OrtEngine {
            pool: Pool::new(sessions),
            dims: cfg.input.dims(),
            image_len: cfg.image_len(),
            classes: cfg.output.classes,
            intra_threads: options.intra_threads.max(1),
            latency,
        })
    }
}

/// ONNX Runtime's session option for exact U8S8 integer kernels on x86
/// CPUs without VNNI.
const X64_QUANT_PRECISION: &str = "session.x64quantprecision";

/// True on x86-64 CPUs without VNNI (e.g. AMD Zen 2/3, Intel before Ice
/// Lake): there ONNX Runtime's fast U8S8 kernels multiply with VPMADDUBSW,
/// whose int16 sum of two u8·s8 products saturates (255·127·2 > 32767).
/// Measured on an AMD EPYC (AVX2 only) with Lite0 quantized by imgclass,
/// the saturating kernels kept the fp32 top-1 on 28 of 41 photos, the
/// exact ones on 38 of 41 (the same as ONNX Runtime's reference QDQ
/// arithmetic), at about fp32 speed. With VNNI the fast kernels are exact.
fn int8_may_saturate() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static SATURATES: OnceLock<bool> = OnceLock::new();
        *SATURATES.get_or_init(|| {
            let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
                || std::arch::is_x86_feature_detected!("avxvnni");
            if !vnni {
                tracing::info!(
                    "int8 model on a CPU without VNNI: ONNX Runtime runs its exact integer \
                     kernels ({X64_QUANT_PRECISION}=1), as its fast ones saturate here"
                );
            }
            !vnni
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// ONNX Runtime's session option that stops a pool's spinning as soon as
/// the last running call returns.
const FORCE_SPINNING_STOP: &str = "session.force_spinning_stop";

/// One session of `model` with `threads` intra-op threads. Unless
/// `spinning`, idle threads sleep instead of spinning: a spinning pool burns
/// the cores the other sessions (and the image decoders) need between calls.
/// With `spinning`, they spin only while a call runs.
fn open_session(
    env: &ort::environment::Environment,
    model: &LoadedModel,
    threads: usize,
    spinning: bool,
) -> Result<OrtSession, EngineError> {
    let cfg = &model.config;
    let onnx = model.onnx_path();
    let fail = |e: ort::Error| EngineError::Load {
        what: format!("model {}", onnx.display()),
        reason: e.to_string(),
    };
    let mut builder = Session::builder(env)
        .map_err(fail)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(e.into()))?;
    if cfg.engine.quantized && int8_may_saturate() {
        builder = builder
            .with_config_entry(X64_QUANT_PRECISION, "1")
            .map_err(|e| fail(e.into()))?;
    }
    if spinning {
        // Spin between the operators of a call only: once it returns the
        // threads sleep at once, instead of spinning on for a while on the
        // core the HTTP threads need to receive and decode the next upload.
        // Measured (Intel Xeon, 2 vCPU): 3 MP BMP at c=4 52-56 -> 64 req/s,
        // c=1 p50 unchanged (6.1-6.3 ms), c=16 unchanged.
        builder = builder
            .with_config_entry(FORCE_SPINNING_STOP, "1")
            .map_err(|e| fail(e.into()))?;
    }
    let session = builder
        .with_intra_threads(threads)
        .map_err(|e| fail(e.into()))?
        .with_intra_op_spinning(spinning)
        .map_err(|e| fail(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.into()))?
        .commit_from_file(&onnx)
        .map_err(fail)?;
    let input_name = pick(
        &session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>(),
        cfg.input.name.as_deref(),
        "input",
    )?;
    let output_name = pick(
        &session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>(),
        cfg.output.name.as_deref(),
        "output",
    )?;
    Ok(OrtSession {
        session,
        input_name,
        output_name,
    })
}

/// The tensor named in `model.toml`, or the model's only/first one.
fn pick(names: &[String], wanted: Option<&str>, what: &str) -> Result<String, EngineError> {
    match wanted {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(EngineError::Load {
            what: format!("{what} {w:?}"),
            reason: format!("the model's {what}s are {names:?}"),
        }),
        None => names.first().cloned().ok_or_else(|| EngineError::Load {
            what: what.into(),
            reason: format!("the model has no {what}"),
        }),
    }
}

impl Engine for OrtEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Ort
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
        let latency = match self.latency_threads() {
            0 => String::new(),
            n => format!(" + a {n}-thread latency session"),
        };
        format!(
            "ONNX Runtime {ORT_VERSION}, {} session(s) x {} thread(s){latency}",
            self.pool.len(),
            self.intra_threads
        )
    }

    fn infer(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        self.pool.with(|s| self.run(s, input, batch))
    }

    fn latency_threads(&self) -> usize {
        self.latency.as_ref().map_or(0, |(_, threads)| *threads)
    }

    fn infer_latency(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        match &self.latency {
            Some((session, _)) => {
                let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
                self.run(&mut s, input, batch)
            }
            None => self.infer(input, batch),
        }
    }
}

impl OrtEngine {
    fn run(
        &self,
        s: &mut OrtSession,
        input: &[f32],
        batch: usize,
    ) -> Result<Vec<f32>, EngineError> {
        check_input(input, batch, self.image_len)?;
        let shape = [batch, self.dims[0], self.dims[1], self.dims[2]];
        let run_err = |e: ort::Error| EngineError::Run(e.to_string());
        // A view over the caller's buffer: no copy of the batch on the hot path.
        let tensor = TensorRef::from_array_view((shape, input)).map_err(run_err)?;
        let outputs = s
            .session
            .run(ort::inputs![s.input_name.as_str() => tensor])
            .map_err(run_err)?;
        let (_, data) = outputs[s.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(run_err)?;
        if data.len() != batch * self.classes {
            return Err(EngineError::Run(format!(
                "model returned {} values for {batch} images of {} classes",
                data.len(),
                self.classes
            )));
        }
        Ok(data.to_vec())
    }
}
