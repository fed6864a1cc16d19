//! The models a process serves: loading (through a [`ModelLoader`] the
//! binary provides), warm-up, readiness, replacement and unloading, apart
//! from any HTTP.
//!
//! - A model is served only once it is loaded and warmed up; until then its
//!   state is [`ModelState::Loading`].
//! - Loading a model that is already served replaces it only when the new
//!   one is up: a failed load leaves whatever was serving untouched.
//! - Unloading stops new work at once, then lets the engine workers finish
//!   the queue before the pipeline is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use imgclass_core::{Engine, LoadedModel};

use crate::observer::Observer;
use crate::pipeline::{Pipeline, PipelineOptions, Resources};

/// Brings models up; the binary implements it (fetch on first use, the
/// model home, the engine flags), so this crate needs neither.
pub trait ModelLoader: Send + Sync {
    /// Loads model `name` and its engine. Blocking.
    fn load(
        &self,
        name: &str,
    ) -> Result<(LoadedModel, Arc<dyn Engine>), Box<dyn std::error::Error + Send + Sync>>;
    /// Every model this loader could load, sorted.
    fn available(&self) -> Vec<String>;
}

/// Makes the observer (metrics) of a model from its name.
pub type ObserverFactory = Arc<dyn Fn(&str) -> Arc<dyn Observer> + Send + Sync>;

/// Where a model is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelState {
    /// Being fetched, loaded or warmed up.
    Loading,
    /// Served.
    Ready,
    /// Not served, and why (a failed load, or unloaded).
    Unavailable(String),
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("model {name:?} could not be loaded: {reason}")]
    Load { name: String, reason: String },
    #[error("model {name:?} is not loaded")]
    NotLoaded { name: String },
    #[error("model {name:?} is already being loaded")]
    Busy { name: String },
    #[error("this server cannot load models (no model loader)")]
    NoLoader,
}

struct Slot {
    pipeline: Option<Arc<Pipeline>>,
    state: ModelState,
}

pub struct ModelSet {
    slots: RwLock<BTreeMap<String, Slot>>,
    /// Names being loaded right now (one load per name at a time).
    loading: Mutex<Vec<String>>,
    options: PipelineOptions,
    resources: Resources,
    observers: ObserverFactory,
    loader: Option<Arc<dyn ModelLoader>>,
}

impl ModelSet {
    pub fn new(
        options: PipelineOptions,
        resources: Resources,
        observers: ObserverFactory,
        loader: Option<Arc<dyn ModelLoader>>,
    ) -> Self {
        ModelSet {
            slots: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(Vec::new()),
            options,
            resources,
            observers,
            loader,
        }
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    pub fn loader(&self) -> Option<&Arc<dyn ModelLoader>> {
        self.loader.as_ref()
    }

    /// Serves an already loaded model under `name` (its configuration's
    /// name is set to it): starts its pipeline and warms it up. Blocking.
    pub fn install(
        &self,
        name: &str,
        mut model: LoadedModel,
        engine: Arc<dyn Engine>,
    ) -> Result<Arc<Pipeline>, LifecycleError> {
        if model.config.name != name {
            tracing::warn!(folder = name, config = %model.config.name, "model.toml names the model differently from its folder; serving it as the folder's name");
            model.config.name = name.to_string();
        }
        let pipeline = Arc::new(Pipeline::start(
            model,
            engine,
            &self.options,
            &self.resources,
            (self.observers)(name),
        ));
        if let Err(e) = pipeline.warm_up() {
            pipeline.close();
            return Err(LifecycleError::Load {
                name: name.to_string(),
                reason: e.to_string(),
            });
        }
        let old = {
            let mut slots = write(&self.slots);
            let old = slots.remove(name).and_then(|s| s.pipeline);
            slots.insert(
                name.to_string(),
                Slot {
                    pipeline: Some(pipeline.clone()),
                    state: ModelState::Ready,
                },
            );
            old
        };
        if let Some(old) = old {
            retire(old, Duration::from_secs(30));
        }
        Ok(pipeline)
    }

    /// Loads `name` through the loader and serves it. Blocking: call it off
    /// the async runtime (see [`ModelSet::load`]).
    pub fn load_blocking(&self, name: &str) -> Result<Arc<Pipeline>, LifecycleError> {
        let loader = self.loader.clone().ok_or(LifecycleError::NoLoader)?;
        {
            let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            if loading.iter().any(|n| n == name) {
                return Err(LifecycleError::Busy { name: name.into() });
            }
            loading.push(name.to_string());
        }
        {
            let mut slots = write(&self.slots);
            let slot = slots.entry(name.to_string()).or_insert(Slot {
                pipeline: None,
                state: ModelState::Loading,
            });
            if slot.pipeline.is_none() {
                slot.state = ModelState::Loading;
            }
        }
        let result = loader
            .load(name)
            .map_err(|e| LifecycleError::Load {
                name: name.to_string(),
                reason: e.to_string(),
            })
            .and_then(|(model, engine)| {
                tracing::info!(model = name, engine = %engine.kind(), detail = %engine.describe(), "engine ready");
                self.install(name, model, engine)
            });
        if let Err(e) = &result {
            let mut slots = write(&self.slots);
            if let Some(slot) = slots.get_mut(name)
                && slot.pipeline.is_none()
            {
                slot.state = ModelState::Unavailable(e.to_string());
            }
        }
        self.loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != name);
        result
    }

    /// [`ModelSet::load_blocking`] on a blocking thread.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<Arc<Pipeline>, LifecycleError> {
        let set = self.clone();
        let name = name.to_string();
        let n = name.clone();
        tokio::task::spawn_blocking(move || set.load_blocking(&n))
            .await
            .unwrap_or_else(|e| {
                Err(LifecycleError::Load {
                    name,
                    reason: format!("the loading task failed: {e}"),
                })
            })
    }

    /// Stops serving `name`: new requests no longer find it, queued images
    /// are still answered (within `drain`), then the pipeline is dropped.
    pub async fn unload(&self, name: &str, drain: Duration) -> Result<(), LifecycleError> {
        let pipeline = {
            let mut slots = write(&self.slots);
            match slots.get_mut(name) {
                Some(slot) if slot.pipeline.is_some() => {
                    slot.state = ModelState::Unavailable("unloaded".into());
                    slot.pipeline.take().expect("checked")
                }
                _ => {
                    return Err(LifecycleError::NotLoaded { name: name.into() });
                }
            }
        };
        pipeline.close();
        let drained = tokio::task::spawn_blocking(move || pipeline.join(drain))
            .await
            .unwrap_or(false);
        if !drained {
            tracing::warn!(model = name, "unloaded before its queue drained");
        }
        Ok(())
    }

    /// The pipeline serving `name`, if one does.
    pub fn get(&self, name: &str) -> Option<Arc<Pipeline>> {
        read(&self.slots).get(name).and_then(|s| s.pipeline.clone())
    }

    /// The state of `name`, if it was ever asked for.
    pub fn state(&self, name: &str) -> Option<ModelState> {
        read(&self.slots).get(name).map(|s| s.state.clone())
    }

    /// Every model asked for so far with its state, sorted by name.
    pub fn states(&self) -> Vec<(String, ModelState)> {
        read(&self.slots)
            .iter()
            .map(|(n, s)| (n.clone(), s.state.clone()))
            .collect()
    }

    /// The pipelines being served, sorted by name.
    pub fn serving(&self) -> Vec<Arc<Pipeline>> {
        read(&self.slots)
            .values()
            .filter_map(|s| s.pipeline.clone())
            .collect()
    }

    /// Stops every pipeline taking new work (shutdown).
    pub fn close_all(&self) {
        for p in self.serving() {
            p.close();
        }
    }

    /// After [`ModelSet::close_all`], waits up to `within` for every queue
    /// to drain. Blocking.
    pub fn join_all(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        self.serving().iter().all(|p| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            p.join(left)
        })
    }
}

/// Drains a replaced pipeline in the background.
fn retire(old: Arc<Pipeline>, within: Duration) {
    old.close();
    let _ = std::thread::Builder::new()
        .name("retire-pipeline".into())
        .spawn(move || {
            old.join(within);
        });
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
