//! Which model runs on which engine, with how many sessions and threads:
//! the flags of every command that runs a model.

use std::path::PathBuf;

use clap::Args;
use imgclass_engines::{EngineChoice, EngineOptions};

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Inference engine: auto (ONNX Runtime if it loads, else tract), ort or tract.
    #[arg(long, env = "IMGCLASS_ENGINE", default_value = "auto")]
    pub engine: EngineChoice,
    /// Model name(s) in the model home, comma-separated; `serve` serves them
    /// all (the first is the default), the other commands take one.
    #[arg(long, env = "IMGCLASS_MODEL", value_delimiter = ',', default_value = imgclass_core::DEFAULT_MODEL)]
    pub model: Vec<String>,
    /// Parallel engine sessions per model (default: the CPUs this process may use).
    #[arg(long, env = "IMGCLASS_SESSIONS")]
    pub sessions: Option<usize>,
    /// Threads inside each session.
    #[arg(long, env = "IMGCLASS_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Threads of the latency session: a lone request on an idle machine runs
    /// on one session over this many cores, queued requests on the per-core
    /// sessions (0 or 1: no latency session; default: the CPUs this process
    /// may use, when more than one). ONNX Runtime only.
    #[arg(long, env = "IMGCLASS_LATENCY_THREADS")]
    pub latency_threads: Option<usize>,
    /// Let the latency session's threads spin between the operators of a
    /// call (never after it returns): a lone request's answer is about 2 ms
    /// faster on two cores. The per-core sessions never spin. `false`: the
    /// latency session's threads sleep whenever they wait.
    #[arg(long, env = "IMGCLASS_LATENCY_SPINNING", default_value_t = true, action = clap::ArgAction::Set)]
    pub latency_spinning: bool,
    /// ONNX Runtime shared library (default: the one `model fetch` installed).
    #[arg(long, env = "IMGCLASS_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    /// The engine options these flags ask for.
    pub fn options(&self) -> EngineOptions {
        let mut options = EngineOptions::default();
        if let Some(s) = self.sessions {
            options.sessions = s.max(1);
        }
        options.intra_threads = self.threads.max(1);
        if let Some(t) = self.latency_threads {
            options.latency_threads = t;
        }
        options.latency_spinning = self.latency_spinning;
        options.ort_library = self.ort_lib.clone();
        options
    }

    /// The model names, trimmed, without empties or repeats, in order.
    pub fn models(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self
            .model
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
        {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        }
        out
    }

    /// The one model of a command that runs one.
    pub fn single_model(&self) -> Result<String, String> {
        match self.models().as_slice() {
            [one] => Ok(one.clone()),
            [] => Err("--model must name a model".into()),
            many => Err(format!(
                "this command runs one model; --model names {}",
                many.join(", ")
            )),
        }
    }
}

/// What may be decoded: shared by `serve` and `classify`.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Largest image accepted, width × height, checked from the header before decoding.
    #[arg(long, env = "IMGCLASS_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
}
