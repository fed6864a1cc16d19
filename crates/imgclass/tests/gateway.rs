//! The deployment's gateway, for real: Debian's nginx, started by the test
//! as a plain process on a loopback port with `deploy/nginx/nginx.conf`
//! byte for byte (only the two files it includes, `upstream.conf` and
//! `listen.conf`, are the test's), in front of real `imgclass serve`
//! replicas that share one images folder.
//!
//! nginx is required: without it these tests fail and say what to install
//! (Debian's `nginx`; `IMGCLASS_NGINX` may name another binary).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgclass_testkit as kit;
use imgclass_testkit::deploy::{nginx_bin, nginx_prefix, require_tool};
use imgclass_testkit::eventually;
use serde_json::Value;

// ---------------------------------------------------------------- tools --

fn repo() -> PathBuf {
    imgclass_testkit::deploy::repo_root()
}

/// The heavy tests run one at a time: they share two cores.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    kit::free_port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("`kill` (procps) is needed to signal processes")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), "--".into(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child in a process group of its own: dropping it ends the whole group
/// (nginx's workers too), gracefully first.
struct Proc {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str, stdout: &Path, log: &Path) -> Proc {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(stdout).unwrap())
            .stderr(std::fs::File::create(log).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn died(&mut self) -> String {
        format!(
            "{} exited ({:?}); its log ends with:\n{}",
            self.name,
            self.child.try_wait().unwrap(),
            tail(&self.log, 30)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal_group(self.pid(), "TERM");
            if wait_exit(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
            }
        }
        // Anything left in the group (nginx workers of a killed master).
        signal_group(self.pid(), "KILL");
        let _ = self.child.wait();
    }
}

// ----------------------------------------------------------- http client --

/// A response from a one-shot HTTP/1.1 request (`Connection: close`).
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text()))
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    http_at("127.0.0.1", port, method, path, headers, body)
}

/// `http` to another loopback address.
fn http_at(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect((host, port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A server may answer (413) before it has read the whole body.
    let wrote = s.write_all(body);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        wrote?;
        read?;
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("bad chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size + 2 {
                return Err(bad("truncated chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn get(port: u16, path: &str) -> Resp {
    http(port, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn multipart(field: &str, filename: &str, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "imgclass-gateway-test-5f0c2a9e";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn image_type(name: &str) -> &'static str {
    if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// `POST /classify?top_k=5` with the photo as the multipart field `image`.
fn classify(port: u16, name: &str, bytes: &[u8], request_id: &str) -> std::io::Result<Resp> {
    let (ct, body) = multipart("image", name, image_type(name), bytes);
    http(
        port,
        "POST",
        "/classify?top_k=5",
        &[("Content-Type", &ct), ("X-Request-Id", request_id)],
        &body,
    )
}

// -------------------------------------------------------- the processes --

/// One `imgclass serve` replica on a loopback port.
fn start_replica(dir: &Path, name: &str, images: &Path) -> (Proc, u16) {
    let port = free_port();
    (start_replica_at(dir, name, images, "127.0.0.1", port), port)
}

/// One `imgclass serve` replica on `host:port` (a loopback address).
fn start_replica_at(dir: &Path, name: &str, images: &Path, host: &str, port: u16) -> Proc {
    let bin = Path::new(env!("CARGO_BIN_EXE_imgclass"));
    let mut cmd = kit::replica_command_at(bin, host, port, images);
    cmd.args(["--shutdown-grace", "20s"])
        .env("RUST_LOG", "info");
    let log = dir.join(format!("{name}.log"));
    Proc::spawn(cmd, name, &dir.join(format!("{name}.out")), &log)
}

fn wait_ready(proc: &mut Proc, port: u16, path: &str, within: Duration) {
    wait_ready_at(proc, "127.0.0.1", port, path, within)
}

fn wait_ready_at(proc: &mut Proc, host: &str, port: u16, path: &str, within: Duration) {
    eventually(within, Duration::from_millis(50), || {
        if !proc.running() {
            panic!("{}", proc.died());
        }
        match http_at(host, port, "GET", path, &[], b"") {
            Ok(r) if r.status == 200 => Ok(()),
            _ => Err(format!(
                "{} not ready on {path} within {within:?}; log:\n{}",
                proc.name,
                tail(&proc.log, 30)
            )),
        }
    })
}

struct Gateway {
    proc: Proc,
    port: u16,
    access_log: PathBuf,
}

impl Gateway {
    /// nginx in front of `upstreams` (`host:port`), with the shipped
    /// max_fails/fail_timeout.
    fn start(root: &Path, upstreams: &[String]) -> Gateway {
        let port = free_port();
        let upstream_conf: String = upstreams
            .iter()
            .map(|u| format!("server {u} max_fails=3 fail_timeout=10s;\n"))
            .collect();
        let prefix = nginx_prefix(root, &upstream_conf, &format!("listen 127.0.0.1:{port};\n"));
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p").arg(format!("{}/", prefix.display())).args([
            "-c",
            "conf/nginx.conf",
            "-g",
            "worker_processes 2;",
        ]);
        let access_log = root.join("access.log");
        let mut proc = Proc::spawn(cmd, "nginx", &access_log, &root.join("nginx-error.log"));
        wait_ready(&mut proc, port, "/healthz", Duration::from_secs(20));
        Gateway {
            proc,
            port,
            access_log,
        }
    }

    /// Every complete access-log line (JSON, one per request). A line
    /// nginx is still writing (no newline yet) is left for the next read.
    fn log(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.access_log).unwrap();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// The log line of one request. nginx may write it just after the
    /// client has its answer (lingering close), so wait a little.
    fn log_for(&self, request_id: &str) -> Value {
        eventually(Duration::from_secs(5), Duration::from_millis(20), || {
            self.log()
                .into_iter()
                .find(|l| l["request_id"] == request_id)
                .ok_or_else(|| format!("no access-log line for request id {request_id}"))
        })
    }

    /// The log lines of requests whose id starts with `prefix`, once there
    /// are `count` of them.
    fn log_of_run(&self, prefix: &str, count: usize) -> Vec<Value> {
        eventually(Duration::from_secs(5), Duration::from_millis(20), || {
            let lines: Vec<Value> = self
                .log()
                .into_iter()
                .filter(|l| {
                    l["request_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(prefix))
                })
                .collect();
            if lines.len() >= count {
                Ok(lines)
            } else {
                Err(format!(
                    "{} access-log lines for {prefix}*, expected {count}",
                    lines.len()
                ))
            }
        })
    }
}

/// The replica addresses a log line's request was sent to, in order.
fn tried(line: &Value) -> Vec<String> {
    line["upstream"]
        .as_str()
        .unwrap_or("")
        .split([',', ':'])
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| format!("{}:{}", c[0].trim(), c[1].trim()))
        .collect()
}

// --------------------------------------------------------------- checks --

/// A labelled photo: name, bytes, acceptable classes, k.
type Photo = (String, Vec<u8>, Vec<usize>, usize);

/// The labelled photos.
fn photos() -> Vec<Photo> {
    kit::PHOTOS
        .iter()
        .filter(|(_, _, _, classes, _)| !classes.is_empty())
        .map(|(_, _, name, classes, k)| {
            (
                name.to_string(),
                kit::photo_bytes(name),
                classes.to_vec(),
                *k,
            )
        })
        .collect()
}

fn assert_classified(resp: &Resp, name: &str, classes: &[usize], k: usize) {
    assert_eq!(resp.status, 200, "{name}: {}", resp.text());
    let preds = resp.json();
    let preds = preds
        .as_array()
        .unwrap_or_else(|| panic!("{name}: not an array"));
    let top: Vec<usize> = preds
        .iter()
        .take(k)
        .map(|p| p["index"].as_u64().unwrap() as usize)
        .collect();
    assert!(
        top.iter().any(|i| classes.contains(i)),
        "{name}: top-{k} {top:?} has none of {classes:?}: {preds:?}"
    );
}

/// The stored image for `id` and its sidecar, waiting for the background
/// write (the service answers before its storage write completes).
fn stored(images: &Path, id: &str) -> (PathBuf, Value) {
    let shard = images.join(&id[..2]);
    eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let image = std::fs::read_dir(&shard).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.file_stem().is_some_and(|s| s == id) && p.extension().is_some_and(|e| e != "json")
            })
        });
        let sidecar = std::fs::read(shard.join(format!("{id}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        match (image, sidecar) {
            (Some(image), Some(sidecar)) => Ok((image, sidecar)),
            _ => Err(format!(
                "image {id} (and its sidecar) never appeared in {}",
                shard.display()
            )),
        }
    })
}

/// Image files (not sidecars, not temporaries) in the shared folder.
fn stored_images(images: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in std::fs::read_dir(images).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !name.ends_with(".json") {
                out.insert(name);
            }
        }
    }
    out
}

/// Uploads from `threads` clients, `per_thread` each, rotating through the
/// photos; `during` runs (once) after `trigger_after` answers. Returns each
/// request's id, status (0: no HTTP answer at all) and error text.
fn load_run(
    port: u16,
    photos: &Arc<Vec<Photo>>,
    tag: &str,
    threads: usize,
    per_thread: usize,
    trigger_after: usize,
    during: impl FnOnce(),
) -> Vec<(String, u16, String)> {
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (done, stop, photos, tag) =
                (done.clone(), stop.clone(), photos.clone(), tag.to_string());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..per_thread {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let (name, bytes, classes, k) = &photos[(t + i) % photos.len()];
                    let id = format!("{tag}-{t}-{i}");
                    match classify(port, name, bytes, &id) {
                        Ok(r) => {
                            let err = if r.status == 200 {
                                assert_classified(&r, name, classes, *k);
                                String::new()
                            } else {
                                r.text()
                            };
                            out.push((id, r.status, err));
                        }
                        Err(e) => out.push((id, 0, e.to_string())),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                out
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < trigger_after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    during();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a load thread panicked"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        results.len(),
        threads * per_thread,
        "the load run did not finish in time"
    );
    results
}

fn assert_all_ok(results: &[(String, u16, String)], what: &str) {
    let failed: Vec<_> = results.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed, e.g. {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
}

// ---------------------------------------------------------------- tests --

/// `nginx -t` on the shipped nginx.conf with each shipped pair of include
/// files (compose defaults, Kubernetes ConfigMap): no error, no warning.
/// Names in upstream files resolve only inside their deployment, so they
/// are pointed at 127.0.0.1 for the check; everything else is as shipped.
#[test]
fn nginx_t_accepts_the_shipped_configuration() {
    let nginx = nginx_bin();
    for (upstream, listen) in [
        ("deploy/nginx/upstream.conf", "deploy/nginx/listen.conf"),
        (
            "deploy/k8s/base/gateway/upstream.conf",
            "deploy/k8s/base/gateway/listen.conf",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let upstream_conf = std::fs::read_to_string(repo().join(upstream))
            .unwrap()
            .replace("server ml:", "server 127.0.0.1:");
        let listen_conf = std::fs::read_to_string(repo().join(listen)).unwrap();
        let prefix = nginx_prefix(dir.path(), &upstream_conf, &listen_conf);
        let out = Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "conf/nginx.conf"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains("test is successful"),
            "nginx -t failed with {upstream} + {listen}:\n{stderr}"
        );
        assert!(
            !stderr.contains("[warn]") && !stderr.contains("[emerg]"),
            "nginx -t warns with {upstream} + {listen}:\n{stderr}"
        );
    }
}

/// The checker itself: a broken copy of the configuration fails `nginx -t`.
#[test]
fn nginx_t_rejects_a_broken_configuration() {
    let nginx = nginx_bin();
    let dir = tempfile::tempdir().unwrap();
    let prefix = nginx_prefix(dir.path(), "server 127.0.0.1:1;\n", "listen 127.0.0.1:1;\n");
    let conf = prefix.join("conf/nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("proxy_next_upstream_tries 3;"));
    std::fs::write(
        &conf,
        text.replace(
            "proxy_next_upstream_tries 3;",
            "proxy_next_upstream_tries three;",
        ),
    )
    .unwrap();
    let out = Command::new(&nginx)
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .args(["-c", "conf/nginx.conf"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "nginx -t accepted a broken file:\n{stderr}"
    );
    assert!(stderr.contains("proxy_next_upstream_tries"), "{stderr}");
}

/// The web image's entrypoint writes upstream.conf and listen.conf from
/// IMGCLASS_UPSTREAMS and IMGCLASS_GATEWAY_PORT, and nginx accepts them;
/// a malformed address is refused before nginx starts.
#[test]
fn gateway_entrypoint_configures_nginx_from_the_environment() {
    let nginx = nginx_bin();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    // The entrypoint runs `nginx` from PATH: put the one we found first.
    let path = format!(
        "{}:{}",
        nginx.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |upstreams: &str| {
        Command::new("sh")
            .arg(repo().join("deploy/docker/gateway-entrypoint.sh"))
            .arg("-t")
            .env("PATH", &path)
            .env("IMGCLASS_GATEWAY_CONF", repo().join("deploy/nginx"))
            .env("IMGCLASS_GATEWAY_PREFIX", &prefix)
            .env("IMGCLASS_GATEWAY_WEB", repo().join("web"))
            .env("IMGCLASS_UPSTREAMS", upstreams)
            .env("IMGCLASS_GATEWAY_PORT", "18080")
            .env("IMGCLASS_GATEWAY_WORKERS", "2")
            .output()
            .unwrap()
    };
    let out = run("127.0.0.1:5001, 127.0.0.1:5002,127.0.0.1:5003");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "entrypoint + nginx -t failed:\n{stderr}"
    );
    let upstream = std::fs::read_to_string(prefix.join("conf/upstream.conf")).unwrap();
    let servers: Vec<&str> = upstream
        .lines()
        .filter(|l| l.starts_with("server "))
        .collect();
    assert_eq!(
        servers,
        [
            "server 127.0.0.1:5001 max_fails=3 fail_timeout=10s;",
            "server 127.0.0.1:5002 max_fails=3 fail_timeout=10s;",
            "server 127.0.0.1:5003 max_fails=3 fail_timeout=10s;"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(prefix.join("conf/listen.conf")).unwrap(),
        "listen 18080;\n"
    );
    assert!(prefix.join("web/index.html").is_file());

    let out = run("127.0.0.1:5001;include /etc/passwd");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid upstream address"));

    // IMGCLASS_UPSTREAMS_DNS must be one host:port.
    for bad in ["ml-pods", "ml-pods:", "ml-pods:http", "ml pods:5000"] {
        let out = Command::new("sh")
            .arg(repo().join("deploy/docker/gateway-entrypoint.sh"))
            .arg("-t")
            .env("PATH", &path)
            .env("IMGCLASS_GATEWAY_CONF", repo().join("deploy/nginx"))
            .env("IMGCLASS_GATEWAY_PREFIX", &prefix)
            .env("IMGCLASS_GATEWAY_WEB", repo().join("web"))
            .env("IMGCLASS_UPSTREAMS_DNS", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{bad:?}: {out:?}");
    }
}

/// A minimal replica that is always overloaded: 503 + Retry-After.
fn overloaded_replica() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                // Read one request (headers + Content-Length body), answer 503.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let mut need = None;
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if need.is_none()
                        && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                    {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        need = Some(end + 4 + len);
                    }
                    if need.is_some_and(|n| buf.len() >= n) {
                        break;
                    }
                }
                counter.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"error":"queue full"}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (port, hits)
}

/// proxy_next_upstream as configured: a replica answering 503 and a dead
/// one (connection refused) are skipped and every upload is still
/// answered by the live replica; a client error (415) is not retried;
/// with every replica gone the gateway answers 503 + Retry-After in the
/// service's JSON error shape.
#[test]
fn gateway_skips_overloaded_and_dead_replicas() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let (mut live, live_port) = start_replica(dir.path(), "replica-live", &images);
    let (busy_port, busy_hits) = overloaded_replica();
    let dead_port = free_port();
    wait_ready(&mut live, live_port, "/readyz", Duration::from_secs(60));
    let gw = Gateway::start(
        dir.path(),
        &[
            format!("127.0.0.1:{busy_port}"),
            format!("127.0.0.1:{dead_port}"),
            format!("127.0.0.1:{live_port}"),
        ],
    );
    let coffee = kit::photo_bytes("coffee.png");
    for i in 0..12 {
        let id = format!("skip-{i}");
        let r = classify(gw.port, "coffee.png", &coffee, &id).unwrap();
        assert_classified(&r, "coffee.png", &[967, 968], 1);
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
        let line = gw.log_for(&id);
        assert_eq!(
            tried(&line).last().map(String::as_str),
            Some(format!("127.0.0.1:{live_port}").as_str()),
            "{line}"
        );
    }
    let statuses: BTreeSet<String> = gw
        .log_of_run("skip-", 12)
        .iter()
        .map(|l| l["upstream_status"].as_str().unwrap().to_string())
        .collect();
    assert!(
        busy_hits.load(Ordering::Relaxed) >= 1 && statuses.iter().any(|s| s.starts_with("503, ")),
        "the 503 replica was never tried and skipped: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("502, ")),
        "the dead replica was never tried and skipped: {statuses:?}"
    );

    // A client error comes back as the service said it, tried once.
    let (ct, body) = multipart(
        "image",
        "notes.jpg",
        "image/jpeg",
        b"just some text, not a picture",
    );
    let r = http(
        gw.port,
        "POST",
        "/classify",
        &[("Content-Type", &ct), ("X-Request-Id", "not-an-image")],
        &body,
    )
    .unwrap();
    assert!(
        r.status == 415 || r.status == 422,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(r.json()["error"].is_string());
    assert_eq!(tried(&gw.log_for("not-an-image")).len(), 1);

    // No replica left: the gateway's own 503, in the service's JSON shape.
    drop(live);
    let r = classify(gw.port, "coffee.png", &coffee, "none-left").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(r.json()["error"].is_string());
}

/// The whole gateway in front of three replicas sharing one images folder:
/// the page is served, uploads are classified and land in the folder once
/// per distinct image, requests spread over every replica, `kill -9` of one
/// replica in the middle of a load run and SIGTERM of another cause no
/// failed request, and the SIGTERMed replica drains and exits 0.
#[test]
fn gateway_in_front_of_three_replicas_survives_kill_and_drain() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut replicas: Vec<(Proc, u16)> = (0..3)
        .map(|i| start_replica(dir.path(), &format!("replica-{i}"), &images))
        .collect();
    for (proc, port) in replicas.iter_mut() {
        wait_ready(proc, *port, "/readyz", Duration::from_secs(60));
    }
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let gw = Gateway::start(
        dir.path(),
        &replicas.iter().map(|(_, p)| addr(*p)).collect::<Vec<_>>(),
    );

    // The page and the gateway's own endpoints.
    let index = get(gw.port, "/");
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        index.body,
        std::fs::read(repo().join("web/index.html")).unwrap()
    );
    assert!(index.header("content-security-policy").is_some());
    let js = get(gw.port, "/app.js");
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(get(gw.port, "/healthz").status, 200);
    assert_eq!(get(gw.port, "/readyz").status, 200);
    assert_eq!(get(gw.port, "/no-such-page.html").status, 404);
    // One replica's metrics and stats, the same one for a given client.
    for i in 0..5 {
        let path = if i == 0 { "/metrics" } else { "/api/stats" };
        let id = format!("pin-{i}");
        let r = http(gw.port, "GET", path, &[("X-Request-Id", &id)], b"").unwrap();
        assert_eq!(r.status, 200, "{path}");
        if i == 0 {
            assert!(r.text().contains("imgclass_requests_total"));
        }
    }
    let pinned: BTreeSet<String> = gw
        .log_of_run("pin-", 5)
        .iter()
        .map(|l| l["upstream"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pinned.len(), 1, "stats and metrics not pinned: {pinned:?}");
    // The API behind it.
    assert_eq!(get(gw.port, "/v2/health/ready").status, 200);
    assert_eq!(get(gw.port, "/v2").status, 200);
    assert_eq!(get(gw.port, "/openapi.json").status, 200);

    // Every photo: classified, its id echoed, stored once in the shared
    // folder with a valid sidecar, byte for byte.
    let photos = Arc::new(photos());
    for (name, bytes, classes, k) in photos.iter() {
        let id = format!("photo-{name}");
        let r = classify(gw.port, name, bytes, &id).unwrap();
        assert_classified(&r, name, classes, *k);
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
        let image_id = r.header("x-image-id").expect("X-Image-Id").to_string();
        let (path, sidecar) = stored(&images, &image_id);
        assert_eq!(std::fs::read(&path).unwrap(), *bytes, "{}", path.display());
        assert!(sidecar.is_object(), "{sidecar}");
        let line = gw.log_for(&id);
        assert_eq!(line["status"], 200);
        assert!(
            line["upstream_response_time"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .is_ok()
        );
    }

    // Over the body limit: the gateway's 413 in the service's JSON shape.
    let (ct, big) = multipart("image", "big.jpg", "image/jpeg", &vec![0u8; 11 << 20]);
    let r = http(gw.port, "POST", "/classify", &[("Content-Type", &ct)], &big).unwrap();
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].is_string());

    // Requests spread over all three replicas.
    let results = load_run(gw.port, &photos, "spread", 3, 10, 0, || {});
    assert_all_ok(&results, "steady load");
    let mut answered_by: BTreeMap<String, usize> = BTreeMap::new();
    for line in gw.log_of_run("spread-", results.len()) {
        *answered_by.entry(tried(&line).pop().unwrap()).or_default() += 1;
    }
    for (_, port) in &replicas {
        assert!(
            answered_by.get(&addr(*port)).is_some_and(|n| *n >= 2),
            "replica {port} answered too few requests: {answered_by:?}"
        );
    }

    // kill -9 of replica 0 in the middle of a load run: no failed request.
    let victim = replicas[0].0.pid();
    let results = load_run(gw.port, &photos, "kill", 4, 25, 20, || {
        signal(victim, "KILL")
    });
    assert_all_ok(&results, "load run with kill -9 of a replica");
    let status = wait_exit(&mut replicas[0].0.child, Duration::from_secs(5)).expect("killed");
    assert_eq!(status.signal(), Some(9));
    let retried: Vec<Value> = gw
        .log_of_run("kill-", results.len())
        .into_iter()
        .filter(|l| tried(l).len() > 1)
        .collect();
    eprintln!(
        "kill -9: {} requests, {} retried on another replica",
        results.len(),
        retried.len()
    );
    // The dead replica stayed in rotation and was skipped, not just idle.
    assert!(
        retried
            .iter()
            .any(|l| tried(l).contains(&addr(replicas[0].1))),
        "no request was retried past the killed replica"
    );

    // SIGTERM of replica 1 in the middle of a load run: no failed request,
    // and it drains and exits 0.
    let draining = replicas[1].0.pid();
    let results = load_run(gw.port, &photos, "term", 4, 25, 20, || {
        signal(draining, "TERM")
    });
    assert_all_ok(&results, "load run with SIGTERM of a replica");
    let status = wait_exit(&mut replicas[1].0.child, Duration::from_secs(30))
        .expect("a SIGTERMed replica exits within its shutdown grace");
    assert!(
        status.success(),
        "replica 1 exited with {status:?} after SIGTERM; log:\n{}",
        tail(&replicas[1].0.log, 20)
    );
    let survivor = addr(replicas[2].1);
    let last_lines = gw.log_of_run("term-", results.len());
    assert!(
        last_lines
            .iter()
            .any(|l| tried(l).last() == Some(&addr(replicas[1].1))),
        "the SIGTERMed replica answered nothing in its run"
    );
    assert!(
        last_lines
            .iter()
            .rev()
            .take(10)
            .all(|l| tried(l).last() == Some(&survivor)),
        "after the drain only the surviving replica answers"
    );

    // Shared storage: one file per distinct photo, whichever replica took it.
    let distinct: BTreeSet<&[u8]> = photos.iter().map(|(_, b, _, _)| b.as_slice()).collect();
    let files = stored_images(&images);
    assert_eq!(files.len(), distinct.len(), "stored: {files:?}");
    // And every replica's history shows them (it reads the shared folder).
    let history = get(gw.port, "/api/history?limit=100");
    assert_eq!(history.status, 200, "{}", history.text());
    let listed = history.json()["items"].as_array().map(Vec::len);
    assert_eq!(listed, Some(distinct.len()), "{}", history.text());

    // Every access-log line parses; no request through the gateway failed
    // except the deliberate 413.
    let log = gw.log();
    let failures: Vec<&Value> = log
        .iter()
        .filter(|l| l["status"].as_u64().unwrap() >= 500)
        .collect();
    assert!(failures.is_empty(), "{failures:?}");

    // nginx stops cleanly on SIGQUIT (graceful).
    let mut gw = gw;
    signal(gw.proc.pid(), "QUIT");
    let status = wait_exit(&mut gw.proc.child, Duration::from_secs(10)).expect("nginx quits");
    assert!(status.success(), "nginx exited with {status:?}");
}

/// The Kubernetes gateway for real: the web image's entrypoint with the
/// Kubernetes ConfigMap's files (deploy/k8s/base/gateway) and
/// IMGCLASS_UPSTREAMS_DNS as deploy/k8s/base/web-deployment.yaml sets it, in
/// front of replicas on 127.0.0.2-5 reached through ONE name that resolves
/// to each of them, as a headless Service's name resolves to its Ready pods.
/// The name comes from a hosts file bind-mounted over /etc/hosts in a mount
/// namespace of the gateway's own (`unshare --mount`: root, as CI runs), so
/// the entrypoint's lookups go through the system resolver as in a pod.
///
/// Requests spread evenly over the three (max/min <= 1.5); a fourth address
/// added to the name takes requests within a few seconds and its share
/// after, without a restart of the gateway; an address removed from the
/// name and its replica stopped (a pod deleted) fails no request.
#[test]
fn kubernetes_gateway_spreads_requests_over_the_pods_behind_one_name() {
    let _heavy = heavy();
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .expect("`id` (coreutils)");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test runs the gateway in a mount namespace of its own (`unshare --mount`): run it as root, as CI does"
    );
    let unshare = require_tool(
        "unshare",
        "IMGCLASS_UNSHARE",
        "install Debian's `util-linux`",
    );
    let nginx = nginx_bin();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let hosts_ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    // One port on every address, like a Service's targetPort on each pod.
    let port = eventually(Duration::from_secs(5), Duration::from_millis(1), || {
        let port = TcpListener::bind((hosts_ips[0], 0))
            .map_err(|e| e.to_string())?
            .local_addr()
            .unwrap()
            .port();
        let free = hosts_ips
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok());
        if free {
            Ok(port)
        } else {
            Err(format!("port {port} taken"))
        }
    });
    let mut replicas: Vec<Proc> = hosts_ips[..3]
        .iter()
        .enumerate()
        .map(|(i, ip)| start_replica_at(dir.path(), &format!("pod-{i}"), &images, ip, port))
        .collect();
    for (proc, ip) in replicas.iter_mut().zip(hosts_ips) {
        wait_ready_at(proc, ip, port, "/readyz", Duration::from_secs(60));
    }

    // The name's answer, as a cluster DNS would give it.
    let name = "ml-pods.imgclass.svc.test";
    let hosts = dir.path().join("hosts");
    let set_name = |ips: &[&str]| {
        let mut text = String::from("127.0.0.1 localhost\n");
        for ip in ips {
            text.push_str(&format!("{ip} {name}\n"));
        }
        // Rewritten in place: the bind mount follows the file, not the name.
        std::fs::write(&hosts, text).unwrap();
    };
    set_name(&hosts_ips[..3]);

    // The ConfigMap's files; only listen.conf is the test's (loopback only).
    use std::os::unix::fs::PermissionsExt;
    let conf = dir.path().join("gateway-config");
    imgclass_testkit::copy_tree(&repo().join("deploy/k8s/base/gateway"), &conf);
    let gw_port = free_port();
    std::fs::write(
        conf.join("listen.conf"),
        format!("listen 127.0.0.1:{gw_port};\n"),
    )
    .unwrap();
    for d in [dir.path(), conf.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        nginx.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(unshare);
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/hosts && exec sh "$2""#)
        .arg("sh")
        .arg(&hosts)
        .arg(repo().join("deploy/docker/gateway-entrypoint.sh"))
        .env("PATH", &path)
        .env("IMGCLASS_GATEWAY_CONF", &conf)
        .env("IMGCLASS_GATEWAY_PREFIX", dir.path().join("prefix"))
        .env("IMGCLASS_GATEWAY_WEB", repo().join("web"))
        .env("IMGCLASS_GATEWAY_WORKERS", "2")
        .env("IMGCLASS_UPSTREAMS_DNS", format!("{name}:{port}"))
        .env("IMGCLASS_UPSTREAMS_REFRESH", "1")
        .env_remove("IMGCLASS_UPSTREAMS")
        .env_remove("IMGCLASS_GATEWAY_PORT");
    let access_log = dir.path().join("access.log");
    let mut proc = Proc::spawn(cmd, "gateway", &access_log, &dir.path().join("gateway.log"));
    wait_ready(&mut proc, gw_port, "/readyz", Duration::from_secs(20));
    let gw = Gateway {
        proc,
        port: gw_port,
        access_log,
    };
    let photos = Arc::new(photos());
    let per_replica = |tag: &str, count: usize| -> BTreeMap<String, usize> {
        let mut answered: BTreeMap<String, usize> = BTreeMap::new();
        for line in gw.log_of_run(&format!("{tag}-"), count) {
            *answered.entry(tried(&line).pop().unwrap()).or_default() += 1;
        }
        answered
    };
    let assert_even = |answered: &BTreeMap<String, usize>, ips: &[&str], what: &str| {
        let counts: Vec<usize> = ips
            .iter()
            .map(|ip| answered.get(&format!("{ip}:{port}")).copied().unwrap_or(0))
            .collect();
        let (max, min) = (*counts.iter().max().unwrap(), *counts.iter().min().unwrap());
        eprintln!("{what}: requests per replica {answered:?}");
        assert!(
            min > 0 && max as f64 / min as f64 <= 1.5,
            "{what}: uneven spread over {ips:?}: {answered:?}"
        );
        assert_eq!(
            answered.len(),
            ips.len(),
            "{what}: answered by others than {ips:?}: {answered:?}"
        );
    };

    // Three pods behind the name: every one takes its share.
    let results = load_run(gw.port, &photos, "three", 3, 30, 0, || {});
    assert_all_ok(&results, "three replicas");
    assert_even(
        &per_replica("three", results.len()),
        &hosts_ips[..3],
        "three replicas",
    );

    // Scale out: a fourth pod becomes Ready and joins the name.
    let mut fourth = start_replica_at(dir.path(), "pod-3", &images, hosts_ips[3], port);
    wait_ready_at(
        &mut fourth,
        hosts_ips[3],
        port,
        "/readyz",
        Duration::from_secs(60),
    );
    replicas.push(fourth);
    set_name(&hosts_ips);
    let joined = Instant::now();
    let coffee = kit::photo_bytes("coffee.png");
    let new_peer = format!("{}:{port}", hosts_ips[3]);
    let mut probe = 0;
    eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        probe += 1;
        let id = format!("join-{probe}");
        let r = classify(gw.port, "coffee.png", &coffee, &id).map_err(|e| e.to_string())?;
        assert_eq!(r.status, 200, "{}", r.text());
        let line = gw.log_for(&id);
        if tried(&line).last() == Some(&new_peer) {
            Ok(())
        } else {
            Err(format!(
                "no request reached the new replica within 10 s (last went to {})",
                line["upstream"]
            ))
        }
    });
    eprintln!(
        "the new replica took requests {:?} after it joined the name",
        joined.elapsed()
    );
    let results = load_run(gw.port, &photos, "four", 4, 30, 0, || {});
    assert_all_ok(&results, "four replicas");
    assert_even(
        &per_replica("four", results.len()),
        &hosts_ips,
        "four replicas",
    );

    // A pod deleted under load: it leaves the name first (its endpoint goes),
    // then stops (SIGTERM after the preStop pause): no request fails.
    let gone = replicas[0].pid();
    let results = load_run(gw.port, &photos, "remove", 3, 80, 15, || {
        set_name(&hosts_ips[1..]);
        std::thread::sleep(Duration::from_secs(2));
        signal(gone, "TERM");
    });
    assert_all_ok(&results, "a replica removed from the name, then stopped");
    let status = wait_exit(&mut replicas[0].child, Duration::from_secs(30)).expect("drained");
    assert!(status.success(), "{status:?}");
    let results = load_run(gw.port, &photos, "after", 3, 15, 0, || {});
    assert_all_ok(&results, "after the removal");
    assert_even(
        &per_replica("after", results.len()),
        &hosts_ips[1..],
        "after the removal",
    );
}
