//! No acknowledged upload is lost: rounds of `kill -9` of a real
//! `imgclass serve` while 8 clients upload distinct real photos; after each
//! kill, every upload that was answered 200 has its image (its own bytes)
//! and its record in the images folder, and a server started on the folder
//! lists all of them and nothing half-written.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgclass_testkit as kit;
use sha2::Digest;

const CLIENTS: usize = 8;
const ROUNDS: usize = 3;

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

fn serve(images: &Path) -> Server {
    let port = kit::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_imgclass"))
        .args(["serve", "--port", &port.to_string()])
        .arg("--images-dir")
        .arg(images)
        .env("IMGCLASS_HOME", kit::model_home())
        .env("RUST_LOG", "warn")
        .env_remove("IMGCLASS_API_KEY")
        .env_remove("IMGCLASS_NO_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start imgclass serve");
    let server = Server { child, port };
    let start = Instant::now();
    while !matches!(
        exchange(port, b"GET /readyz HTTP/1.0\r\n\r\n"),
        Ok((200, _, _))
    ) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One HTTP/1.0 exchange: (status, head, body).
fn exchange(port: u16, request: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("cut-off response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

/// Uploads `image`; the image id when answered 200 and stored.
fn upload(port: u16, image: &[u8]) -> Option<String> {
    let boundary = "imgclass-durability";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"u.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /classify HTTP/1.0\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let (status, head, body) = exchange(port, &req).ok()?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("\r\nx-image-stored: true"), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-image-id: "))
        .expect("x-image-id")
        .trim()
        .to_string();
    Some(id)
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `id` is in `images` with its own bytes and a record.
fn assert_stored(images: &Path, id: &str) {
    let shard = images.join(&id[..2]);
    let image = std::fs::read(shard.join(format!("{id}.jpg")))
        .unwrap_or_else(|e| panic!("acknowledged image {id} is missing: {e}"));
    assert_eq!(sha256_hex(&image), id, "image {id} holds other bytes");
    let record = std::fs::read(shard.join(format!("{id}.json")))
        .unwrap_or_else(|e| panic!("record of acknowledged {id} is missing: {e}"));
    let record: serde_json::Value = serde_json::from_slice(&record)
        .unwrap_or_else(|e| panic!("record of {id} is not whole JSON: {e}"));
    assert_eq!(record["id"], id);
    assert_eq!(record["predictions"].as_array().map(Vec::len), Some(5));
}

#[test]
fn every_upload_answered_200_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mut acknowledged = BTreeSet::new();
    let next = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        // Photos made before the load so the clients only upload.
        let photos: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..CLIENTS * 16)
                .map(|i| kit::unique_photo(10_000 * (round + 1) + i))
                .collect(),
        );
        let server = serve(&images);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        next.store(0, Ordering::SeqCst);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (photos, acked, stop, next) =
                    (photos.clone(), acked.clone(), stop.clone(), next.clone());
                let port = server.port;
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(photo) = photos.get(i) else { break };
                        match upload(port, photo) {
                            Some(id) => {
                                assert_eq!(id, sha256_hex(photo));
                                acked.lock().unwrap().push(id);
                            }
                            None => break,
                        }
                    }
                })
            })
            .collect();
        // Kill at a different moment of the load each round.
        let start = Instant::now();
        let at = Duration::from_millis(1500 + 700 * round as u64);
        while start.elapsed() < at && next.load(Ordering::SeqCst) < photos.len() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut server = server;
        server.child.kill().expect("kill -9");
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("client thread");
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            !acked.is_empty(),
            "round {round}: no upload was answered before the kill"
        );
        for id in &acked {
            assert_stored(&images, id);
        }
        println!(
            "round {round}: killed after {} ms, {} uploads answered 200, all {} in the folder with their records",
            start.elapsed().as_millis(),
            acked.len(),
            acked.len()
        );
        acknowledged.extend(acked);
    }

    // A server on the folder lists every acknowledged upload (history shows
    // whole records only, whatever the kills left half-written).
    let server = serve(&images);
    let mut listed = BTreeSet::new();
    let mut before = String::new();
    loop {
        let request = format!("GET /api/history?limit=200{before} HTTP/1.0\r\n\r\n");
        let (status, _, body) = exchange(server.port, request.as_bytes()).unwrap();
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for r in page["items"].as_array().unwrap() {
            assert!(
                listed.insert(r["id"].as_str().unwrap().to_string()),
                "listed twice"
            );
        }
        match page["next_before"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    let missing: Vec<_> = acknowledged.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not listed: {missing:?}"
    );
    println!(
        "{} acknowledged uploads over {ROUNDS} kill -9 rounds, all stored and listed",
        acknowledged.len()
    );
}
