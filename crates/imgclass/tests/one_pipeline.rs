//! One pipeline, two front ends: `imgclass serve --model A,B` and
//! `imgclass classify --model B` (the real binary, the real model, real
//! sockets) give identical probabilities for the same photos, and each
//! served model answers with its own labels; zoo models named on the
//! command line are fetched on first use and served side by side.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgclass_testkit as kit;
use serde_json::Value;

const PHOTOS: [&str; 4] = ["coffee.png", "chelsea.png", "rocket.jpg", "china.jpg"];

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

/// One HTTP/1.0 exchange on a fresh connection: (status, body).
fn http(port: u16, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    http_with_head(port, request).map(|(status, _, body)| (status, body))
}

/// One HTTP/1.0 exchange: (status, response head, body).
fn http_with_head(port: u16, request: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Ok((status, head, raw[split + 4..].to_vec()))
}

fn classify_over_http(port: u16, query: &str, image: &[u8]) -> Value {
    classify_answered_by(port, query, image).1
}

/// `/classify{query}`: (the `X-Model` header, the JSON body).
fn classify_answered_by(port: u16, query: &str, image: &[u8]) -> (String, Value) {
    let boundary = "imgclass-one-pipeline";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /classify{query} HTTP/1.0\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let (status, head, body) = http_with_head(port, &req).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let model = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-model"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (model, serde_json::from_slice(&body).unwrap())
}

fn serve(models: &str) -> Server {
    serve_in(kit::two_model_home(), models, &[])
}

/// `imgclass serve --model MODELS` on model home `home`, ready.
fn serve_in(home: &std::path::Path, models: &str, env: &[(&str, &std::path::Path)]) -> Server {
    let port = kit::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["serve", "--no-store", "--port", &port.to_string()])
        .args(["--model", models])
        .envs(env.iter().copied())
        .env("IMGCLASS_HOME", home)
        .env("RUST_LOG", "warn")
        .env_remove("IMGCLASS_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start imgclass serve");
    let server = Server { child, port };
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(port, b"GET /readyz HTTP/1.0\r\n\r\n") {
            return server;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "imgclass serve was not ready within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn classify_cli(model: &str, files: &[std::path::PathBuf]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["classify", "--json", "--top-k", "5", "--batch-size", "1"])
        .args(["--model", model])
        .args(files)
        .env("IMGCLASS_HOME", kit::two_model_home())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run imgclass classify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn cli_and_server_give_identical_probabilities_per_model() {
    let server = serve(&format!(
        "{},{}",
        imgclass_core::DEFAULT_MODEL,
        kit::ALT_MODEL
    ));
    let files: Vec<_> = PHOTOS.iter().map(|p| kit::photo(p)).collect();
    for model in [imgclass_core::DEFAULT_MODEL, kit::ALT_MODEL] {
        let cli = classify_cli(model, &files);
        assert_eq!(cli.len(), PHOTOS.len());
        for (photo, line) in PHOTOS.iter().zip(&cli) {
            let served = classify_over_http(
                server.port,
                &format!("?model={model}&top_k=5"),
                &kit::photo_bytes(photo),
            );
            let from_cli = line["predictions"].as_array().unwrap();
            let served = served.as_array().unwrap();
            assert_eq!(from_cli.len(), 5);
            for (c, s) in from_cli.iter().zip(served) {
                assert_eq!(c["index"], s["index"], "{model} {photo}");
                assert_eq!(c["label"], s["label"], "{model} {photo}");
                assert_eq!(
                    c["probability"].as_f64(),
                    s["probability"].as_f64(),
                    "{model} {photo}: the same pipeline gives the same probabilities"
                );
                let label = c["label"].as_str().unwrap();
                assert_eq!(
                    label.starts_with(kit::ALT_PREFIX),
                    model == kit::ALT_MODEL,
                    "{model} answers with its own labels: {label}"
                );
            }
        }
    }
    // An unknown model is a clear 404 from the server and an error from the CLI.
    let (status, body) = http(
        server.port,
        b"POST /classify?model=nope HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: 1\r\n\r\nx",
    )
    .unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let out = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["classify", "--model", "nope"])
        .arg(&files[0])
        .env("IMGCLASS_HOME", kit::two_model_home())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn zoo_models_are_fetched_on_first_use_and_served_side_by_side() {
    // An empty model home; the test home's verified downloads as the
    // offline wheelhouse (the registry is not needed).
    let models = ["efficientnet-lite1", "efficientnet-lite0-int8"];
    let wheels = kit::zoo_home(&models).join(".downloads");
    let home = tempfile::tempdir().unwrap();
    let server = serve_in(
        home.path(),
        &models.join(","),
        &[("IMGCLASS_WHEELHOUSE", &wheels)],
    );
    for model in models {
        assert!(
            home.path().join(model).join("model.toml").is_file(),
            "{model} installed on first use"
        );
    }
    // Each model runs with its own input size from its model.toml.
    let lite1 = imgclass_core::ModelRepository::new(home.path())
        .load("efficientnet-lite1")
        .unwrap();
    assert_eq!(
        (lite1.config.input.width, lite1.config.input.height),
        (240, 240)
    );
    for model in models {
        let (answered, top) = classify_answered_by(
            server.port,
            &format!("?model={model}&top_k=1"),
            &kit::photo_bytes("coffee.png"),
        );
        assert_eq!(answered, model, "X-Model");
        let label = top[0]["label"].as_str().unwrap();
        assert_eq!(label, "espresso", "{model}: {top}");
    }
}
