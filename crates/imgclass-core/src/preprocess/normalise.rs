//! RGB8 pixels to the model's float input: per-channel affine map, in the
//! model's memory layout.

use crate::config::{InputLayout, Normalization};

/// Writes `rgb` (interleaved RGB8) into `out` (3 values per pixel) as
/// `x · a[c] + b[c]`, planar for NCHW or interleaved for NHWC.
///
/// # Panics
/// When `out` does not hold exactly as many values as `rgb` has bytes.
pub(crate) fn normalise_into(
    rgb: &[u8],
    layout: InputLayout,
    normalization: &Normalization,
    out: &mut [f32],
) {
    assert_eq!(rgb.len(), out.len(), "one output value per input byte");
    let [(ar, br), (ag, bg), (ab, bb)] = normalization.affine();
    match layout {
        InputLayout::Nchw => {
            let plane = rgb.len() / 3;
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
                *r = f32::from(px[0]) * ar + br;
                *g = f32::from(px[1]) * ag + bg;
                *b = f32::from(px[2]) * ab + bb;
            }
        }
        InputLayout::Nhwc => {
            for (o, px) in out.chunks_exact_mut(3).zip(rgb.chunks_exact(3)) {
                o[0] = f32::from(px[0]) * ar + br;
                o[1] = f32::from(px[1]) * ag + bg;
                o[2] = f32::from(px[2]) * ab + bb;
            }
        }
    }
}
