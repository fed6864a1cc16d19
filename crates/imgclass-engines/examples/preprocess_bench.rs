//! Per-stage CPU time of preprocessing, the path before issue 10 ("old":
//! full-size decoding through `image::DynamicImage`, bilinear resize)
//! against the current one ("new": JPEG decoded at the smallest DCT scale
//! the model's crop allows, uncompressed BMP resized from the body's own
//! rows, other formats straight to RGB8, bicubic resize,
//! normalised into a caller's buffer), on the default model's input.
//!
//! ```text
//! cargo run --release -p imgclass-engines --example preprocess_bench -- --runs 30
//! ```
//!
//! Images, derived from the test photos at start-up and never stored: a
//! 500×375 JPEG (quality 75, the size the seed's clients send), a 12 MP
//! (4032×3024) JPEG (quality 90), a 3 MP (1920×1440) BMP and skimage's
//! 600×400 `coffee.png`. Times are the calling thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), medians over the runs; "sha256" is the
//! upload hash the server computes for every body, the same in both paths.

use std::io::Cursor;
use std::time::Duration;

use clap::Parser;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use imgclass_core::config::{InputConfig, ResizeFilter};
use imgclass_core::preprocess::crop_box;
use imgclass_core::{DecodeLimits, Preprocessor};
use imgclass_testkit as kit;
use kit::derived;
use sha2::Digest;

#[derive(Parser, Debug)]
#[command(about = "per-stage CPU time of preprocessing, before and after decoding at model size")]
struct Args {
    /// Runs per image and path (the median is reported).
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

const STAGES: [&str; 4] = ["sha256", "decode", "resize", "normalise"];

/// One run's CPU time per stage.
type Times = [Duration; 4];

/// The preprocessing before this change, reproduced for comparison: header
/// probe through `ImageReader` (which copies a JPEG body), full-size decode
/// into a `DynamicImage`, orientation, `to_rgb8`, crop + resize of the
/// full image, normalise into a new vector.
struct OldPath {
    input: InputConfig,
}

impl OldPath {
    fn run(&self, bytes: &[u8]) -> (Times, Vec<f32>) {
        let t0 = thread_cpu();
        let digest = sha2::Sha256::digest(bytes);
        std::hint::black_box(digest);
        let t1 = thread_cpu();
        let format = image::guess_format(bytes).expect("known format");
        let _ = ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .expect("header");
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(40_000_000 * 8 + (64 << 20));
        reader.limits(limits);
        let mut decoder = reader.into_decoder().expect("decoder");
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).expect("decode");
        img.apply_orientation(orientation);
        let rgb = match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
        let t2 = thread_cpu();
        let small = self.resize(&rgb);
        let t3 = thread_cpu();
        let tensor = self.normalise(&small);
        let t4 = thread_cpu();
        ([t1 - t0, t2 - t1, t3 - t2, t4 - t3], tensor)
    }

    fn resize(&self, rgb: &RgbImage) -> Vec<u8> {
        use fast_image_resize as fr;
        let (tw, th) = (self.input.width, self.input.height);
        let (w, h) = rgb.dimensions();
        let (left, top, cw, ch) = crop_box(w, h, tw, th, self.input.crop_fraction);
        let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
        let options = fr::ResizeOptions::new()
            .crop(left, top, cw, ch)
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        let src = fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3).unwrap();
        fr::Resizer::new().resize(&src, &mut dst, &options).unwrap();
        dst.into_vec()
    }

    fn normalise(&self, rgb: &[u8]) -> Vec<f32> {
        let affine = self.input.normalization.affine();
        let plane = rgb.len() / 3;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px[c] as f32 * affine[c].0 + affine[c].1;
            }
        }
        out
    }
}

/// The current path, stage by stage, as `Preprocessor::preprocess_into`
/// runs it.
/// Also returns what the decode stage did.
fn new_path(pre: &Preprocessor, bytes: &[u8], rgb: &mut [u8], out: &mut [f32]) -> (Times, String) {
    let t0 = thread_cpu();
    let digest = sha2::Sha256::digest(bytes);
    std::hint::black_box(digest);
    let t1 = thread_cpu();
    let source = pre.source_for_model(bytes).expect("decode");
    let t2 = thread_cpu();
    pre.resize_source_into(&source, rgb);
    let t3 = thread_cpu();
    pre.normalise_into(rgb, out);
    let t4 = thread_cpu();
    let decode = match source.scale_denominator() {
        _ if source.is_in_place() => "rows in place".to_string(),
        1 => "decode".to_string(),
        d => format!("decode 1/{d}"),
    };
    ([t1 - t0, t2 - t1, t3 - t2, t4 - t3], decode)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn medians(runs: &[Times]) -> [Duration; 5] {
    let mut m = [Duration::ZERO; 5];
    for (s, slot) in m.iter_mut().take(4).enumerate() {
        *slot = median(runs.iter().map(|t| t[s]).collect());
    }
    m[4] = median(runs.iter().map(|t| t.iter().sum()).collect());
    m
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn cpu_model() -> String {
    std::process::Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown (lscpu failed)".into())
}

fn main() {
    let args = Args::parse();
    let runs = args.runs.max(1);
    let input = kit::default_model_input();
    assert_eq!(input.resize_filter, ResizeFilter::Bicubic);
    let pre = Preprocessor::new(input.clone(), DecodeLimits::default());
    let old = OldPath {
        input: InputConfig {
            resize_filter: ResizeFilter::Bilinear,
            ..input
        },
    };

    eprintln!("preparing images from the test photos…");
    let coffee = derived::decoded("coffee.png");
    let images: Vec<(&str, Vec<u8>)> = vec![
        (
            "500x375 JPEG",
            derived::jpeg(&derived::resized(&coffee, 500, 375), 75),
        ),
        ("4032x3024 JPEG", derived::phone_jpeg("coffee.png")),
        (
            "1920x1440 BMP",
            derived::bmp(&derived::resized(&coffee, 1920, 1440)),
        ),
        ("600x400 PNG", kit::photo_bytes("coffee.png")),
    ];

    println!(
        "CPU: {} ({} runs each, medians, ms of thread CPU time)",
        cpu_model(),
        runs
    );
    println!(
        "{:<16} {:>9}  {:<13} {:>9} {:>9} {:>8}",
        "image", "bytes", "stage", "old ms", "new ms", "old/new"
    );
    let mut rgb = vec![0u8; pre.image_len()];
    let mut out = vec![0f32; pre.image_len()];
    for (name, bytes) in &images {
        // One warm-up run each (page faults, resizer buffers).
        old.run(bytes);
        new_path(&pre, bytes, &mut rgb, &mut out);
        let mut old_runs = Vec::with_capacity(runs);
        let mut new_runs = Vec::with_capacity(runs);
        let mut decode = String::new();
        for _ in 0..runs {
            old_runs.push(old.run(bytes).0);
            let (t, what) = new_path(&pre, bytes, &mut rgb, &mut out);
            new_runs.push(t);
            decode = what;
        }
        let (o, n) = (medians(&old_runs), medians(&new_runs));
        for (s, stage) in STAGES.iter().chain(&["total"]).enumerate() {
            let label = if s == 1 {
                decode.clone()
            } else {
                stage.to_string()
            };
            println!(
                "{:<16} {:>9}  {:<13} {:>9.3} {:>9.3} {:>7.2}x",
                if s == 0 { name } else { "" },
                if s == 0 {
                    bytes.len().to_string()
                } else {
                    String::new()
                },
                label,
                ms(o[s]),
                ms(n[s]),
                ms(o[s]) / ms(n[s]).max(1e-6),
            );
        }
    }
}
