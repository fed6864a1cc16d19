//! The model home: a folder of models, each a sub-folder with `model.toml`,
//! an ONNX file and a labels file.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ModelConfig};
use crate::labels::Labels;

/// File that marks a model folder.
pub const MODEL_TOML: &str = "model.toml";

/// The ONNX Runtime release the home holds; the engines' `ort` API level
/// and `imgclass model fetch`'s pinned wheel move together with it.
pub const ORT_VERSION: &str = "1.32.0";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error(
        "model {name:?} not found in {home} (available: {available}); run `imgclass model fetch` for the default model"
    )]
    NotFound {
        name: String,
        home: String,
        available: String,
    },
    #[error("invalid model name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model {name}: {message}")]
    Broken { name: String, message: String },
}

/// A model folder with its configuration and labels loaded.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub labels: Labels,
}

impl LoadedModel {
    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.config.onnx)
    }
}

/// The folder holding all models (`$IMGCLASS_HOME`, default `~/.cache/imgclass`).
#[derive(Clone, Debug)]
pub struct ModelRepository {
    home: PathBuf,
}

impl ModelRepository {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        ModelRepository { home: home.into() }
    }

    /// `$IMGCLASS_HOME`, else `$XDG_CACHE_HOME/imgclass`, else `~/.cache/imgclass`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("IMGCLASS_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h);
        }
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(x).join("imgclass");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("imgclass")
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where `imgclass model fetch` puts the ONNX Runtime library.
    pub fn ort_library(&self) -> PathBuf {
        self.home
            .join("runtime")
            .join(format!("onnxruntime-{ORT_VERSION}"))
            .join(format!("libonnxruntime.so.{ORT_VERSION}"))
    }

    /// Names of the models present (folders with a `model.toml`), sorted.
    /// Folders starting with '.' are staging areas and never listed.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.home) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(MODEL_TOML).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Folder of a model (whether or not it exists), after validating the name.
    pub fn model_dir(&self, name: &str) -> Result<PathBuf, RepositoryError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(RepositoryError::InvalidName(name.to_string()));
        }
        Ok(self.home.join(name))
    }

    /// Loads a model's configuration and labels and checks they agree.
    pub fn load(&self, name: &str) -> Result<LoadedModel, RepositoryError> {
        let dir = self.model_dir(name)?;
        let toml = dir.join(MODEL_TOML);
        if !toml.is_file() {
            let available = self.list();
            return Err(RepositoryError::NotFound {
                name: name.to_string(),
                home: self.home.display().to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
        let config = ModelConfig::load(&toml)?;
        let broken = |message: String| RepositoryError::Broken {
            name: name.to_string(),
            message,
        };
        let labels = Labels::load(&dir.join(&config.labels))
            .map_err(|e| broken(format!("cannot read labels {}: {e}", config.labels)))?;
        if labels.len() != config.output.classes {
            return Err(broken(format!(
                "{} has {} labels but the model has {} classes",
                config.labels,
                labels.len(),
                config.output.classes
            )));
        }
        if !dir.join(&config.onnx).is_file() {
            return Err(broken(format!("missing ONNX file {}", config.onnx)));
        }
        Ok(LoadedModel {
            dir,
            config,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_model(home: &Path, name: &str, classes: usize, labels: usize) {
        let dir = home.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = format!(
            "name = \"{name}\"\nonnx = \"m.onnx\"\nlabels = \"l.txt\"\n[input]\nwidth = 8\nheight = 8\nlayout = \"NHWC\"\nnormalization = {{ kind = \"mean_std\", mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}\n[output]\nclasses = {classes}\n"
        );
        std::fs::write(dir.join(MODEL_TOML), cfg).unwrap();
        std::fs::write(dir.join("m.onnx"), b"x").unwrap();
        let l: String = (0..labels).map(|i| format!("c{i}\n")).collect();
        std::fs::write(dir.join("l.txt"), l).unwrap();
    }

    #[test]
    fn lists_and_loads_models() {
        let home = tempfile::tempdir().unwrap();
        write_model(home.path(), "b-model", 3, 3);
        write_model(home.path(), "a-model", 2, 2);
        write_model(home.path(), ".staging-x", 2, 2);
        std::fs::create_dir(home.path().join("not-a-model")).unwrap();
        let repo = ModelRepository::new(home.path());
        assert_eq!(repo.list(), vec!["a-model", "b-model"]);
        let m = repo.load("b-model").unwrap();
        assert_eq!(m.labels.get(2), "c2");
        assert!(matches!(
            repo.load("zzz"),
            Err(RepositoryError::NotFound { .. })
        ));
        assert!(matches!(
            repo.load("../etc"),
            Err(RepositoryError::InvalidName(_))
        ));
    }

    #[test]
    fn label_count_must_match_classes() {
        let home = tempfile::tempdir().unwrap();
        write_model(home.path(), "m", 3, 2);
        let err = ModelRepository::new(home.path()).load("m").unwrap_err();
        assert!(
            err.to_string()
                .contains("2 labels but the model has 3 classes"),
            "{err}"
        );
    }
}
