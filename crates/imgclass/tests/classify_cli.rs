//! `imgclass classify` as a user runs it: the real binary, the real model,
//! real photos mixed with bad files.

use std::path::Path;
use std::process::Command;

use imgclass_testkit as kit;
use serde_json::Value;

fn imgclass() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgclass"));
    c.env("IMGCLASS_HOME", kit::model_home())
        .env("RUST_LOG", "warn");
    c
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn json_lines_for_good_and_bad_files_and_failure_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "coffee.png", &kit::photo_bytes("coffee.png"));
    write(
        d,
        "nested/deeper/chelsea.bmp",
        &kit::reencode("chelsea.png", image::ImageFormat::Bmp, false),
    );
    let rocket = kit::photo_bytes("rocket.jpg");
    write(d, "truncated.jpg", &rocket[..rocket.len() / 2]);
    write(d, "notes.jpg", b"this is a text file, not a JPEG\n");
    write(d, "empty.png", b"");
    write(d, "bomb.png", &kit::bomb_png(100_000, 100_000));
    write(
        d,
        "ignored.txt",
        b"not an image extension, not picked up from folders",
    );
    let single = d.join("nested/deeper/chelsea.bmp");

    for engine in ["ort", "tract"] {
        let out = imgclass()
            .args(["classify", "--json", "--top-k", "5", "--engine", engine])
            .arg(d)
            .arg(&single)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 7, "{lines:?}");
        let by_name = |suffix: &str| -> &Value {
            lines
                .iter()
                .find(|l| l["file"].as_str().unwrap().ends_with(suffix))
                .unwrap_or_else(|| panic!("no line for {suffix}"))
        };
        let coffee = by_name("coffee.png");
        let preds = coffee["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 5);
        assert!(
            [967, 968].contains(&preds[0]["index"].as_u64().unwrap()),
            "{coffee}"
        );
        assert!(preds[0]["label"].is_string() && preds[0]["probability"].as_f64().unwrap() > 0.3);
        let chelsea = by_name("chelsea.bmp");
        assert!([281, 282, 285].contains(&chelsea["predictions"][0]["index"].as_u64().unwrap()));
        for (name, words) in [
            ("truncated.jpg", "corrupt or truncated"),
            ("notes.jpg", "not a supported image"),
            ("empty.png", "empty"),
            ("bomb.png", "100000x100000 pixels, over the limit"),
        ] {
            let l = by_name(name);
            assert!(l.get("predictions").is_none());
            let e = l["error"].as_str().unwrap();
            assert!(e.contains(words), "{name}: {e}");
        }
        // Files are reported in the order found: folder (sorted), then the file argument.
        assert!(lines[0]["file"].as_str().unwrap().ends_with("bomb.png"));
        assert_eq!(lines[6]["file"].as_str().unwrap(), single.to_str().unwrap());
    }
}

#[test]
fn human_output_and_success_exit_status() {
    let out = imgclass()
        .args(["classify", kit::photo("coffee.png").to_str().unwrap()])
        .arg(kit::photo("china.jpg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("coffee.png: espresso (967)"), "{text}");
    assert!(lines[1].contains("palace (698)"), "{text}");
    assert_eq!(lines[0].matches('%').count(), 3, "top-3 by default: {text}");
}

#[test]
fn missing_path_is_a_clear_error() {
    let out = imgclass()
        .args(["classify", "/nonexistent/photo.jpg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/photo.jpg"));
}

#[test]
fn model_list_shows_the_default_model() {
    let out = imgclass().args(["model", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("efficientnet-lite0"))
        .unwrap_or_else(|| panic!("the default model is not listed:\n{text}"));
    assert!(
        line.contains("installed") && line.contains("224x224") && line.contains("75.1%"),
        "{text}"
    );
}
