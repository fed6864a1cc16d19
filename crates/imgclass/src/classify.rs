//! `imgclass classify`: decode in parallel, infer in batches on every
//! engine session at once, print in input order as results arrive.
//!
//! Pipeline: rayon decodes → bounded channel → one thread per engine
//! session takes up to `--batch-size` ready tensors per call → results are
//! re-ordered and printed. Decoding overlaps inference, and a bad file only
//! produces an error line for itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use crossbeam_channel::{bounded, unbounded};
use imgclass_core::preprocess::ImageFormat;
use imgclass_core::{DecodeLimits, Prediction, Preprocessor, softmax, top_k};
use rayon::prelude::*;
use serde::Serialize;

use crate::cli::{ClassifyArgs, Global};
use crate::common::load_model;

type Outcome = Result<Vec<Prediction>, String>;

pub fn run(global: &Global, args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no images found in {:?}", args.paths);
    }
    let (model, engine) = load_model(global, &args.engine)?;
    let limits = DecodeLimits {
        max_pixels: args.max_pixels,
        ..DecodeLimits::default()
    };
    let pre = Preprocessor::new(model.config.input.clone(), limits);
    let softmax_needed = model.config.output.softmax;
    let classes = engine.num_classes();
    let batch_size = usize::from(args.batch_size);
    let k = usize::from(args.top_k);
    let start = Instant::now();

    let (tensor_tx, tensor_rx) = bounded::<(usize, Vec<f32>)>(batch_size * engine.sessions() * 2);
    let (out_tx, out_rx) = unbounded::<(usize, Outcome)>();
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    std::thread::scope(|s| -> anyhow::Result<()> {
        // Decoders.
        let files_ref = &files;
        let pre_ref = &pre;
        let out_tx_dec = out_tx.clone();
        s.spawn(move || {
            (0..files_ref.len()).into_par_iter().for_each_with(
                (tensor_tx, out_tx_dec),
                |(ttx, otx), i| {
                    let decoded = std::fs::read(&files_ref[i])
                        .map_err(|e| format!("cannot read file: {e}"))
                        .and_then(|bytes| pre_ref.preprocess(&bytes).map_err(|e| e.to_string()));
                    match decoded {
                        Ok(p) => {
                            let _ = ttx.send((i, p.tensor));
                        }
                        Err(e) => {
                            let _ = otx.send((i, Err(e)));
                        }
                    }
                },
            );
        });
        // Engine workers.
        for _ in 0..engine.sessions() {
            let rx = tensor_rx.clone();
            let otx = out_tx.clone();
            let engine = engine.clone();
            let labels = &model.labels;
            s.spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < batch_size {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    let input: Vec<f32> =
                        batch.iter().flat_map(|(_, t)| t.iter().copied()).collect();
                    match engine.infer(&input, batch.len()) {
                        Ok(scores) => {
                            for ((i, _), row) in batch.iter().zip(scores.chunks_exact(classes)) {
                                let probs = if softmax_needed {
                                    softmax(row)
                                } else {
                                    row.to_vec()
                                };
                                let _ = otx.send((*i, Ok(top_k(&probs, k, labels))));
                            }
                        }
                        Err(e) => {
                            for (i, _) in &batch {
                                let _ = otx.send((*i, Err(format!("inference failed: {e}"))));
                            }
                        }
                    }
                }
            });
        }
        drop(tensor_rx);
        drop(out_tx);
        // Printer: in input order.
        let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut next = 0usize;
        let mut out = stdout.lock();
        for (i, outcome) in out_rx.iter() {
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
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    let ok = files.len() - failed;
    tracing::info!(
        images = files.len(),
        classified = ok,
        failed,
        seconds = format!("{secs:.3}"),
        images_per_second = format!("{:.1}", files.len() as f64 / secs),
        engine = %engine.kind(),
        "done"
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
