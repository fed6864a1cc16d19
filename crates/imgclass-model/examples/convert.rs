//! Converts an EfficientNet-Lite legacy torch checkpoint to ONNX; the
//! variant (lite0, lite1, lite2) is recognised from the tensors' shapes.
//!
//! Usage: `cargo run --release -p imgclass-model --example convert -- IN.pth OUT.onnx`
//!
//! Prints the conversion report and how long reading, converting and writing
//! took. The output is written to a sibling temporary file and renamed, so a
//! failed run never leaves a half-written model behind.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(output), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: convert IN.pth OUT.onnx");
        std::process::exit(2);
    };
    let output = PathBuf::from(output);

    let start = Instant::now();
    let bytes = std::fs::read(&input)?;
    let read = start.elapsed();
    let tensors = imgclass_model::convert::read_legacy_checkpoint(&bytes)?;
    let Some(variant) = imgclass_model::convert::detect_variant(&tensors) else {
        eprintln!("not an EfficientNet-Lite0/1/2 checkpoint");
        std::process::exit(1);
    };
    let (onnx, report) = imgclass_model::convert::efficientnet_lite_to_onnx(&bytes, &variant)?;
    let converted = start.elapsed();
    let mut tmp = output.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, &onnx)?;
    std::fs::rename(&tmp, &output)?;
    let total = start.elapsed();

    println!(
        "{} -> {} ({}): {} nodes, {} parameters, {} bytes",
        PathBuf::from(input).display(),
        output.display(),
        variant.name,
        report.nodes,
        report.parameters,
        report.onnx_bytes
    );
    println!(
        "time: read {:.1} ms, convert {:.1} ms, write {:.1} ms, total {:.1} ms",
        read.as_secs_f64() * 1e3,
        (converted - read).as_secs_f64() * 1e3,
        (total - converted).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    Ok(())
}
