//! Two servers (replicas) sharing one images folder, storing the same and
//! different images in parallel: exactly one image file per distinct image,
//! every sidecar valid JSON, no temporary files left, and the history of
//! either replica lists everything.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use hyper::Method;
use imgclass_server::ServerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_folder_safely() {
    let dir = tempfile::tempdir().unwrap();
    let shared = ServerOptions {
        images_dir: Some(dir.path().to_path_buf()),
        ..options()
    };
    let a = TestServer::start(ready_state(shared.clone())).await;
    let b = TestServer::start(ready_state(shared)).await;
    bounded(120, async {
        let names = [
            "coffee.png",
            "chelsea.png",
            "camera.png",
            "rocket.jpg",
            "grace_hopper.jpg",
            "china.jpg",
        ];
        let mut uploads: Vec<(std::net::SocketAddr, &str)> = Vec::new();
        for round in 0..3 {
            for (i, name) in names.iter().enumerate() {
                // Every image goes to both replicas, several times.
                let addr = if (i + round) % 2 == 0 { a.addr } else { b.addr };
                uploads.push((addr, name));
                uploads.push((if addr == a.addr { b.addr } else { a.addr }, name));
            }
        }
        let tasks: Vec<_> = uploads
            .into_iter()
            .map(|(addr, name)| {
                tokio::spawn(async move {
                    let bytes = imgclass_testkit::photo_bytes(name);
                    let r = classify(addr, "", &bytes).await;
                    assert_eq!(r.status, 200, "{name}: {}", r.text());
                    assert_eq!(r.header("x-image-stored"), Some("true"));
                    assert_eq!(r.header("x-image-id"), Some(sha256_hex(&bytes).as_str()));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // No waiting for the writers: a 200 means stored (see commit.rs).

        let expected_ids: BTreeMap<String, &str> = names
            .iter()
            .map(|n| (sha256_hex(&imgclass_testkit::photo_bytes(n)), *n))
            .collect();
        let mut images = BTreeSet::new();
        let mut sidecars = BTreeSet::new();
        for shard in std::fs::read_dir(dir.path()).unwrap().flatten() {
            assert!(
                shard.path().is_dir(),
                "only shard folders at the top: {:?}",
                shard.path()
            );
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                let name = f.file_name().into_string().unwrap();
                assert!(!name.starts_with('.'), "temporary file left behind: {name}");
                let (stem, ext) = name.split_once('.').unwrap();
                assert_eq!(&stem[..2], shard.file_name().to_str().unwrap());
                if ext == "json" {
                    let v: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(f.path()).unwrap())
                            .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
                    assert_eq!(v["id"], stem);
                    assert_eq!(v["model"], "efficientnet-lite0");
                    assert_eq!(v["predictions"].as_array().unwrap().len(), 5);
                    assert!(sidecars.insert(stem.to_string()));
                } else {
                    let bytes = std::fs::read(f.path()).unwrap();
                    assert_eq!(sha256_hex(&bytes), stem, "{name} holds its own bytes");
                    assert!(images.insert(stem.to_string()), "{stem} stored twice");
                }
            }
        }
        let want: BTreeSet<String> = expected_ids.keys().cloned().collect();
        assert_eq!(images, want, "exactly one image file per distinct image");
        assert_eq!(sidecars, want);

        // Either replica lists all of them, newest first; paging walks them all.
        for server in [&a, &b] {
            let page = get(server.addr, "/api/history?limit=100").await.json();
            let ids: BTreeSet<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids, want);
        }
        let mut seen = Vec::new();
        let mut before = String::new();
        loop {
            let path = if before.is_empty() {
                "/api/history?limit=4".to_string()
            } else {
                format!("/api/history?limit=4&before={before}")
            };
            let page = get(b.addr, &path).await.json();
            let items = page["items"].as_array().unwrap();
            let created: Vec<&str> = items
                .iter()
                .map(|r| r["created"].as_str().unwrap())
                .collect();
            assert!(
                created.windows(2).all(|w| w[0] >= w[1]),
                "newest first: {created:?}"
            );
            seen.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_string()));
            match page["next_before"].as_str() {
                Some(next) => before = next.to_string(),
                None => break,
            }
        }
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "paging never repeats");
        assert_eq!(unique, want, "paging finds every result");

        // The stored image is served back byte for byte.
        let (id, name) = expected_ids.iter().next().unwrap();
        let r = get(a.addr, &format!("/api/images/{id}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], &imgclass_testkit::photo_bytes(name)[..]);

        let r = send(a.addr, Method::GET, "/api/history?limit=0", &[], vec![]).await;
        assert_eq!(r.status, 400);
        let r = send(
            a.addr,
            Method::GET,
            "/api/history?before=yesterday",
            &[],
            vec![],
        )
        .await;
        assert_eq!(r.status, 400);
    })
    .await;
}

#[test]
fn concurrent_writers_of_one_image_never_tear_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = imgclass_testkit::photo_bytes("coffee.png");
    let id = sha256_hex(&bytes);
    let record = imgclass_server::StoredRecord {
        id: id.clone(),
        format: imgclass_core::ImageFormat::Png,
        bytes: bytes.len(),
        width: 600,
        height: 400,
        model: "m".into(),
        engine: "e".into(),
        predictions: vec![],
        created: "2024-05-01T00:00:00.000Z".into(),
        filename: None,
    };
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (dir, bytes, record) = (dir.path(), &bytes, &record);
            s.spawn(move || {
                // Separate Storage values, as separate replicas would have.
                let storage = imgclass_server::Storage::open(dir).unwrap();
                for _ in 0..20 {
                    storage.store(bytes, record).unwrap();
                    if let Some((path, _)) = storage.find_image(&record.id) {
                        assert_eq!(
                            &std::fs::read(path).unwrap(),
                            bytes,
                            "a reader saw a torn image"
                        );
                    }
                    if let Some(r) = storage.record(&record.id) {
                        assert_eq!(&r, record);
                    }
                }
            });
        }
    });
    let shard: Vec<_> = std::fs::read_dir(dir.path().join(&id[..2]))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(shard.len(), 2, "one image and one sidecar");
}
