//! The bounded fuzz run CI does: every target, mutations of real seeds and
//! structured inputs, one test so the heap measurements of a case are not
//! disturbed by another test's threads. `IMGCLASS_FUZZ_CASES=N` scales the
//! counts (scripts/fuzz.sh runs long), `IMGCLASS_FUZZ_SEED` changes the
//! cases, `IMGCLASS_FUZZ_REPLAY=file` re-runs one saved failure.

use std::io::Cursor;

use arbitrary::{Arbitrary, Unstructured};
use imgclass_fuzz::driver::{Budget, replay, run};
use imgclass_fuzz::mutate::Mutator;
use imgclass_fuzz::{alloc, image, infer, multipart};
use imgclass_testkit as kit;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The real photos as they are, and shrunk to 64×48 in every format the
/// service reads (small seeds make fast cases; the originals keep real
/// encoder output, EXIF and all, in the mix).
fn photo_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (_, _, name, _, _) in kit::PHOTOS {
        let original = kit::photo_bytes(name);
        let small = ::image::load_from_memory(&original)
            .expect("decode photo")
            .thumbnail_exact(64, 48)
            .to_rgb8();
        for format in [
            ::image::ImageFormat::Jpeg,
            ::image::ImageFormat::Png,
            ::image::ImageFormat::Bmp,
            ::image::ImageFormat::Gif,
            ::image::ImageFormat::WebP,
            ::image::ImageFormat::Tiff,
        ] {
            let mut out = Cursor::new(Vec::new());
            small.write_to(&mut out, format).expect("encode seed");
            seeds.push(out.into_inner());
        }
        if original.len() < 200 << 10 {
            seeds.push(original);
        }
    }
    seeds
}

/// Bytes for `arbitrary` from a case seed.
fn random_bytes(seed: u64, max: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = rng.usize(..max);
    (0..n).map(|_| rng.u8(..)).collect()
}

#[test]
fn every_parser_of_client_bytes_survives_mutated_and_structured_input() {
    let pre = image::preprocessor();
    let image_check = |b: &[u8]| image::check(&pre, b);
    let form_check = |b: &[u8]| {
        let (ct, body) = infer::unpack(b);
        let _ = multipart::check(ct.unwrap_or(b""), body);
    };
    let infer_check = |b: &[u8]| {
        let (header, body) = infer::unpack(b);
        let _ = infer::check(header, body);
    };
    if replay("image", image_check)
        | replay("multipart", form_check)
        | replay("multipart-structured", multipart::fuzz_one)
        | replay("infer", infer_check)
        | replay("infer-structured", infer::fuzz_one)
    {
        return;
    }

    let photos = photo_seeds();
    let mut reports = Vec::new();

    // The image probe, decoder and preprocessor.
    let budget = Budget::from_env(15_000, 0.2);
    let mut m = Mutator::new(budget.seed, image::LIMITS.max_bytes + 1024);
    reports.push(run("image", budget, |_| m.mutant(&photos), image_check));
    assert!(alloc::installed(), "the counting allocator is in place");

    // The multipart reader: real forms around real photos, mutated
    // (boundaries, headers, lengths and all), with the content type on the
    // first line (pack), and raw image bodies.
    let forms: Vec<Vec<u8>> = photos
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let b = format!("----WebKitFormBoundary{i:08}");
            let mut body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo{i}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(p);
            body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            let ct = if i % 5 == 4 {
                "image/png".to_string()
            } else {
                format!("multipart/form-data; boundary={b}")
            };
            infer::pack(Some(ct.as_bytes()), &body)
        })
        .collect();
    let budget = Budget::from_env(20_000, 0.3);
    let mut m = Mutator::new(budget.seed ^ 1, 1 << 20);
    reports.push(run("multipart", budget, |_| m.mutant(&forms), form_check));
    let budget = Budget::from_env(20_000, 0.2);
    reports.push(run(
        "multipart-structured",
        budget,
        |s| random_bytes(s, 2048),
        |b| {
            if let Ok(form) = multipart::Form::arbitrary(&mut Unstructured::new(b)) {
                multipart::check_form(&form);
            }
        },
    ));

    // The KServe parser: JSON (base64 images, FP32), JSON + binary BYTES
    // and FP32, raw bodies, each around real photos.
    let requests: Vec<Vec<u8>> = photos
        .iter()
        .take(12)
        .flat_map(|p| kserve_seeds(p))
        .collect();
    let budget = Budget::from_env(20_000, 0.15);
    let mut m = Mutator::new(budget.seed ^ 2, 1 << 20);
    reports.push(run("infer", budget, |_| m.mutant(&requests), infer_check));
    let budget = Budget::from_env(20_000, 0.15);
    reports.push(run(
        "infer-structured",
        budget,
        |s| random_bytes(s, 1024),
        infer::fuzz_one,
    ));

    for r in &reports {
        println!("{r}");
    }
    let total: usize = reports.iter().map(|r| r.cases).sum();
    println!("{total} cases, no panic, every limit and error type as specified");
}

/// KServe requests carrying `photo` in each form the parser reads.
fn kserve_seeds(photo: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(photo);
    let json = serde_json::json!({
        "id": "seed",
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]
    });
    let mut tensor = (photo.len() as u32).to_le_bytes().to_vec();
    tensor.extend_from_slice(photo);
    let binary = |datatype: &str, shape: serde_json::Value, data: &[u8]| {
        let header = serde_json::json!({
            "inputs": [{"name": "image", "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": data.len()}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]
        });
        let mut body = serde_json::to_vec(&header).unwrap();
        let n = body.len().to_string();
        body.extend_from_slice(data);
        infer::pack(Some(n.as_bytes()), &body)
    };
    let floats: Vec<u8> = photo
        .iter()
        .take(3 * 8 * 8)
        .flat_map(|&b| (f32::from(b) / 255.0).to_le_bytes())
        .collect();
    vec![
        infer::pack(None, &serde_json::to_vec(&json).unwrap()),
        binary("BYTES", serde_json::json!([1, 1]), &tensor),
        binary("FP32", serde_json::json!([1, 3, 8, 8]), &floats),
        infer::pack(Some(b"0"), photo),
    ]
}
