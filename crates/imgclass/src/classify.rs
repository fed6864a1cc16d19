//! `imgclass classify`: the same pipeline as the server (decode pool,
//! batch queue, engine workers, softmax, top-k), fed from files, printing
//! in input order as results arrive.
//!
//! Every file becomes a task that waits for room in the pipeline (so at
//! most a queue's worth of images is in memory), reads the file, and
//! classifies it; decoding overlaps inference, and a bad file only produces
//! an error line for itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use imgclass::cli::Global;
use imgclass::cli::classify::ClassifyArgs;
use imgclass_core::preprocess::ImageFormat;
use imgclass_core::{DecodeLimits, Prediction, usable_cpus};
use imgclass_pipeline::{Deadline, ModelLoader, NoObserver, Pipeline, PipelineOptions, Resources};
use serde::Serialize;

use crate::loader::HomeLoader;

type Outcome = Result<Vec<Prediction>, String>;

/// No per-image deadline on the command line; a day stands for "none".
const NO_DEADLINE: Duration = Duration::from_secs(24 * 3600);

pub fn run(global: &Global, args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no images found in {:?}", args.paths);
    }
    let name = args.engine.single_model().map_err(anyhow::Error::msg)?;
    let (model, engine) = HomeLoader::new(global.home(), &args.engine)
        .load(&name)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("loading model {name}"))?;
    let batch_size = usize::from(args.batch_size);
    let options = PipelineOptions {
        max_batch_size: batch_size,
        max_batch_delay: Duration::ZERO,
        queue_capacity: batch_size * engine.sessions() * 2,
        limits: DecodeLimits {
            max_pixels: args.decode.max_pixels,
            ..DecodeLimits::default()
        },
    };
    let cpus = usable_cpus();
    let kind = engine.kind();
    let pipeline = Arc::new(Pipeline::start(
        model,
        engine,
        &options,
        &Resources::new(cpus, cpus),
        Arc::new(NoObserver),
    ));
    let k = usize::from(args.top_k);
    let start = Instant::now();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Outcome)>();
    for (i, file) in files.iter().enumerate() {
        let (tx, pipeline, file) = (tx.clone(), pipeline.clone(), file.clone());
        runtime.spawn(async move {
            let outcome = classify_file(&pipeline, &file, k).await;
            let _ = tx.send((i, outcome));
        });
    }
    drop(tx);

    let mut failed = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut next = 0usize;
    while let Some((i, outcome)) = rx.blocking_recv() {
        pending.insert(i, outcome);
        while let Some(outcome) = pending.remove(&next) {
            if outcome.is_err() {
                failed += 1;
            }
            print_one(&mut out, &files[next], &outcome, args.json)?;
            next += 1;
        }
    }
    out.flush()?;
    drop(runtime);
    pipeline.close();

    let secs = start.elapsed().as_secs_f64();
    let ok = files.len() - failed;
    tracing::info!(
        images = files.len(),
        classified = ok,
        failed,
        seconds = format!("{secs:.3}"),
        images_per_second = format!("{:.1}", files.len() as f64 / secs),
        engine = %kind,
        "done"
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits for room in the pipeline, reads the file and classifies it.
async fn classify_file(pipeline: &Pipeline, file: &Path, k: usize) -> Outcome {
    let admitted = pipeline.admit_wait(1).await.map_err(|e| e.to_string())?;
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| format!("cannot read file: {e}"))?;
    let classified = pipeline
        .classify(&admitted, bytes.into(), Deadline::after(NO_DEADLINE))
        .await
        .map_err(|e| e.to_string())?;
    Ok(pipeline.top_k(&classified.probabilities, k))
}

#[derive(Serialize)]
struct JsonLine<'a> {
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    predictions: Option<&'a [Prediction]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn print_one(
    out: &mut impl Write,
    file: &Path,
    outcome: &Outcome,
    json: bool,
) -> anyhow::Result<()> {
    let name = file.to_string_lossy();
    if json {
        let line = match outcome {
            Ok(p) => JsonLine {
                file: &name,
                predictions: Some(p),
                error: None,
            },
            Err(e) => JsonLine {
                file: &name,
                predictions: None,
                error: Some(e),
            },
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
    } else {
        match outcome {
            Ok(p) => {
                let parts: Vec<String> = p
                    .iter()
                    .map(|p| format!("{} ({}) {:.1}%", p.label, p.index, p.probability * 100.0))
                    .collect();
                writeln!(out, "{name}: {}", parts.join(", "))?;
            }
            Err(e) => writeln!(out, "{name}: error: {e}")?,
        }
    }
    Ok(())
}

/// Files named on the command line are taken as they are (and fail on
/// their own if they are not images); folders are searched recursively for
/// files with an image extension, in sorted order.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot open {}", p.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .follow_links(true)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .and_then(ImageFormat::from_extension)
                        .is_some()
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}
