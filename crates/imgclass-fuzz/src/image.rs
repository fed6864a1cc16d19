//! The image probe, decoder and preprocessor, through the public
//! [`Preprocessor`] API only.

use imgclass_core::{DecodeLimits, ImageError, ImageFormat, Preprocessor};

use crate::alloc;

/// The limits the cases run under: small, so a bomb or a lying header is
/// quick to notice, and real photos (≤ 0.5 Mpx) still decode.
pub const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 1 << 20,
    max_bytes: 4 << 20,
};

/// A preprocessor for the default model's input under [`LIMITS`].
pub fn preprocessor() -> Preprocessor {
    Preprocessor::new(imgclass_model::fetch::default_model_config().input, LIMITS)
}

/// Most heap a case may use: the decoder's own allowance (what
/// `Preprocessor::decode` gives `image::Limits`: 8 bytes per pixel plus
/// 64 MiB), the RGB image, the input and the tensor, plus slack for
/// decoder tables.
pub fn heap_bound(pre: &Preprocessor, input_len: usize) -> usize {
    let px = pre.limits().max_pixels as usize;
    px * 8 + (64 << 20) + px * 3 + 4 * input_len + pre.image_len() * 4 + (16 << 20)
}

/// The target: `bytes` as an upload.
///
/// - the probe's verdict is the preprocessor's: what the probe refuses,
///   preprocessing refuses with the same error; what it accepts either
///   preprocesses or fails as `Corrupt` of the probed format;
/// - `Empty`, `TooManyBytes` and `Unsupported` exactly when the bytes are
///   empty, over `max_bytes`, or of no supported format;
/// - an accepted image is within `max_pixels` and gives a full, finite tensor;
/// - the heap never grows past [`heap_bound`].
pub fn check(pre: &Preprocessor, bytes: &[u8]) {
    let limits = pre.limits();
    let probed = pre.probe(bytes);
    match &probed {
        Err(ImageError::Empty) => assert!(bytes.is_empty()),
        Err(ImageError::TooManyBytes { bytes: n, limit }) => {
            assert!(*n == bytes.len() && *n > *limit && *limit == limits.max_bytes)
        }
        Err(ImageError::Unsupported { .. }) => assert!(ImageFormat::sniff(bytes).is_err()),
        Err(ImageError::TooLarge {
            width,
            height,
            limit,
        }) => assert!(u64::from(*width) * u64::from(*height) > *limit),
        Err(ImageError::ZeroSized { width, height }) => assert!(*width == 0 || *height == 0),
        Err(ImageError::Corrupt { format, .. }) => {
            assert_eq!(Ok(*format), ImageFormat::sniff(bytes).map_err(|_| ()))
        }
        Ok((_, w, h)) => assert!(u64::from(*w) * u64::from(*h) <= limits.max_pixels),
    }
    if bytes.is_empty() || bytes.len() > limits.max_bytes {
        assert!(probed.is_err());
    }
    let base = alloc::start();
    let result = pre.preprocess(bytes);
    let peak = alloc::peak_since(base);
    let bound = heap_bound(pre, bytes.len());
    assert!(
        peak <= bound,
        "decoding used {peak} bytes of heap, over the {bound} the limits allow ({probed:?})"
    );
    match (probed, result) {
        (Err(p), Err(e)) => assert_eq!(p, e, "preprocess refuses as its probe did"),
        (Err(p), Ok(_)) => panic!("the probe refused ({p}) but preprocessing accepted"),
        (Ok((format, _, _)), Err(e)) => assert!(
            matches!(&e, ImageError::Corrupt { format: f, .. } if *f == format),
            "a probed {format} image failed with {e:?}, not Corrupt({format})"
        ),
        (Ok((format, _, _)), Ok(out)) => {
            assert_eq!(out.format, format);
            assert!(u64::from(out.width) * u64::from(out.height) <= limits.max_pixels);
            assert_eq!(out.tensor.len(), pre.image_len());
            assert!(out.tensor.iter().all(|v| v.is_finite()), "non-finite input");
        }
    }
}

/// The same target as a `cargo fuzz` entry point.
pub fn fuzz_one(bytes: &[u8]) {
    thread_local! {
        static PRE: Preprocessor = preprocessor();
    }
    PRE.with(|pre| check(pre, bytes));
}
