//! `imgclass model fetch | list | bench`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use imgclass::cli::Global;
use imgclass::cli::model::{BenchArgs, FetchArgs, ModelCommand};
use imgclass_core::ModelRepository;
use imgclass_model::{FetchOptions, fetch_default_model};
use imgclass_pipeline::ModelLoader;

use crate::loader::HomeLoader;

pub fn run(global: &Global, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Fetch(args) => fetch(global, args),
        ModelCommand::List => list(global),
        ModelCommand::Bench(args) => bench(global, args),
    }
}

fn fetch(global: &Global, args: FetchArgs) -> anyhow::Result<ExitCode> {
    let mut options = FetchOptions::new(global.home());
    options.force = args.force;
    options.wheelhouse = args.wheelhouse;
    options.python = args.python;
    let r = fetch_default_model(&options)?;
    if r.already_present {
        println!(
            "{} is already in {}; nothing to do (use --force to convert again)",
            imgclass_core::DEFAULT_MODEL,
            options.home.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("model:     {}", r.model_dir.display());
    if let Some(rt) = &r.runtime {
        println!("runtime:   {}", rt.display());
    } else {
        println!("runtime:   none pinned for this platform (tract only)");
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
    println!(
        "onnx:      {:.1} MB, {} parameters",
        r.onnx_bytes as f64 / 1e6,
        r.parameters
    );
    println!(
        "time:      download {:.2} s, convert {:.2} s, total {:.2} s",
        r.download_time.as_secs_f64(),
        r.convert_time.as_secs_f64(),
        r.total_time.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let repo = ModelRepository::new(global.home());
    let names = repo.list();
    if names.is_empty() {
        println!(
            "no models in {}; run `imgclass model fetch`",
            repo.home().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<12} {:>7} {:>9}  description",
        "NAME", "INPUT", "CLASSES", "ONNX MB"
    );
    for name in names {
        match repo.load(&name) {
            Ok(m) => {
                let c = &m.config;
                let mb = std::fs::metadata(m.onnx_path())
                    .map(|m| m.len() as f64 / 1e6)
                    .unwrap_or(0.0);
                println!(
                    "{:<24} {:<12} {:>7} {:>9.1}  {}",
                    name,
                    format!("{}x{} {:?}", c.input.width, c.input.height, c.input.layout)
                        .to_uppercase(),
                    c.output.classes,
                    mb,
                    c.description
                );
            }
            Err(e) => println!("{name:<24} error: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Median ms per image for each batch size, engine only.
fn bench(global: &Global, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let name = args.engine.single_model().map_err(anyhow::Error::msg)?;
    let (_, engine) = HomeLoader::new(global.home(), &args.engine)
        .load(&name)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("loading model {name}"))?;
    println!("engine: {}", engine.describe());
    for &batch in &args.batch {
        let batch = batch.max(1);
        // Deterministic, already-normalised input (the converter's reference pattern).
        let input: Vec<f32> = (0..batch * engine.image_len())
            .map(|i| (((i * 7) % 255) as f32 - 127.0) / 128.0)
            .collect();
        for _ in 0..3 {
            engine.infer(&input, batch)?;
        }
        let mut times = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations.max(1) {
            let t = Instant::now();
            engine.infer(&input, batch)?;
            times.push(t.elapsed().as_secs_f64() * 1e3 / batch as f64);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "batch {batch:>3}: median {median:.2} ms/image (min {:.2}, max {:.2}), {:.0} images/s on one session",
            times[0],
            times[times.len() - 1],
            1e3 / median
        );
    }
    Ok(ExitCode::SUCCESS)
}
