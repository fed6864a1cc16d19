use std::io::Cursor;

use image::DynamicImage;

use super::*;
use crate::config::{InputLayout, Normalization, ResizeFilter};

fn input(layout: InputLayout) -> InputConfig {
    InputConfig {
        name: None,
        width: 4,
        height: 4,
        layout,
        crop_fraction: 1.0,
        resize_filter: ResizeFilter::Bilinear,
        normalization: Normalization::ScaleOffset {
            scale: 1.0 / 128.0,
            offset: -127.0 / 128.0,
        },
    }
}

/// The default model's input: 224×224, 87.5% centre crop, bicubic.
fn lite0() -> InputConfig {
    InputConfig {
        width: 224,
        height: 224,
        crop_fraction: 0.875,
        resize_filter: ResizeFilter::Bicubic,
        ..input(InputLayout::Nchw)
    }
}

fn encode(img: &DynamicImage, f: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, f).unwrap();
    out.into_inner()
}

/// A smooth, colourful test picture (no flat areas, so JPEG has work to do).
fn picture(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        image::Rgb([
            (255.0 * fx) as u8,
            (255.0 * fy) as u8,
            (128.0 + 100.0 * (12.0 * fx).sin() * (9.0 * fy).cos()) as u8,
        ])
    })
}

/// `jpeg-encoder` writes what `image`'s encoder cannot: progressive scans,
/// CMYK and YCCK.
fn jpeg_with(
    w: u32,
    h: u32,
    pixels: &[u8],
    color: jpeg_encoder::ColorType,
    progressive: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 95);
    enc.set_progressive(progressive);
    enc.encode(pixels, w as u16, h as u16, color).unwrap();
    out
}

/// CMYK ink amounts (255 = full ink) with full black generation for an RGB
/// picture; jpeg-encoder stores them inverted, as Adobe does.
fn cmyk_ink(rgb: &image::RgbImage) -> Vec<u8> {
    rgb.pixels()
        .flat_map(|p| {
            let max = p.0.iter().copied().max().unwrap().max(1);
            let ink = |c: u8| 255 - (u32::from(c) * 255 / u32::from(max)) as u8;
            [ink(p[0]), ink(p[1]), ink(p[2]), 255 - max]
        })
        .collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn crop_box_is_centred_fraction_of_short_side() {
    let (l, t, w, h) = crop_box(500, 375, 224, 224, 0.875);
    assert!((w - 328.125).abs() < 1e-9 && (h - 328.125).abs() < 1e-9);
    assert!((l - 85.9375).abs() < 1e-9 && (t - 23.4375).abs() < 1e-9);
    // Non-square target keeps its aspect ratio.
    let (_, _, w, h) = crop_box(1000, 1000, 200, 100, 1.0);
    assert_eq!((w, h), (1000.0, 500.0));
}

#[test]
fn jpeg_scale_is_the_largest_whose_crop_covers_the_input() {
    let m = lite0();
    for (w, h, want) in [
        (500, 375, 1),   // crop 328 px: halving would give 164 < 224
        (4032, 3024, 8), // crop 2646 px: /8 = 331
        (3024, 4032, 8),
        (1024, 768, 2),  // crop 672: /2 = 336, /4 = 168
        (2048, 1536, 4), // crop 1344: /4 = 336, /8 = 168
        (1920, 1440, 4), // crop 1260: /4 = 315
        (512, 512, 2),   // crop 448: /2 = 224 exactly
        (511, 511, 1),   // crop 447.1: /2 < 224
        (2048, 2048, 8), // crop 1792: /8 = 224 exactly
        (100, 80, 1),    // smaller than the input: never scaled
    ] {
        assert_eq!(jpeg_scale_denominator(w, h, &m), want, "{w}x{h}");
    }
    // A wide target is limited by its long side.
    let wide = InputConfig {
        width: 200,
        height: 100,
        crop_fraction: 1.0,
        ..lite0()
    };
    assert_eq!(jpeg_scale_denominator(800, 1600, &wide), 4); // crop 800x400
    assert_eq!(jpeg_scale_denominator(1600, 800, &wide), 8); // crop 1600x800
    // A smaller crop fraction leaves fewer pixels to spare.
    let tight = InputConfig {
        crop_fraction: 0.5,
        ..lite0()
    };
    assert_eq!(jpeg_scale_denominator(4032, 3024, &tight), 4); // crop 1512: /8 = 189
}

/// A JPEG with an EXIF APP1 segment carrying `orientation`.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2A\0\0\0\x08".to_vec();
    tiff.extend(1u16.to_be_bytes()); // one IFD entry
    tiff.extend(0x0112u16.to_be_bytes()); // Orientation
    tiff.extend(3u16.to_be_bytes()); // SHORT
    tiff.extend(1u32.to_be_bytes());
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
    with_orientation(&encode(img, image::ImageFormat::Jpeg), orientation)
}

#[test]
fn the_scale_is_chosen_after_exif_orientation() {
    let wide = InputConfig {
        width: 200,
        height: 100,
        crop_fraction: 1.0,
        ..lite0()
    };
    let p = Preprocessor::new(wide, DecodeLimits::default());
    let stored = DynamicImage::ImageRgb8(picture(1600, 800));
    let upright = p
        .decode_for_model(&jpeg_with_orientation(&stored, 1))
        .unwrap();
    assert_eq!(
        (upright.width, upright.height, upright.scale_denominator),
        (1600, 800, 8)
    );
    assert_eq!(upright.image.dimensions(), (200, 100));
    // Rotated 90°: an 800×1600 portrait, whose crop for a wide input is 800×400.
    let rotated = p
        .decode_for_model(&jpeg_with_orientation(&stored, 6))
        .unwrap();
    assert_eq!(
        (rotated.width, rotated.height, rotated.scale_denominator),
        (800, 1600, 4)
    );
    assert_eq!(rotated.image.dimensions(), (200, 400));
}

#[test]
fn scaled_decoding_rounds_odd_sizes_up_and_reports_the_full_size() {
    let p = Preprocessor::new(lite0(), DecodeLimits::default());
    let jpeg = encode(
        &DynamicImage::ImageRgb8(picture(1001, 751)),
        image::ImageFormat::Jpeg,
    );
    let d = p.decode_for_model(&jpeg).unwrap();
    assert_eq!(d.scale_denominator, 2);
    assert_eq!(d.image.dimensions(), (501, 376));
    assert_eq!((d.width, d.height), (1001, 751));
    let t = p.preprocess(&jpeg).unwrap();
    assert_eq!((t.width, t.height), (1001, 751));
    let mut out = vec![0f32; p.image_len()];
    let info = p.preprocess_into(&jpeg, &mut out).unwrap();
    assert_eq!(out, t.tensor);
    assert_eq!(
        (info.width, info.height, info.scale_denominator),
        (1001, 751, 2)
    );
}

#[test]
fn scaled_decoding_agrees_with_full_decoding_then_resizing() {
    // At every scale, in every JPEG flavour: the model-size pixels from the
    // scaled decode are close to those from the full decode.
    let p = Preprocessor::new(lite0(), DecodeLimits::default());
    let pic = picture(2048, 1536);
    let rgb = pic.as_raw().as_slice();
    let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
    let cmyk = cmyk_ink(&pic);
    use jpeg_encoder::ColorType as C;
    for (what, jpeg) in [
        ("baseline", jpeg_with(2048, 1536, rgb, C::Rgb, false)),
        ("progressive", jpeg_with(2048, 1536, rgb, C::Rgb, true)),
        ("grey", jpeg_with(2048, 1536, &grey, C::Luma, false)),
        ("cmyk", jpeg_with(2048, 1536, &cmyk, C::Cmyk, false)),
        ("ycck", jpeg_with(2048, 1536, &cmyk, C::CmykAsYcck, true)),
    ] {
        let full = p.decode_at(&jpeg, |_, _| 1).unwrap();
        let mut want = vec![0u8; p.image_len()];
        p.resize_into(&full, &mut want);
        for d in [2, 4, 8] {
            let scaled = p.decode_at(&jpeg, |_, _| d).unwrap();
            assert_eq!(scaled.scale_denominator, d);
            assert_eq!(scaled.image.dimensions(), (2048 / d, 1536 / d));
            let mut got = vec![0u8; p.image_len()];
            p.resize_into(&scaled, &mut got);
            let diff = mean_abs_diff(&got, &want);
            assert!(diff < 1.5, "{what} at 1/{d}: mean |Δ| {diff} grey levels");
        }
        // Colours match the original picture too (CMYK/YCCK conversion).
        let mut orig = vec![0u8; p.image_len()];
        p.resize_image(&pic, pic.dimensions(), 1, &mut orig);
        if what == "grey" {
            let g: Vec<u8> = orig.chunks_exact(3).flat_map(|p| [p[1]; 3]).collect();
            orig = g;
        }
        let diff = mean_abs_diff(&want, &orig);
        assert!(
            diff < 3.0,
            "{what}: mean |Δ| {diff} from the original picture"
        );
    }
}

#[test]
fn full_jpeg_decoding_matches_the_image_crate() {
    // zune-jpeg called directly gives the same pixels as through `image`.
    let p = Preprocessor::new(lite0(), DecodeLimits::default());
    let pic = picture(300, 200);
    let cmyk = cmyk_ink(&pic);
    for jpeg in [
        encode(
            &DynamicImage::ImageRgb8(pic.clone()),
            image::ImageFormat::Jpeg,
        ),
        jpeg_with(300, 200, &cmyk, jpeg_encoder::ColorType::Cmyk, true),
    ] {
        let (_, ours) = p.decode(&jpeg).unwrap();
        let theirs = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(ours, theirs);
    }
}

#[test]
fn solid_colour_normalises_exactly_in_both_layouts() {
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        10,
        7,
        image::Rgb([255, 127, 0]),
    ));
    let png = encode(&img, image::ImageFormat::Png);
    let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
    let t = p.preprocess(&png).unwrap();
    assert_eq!((t.width, t.height, t.format), (10, 7, ImageFormat::Png));
    assert_eq!(t.tensor.len(), 48);
    assert!(t.tensor[..16].iter().all(|&v| v == 1.0));
    assert!(t.tensor[16..32].iter().all(|&v| v == 0.0));
    assert!(t.tensor[32..].iter().all(|&v| v == -127.0 / 128.0));
    let p = Preprocessor::new(input(InputLayout::Nhwc), DecodeLimits::default());
    let t = p.preprocess(&png).unwrap();
    assert_eq!(&t.tensor[..3], &[1.0, 0.0, -127.0 / 128.0]);
}

#[test]
fn every_supported_format_and_pixel_type_decodes() {
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        9,
        5,
        image::Rgba([10, 20, 30, 40]),
    ));
    let grey16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
        9,
        5,
        image::Luma([65535u16]),
    ));
    let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
    for (img, f, want) in [
        (&rgba, image::ImageFormat::Png, ImageFormat::Png),
        (&grey16, image::ImageFormat::Png, ImageFormat::Png),
        (&rgba, image::ImageFormat::Bmp, ImageFormat::Bmp),
        (&rgba, image::ImageFormat::Gif, ImageFormat::Gif),
        (&rgba, image::ImageFormat::Tiff, ImageFormat::Tiff),
        (&rgba, image::ImageFormat::WebP, ImageFormat::Webp),
    ] {
        let bytes = encode(img, f);
        let t = p
            .preprocess(&bytes)
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(t.format, want);
        assert_eq!((t.width, t.height), (9, 5));
    }
    let jpeg = encode(
        &DynamicImage::ImageRgb8(rgba.to_rgb8()),
        image::ImageFormat::Jpeg,
    );
    assert_eq!(p.preprocess(&jpeg).unwrap().format, ImageFormat::Jpeg);
}

#[test]
fn in_place_conversions_match_to_rgb8() {
    // Alpha is dropped and grey repeated exactly as `DynamicImage::to_rgb8`
    // does, for every 8-bit layout decoded without an intermediate image.
    let pic = picture(31, 17);
    let rgba = image::RgbaImage::from_fn(31, 17, |x, y| {
        let p = pic.get_pixel(x, y);
        image::Rgba([p[0], p[1], p[2], (x * 8) as u8])
    });
    let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
    for img in [
        DynamicImage::ImageRgb8(pic.clone()),
        DynamicImage::ImageRgba8(rgba.clone()),
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(pic.clone()).to_luma8()),
        DynamicImage::ImageLumaA8(DynamicImage::ImageRgba8(rgba.clone()).to_luma_alpha8()),
    ] {
        for f in [image::ImageFormat::Png, image::ImageFormat::Tiff] {
            if f == image::ImageFormat::Tiff && img.color() == image::ColorType::La8 {
                continue; // `image` cannot write grey + alpha TIFF
            }
            let bytes = encode(&img, f);
            let (_, got) = p.decode(&bytes).unwrap();
            let want = image::load_from_memory(&bytes).unwrap().to_rgb8();
            assert_eq!(got, want, "{:?} as {f:?}", img.color());
        }
    }
}

#[test]
fn bad_inputs_get_typed_errors() {
    let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
    assert_eq!(p.preprocess(b"").unwrap_err(), ImageError::Empty);
    assert!(matches!(
        p.preprocess(b"hello, this is text").unwrap_err(),
        ImageError::Unsupported { detected: None }
    ));
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    assert_eq!(
        p.preprocess(heic).unwrap_err(),
        ImageError::Unsupported {
            detected: Some("heic".into())
        }
    );
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
    let jpeg = encode(&img, image::ImageFormat::Jpeg);
    let cut = &jpeg[..jpeg.len() - 40];
    assert!(matches!(
        p.preprocess(cut).unwrap_err(),
        ImageError::Corrupt {
            format: ImageFormat::Jpeg,
            ..
        }
    ));
    let png = encode(&img, image::ImageFormat::Png);
    assert!(matches!(
        p.preprocess(&png[..png.len() / 2]).unwrap_err(),
        ImageError::Corrupt { .. }
    ));
    let small = Preprocessor::new(
        input(InputLayout::Nchw),
        DecodeLimits {
            max_pixels: 100,
            max_bytes: 1 << 20,
        },
    );
    assert!(matches!(
        small.preprocess(&png).unwrap_err(),
        ImageError::TooLarge {
            width: 64,
            height: 64,
            ..
        }
    ));
    let tiny = Preprocessor::new(
        input(InputLayout::Nchw),
        DecodeLimits {
            max_pixels: 1 << 20,
            max_bytes: 10,
        },
    );
    assert!(matches!(
        tiny.preprocess(&png).unwrap_err(),
        ImageError::TooManyBytes { .. }
    ));
}

#[test]
fn truncated_jpeg_is_an_error_at_every_scale() {
    let p = Preprocessor::new(lite0(), DecodeLimits::default());
    let pic = picture(2048, 1536);
    for progressive in [false, true] {
        let jpeg = jpeg_with(
            2048,
            1536,
            pic.as_raw(),
            jpeg_encoder::ColorType::Rgb,
            progressive,
        );
        assert_eq!(p.decode_for_model(&jpeg).unwrap().scale_denominator, 4);
        for cut in [jpeg.len() / 2, jpeg.len() - 2] {
            for d in [1, 4] {
                assert!(
                    matches!(
                        p.decode_at(&jpeg[..cut], |_, _| d).unwrap_err(),
                        ImageError::Corrupt {
                            format: ImageFormat::Jpeg,
                            ..
                        }
                    ),
                    "progressive {progressive}, cut at {cut}, 1/{d}"
                );
            }
        }
    }
}

#[test]
fn exif_orientation_is_applied() {
    // Left half red, right half blue, 40×20.
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    }));
    let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
    let (_, plain) = p.decode(&jpeg_with_orientation(&img, 1)).unwrap();
    assert_eq!(plain.dimensions(), (40, 20));
    let (_, rotated) = p.decode(&jpeg_with_orientation(&img, 6)).unwrap();
    assert_eq!(rotated.dimensions(), (20, 40));
    // Rotated 90° clockwise: the left (red) half is now on top.
    assert!(rotated.get_pixel(10, 5)[0] > 200 && rotated.get_pixel(10, 5)[2] < 60);
    assert!(rotated.get_pixel(10, 35)[2] > 200 && rotated.get_pixel(10, 35)[0] < 60);
    let t = p.preprocess(&jpeg_with_orientation(&img, 6)).unwrap();
    assert_eq!((t.width, t.height), (20, 40));
}
