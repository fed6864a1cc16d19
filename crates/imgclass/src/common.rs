//! Shared by the commands: the model home and loading a model on an engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use imgclass_core::{Engine, LoadedModel, ModelRepository};
use imgclass_engines::EngineArgs;

use crate::cli::Global;

pub fn home(global: &Global) -> PathBuf {
    global
        .home
        .clone()
        .unwrap_or_else(ModelRepository::default_home)
}

/// Loads the model, fetching and converting the default one on first use.
pub fn load_model(
    global: &Global,
    args: &EngineArgs,
) -> anyhow::Result<(LoadedModel, Arc<dyn Engine>)> {
    let home = home(global);
    imgclass_model::ensure_model(&home, &args.model).context("fetching the default model")?;
    imgclass_engines::load(&home, args).with_context(|| format!("loading model {}", args.model))
}
