//! The durability contract over real sockets and the real model: a 200
//! from /classify means the image and its record are in the images folder
//! (read-your-writes right after it, on this replica and on another one
//! sharing the folder); a store that fails (a read-only folder) never
//! answers as stored, is counted and, under `require_store`, is a 507; at
//! start, temporary files a crash left behind are removed and never listed.
//! The kill -9 rounds against the real binary are in
//! crates/imgclass/tests/durability.rs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use imgclass_server::ServerOptions;

fn storing(dir: &Path) -> ServerOptions {
    ServerOptions {
        images_dir: Some(dir.to_path_buf()),
        ..options()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_is_readable_at_once_on_this_and_another_replica() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::start(ready_state(storing(dir.path()))).await;
    let b = TestServer::start(ready_state(storing(dir.path()))).await;
    bounded(120, async {
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (a, b) = (a.addr, b.addr);
                tokio::spawn(async move {
                    let bytes = imgclass_testkit::unique_photo(1000 + i);
                    let (to, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
                    let r = classify(to, "", &bytes).await;
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(r.header("x-image-stored"), Some("true"));
                    let id = r.header("x-image-id").unwrap().to_string();
                    assert_eq!(id, sha256_hex(&bytes));
                    // No waiting: the answer itself is the promise.
                    for addr in [to, other] {
                        let image = get(addr, &format!("/api/images/{id}")).await;
                        assert_eq!(image.status, 200, "image {id} on {addr}");
                        assert_eq!(&image.body[..], &bytes[..]);
                        let history = get(addr, "/api/history?limit=100").await.json();
                        let listed = history["items"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r["id"] == id.as_str());
                        assert!(listed, "{id} not in the history of {addr}");
                    }
                    id
                })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 24);
        // Concurrent uploads shared commits: fewer groups than uploads.
        let m = get(a.addr, "/metrics").await.text();
        let (groups, stored) = (
            sample(&m, "imgclass_store_commit_seconds_count"),
            sample(&m, "imgclass_images_stored_total"),
        );
        assert_eq!(sample(&m, "imgclass_store_group_size_sum"), stored);
        assert!(
            (1.0..=stored).contains(&groups),
            "{groups} groups for {stored} uploads"
        );
    })
    .await;
}

/// Makes `dir` read-only for this process: a read-only bind mount when
/// running as root (permissions do not stop root), else mode 0555.
struct ReadOnly<'a> {
    dir: &'a Path,
    mounted: bool,
}

impl<'a> ReadOnly<'a> {
    fn new(dir: &'a Path) -> Self {
        let run = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .status()
                .is_ok_and(|s| s.success())
        };
        let d = dir.to_str().unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mounted =
            root && run(&["mount", "--bind", d, d]) && run(&["mount", "-o", "remount,bind,ro", d]);
        if root {
            assert!(
                mounted,
                "as root, a read-only bind mount is needed for this test"
            );
        } else {
            set_mode(dir, 0o555);
        }
        ReadOnly { dir, mounted }
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(self.dir).status();
        } else {
            set_mode(self.dir, 0o755);
        }
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_folder_is_never_answered_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let lenient = TestServer::start(ready_state(storing(dir.path()))).await;
    let strict = TestServer::start(ready_state(ServerOptions {
        require_store: true,
        ..storing(dir.path())
    }))
    .await;
    bounded(120, async {
        // The folder goes read-only under running servers (a volume
        // remounted read-only, or full).
        let before = get(lenient.addr, "/metrics").await.text();
        let ro = ReadOnly::new(dir.path());
        let bytes = imgclass_testkit::unique_photo(2000);
        let r = classify(lenient.addr, "", &bytes).await;
        assert_eq!(r.status, 200, "classified anyway: {}", r.text());
        assert_eq!(r.header("x-image-stored"), Some("false"));
        assert_eq!(r.json().as_array().unwrap().len(), 3);
        let id = sha256_hex(&bytes);
        assert_eq!(
            get(lenient.addr, &format!("/api/images/{id}")).await.status,
            404
        );
        let after = get(lenient.addr, "/metrics").await.text();
        let failures = |m: &str| sample(m, "imgclass_store_failures_total");
        assert_eq!(failures(&after) - failures(&before), 1.0);

        let r = classify(strict.addr, "", &imgclass_testkit::unique_photo(2001)).await;
        assert_eq!(r.status, 507, "{}", r.text());
        assert!(r.error().contains("could not be stored"), "{}", r.error());
        assert!(
            !r.text().contains(dir.path().to_str().unwrap()),
            "no paths leak"
        );
        assert_eq!(r.header("x-image-stored"), None);

        // Writable again: both store as before.
        drop(ro);
        for server in [&lenient, &strict] {
            let bytes = imgclass_testkit::unique_photo(2002);
            let r = classify(server.addr, "", &bytes).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-image-stored"), Some("true"));
        }
        let history = get(strict.addr, "/api/history").await.json();
        assert_eq!(history["items"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_crash_are_removed_at_start_and_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("ab");
    std::fs::create_dir_all(&shard).unwrap();
    let id = "ab".repeat(32);
    // A crash between writing and renaming: temporary image and record.
    let stale = [shard.join(".tmp-crashed1"), shard.join(".tmp-crashed2")];
    for p in &stale {
        std::fs::write(p, br#"{"id":"half"#).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    // One being written by another replica right now: left alone.
    let fresh = shard.join(".tmp-inflight");
    std::fs::write(&fresh, b"partial").unwrap();
    // A record cut short by a tool that does not write atomically.
    std::fs::write(shard.join(format!("{id}.json")), br#"{"id":"ab"#).unwrap();

    let server = TestServer::start(ready_state(storing(dir.path()))).await;
    bounded(60, async {
        for p in &stale {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        assert!(
            fresh.exists(),
            "a write in progress elsewhere is not removed"
        );
        let history = get(server.addr, "/api/history").await.json();
        assert_eq!(history["items"].as_array().unwrap().len(), 0, "{history}");
        assert_eq!(
            get(server.addr, &format!("/api/images/{id}")).await.status,
            404
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kserve_batch_is_stored_before_its_answer() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(ready_state(storing(dir.path()))).await;
    bounded(60, async {
        let photos: Vec<Vec<u8>> = (0..3)
            .map(|i| imgclass_testkit::unique_photo(3000 + i))
            .collect();
        let data: Vec<String> = photos
            .iter()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
            .collect();
        let body = serde_json::json!({
            "inputs": [{ "name": "image", "shape": [3], "datatype": "BYTES", "data": data }]
        });
        let r = send(
            server.addr,
            hyper::Method::POST,
            "/v2/models/efficientnet-lite0/infer",
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-image-stored"), Some("true"));
        for p in &photos {
            let image = get(server.addr, &format!("/api/images/{}", sha256_hex(p))).await;
            assert_eq!(image.status, 200);
            assert_eq!(&image.body[..], &p[..]);
        }
        // One upload, one group: the batch was committed together.
        let m = get(server.addr, "/metrics").await.text();
        assert_eq!(sample(&m, "imgclass_images_stored_total"), 3.0);
        assert!(sample(&m, "imgclass_store_commit_seconds_count") <= 3.0);
    })
    .await;
}
