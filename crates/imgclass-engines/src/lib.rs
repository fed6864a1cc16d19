//! Inference engines behind [`imgclass_core::Engine`]:
//! - [`OrtEngine`]: ONNX Runtime loaded at run time from the fetched
//!   `libonnxruntime.so` (fast path);
//! - `TractEngine` (feature `tract`): pure Rust, no native library;
//! - [`OrtProbe`]: a reproducible one-thread ONNX Runtime run of an
//!   in-memory model (int8 calibration).
//!
//! [`load_engine`] implements `--engine auto|ort|tract`.

mod ort_engine;
mod ort_probe;
#[cfg(feature = "tract")]
mod tract_engine;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use imgclass_core::{Engine, EngineError, LoadedModel};

pub use ort_engine::OrtEngine;
pub use ort_probe::{OrtProbe, Probed};
#[cfg(feature = "tract")]
pub use tract_engine::TractEngine;

/// `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// ONNX Runtime when its library loads, otherwise tract.
    #[default]
    Auto,
    Ort,
    Tract,
}

impl FromStr for EngineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(EngineChoice::Auto),
            "ort" | "onnxruntime" => Ok(EngineChoice::Ort),
            "tract" => Ok(EngineChoice::Tract),
            other => Err(format!("unknown engine {other:?}: use auto, ort or tract")),
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Ort => "ort",
            EngineChoice::Tract => "tract",
        })
    }
}

/// A model that could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Repository(#[from] imgclass_core::RepositoryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Loads model `name` from `home` on the engine `choice` names.
pub fn load(
    home: &std::path::Path,
    name: &str,
    choice: EngineChoice,
    options: &EngineOptions,
) -> Result<(LoadedModel, Arc<dyn Engine>), LoadError> {
    let model = imgclass_core::ModelRepository::new(home).load(name)?;
    let engine = load_engine(&model, choice, options, home)?;
    tracing::info!(model = %name, engine = %engine.kind(), detail = %engine.describe(), "engine ready");
    Ok((model, engine))
}

/// How much parallelism an engine gets.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Independent sessions (each can run one batch at a time).
    pub sessions: usize,
    /// Threads inside one session.
    pub intra_threads: usize,
    /// Threads of an extra latency session that a lone request runs on
    /// when every core is idle; 0 or 1: no latency session. ONNX Runtime
    /// only (tract runs a call on one thread).
    pub latency_threads: usize,
    /// Let the latency session's threads spin between the operators of a
    /// call before they sleep: faster lone requests (c=1 p50 12–13 ms
    /// instead of 14–15.5 on a 2-vCPU EPYC). They stop spinning as soon as
    /// the call returns, so no core is burnt between requests. The
    /// per-core sessions never spin.
    pub latency_spinning: bool,
    /// The ONNX Runtime shared library; `None` looks in the model home.
    pub ort_library: Option<PathBuf>,
}

impl EngineOptions {
    /// Defaults measured on a 2-core machine: one single-threaded session
    /// per usable CPU gives the best throughput for both engines (two
    /// 1-thread ORT sessions ≈ 200 img/s versus ≈ 180 for one 2-thread
    /// one), and one session over all CPUs the best latency for a lone
    /// request.
    pub fn for_cpus(cpus: usize) -> Self {
        let cpus = cpus.max(1);
        EngineOptions {
            sessions: cpus,
            intra_threads: 1,
            latency_threads: if cpus > 1 { cpus } else { 0 },
            latency_spinning: true,
            ort_library: None,
        }
    }

    /// `sessions` sessions of `intra_threads` threads and no latency
    /// session: one kind of call only.
    pub fn fixed(sessions: usize, intra_threads: usize) -> Self {
        EngineOptions {
            sessions: sessions.max(1),
            intra_threads: intra_threads.max(1),
            latency_threads: 0,
            latency_spinning: false,
            ort_library: None,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions::for_cpus(usable_cpus())
    }
}

pub use imgclass_core::usable_cpus;

/// The library path used when none is given: `$IMGCLASS_ORT_LIB`, else the
/// copy `imgclass model fetch` put in the model home.
pub fn default_ort_library(home: &std::path::Path) -> PathBuf {
    if let Some(p) = std::env::var_os("IMGCLASS_ORT_LIB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    imgclass_core::ModelRepository::new(home).ort_library()
}

/// Loads `model` on the chosen engine. Under `auto`, the engine the model's
/// `[engine] preferred` names is tried first (ONNX Runtime when it names
/// none), and the other used when it cannot be loaded; the reason is
/// logged. `[engine] ort_library` (relative to the model home) is used when
/// no library was given.
pub fn load_engine(
    model: &LoadedModel,
    choice: EngineChoice,
    options: &EngineOptions,
    home: &std::path::Path,
) -> Result<Arc<dyn Engine>, EngineError> {
    // The library: the flag, else the model's hint (relative to the model
    // home), else `$IMGCLASS_ORT_LIB` or the one `model fetch` installed.
    let hints = &model.config.engine;
    let lib = options
        .ort_library
        .clone()
        .or_else(|| hints.ort_library.as_ref().map(|p| home.join(p)))
        .unwrap_or_else(|| default_ort_library(home));
    // `auto` tries the model's preferred engine first.
    let choice = match (choice, hints.preferred.as_deref()) {
        (EngineChoice::Auto, Some(p)) if p.eq_ignore_ascii_case("tract") => {
            match load_tract(model, options) {
                Ok(e) => return Ok(e),
                Err(e) => {
                    tracing::warn!(error = %e, "engine auto: the model prefers tract, which did not load; trying ONNX Runtime");
                    EngineChoice::Ort
                }
            }
        }
        (choice, _) => choice,
    };
    match choice {
        EngineChoice::Ort => Ok(Arc::new(OrtEngine::load(model, &lib, options)?)),
        EngineChoice::Tract => load_tract(model, options),
        EngineChoice::Auto => match OrtEngine::load(model, &lib, options) {
            Ok(e) => {
                tracing::info!(
                    engine = "ort",
                    library = %lib.display(),
                    model_prefers = hints.preferred.as_deref().unwrap_or("-"),
                    "engine auto: ONNX Runtime loaded (it runs int8 QDQ models as integer kernels; tract would compute them in f32)"
                );
                Ok(Arc::new(e))
            }
            Err(ort_err) => {
                tracing::warn!(error = %ort_err, "engine auto: ONNX Runtime unavailable, using tract");
                load_tract(model, options).map_err(|tract_err| EngineError::Load {
                    what: "any engine".into(),
                    reason: format!("ort: {ort_err}; tract: {tract_err}"),
                })
            }
        },
    }
}

#[cfg(feature = "tract")]
fn load_tract(
    model: &LoadedModel,
    options: &EngineOptions,
) -> Result<Arc<dyn Engine>, EngineError> {
    Ok(Arc::new(TractEngine::load(model, options)?))
}

#[cfg(not(feature = "tract"))]
fn load_tract(_: &LoadedModel, _: &EngineOptions) -> Result<Arc<dyn Engine>, EngineError> {
    Err(EngineError::Load {
        what: "tract".into(),
        reason: "this binary was built without the `tract` feature".into(),
    })
}

/// Hands out sessions round-robin, waiting only when all are busy.
pub(crate) struct Pool<T> {
    items: Vec<std::sync::Mutex<T>>,
    next: std::sync::atomic::AtomicUsize,
}

impl<T> Pool<T> {
    pub(crate) fn new(items: Vec<T>) -> Self {
        assert!(!items.is_empty(), "a pool needs at least one session");
        Pool {
            items: items.into_iter().map(std::sync::Mutex::new).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Runs `f` on a free item: first a non-blocking pass starting at the
    /// round-robin position, then a blocking wait on that position.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let n = self.items.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(mut guard) = self.items[(start + i) % n].try_lock() {
                return f(&mut guard);
            }
        }
        let mut guard = self.items[start]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_choice_parses() {
        assert_eq!("AUTO".parse::<EngineChoice>().unwrap(), EngineChoice::Auto);
        assert_eq!(
            "onnxruntime".parse::<EngineChoice>().unwrap(),
            EngineChoice::Ort
        );
        assert!("cuda".parse::<EngineChoice>().is_err());
    }

    #[test]
    fn pool_runs_in_parallel_up_to_its_size() {
        let pool = Arc::new(Pool::new(vec![0usize, 0]));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let pool = pool.clone();
                s.spawn(move || {
                    for _ in 0..100 {
                        pool.with(|c| *c += 1);
                    }
                });
            }
        });
        let total: usize = pool.items.iter().map(|m| *m.lock().unwrap()).sum();
        assert_eq!(total, 800);
    }
}
