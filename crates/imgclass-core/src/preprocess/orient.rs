//! EXIF orientation: the size an image has once oriented, and turning its
//! pixels upright.

use image::metadata::Orientation;

/// True when `o` swaps width and height.
fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Size of a `width`×`height` stored image once `o` is applied.
pub(crate) fn oriented_size(width: u32, height: u32, o: Orientation) -> (u32, u32) {
    if swaps_axes(o) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Applies `o` to the pixels. Flips and 180° turns work in place; quarter
/// turns need one new buffer of the same size.
pub(crate) fn apply(rgb: image::RgbImage, o: Orientation) -> image::RgbImage {
    if o == Orientation::NoTransforms {
        return rgb;
    }
    let mut img = image::DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(o);
    img.into_rgb8()
}
