//! The real converted EfficientNet-Lite0 on both engines: converter
//! fidelity against DESIGN.md's reference values, agreement between the
//! engines, and real labelled photos through the shared preprocessing.

use std::sync::Arc;

use imgclass_core::{
    DecodeLimits, Engine, LoadedModel, ModelRepository, Preprocessor, softmax, top_k,
};
use imgclass_engines::{EngineChoice, EngineOptions, load_engine};
use imgclass_testkit as kit;

fn model() -> LoadedModel {
    ModelRepository::new(kit::model_home())
        .load(imgclass_core::DEFAULT_MODEL)
        .expect("default model loads")
}

fn engine(choice: EngineChoice) -> Arc<dyn Engine> {
    let options = EngineOptions::for_cpus(2);
    load_engine(&model(), choice, &options, kit::model_home()).expect("engine loads")
}

fn engines() -> Vec<Arc<dyn Engine>> {
    vec![engine(EngineChoice::Ort), engine(EngineChoice::Tract)]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn converter_matches_reference_logits_and_top5_on_every_engine() {
    let m = model();
    let x = kit::reference_input();
    for e in engines() {
        let logits = e.infer(&x, 1).unwrap();
        assert_eq!(logits.len(), 1000);
        let d = max_abs_diff(&logits[..5], &kit::REFERENCE_LOGITS);
        assert!(
            d < 1e-4,
            "{}: first logits {:?}, diff {d}",
            e.kind(),
            &logits[..5]
        );
        let top = top_k(&softmax(&logits), 5, &m.labels);
        for (got, (idx, p)) in top.iter().zip(kit::REFERENCE_TOP5) {
            assert_eq!(got.index, idx, "{}: top-5 {top:?}", e.kind());
            assert!(
                (got.probability - p).abs() < 1e-3,
                "{}: {got:?} vs {p}",
                e.kind()
            );
        }
        assert_eq!(top[0].label, "window shade");
    }
}

fn preprocessor() -> Preprocessor {
    Preprocessor::new(model().config.input, DecodeLimits::default())
}

#[test]
fn engines_agree_on_real_photos_and_batches_match_singles() {
    let pre = preprocessor();
    let names = [
        "coffee.png",
        "chelsea.png",
        "camera.png",
        "rocket.jpg",
        "grace_hopper.jpg",
        "china.jpg",
    ];
    let batch: Vec<f32> = names
        .iter()
        .flat_map(|n| pre.preprocess(&kit::photo_bytes(n)).unwrap().tensor)
        .collect();
    let [ort, tract] = [engine(EngineChoice::Ort), engine(EngineChoice::Tract)];
    let a = ort.infer(&batch, names.len()).unwrap();
    let b = tract.infer(&batch, names.len()).unwrap();
    let d = max_abs_diff(&a, &b);
    eprintln!("max |ort - tract| over {} photos: {d:e}", names.len());
    assert!(d < 1e-3, "engines disagree by {d}");
    // A batch gives the same answer as one image at a time.
    let one = ort.infer(&batch[..pre.image_len()], 1).unwrap();
    assert!(max_abs_diff(&one, &a[..1000]) < 1e-4);
}

fn top(engine: &dyn Engine, bytes: &[u8], k: usize) -> Vec<usize> {
    let pre = preprocessor();
    let t = pre.preprocess(bytes).unwrap();
    let logits = engine.infer(&t.tensor, 1).unwrap();
    top_k(&softmax(&logits), k, &model().labels)
        .iter()
        .map(|p| p.index)
        .collect()
}

#[test]
fn real_photos_get_their_labels() {
    for e in engines() {
        for (_, _, name, expected, k) in kit::PHOTOS.iter().filter(|p| !p.3.is_empty()) {
            let k = *k;
            let got = top(e.as_ref(), &kit::photo_bytes(name), k);
            assert!(
                got.iter().any(|i| expected.contains(i)),
                "{}: {name} top-{k} {got:?}, expected one of {expected:?}",
                e.kind()
            );
        }
    }
}

#[test]
fn bmp_and_rgba_png_copies_get_the_same_top1() {
    let e = engine(EngineChoice::Ort);
    for name in ["coffee.png", "chelsea.png", "china.jpg"] {
        let source = top(e.as_ref(), &kit::photo_bytes(name), 1);
        let bmp = top(
            e.as_ref(),
            &kit::reencode(name, image::ImageFormat::Bmp, false),
            1,
        );
        let rgba = top(
            e.as_ref(),
            &kit::reencode(name, image::ImageFormat::Png, true),
            1,
        );
        assert_eq!(bmp, source, "{name} as BMP");
        assert_eq!(rgba, source, "{name} as RGBA PNG");
    }
}

#[test]
fn wrong_input_size_is_an_error_not_a_panic() {
    for e in engines() {
        assert!(e.infer(&[0.0; 10], 1).is_err());
        assert!(e.infer(&[], 0).is_err());
    }
}
