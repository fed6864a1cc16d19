//! Atomic installs into the model home: files are written and fsynced in a
//! staging folder inside the home, which then appears under its final name
//! by one `rename`, so an interrupted fetch never leaves a half-written
//! model that later loads.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file-system step that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct InstallError {
    pub context: String,
    pub source: std::io::Error,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let context = context.into();
    move |source| InstallError { context, source }
}

/// A staging folder in the home (removed on drop if not installed).
pub struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    pub fn new(home: &Path) -> Result<Self, InstallError> {
        fs::create_dir_all(home).map_err(io(format!("cannot create {}", home.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(home)
            .map_err(io("cannot create a staging folder"))?;
        Ok(Staging { dir })
    }

    /// A new empty sub-folder to fill.
    pub fn folder(&self, name: &str) -> Result<PathBuf, InstallError> {
        let p = self.dir.path().join(name);
        fs::create_dir(&p).map_err(io(format!("cannot create staging folder {name}")))?;
        Ok(p)
    }
}

/// Writes a file and fsyncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let mut f = File::create(path).map_err(io(format!("cannot create {}", path.display())))?;
    f.write_all(bytes)
        .map_err(io(format!("cannot write {}", path.display())))?;
    f.sync_all()
        .map_err(io(format!("cannot sync {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))
}

/// Moves a fully written staging folder into place. An existing target (a
/// forced re-fetch) is first moved aside, so there is never a moment where
/// a half-replaced model is visible.
pub fn install_dir(stage: &Path, target: &Path) -> Result<(), InstallError> {
    sync_dir(stage)?;
    let parent = target.parent().expect("target has a parent");
    fs::create_dir_all(parent).map_err(io(format!("cannot create {}", parent.display())))?;
    if target.exists() {
        let old = parent.join(format!(
            ".old-{}-{}",
            target.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&old);
        fs::rename(target, &old).map_err(io(format!("cannot move {} aside", target.display())))?;
        fs::rename(stage, target).map_err(io(format!("cannot install {}", target.display())))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(stage, target).map_err(io(format!("cannot install {}", target.display())))?;
    }
    sync_dir(parent)
}

/// Holds the home's fetch lock (an advisory file lock) until dropped, so
/// concurrent fetches — several replicas starting at once on a shared
/// home — run one after the other.
pub struct HomeLock {
    _file: File,
}

impl HomeLock {
    pub fn acquire(home: &Path) -> Result<Self, InstallError> {
        fs::create_dir_all(home).map_err(io(format!("cannot create {}", home.display())))?;
        let path = home.join(".fetch.lock");
        let file = File::create(&path).map_err(io(format!("cannot create {}", path.display())))?;
        file.lock().map_err(io("cannot lock the model home"))?;
        Ok(HomeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_and_replaces_atomically() {
        let home = tempfile::tempdir().unwrap();
        let target = home.path().join("m");
        for content in [&b"one"[..], b"two"] {
            let staging = Staging::new(home.path()).unwrap();
            let dir = staging.folder("m").unwrap();
            write_synced(&dir.join("f"), content).unwrap();
            install_dir(&dir, &target).unwrap();
            assert_eq!(fs::read(target.join("f")).unwrap(), content);
        }
        let names: Vec<String> = fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["m"], "no staging or .old leftovers");
    }
}
