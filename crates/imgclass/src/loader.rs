//! How the binary brings a model up: fetch, convert or quantize a
//! catalogue model on first use,
//! read its folder in the model home, load it on the chosen engine. The
//! server and the CLI get this as a [`ModelLoader`], so neither the server
//! crate nor the pipeline knows about fetching or engine flags.

use std::path::PathBuf;
use std::sync::Arc;

use imgclass_core::{Engine, LoadedModel, ModelRepository};
use imgclass_engines::{EngineChoice, EngineOptions};
use imgclass_pipeline::ModelLoader;

use imgclass::cli::engine::EngineArgs;

pub struct HomeLoader {
    home: PathBuf,
    choice: EngineChoice,
    options: EngineOptions,
}

impl HomeLoader {
    pub fn new(home: PathBuf, engine: &EngineArgs) -> Self {
        HomeLoader {
            home,
            choice: engine.engine,
            options: engine.options(),
        }
    }
}

impl ModelLoader for HomeLoader {
    fn load(
        &self,
        name: &str,
    ) -> Result<(LoadedModel, Arc<dyn Engine>), Box<dyn std::error::Error + Send + Sync>> {
        imgclass_model::ensure_model(&self.home, name)?;
        Ok(imgclass_engines::load(
            &self.home,
            name,
            self.choice,
            &self.options,
        )?)
    }

    /// The models in the model home and the catalogue's, which
    /// [`ModelLoader::load`] fetches (converts, quantizes) on first use.
    fn available(&self) -> Vec<String> {
        let mut names = ModelRepository::new(&self.home).list();
        for entry in imgclass_model::CATALOGUE {
            if !names.iter().any(|n| n == entry.name) {
                names.push(entry.name.to_string());
            }
        }
        names.sort();
        names
    }
}
