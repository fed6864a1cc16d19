//! Which part of an image feeds the model, and how small a JPEG may be
//! decoded while that part still covers the model's input.

use crate::config::InputConfig;

/// JPEG DCT-domain scale denominators: an 8×8 block decodes to 8/d × 8/d
/// pixels, largest reduction first.
pub const JPEG_SCALE_DENOMINATORS: [u32; 4] = [8, 4, 2, 1];

/// The centred crop, in source pixels: the largest box with the target's
/// aspect ratio, scaled by `fraction`. For a square target this is
/// `fraction` × the short side.
pub fn crop_box(w: u32, h: u32, tw: u32, th: u32, fraction: f32) -> (f64, f64, f64, f64) {
    let (w, h, tw, th) = (w as f64, h as f64, tw as f64, th as f64);
    let r = (w / tw).min(h / th);
    let cw = (tw * r * fraction as f64).max(1.0);
    let ch = (th * r * fraction as f64).max(1.0);
    ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
}

/// The model's crop of an image that is `width`×`height` once oriented.
pub(crate) fn model_crop(width: u32, height: u32, input: &InputConfig) -> (f64, f64, f64, f64) {
    crop_box(
        width,
        height,
        input.width,
        input.height,
        input.crop_fraction,
    )
}

/// The largest DCT scale denominator at which the model's crop of an image
/// that is `width`×`height` once oriented still has at least as many pixels
/// as the model's input in each direction, so the resize after it only
/// ever shrinks (never enlarges) and sees at least one source pixel per
/// output pixel.
pub fn jpeg_scale_denominator(width: u32, height: u32, input: &InputConfig) -> u32 {
    let (_, _, cw, ch) = model_crop(width, height, input);
    let (tw, th) = (f64::from(input.width), f64::from(input.height));
    JPEG_SCALE_DENOMINATORS
        .into_iter()
        .find(|&d| cw / f64::from(d) >= tw && ch / f64::from(d) >= th)
        .unwrap_or(1)
}

/// A crop box in full-size pixels, in the coordinates of the same image
/// decoded at 1/`denominator`. DCT scaling maps each 8×8 block onto an
/// (8/d)×(8/d) block, so continuous coordinates simply divide by `d`.
pub(crate) fn scale_crop(crop: (f64, f64, f64, f64), denominator: u32) -> (f64, f64, f64, f64) {
    let d = f64::from(denominator);
    (crop.0 / d, crop.1 / d, crop.2 / d, crop.3 / d)
}
