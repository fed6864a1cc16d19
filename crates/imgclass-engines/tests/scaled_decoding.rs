//! Decoding at the size the model needs, checked with the real model on the
//! real photos: DCT-scaled JPEG decoding stays within 0.05 of full-size
//! decoding on the top-1 probability, and 12 MP, progressive, EXIF-rotated,
//! CMYK and big BMP copies of a photo classify like the photo itself.
//! The derived images are made at test time and never stored.

use std::sync::Arc;

use image::RgbImage;
use imgclass_core::config::ResizeFilter;
use imgclass_core::{DecodeLimits, Engine, ModelConfig, ModelRepository, Preprocessor, softmax};
use imgclass_engines::{EngineChoice, EngineOptions, load_engine};
use imgclass_testkit as kit;
use kit::derived;

/// Enlarged copies beyond this many pixels are skipped (a 512×512 photo ×8
/// is 16.8 MP; bigger ones would only slow the suite down).
const MAX_ENLARGED_PIXELS: u64 = 4096 * 4096;

fn engine() -> Arc<dyn Engine> {
    let model = ModelRepository::new(kit::model_home())
        .load(imgclass_core::DEFAULT_MODEL)
        .expect("default model loads");
    load_engine(
        &model,
        EngineChoice::Ort,
        &EngineOptions::for_cpus(2),
        kit::model_home(),
    )
    .expect("engine loads")
}

fn preprocessor() -> Preprocessor {
    Preprocessor::new(kit::default_model_input(), DecodeLimits::default())
}

/// Class probabilities for each model input.
fn probabilities(engine: &dyn Engine, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let batch: Vec<f32> = inputs.concat();
    let logits = engine.infer(&batch, inputs.len()).expect("inference");
    logits.chunks_exact(1000).map(softmax).collect()
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .expect("non-empty")
}

/// How one image classifies against a reference: the reference's top-1
/// class, its probability under both, and whether the top-1 agrees.
struct Comparison {
    class: usize,
    reference: f32,
    other: f32,
    same_top1: bool,
}

impl Comparison {
    fn new(reference: &[f32], other: &[f32]) -> Self {
        let class = argmax(reference);
        Comparison {
            class,
            reference: reference[class],
            other: other[class],
            same_top1: argmax(other) == class,
        }
    }

    fn delta(&self) -> f32 {
        (self.reference - self.other).abs()
    }
}

fn compare(engine: &dyn Engine, reference: &[f32], other: &[f32]) -> Comparison {
    let p = probabilities(engine, &[reference, other]);
    Comparison::new(&p[0], &p[1])
}

#[test]
fn default_model_resizes_bicubically() {
    let toml = kit::model_home()
        .join(imgclass_core::DEFAULT_MODEL)
        .join("model.toml");
    let config = ModelConfig::load(&toml).expect("model.toml written by fetch");
    assert_eq!(config.input.resize_filter, ResizeFilter::Bicubic);
    assert_eq!(config.input.crop_fraction, 0.875);
}

#[test]
fn scaled_decoding_keeps_every_photo_within_0_05_of_full_decoding() {
    let engine = engine();
    let pre = preprocessor();
    let mut deltas = Vec::new();
    eprintln!("photo                   ×  decoded at  p(full)  p(scaled)  |Δp|   top-1");
    for (_, _, name, _, _) in kit::PHOTOS {
        let photo = derived::decoded(name);
        for factor in [1, 2, 4, 8] {
            let (w, h) = photo.dimensions();
            if u64::from(w * factor) * u64::from(h * factor) > MAX_ENLARGED_PIXELS {
                continue;
            }
            let big: RgbImage = if factor == 1 {
                photo.clone()
            } else {
                derived::times(&photo, factor)
            };
            let jpeg = derived::jpeg(&big, 95);
            let (_, full_rgb) = pre.decode(&jpeg).expect("full decode");
            let full = pre.rgb_to_tensor(&full_rgb);
            let decoded = pre.decode_for_model(&jpeg).expect("scaled decode");
            let d = decoded.scale_denominator;
            if factor > 1 {
                assert!(d > 1, "{name} ×{factor} was not decoded at a reduced size");
            }
            let scaled = pre.preprocess(&jpeg).expect("preprocess").tensor;
            let c = compare(engine.as_ref(), &full, &scaled);
            eprintln!(
                "{name:<22} {factor:>2}  1/{d}         {:.4}   {:.4}     {:.4}  {}",
                c.reference,
                c.other,
                c.delta(),
                if c.same_top1 { "same" } else { "CHANGED" }
            );
            deltas.push((format!("{name} ×{factor} (1/{d})"), c.delta(), d, factor));
        }
    }
    let scaled: Vec<_> = deltas.iter().filter(|x| x.2 > 1).collect();
    let max = scaled.iter().map(|x| x.1).fold(0.0, f32::max);
    let mean = scaled.iter().map(|x| x.1).sum::<f32>() / scaled.len() as f32;
    eprintln!(
        "scaled decoding vs full decoding + the same bicubic resize, {} scaled images: max |Δp(top-1)| {max:.4}, mean {mean:.4}",
        scaled.len()
    );
    assert!(
        scaled.len() >= 40,
        "only {} images were scaled",
        scaled.len()
    );
    let as_is = scaled.iter().filter(|x| x.3 == 1).map(|x| x.1);
    eprintln!(
        "the photos as they are (those decoded scaled): max |Δp(top-1)| {:.4}",
        as_is.fold(0.0, f32::max)
    );
    // The photos as they are: within 0.05. Their 2/4/8-fold enlargements
    // (smooth, synthetic detail a camera would not produce) within 0.08.
    for (what, delta, _, factor) in &deltas {
        let bound = if *factor == 1 { 0.05 } else { 0.08 };
        assert!(*delta <= bound, "{what}: |Δp| = {delta}, over {bound}");
    }
}

/// Checks `other` classifies like `reference` (same top-1, |Δp| ≤ `bound`).
/// Only for photos with a clear top-1 (see [`LABELLED`]).
fn assert_classifies_alike(
    engine: &dyn Engine,
    what: &str,
    reference: &[u8],
    other: &[u8],
    bound: f32,
) {
    let pre = preprocessor();
    let a = pre.preprocess(reference).expect("reference preprocesses");
    let b = pre.preprocess(other).expect("copy preprocesses");
    let c = compare(engine, &a.tensor, &b.tensor);
    eprintln!(
        "{what}: top-1 {} p {:.4} vs {:.4} (|Δp| {:.4})",
        c.class,
        c.reference,
        c.other,
        c.delta()
    );
    assert!(c.same_top1, "{what}: the top-1 class changed");
    assert!(c.delta() <= bound, "{what}: |Δp| = {}", c.delta());
}

/// Photos whose top-1 is clear (p > 0.6). chelsea.png's two cat classes,
/// and china.jpg's, are within a few points of each other, so any change
/// of pixels may swap them.
const LABELLED: [&str; 3] = ["coffee.png", "camera.png", "motorcycle_right.png"];

#[test]
fn a_12_mp_jpeg_classifies_like_its_original() {
    let engine = engine();
    let pre = preprocessor();
    for name in LABELLED {
        let phone = derived::phone_jpeg(name);
        let d = pre.decode_for_model(&phone).unwrap();
        assert_eq!((d.width, d.height, d.scale_denominator), (4032, 3024, 8));
        assert_eq!(d.image.dimensions(), (504, 378));
        let t = pre.preprocess(&phone).unwrap();
        assert_eq!((t.width, t.height), (4032, 3024));
        assert_classifies_alike(
            engine.as_ref(),
            &format!("{name} at 4032x3024"),
            &kit::photo_bytes(name),
            &phone,
            0.05,
        );
    }
}

#[test]
fn progressive_jpeg_classifies_like_baseline() {
    let engine = engine();
    for name in LABELLED {
        let photo = derived::decoded(name);
        for factor in [1, 4] {
            let img = if factor == 1 {
                photo.clone()
            } else {
                derived::times(&photo, factor)
            };
            assert_classifies_alike(
                engine.as_ref(),
                &format!("{name} ×{factor} progressive"),
                &derived::jpeg(&img, 95),
                &derived::progressive_jpeg(&img, 95),
                0.02,
            );
        }
    }
}

#[test]
fn exif_rotated_jpeg_classifies_like_the_upright_one() {
    let engine = engine();
    let pre = preprocessor();
    for name in LABELLED {
        let photo = derived::decoded(name);
        for factor in [1, 4] {
            let upright = if factor == 1 {
                photo.clone()
            } else {
                derived::times(&photo, factor)
            };
            let stored = derived::stored_for_orientation_6(&upright);
            let rotated = derived::with_exif_orientation(&derived::jpeg(&stored, 95), 6);
            let t = pre.preprocess(&rotated).unwrap();
            assert_eq!((t.width, t.height), upright.dimensions());
            assert_classifies_alike(
                engine.as_ref(),
                &format!("{name} ×{factor} stored rotated, EXIF orientation 6"),
                &derived::jpeg(&upright, 95),
                &rotated,
                0.02,
            );
        }
    }
}

#[test]
fn cmyk_jpeg_and_big_bmp_classify_like_the_photo() {
    let engine = engine();
    for name in LABELLED {
        let photo = derived::decoded(name);
        let reference = derived::jpeg(&photo, 95);
        for factor in [1, 4] {
            let img = if factor == 1 {
                photo.clone()
            } else {
                derived::times(&photo, factor)
            };
            assert_classifies_alike(
                engine.as_ref(),
                &format!("{name} ×{factor} Adobe CMYK"),
                &reference,
                &derived::cmyk_jpeg(&img, 95),
                0.05,
            );
        }
        assert_classifies_alike(
            engine.as_ref(),
            &format!("{name} as a 1920x1440 BMP"),
            &kit::photo_bytes(name),
            &derived::bmp(&derived::resized(&photo, 1920, 1440)),
            0.05,
        );
    }
}

/// Every uncompressed 24- and 32-bit BMP layout the in-place path takes.
const BMP_LAYOUTS: [derived::BmpLayout; 6] = {
    use derived::BmpLayout as L;
    [
        L {
            bits: 24,
            top_down: false,
            bitfields: false,
            v4: false,
        },
        L {
            bits: 24,
            top_down: true,
            bitfields: false,
            v4: false,
        },
        L {
            bits: 32,
            top_down: false,
            bitfields: false,
            v4: false,
        },
        L {
            bits: 32,
            top_down: true,
            bitfields: true,
            v4: false,
        },
        L {
            bits: 32,
            top_down: false,
            bitfields: true,
            v4: true,
        },
        L {
            bits: 32,
            top_down: true,
            bitfields: false,
            v4: true,
        },
    ]
};

/// Uncompressed BMPs are resized from the upload's own rows, never decoded
/// whole: on every real photo, as it is and enlarged to an odd 1921×1440
/// (padded rows), in every layout, the model input equals full decoding +
/// the same resize and the top-1 probability stays within 0.05 of it.
#[test]
fn bmp_resized_in_place_matches_full_decoding() {
    let engine = engine();
    let pre = preprocessor();
    let (mut max_input, mut max_p) = (0f32, 0f32);
    for (_, _, name, _, _) in kit::PHOTOS {
        let photo = derived::decoded(name);
        for img in [photo.clone(), derived::resized(&photo, 1921, 1440)] {
            for layout in BMP_LAYOUTS {
                let what = format!("{name} {:?} {layout:?}", img.dimensions());
                let bmp = derived::bmp_with(&img, layout);
                let source = pre.source_for_model(&bmp).expect("BMP header");
                assert!(source.is_in_place(), "{what}: decoded, not in place");
                assert_eq!((source.width(), source.height()), img.dimensions());
                let (_, full_rgb) = pre.decode(&bmp).expect("full decode");
                assert!(full_rgb == img, "{what}: the decoder reads other pixels");
                let full = pre.rgb_to_tensor(&full_rgb);
                let in_place = pre.preprocess(&bmp).expect("in-place path").tensor;
                let input_delta = full
                    .iter()
                    .zip(&in_place)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                let c = compare(engine.as_ref(), &full, &in_place);
                assert!(c.delta() <= 0.05, "{what}: |Δp| = {}", c.delta());
                max_input = max_input.max(input_delta);
                max_p = max_p.max(c.delta());
            }
        }
    }
    eprintln!(
        "BMP in place vs full decoding: max |Δ input| {max_input}, max |Δp(top-1)| {max_p:.5}"
    );
    // The same pixels through the same convolution: at most one step of
    // rounding in the 8-bit resize output.
    assert!(max_input <= 0.02, "model inputs differ by {max_input}");
}

/// Other BMPs (8-bit palette here) are decoded whole and still classify;
/// a BMP whose rows are cut short is refused with a typed error.
#[test]
fn other_and_truncated_bmps_take_the_decoder() {
    let pre = preprocessor();
    let photo = derived::decoded("coffee.png");
    let grey = image::DynamicImage::ImageRgb8(photo.clone()).into_luma8();
    let mut palette = std::io::Cursor::new(Vec::new());
    grey.write_to(&mut palette, image::ImageFormat::Bmp)
        .expect("encode 8-bit BMP");
    let palette = palette.into_inner();
    let source = pre.source_for_model(&palette).expect("palette BMP header");
    assert!(!source.is_in_place());
    assert_eq!(pre.preprocess(&palette).expect("palette BMP").width, 600);
    for layout in BMP_LAYOUTS {
        let mut cut = derived::bmp_with(&photo, layout);
        cut.truncate(cut.len() - 1000);
        match pre.preprocess(&cut) {
            Err(imgclass_core::ImageError::Corrupt { .. }) => {}
            other => panic!("{layout:?} cut short: {other:?}"),
        }
    }
}
