//! The seed-compatible endpoint and everything around it, over real
//! sockets: every error status from a real bad input (each followed by a
//! good request that must still succeed), startup before the model is
//! ready, API keys, CORS, timeouts, OpenAPI coverage, request ids.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use imgclass_server::{AppState, ServerOptions};
use tower::ServiceExt;

const GOOD: &str = "coffee.png";

async fn assert_good(addr: std::net::SocketAddr, after: &str) {
    let r = classify(addr, "", &imgclass_testkit::photo_bytes(GOOD)).await;
    assert_eq!(r.status, 200, "good request after {after}: {}", r.text());
    let top = r.json()[0]["index"].as_u64().unwrap() as usize;
    assert!(expected(GOOD).contains(&top), "after {after}: top-1 {top}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_answers_in_the_seed_format_with_timing_headers() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(60, async {
        let bytes = imgclass_testkit::photo_bytes(GOOD);
        let r = classify(server.addr, "", &bytes).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        let items = body.as_array().unwrap();
        assert_eq!(items.len(), 3, "default top_k is 3");
        assert!(
            r.text().starts_with(r#"[{"label":""#),
            "the seed's field order: {}",
            r.text()
        );
        assert_eq!(items[0].as_object().unwrap().len(), 3);
        assert!(expected(GOOD).contains(&(items[0]["index"].as_u64().unwrap() as usize)));
        assert!(!items[0]["label"].as_str().unwrap().is_empty());
        let p: Vec<f64> = items
            .iter()
            .map(|i| i["probability"].as_f64().unwrap())
            .collect();
        assert!(
            p.windows(2).all(|w| w[0] >= w[1]) && p[0] <= 1.0 && p[2] > 0.0,
            "{p:?}"
        );
        assert_eq!(r.header("x-image-id"), Some(sha256_hex(&bytes).as_str()));
        assert_eq!(r.header("x-request-id").map(str::len), Some(16));
        for h in ["x-queue-time", "x-inference-time", "x-total-time"] {
            let ms: f64 = r
                .header(h)
                .unwrap_or_else(|| panic!("no {h}"))
                .parse()
                .unwrap();
            assert!((0.0..30_000.0).contains(&ms), "{h} = {ms}");
        }

        // top_k, a client's request id, and the model named explicitly.
        let (ct, body) = image_form(&bytes, "c.png");
        let r = send(
            server.addr,
            Method::POST,
            "/classify?top_k=5&model=efficientnet-lite0",
            &[("content-type", &ct), ("x-request-id", "client-id-42")],
            body,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json().as_array().unwrap().len(), 5);
        assert_eq!(r.header("x-request-id"), Some("client-id-42"));

        // A raw body with an image content type, and a BMP.
        let r = send(
            server.addr,
            Method::POST,
            "/classify",
            &[("content-type", "image/png")],
            bytes.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let bmp = imgclass_testkit::reencode("chelsea.png", image::ImageFormat::Bmp, false);
        let r = classify(server.addr, "", &bmp).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            expected("chelsea.png").contains(&(r.json()[0]["index"].as_u64().unwrap() as usize))
        );
        let jpeg = jpeg_500x375("china.jpg");
        let r = classify(server.addr, "?top_k=1", &jpeg).await;
        assert_eq!(r.json()[0]["index"], 698, "{}", r.text());
    })
    .await;
}

/// (what, content type, path, body, status, part of the error message)
type Case = (
    &'static str,
    String,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

fn bad_inputs() -> Vec<Case> {
    let photo = imgclass_testkit::photo_bytes(GOOD);
    let jpeg = imgclass_testkit::photo_bytes("rocket.jpg");
    let truncated = jpeg[..jpeg.len() / 2].to_vec();
    let text = b"just some text, certainly not an image\n".to_vec();
    let form = |name: &'static str, filename: &'static str, data: &[u8]| {
        multipart(&[Part {
            name,
            filename: Some(filename),
            content_type: Some("application/octet-stream"),
            data,
        }])
    };
    let (missing_ct, missing) = multipart(&[Part {
        name: "comment",
        filename: None,
        content_type: None,
        data: b"hello",
    }]);
    let (wrong_ct, wrong) = form("file", "coffee.png", &photo);
    let (empty_ct, empty) = form("image", "", b"");
    let (text_ct, text_form) = form("image", "notes.txt", &text);
    let (trunc_ct, trunc) = form("image", "cut.jpg", &truncated);
    let (bomb_ct, bomb) = form(
        "image",
        "bomb.png",
        &imgclass_testkit::bomb_png(100_000, 100_000),
    );
    let big = vec![0x42u8; 11 << 20];
    let (big_ct, big_form) = form("image", "big.jpg", &big);
    let (ok_ct, ok_form) = form("image", "coffee.png", &photo);
    vec![
        (
            "no image field",
            missing_ct,
            "/classify",
            missing,
            400,
            "No image file provided",
        ),
        (
            "wrong field name",
            wrong_ct,
            "/classify",
            wrong,
            400,
            "No image file provided",
        ),
        (
            "empty file part",
            empty_ct,
            "/classify",
            empty,
            400,
            "No image file provided",
        ),
        (
            "no body at all",
            String::new(),
            "/classify",
            Vec::new(),
            400,
            "No image file provided",
        ),
        (
            "text file",
            text_ct,
            "/classify",
            text_form,
            415,
            "not a supported image",
        ),
        (
            "raw text body",
            "text/plain".into(),
            "/classify",
            text.clone(),
            415,
            "unsupported content type",
        ),
        (
            "raw text claiming image/jpeg",
            "image/jpeg".into(),
            "/classify",
            text,
            415,
            "not a supported image",
        ),
        (
            "truncated JPEG",
            trunc_ct,
            "/classify",
            trunc,
            422,
            "corrupt or truncated",
        ),
        (
            "100000x100000 PNG header",
            bomb_ct,
            "/classify",
            bomb,
            422,
            "100000x100000",
        ),
        (
            "11 MiB body",
            big_ct,
            "/classify",
            big_form,
            413,
            "over the limit",
        ),
        (
            "garbage multipart",
            format!("multipart/form-data; boundary={BOUNDARY}"),
            "/classify",
            b"\x00\x01garbage that is not multipart at all".to_vec(),
            400,
            "multipart",
        ),
        (
            "multipart without boundary",
            "multipart/form-data".into(),
            "/classify",
            b"x".to_vec(),
            400,
            "multipart",
        ),
        (
            "unknown model",
            ok_ct.clone(),
            "/classify?model=resnet-9000",
            ok_form.clone(),
            404,
            "resnet-9000",
        ),
        (
            "top_k 0",
            ok_ct.clone(),
            "/classify?top_k=0",
            ok_form.clone(),
            400,
            "top_k",
        ),
        (
            "top_k 21",
            ok_ct.clone(),
            "/classify?top_k=21",
            ok_form.clone(),
            400,
            "top_k",
        ),
        (
            "top_k not a number",
            ok_ct,
            "/classify?top_k=many",
            ok_form,
            400,
            "top_k",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_a_good_request_still_succeeds() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(120, async {
        for (what, ct, path, body, status, message) in bad_inputs() {
            let headers: Vec<(&str, &str)> = if ct.is_empty() {
                vec![]
            } else {
                vec![("content-type", ct.as_str())]
            };
            let r = send(server.addr, Method::POST, path, &headers, body).await;
            assert_eq!(r.status, status, "{what}: {}", r.text());
            let error = r.error();
            assert!(
                error.contains(message),
                "{what}: {error:?} lacks {message:?}"
            );
            assert!(
                !error.contains("/home") && !error.contains("src/"),
                "{what}: internals in {error:?}"
            );
            assert_good(server.addr, what).await;
        }

        // Wrong method and unknown route are JSON errors too.
        let r = get(server.addr, "/classify").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.error(), "method not allowed");
        let r = get(server.addr, "/nope").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.error(), "not found");
        assert_good(server.addr, "unknown route").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traversal_filename_is_only_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let state = ready_state(ServerOptions {
        images_dir: Some(images.clone()),
        ..options()
    });
    let server = TestServer::start(state.clone()).await;
    bounded(60, async {
        let bytes = imgclass_testkit::photo_bytes("chelsea.png");
        let (ct, body) = image_form(&bytes, "../../etc/passwd");
        let r = send(
            server.addr,
            Method::POST,
            "/classify",
            &[("content-type", &ct)],
            body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-image-stored"), Some("true"));
        let id = sha256_hex(&bytes);
        let stored = images.join(&id[..2]).join(format!("{id}.png"));
        assert_eq!(std::fs::read(&stored).unwrap(), bytes);
        let sidecar: serde_json::Value = serde_json::from_slice(
            &std::fs::read(images.join(&id[..2]).join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar["filename"], "passwd");
        // Nothing was written anywhere but the images folder.
        let outside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(outside, vec![std::ffi::OsString::from("images")]);
        assert!(!dir.path().join("etc").exists());

        // Traversal through the image route is refused.
        for path in [
            "/api/images/..%2F..%2Fetc%2Fpasswd",
            "/api/images/%2e%2e",
            "/api/images/ABCDEF",
        ] {
            let r = get(server.addr, path).await;
            assert_eq!(r.status, 400, "{path}: {}", r.text());
        }
        let r = get(server.addr, "/api/images/../../etc/passwd").await;
        assert_eq!(r.status, 404);
        let r = get(server.addr, &format!("/api/images/{id}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert_eq!(&r.body[..], &bytes[..]);
        assert_good(server.addr, "traversal").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_at_once_and_readiness_waits_for_the_model() {
    let state = AppState::new(options()).unwrap();
    let server = TestServer::start(state.clone()).await;
    bounded(60, async {
        for path in [
            "/healthz",
            "/v2/health/live",
            "/metrics",
            "/",
            "/openapi.json",
            "/api/stats",
        ] {
            assert_eq!(
                get(server.addr, path).await.status,
                200,
                "{path} while loading"
            );
        }
        for path in ["/readyz", "/v2/health/ready"] {
            let r = get(server.addr, path).await;
            assert_eq!(r.status, 503, "{path} while loading");
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        let r = classify(server.addr, "", &imgclass_testkit::photo_bytes(GOOD)).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.error().contains("loading"), "{}", r.error());
        let r = get(server.addr, "/v2/models/efficientnet-lite0").await;
        assert_eq!(r.status, 503);

        // The background load finishes: readiness flips.
        let (model, engine) = real_model();
        let s = state.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || s.install(model, engine))
            .await
            .unwrap()
            .unwrap();
        println!(
            "install (warm-up of every session) took {:?}",
            started.elapsed()
        );
        assert_eq!(get(server.addr, "/readyz").await.status, 200);
        assert_eq!(get(server.addr, "/v2/health/ready").await.status, 200);
        assert_good(server.addr, "readiness").await;
    })
    .await;
}

#[tokio::test]
async fn the_router_works_in_process_with_oneshot() {
    let app = imgclass_server::router(AppState::new(options()).unwrap());
    let req = |path: &str| {
        axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = app.clone().oneshot(req("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let r = app.oneshot(req("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_inference_and_history_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let state = ready_state(ServerOptions {
        api_key: Some("s3cret-key".into()),
        images_dir: Some(dir.path().to_path_buf()),
        ..options()
    });
    let server = TestServer::start(state).await;
    bounded(60, async {
        let bytes = imgclass_testkit::photo_bytes(GOOD);
        let (ct, body) = image_form(&bytes, "c.png");
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic s3cret-key"),
            Some("Bearer s3cret-key2"),
        ] {
            let mut headers = vec![("content-type", ct.as_str())];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let r = send(
                server.addr,
                Method::POST,
                "/classify",
                &headers,
                body.clone(),
            )
            .await;
            assert_eq!(r.status, 401, "{auth:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.error().contains("API key"));
        }
        let r = send(
            server.addr,
            Method::POST,
            "/classify",
            &[
                ("content-type", &ct),
                ("authorization", "Bearer s3cret-key"),
            ],
            body,
        )
        .await;
        assert_eq!(r.status, 200);
        for path in [
            "/api/history",
            "/api/images/0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(get(server.addr, path).await.status, 401, "{path}");
        }
        let r = send(
            server.addr,
            Method::GET,
            "/api/history",
            &[("authorization", "Bearer s3cret-key")],
            vec![],
        )
        .await;
        assert_eq!(r.status, 200);
        let r = send(
            server.addr,
            Method::POST,
            "/v2/models/efficientnet-lite0/infer",
            &[],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(r.status, 401);
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v2/health/live",
            "/v2/health/ready",
            "/openapi.json",
            "/",
        ] {
            assert_eq!(
                get(server.addr, path).await.status,
                200,
                "{path} stays public"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_unless_an_origin_is_configured() {
    let off = TestServer::start(ready_state(options())).await;
    let on = TestServer::start(ready_state(ServerOptions {
        cors_origins: vec!["http://app.example".into()],
        ..options()
    }))
    .await;
    bounded(60, async {
        let preflight = [
            ("origin", "http://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ];
        let r = send(off.addr, Method::OPTIONS, "/classify", &preflight, vec![]).await;
        assert!(r.header("access-control-allow-origin").is_none());
        let r = send(on.addr, Method::OPTIONS, "/classify", &preflight, vec![]).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://app.example")
        );
        let r = send(
            on.addr,
            Method::GET,
            "/healthz",
            &[("origin", "http://evil.example")],
            vec![],
        )
        .await;
        assert!(r.header("access-control-allow-origin").is_none());
        let (ct, body) = image_form(&imgclass_testkit::photo_bytes(GOOD), "c.png");
        let r = send(
            on.addr,
            Method::POST,
            "/classify",
            &[("content-type", &ct), ("origin", "http://app.example")],
            body,
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(
            r.header("access-control-expose-headers")
                .unwrap()
                .contains("x-inference-time")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_timeout_gets_504() {
    let state = slow_state(
        ServerOptions {
            request_timeout: Duration::from_millis(300),
            ..options()
        },
        Duration::from_millis(1500),
    );
    let server = TestServer::start(state).await;
    bounded(60, async {
        let started = Instant::now();
        let r = classify(server.addr, "", &imgclass_testkit::photo_bytes(GOOD)).await;
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(r.error().contains("longer than"));
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "504 came after {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_routed_and_the_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(ready_state(ServerOptions {
        images_dir: Some(dir.path().to_path_buf()),
        ..options()
    }))
    .await;
    bounded(60, async {
        let doc = get(server.addr, "/openapi.json").await.json();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 15);
        for (path, ops) in paths {
            let concrete = path
                .replace("{name}", "efficientnet-lite0")
                .replace("{id}", &"0".repeat(64));
            for method in ops.as_object().unwrap().keys() {
                let m = if method == "post" {
                    Method::POST
                } else {
                    Method::GET
                };
                let r = send(
                    server.addr,
                    m,
                    &concrete,
                    &[("content-type", "application/json")],
                    b"{}".to_vec(),
                )
                .await;
                assert_ne!(r.status, 405, "{method} {path}");
                if r.status == 404 {
                    assert_ne!(
                        r.error(),
                        "not found",
                        "{method} {path} is documented but not routed"
                    );
                }
            }
        }
        let page = get(server.addr, "/").await;
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(page.text().contains("<form") && page.text().contains("classify"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_the_wait() {
    let state = slow_state(
        ServerOptions {
            shutdown_grace: Duration::from_millis(300),
            ..options()
        },
        Duration::from_secs(3),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = TestServer::start_with(state, async move {
        let _ = rx.await;
    })
    .await;
    bounded(60, async {
        let addr = server.addr;
        let pending = tokio::spawn(async move {
            let bytes = imgclass_testkit::photo_bytes(GOOD);
            let (ct, body) = image_form(&bytes, "c.png");
            let mut c = Conn::open(addr).await.unwrap();
            c.send(Method::POST, "/classify", &[("content-type", &ct)], body)
                .await
        });
        while server.state.in_flight() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        tx.send(()).unwrap();
        server.join().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "serve returned after {:?}",
            started.elapsed()
        );
        pending.abort();
    })
    .await;
}
