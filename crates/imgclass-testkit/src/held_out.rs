//! Photos no model is calibrated on: the sample images of OpenCV's
//! documentation as Debian packages them (`opencv-doc`, pinned by version
//! and sha256). The int8 tests judge agreement with fp32 on these as well
//! as on the wheels' photos, which are the calibration set.
//!
//! Only the photos of real scenes are taken (no logos, charts, synthetic
//! patterns or calibration boards), and of each stereo or before/after
//! pair only one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// (name, bytes) of every held-out photo, in [`PHOTOS`] order.
pub fn photos() -> Vec<(String, Vec<u8>)> {
    PHOTOS
        .iter()
        .map(|name| {
            let bytes = fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.to_string(), bytes)
        })
        .collect()
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
