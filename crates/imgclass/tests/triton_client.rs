//! Triton's own HTTP client (`tritonclient[http]==2.73.0`, pinned with
//! sha256 in crates/imgclass-server/tests/triton/requirements.txt, in a
//! cached venv) drives the real `imgclass serve` binary on 127.0.0.1 with
//! the real model, with the client's default options (binary tensor data)
//! and the JSON ones: every check of client_checks.py must pass —
//! liveness/readiness, server and model metadata, model config, BYTES
//! binary-in/binary-out, binary-in/JSON-out and base64 JSON, FP32 binary
//! and JSON, unnamed outputs, classification, request id, unused
//! parameters, statistics that move, repository index/unload/load, unknown
//! model 404s, and a corrupt image in a binary request (4xx JSON).
//!
//! The server runs with an API key, so load/unload are checked without it
//! (401) and with it; its model home holds two models, so the index lists
//! one READY and one that is not loaded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgclass_testkit as kit;
use serde_json::Value;

const KEY: &str = "triton-test-key";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange: (status, body).
fn http(port: u16, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn serve() -> Server {
    let port = kit::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["serve", "--no-store", "--port", &port.to_string()])
        .args(["--model", imgclass_core::DEFAULT_MODEL])
        .env("IMGCLASS_HOME", kit::two_model_home())
        .env("IMGCLASS_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start imgclass serve");
    let server = Server { child, port };
    let start = Instant::now();
    while !matches!(http(port, b"GET /readyz HTTP/1.0\r\n\r\n"), Ok((200, _))) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "imgclass serve was not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn triton_dir() -> PathBuf {
    imgclass_testkit::deploy::repo_root().join("crates/imgclass-server/tests/triton")
}

/// The venv's python (created once by setup-venv.sh, then cached).
fn venv_python() -> PathBuf {
    let out = Command::new(triton_dir().join("setup-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run setup-venv.sh");
    assert!(out.status.success(), "setup-venv.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn tritonclient_with_default_and_json_options() {
    let python = venv_python();
    let server = serve();
    let photo = |name: &str| kit::photo(name).display().to_string();
    let expect = kit::PHOTOS
        .iter()
        .find(|p| p.2 == "coffee.png")
        .map(|p| {
            p.3.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap();
    let out = Command::new(&python)
        .arg(triton_dir().join("client_checks.py"))
        .args(["--url", &format!("127.0.0.1:{}", server.port)])
        .args(["--model", imgclass_core::DEFAULT_MODEL])
        .args([
            "--image",
            &photo("coffee.png"),
            "--image2",
            &photo("chelsea.png"),
        ])
        .args(["--expect", &expect, "--reference-top1", "905"])
        .args(["--api-key", KEY, "--other-model", kit::ALT_MODEL])
        .stderr(Stdio::inherit())
        .output()
        .expect("run client_checks.py");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let failed: Vec<&Value> = lines.iter().filter(|l| l["ok"] == false).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    let checks: Vec<&Value> = lines.iter().filter(|l| l.get("check").is_some()).collect();
    let listed = Command::new(&python)
        .arg(triton_dir().join("client_checks.py"))
        .args(["--list", "--url", "x", "--model", "x", "--image", "x"])
        .output()
        .unwrap();
    let every = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert_eq!(checks.len(), every, "every check ran");
    assert!(every >= 23, "{every} checks");
    assert!(
        out.status.success(),
        "client_checks.py exit {:?}",
        out.status
    );

    // /classify?model= follows what the repository API loads and unloads.
    let port = server.port;
    let control = |what: &str, key: Option<&str>| {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let req = format!(
            "POST /v2/repository/models/{}/{what} HTTP/1.0\r\n{auth}Content-Length: 0\r\n\r\n",
            kit::ALT_MODEL
        );
        http(port, req.as_bytes()).unwrap()
    };
    let classify_alt = || {
        let image = kit::photo_bytes("coffee.png");
        let mut req = format!(
            "POST /classify?model={}&top_k=1 HTTP/1.0\r\nAuthorization: Bearer {KEY}\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
            kit::ALT_MODEL,
            image.len()
        )
        .into_bytes();
        req.extend_from_slice(&image);
        http(port, &req).unwrap()
    };
    assert_eq!(classify_alt().0, 404, "not loaded yet");
    assert_eq!(control("load", None).0, 401, "load needs the API key");
    assert_eq!(control("load", Some("wrong")).0, 401);
    let (status, body) = control("load", Some(KEY));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let entry: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(entry["state"], "READY", "{entry}");
    let (status, body) = classify_alt();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let top: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        top[0]["label"]
            .as_str()
            .unwrap()
            .starts_with(kit::ALT_PREFIX),
        "{top}"
    );
    assert_eq!(control("unload", None).0, 401, "unload needs the API key");
    let (status, body) = control("unload", Some(KEY));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let entry: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
    assert_eq!(entry["reason"], "unloaded", "{entry}");
    assert_eq!(classify_alt().0, 404, "unloaded");
}
