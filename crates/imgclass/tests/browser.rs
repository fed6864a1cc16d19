//! The web page, end to end, in a real headless Chromium driven over
//! WebDriver (Debian's `chromium` + `chromium-driver`, through `fantoccini`)
//! against the real `imgclass serve` with the real model.
//!
//! Each test starts its own server (fresh images folder) and its own
//! chromedriver + Chromium (fresh profile), both killed by guards even when
//! the test panics. The tests run one at a time: this is a 2-core machine and
//! "within a few seconds" should not depend on what the neighbours do.
//!
//! Missing browser packages make the tests FAIL with a message saying what to
//! install (`scripts/install-deps.sh chromium chromium-driver`); `CHROMIUM` and
//! `CHROMEDRIVER` may point at other builds. Screenshots are saved under
//! `$CARGO_TARGET_DIR/screenshots/` (default `target/screenshots/`); on a
//! failure the page is saved there too as `failure-<test>.png`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// One browser test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The flags Chromium needs in containers and CI (from the issue).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
const WINDOW: (u32, u32) = (1280, 1100);
const PHONE: (u32, u32) = (390, 844);
/// How long a classification may take to show up in the page.
const RESULT_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- processes

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `env` if set, else the first of `names` on `PATH`.
fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

/// A child process killed (with its process group, when it leads one) and
/// reaped when the guard goes out of scope, panics included.
struct ProcessGuard {
    child: Child,
    group: bool,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if self.group {
            // chromedriver leads its own group; Chromium and its helpers are in it.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over loopback: (status, body). Reads by
/// Content-Length, since not every server closes on `Connection: close`.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
                return Ok((status, body.to_string()));
            }
        } else if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the headers",
            ));
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The real `imgclass serve` on a free port with a fresh images folder.
struct Server {
    _guard: ProcessGuard,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(home: &Path, extra_args: &[&str]) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let log = dir.path().join("server.log");
        let out = File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_imgclass"))
            .arg("serve")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--images-dir",
            ])
            .arg(dir.path().join("images"))
            .args(extra_args)
            .env("IMGCLASS_HOME", home)
            .env_remove("IMGCLASS_API_KEY")
            .env_remove("IMGCLASS_NO_STORE")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning `imgclass serve`")?;
        let mut guard = ProcessGuard {
            child,
            group: false,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = guard.child.try_wait()? {
                bail!(
                    "`imgclass serve` exited ({status}) before it was ready. Its output:\n{}",
                    tail(&log, 40)
                );
            }
            if matches!(http_get(port, "/readyz"), Ok((200, _))) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "`imgclass serve` was not ready within 60 s. Its output:\n{}",
                    tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Server {
            _guard: guard,
            base: format!("http://127.0.0.1:{port}/"),
            log,
            _dir: dir,
        })
    }
}

/// chromedriver on a free port, ready to open Chromium sessions.
struct Browser {
    _guard: ProcessGuard,
    webdriver: String,
    chromium: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Result<Browser> {
        const HOW: &str = "install Debian's `chromium` and `chromium-driver` \
            (scripts/install-deps.sh chromium chromium-driver), or set CHROMIUM and CHROMEDRIVER";
        let chromium = find_program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or_else(|| anyhow!("the browser tests need Chromium, which is not installed: {HOW}"))?;
        let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]).ok_or_else(|| {
            anyhow!("the browser tests need chromedriver, which is not installed: {HOW}")
        })?;
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {}", chromedriver.display()))?;
        let mut guard = ProcessGuard { child, group: true };
        let started = Instant::now();
        loop {
            if let Some(status) = guard.child.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) at start:\n{}",
                    tail(&log, 20)
                );
            }
            if matches!(http_get(port, "/status"), Ok((200, _))) {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "chromedriver did not answer within 20 s:\n{}",
                    tail(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Browser {
            _guard: guard,
            webdriver: format!("http://127.0.0.1:{port}"),
            chromium,
            profile,
        })
    }

    async fn session(&self) -> Result<Client> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self.profile.path().join("profile").display()
        ));
        args.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
        let Value::Object(caps) = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
        }) else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.webdriver)
            .await
            .with_context(|| {
                format!(
                    "starting Chromium ({}) through chromedriver",
                    self.chromium.display()
                )
            })?;
        Ok(client)
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"));
    let target = if target.is_absolute() {
        target
    } else {
        imgclass_testkit::deploy::repo_root().join(target)
    };
    target.join("screenshots")
}

// ---------------------------------------------------------------- the page

/// A browser session on the server's page.
struct Page {
    client: Client,
    base: String,
}

impl Page {
    async fn open(&self) -> Result<()> {
        self.client.goto(&self.base).await?;
        self.wait_js(
            "return document.getElementById('server-status') !== null
                 && document.getElementById('file-input') !== null",
            Duration::from_secs(5),
            "the web page: `/` must serve web/index.html (with app.js and style.css) \
             embedded in the binary",
        )
        .await?;
        self.ready().await
    }

    async fn reload(&self) -> Result<()> {
        self.client.refresh().await?;
        self.ready().await
    }

    /// The page's script ran and its first stats poll saw a ready server.
    async fn ready(&self) -> Result<()> {
        self.wait_js(
            "return document.getElementById('server-status').dataset.state === 'ready'",
            Duration::from_secs(10),
            "the status pill to say the server is ready",
        )
        .await?;
        Ok(())
    }

    /// Evaluates `script` (a function body) every 100 ms until it returns
    /// something truthy, and returns that.
    async fn wait_js(&self, script: &str, timeout: Duration, what: &str) -> Result<Value> {
        let started = Instant::now();
        loop {
            let v = self.client.execute(script, vec![]).await?;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if started.elapsed() > timeout {
                bail!("waited {timeout:?} for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Chooses files through the page's file input, like the file picker.
    async fn upload(&self, files: &[&Path]) -> Result<()> {
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let input = self.client.find(Locator::Css("#file-input")).await?;
        input.send_keys(&names.join("\n")).await?;
        Ok(())
    }

    /// Waits until upload number `job` (1-based, in upload order) is
    /// classified and returns its top label.
    async fn wait_done(&self, job: usize) -> Result<String> {
        let script = format!(
            "const c = document.querySelector('.result[data-job=\"{job}\"]');
             if (!c) return null;
             if (c.dataset.state === 'error') return 'ERROR: ' + c.innerText;
             if (c.dataset.state !== 'done') return null;
             const top = c.querySelector('.bar-row .bar-name');
             return top ? top.textContent : 'NO BARS';"
        );
        let v = self
            .wait_js(
                &script,
                RESULT_WAIT,
                &format!("upload {job} to be classified"),
            )
            .await?;
        let label = v.as_str().unwrap_or_default().to_string();
        ensure!(
            !label.starts_with("ERROR") && label != "NO BARS",
            "upload {job}: {label}"
        );
        Ok(label)
    }

    async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        let png = self.client.screenshot().await?;
        std::fs::write(&path, png)?;
        Ok(path)
    }

    async fn visible_text(&self) -> String {
        match self.js("return document.body.innerText").await {
            Ok(Value::String(s)) => s.chars().take(4000).collect(),
            other => format!("(could not read the page: {other:?})"),
        }
    }
}

/// Runs `test` against a fresh server (started with `server_args`) in a fresh
/// browser. On failure, saves a screenshot and reports the page's text and
/// the server's log.
fn browser_test(name: &str, server_args: &[&str], test: impl AsyncFnOnce(&Page) -> Result<()>) {
    browser_test_in(name, imgclass_testkit::model_home(), server_args, test);
}

/// [`browser_test`] with the server's model home `home`.
fn browser_test_in(
    name: &str,
    home: &Path,
    server_args: &[&str],
    test: impl AsyncFnOnce(&Page) -> Result<()>,
) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let browser = Browser::start().unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let server = Server::start(home, server_args).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        let client = browser.session().await?;
        let page = Page {
            client: client.clone(),
            base: server.base.clone(),
        };
        let mut outcome = test(&page).await;
        if let Err(e) = outcome {
            let shot = page.screenshot(&format!("failure-{name}.png")).await;
            let text = page.visible_text().await;
            outcome = Err(e.context(format!(
                "screenshot: {}\n--- page text ---\n{text}\n--- end of page text ---",
                shot.map_or_else(|e| format!("failed: {e}"), |p| p.display().to_string())
            )));
        }
        let _ = client.close().await;
        outcome
    });
    if let Err(e) = outcome {
        let log = tail(&server.log, 30);
        drop(server);
        drop(browser);
        panic!("{name}: {e:#}\n--- server log (tail) ---\n{log}");
    }
    // The guards kill both processes here.
}

const HISTORY_PHOTOS: &[&str] = &[
    "coffee.png",
    "chelsea.png",
    "camera.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "astronaut.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "horse.png",
];

fn is_coffee(label: &str) -> bool {
    matches!(label, "espresso" | "cup")
}

// ---------------------------------------------------------------- the tests

#[test]
fn coffee_through_the_file_input_shows_espresso_with_timings_and_screenshots() {
    browser_test("coffee", &[], async |p: &Page| {
        p.open().await?;
        let coffee = imgclass_testkit::photo("coffee.png");
        let started = Instant::now();
        p.upload(&[&coffee]).await?;
        let top = p.wait_done(1).await?;
        ensure!(
            is_coffee(&top),
            "top bar says {top:?}, expected espresso or cup"
        );
        eprintln!(
            "coffee classified in the page within {:?}",
            started.elapsed()
        );

        // Default top-k is 3, with percentages and the timing headers.
        let card = p
            .js(
                "const c = document.querySelector('.result[data-job=\"1\"]');
                 return { bars: c.querySelectorAll('.bar-row').length,
                          pct: c.querySelector('.bar-value').textContent,
                          timing: c.querySelector('.timing').innerText }",
            )
            .await?;
        ensure!(card["bars"] == 3, "default top-k: {card}");
        let pct = card["pct"].as_str().unwrap_or_default();
        ensure!(pct.ends_with('%'), "percentage shown: {card}");
        let timing = card["timing"].as_str().unwrap_or_default();
        for part in ["Round trip", "Server", "Queue", "Inference"] {
            ensure!(
                timing.contains(part),
                "timing line lacks {part}: {timing:?}"
            );
        }

        // The selector re-renders the result with more classes.
        p.client
            .find(Locator::Css("#top-k"))
            .await?
            .select_by_value("5")
            .await?;
        p.wait_js(
            "return document.querySelectorAll('.result[data-job=\"1\"] .bar-row').length === 5",
            Duration::from_secs(2),
            "five bars after choosing top 5",
        )
        .await?;

        // Let the history thumbnail and a few stats samples arrive, then shoot.
        p.wait_js(
            "const i = document.querySelector('#history-grid .history-item img');
             return i && i.complete && i.naturalWidth > 0",
            RESULT_WAIT,
            "the upload's thumbnail in the history gallery",
        )
        .await?;
        p.client.set_window_size(WINDOW.0, 1500).await?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let desktop = p.screenshot("page-desktop.png").await?;
        eprintln!("screenshot: {}", desktop.display());

        // Phone width: nothing wider than the screen.
        p.client.set_window_size(PHONE.0, PHONE.1).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let widths = p
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await?;
        ensure!(
            widths[0].as_f64() <= widths[1].as_f64(),
            "the page scrolls sideways on a phone: [scrollWidth, innerWidth] = {widths}"
        );
        let phone = p.screenshot("page-phone.png").await?;
        eprintln!("screenshot: {}", phone.display());
        p.js("document.querySelector('.result').scrollIntoView({ block: 'start' })")
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let phone = p.screenshot("page-phone-result.png").await?;
        eprintln!("screenshot: {}", phone.display());
        Ok(())
    });
}

/// Upload `job`'s card: its top label and the model chip's text.
async fn answered_by(p: &Page, job: usize) -> Result<(String, String)> {
    let top = p.wait_done(job).await?;
    let chip = p
        .js(&format!(
            "const c = document.querySelector('.result[data-job=\"{job}\"] .chip.model');
             return c ? c.innerText : ''"
        ))
        .await?;
    Ok((top, chip.as_str().unwrap_or_default().to_string()))
}

#[test]
fn with_two_models_served_the_page_picks_one_and_shows_which_answered() {
    use imgclass_testkit::{ALT_MODEL, ALT_PREFIX};
    let default = imgclass_core::DEFAULT_MODEL;
    let models = format!("{default},{ALT_MODEL}");
    let home = imgclass_testkit::two_model_home();
    browser_test_in(
        "two-models",
        home,
        &["--model", &models],
        async |p: &Page| {
            p.open().await?;
            p.ready().await?;
            // The selector appears with both served models, the default first.
            let names = p
                .wait_js(
                    "const s = document.getElementById('model');
                 const shown = !document.getElementById('model-control').hidden;
                 return shown && s.options.length === 2 ? [...s.options].map(o => o.value) : null",
                    Duration::from_secs(5),
                    "the model selector with two models",
                )
                .await?;
            ensure!(names == json!([default, ALT_MODEL]), "options: {names}");

            // Pick the second: the answer comes from it (its labels are prefixed).
            p.client
                .find(Locator::Css("#model"))
                .await?
                .select_by_value(ALT_MODEL)
                .await?;
            let coffee = imgclass_testkit::photo("coffee.png");
            p.upload(&[&coffee]).await?;
            let (top, chip) = answered_by(p, 1).await?;
            ensure!(
                top.starts_with(ALT_PREFIX) && is_coffee(&top[ALT_PREFIX.len()..]),
                "top label {top:?}: not {ALT_MODEL}'s espresso"
            );
            ensure!(chip.contains(ALT_MODEL), "model chip says {chip:?}");

            // The choice is remembered; switching back gets the default's answer.
            p.reload().await?;
            p.ready().await?;
            p.wait_js(
                &format!("return document.getElementById('model').value === '{ALT_MODEL}'"),
                Duration::from_secs(5),
                "the chosen model remembered across reloads",
            )
            .await?;
            p.client
                .find(Locator::Css("#model"))
                .await?
                .select_by_value(default)
                .await?;
            p.upload(&[&coffee]).await?;
            let (top, chip) = answered_by(p, 1).await?;
            ensure!(
                is_coffee(&top),
                "top label {top:?}: not {default}'s espresso"
            );
            ensure!(
                chip.contains(default) && !chip.contains(ALT_MODEL),
                "model chip says {chip:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn controls_are_labelled_and_reachable_by_keyboard() {
    browser_test("keyboard", &[], async |p: &Page| {
        p.open().await?;
        let unlabelled = p
            .js(
                "return [...document.querySelectorAll('input, select, button')]
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                && !e.textContent.trim())
                   .map(e => e.outerHTML.slice(0, 80))",
            )
            .await?;
        ensure!(
            unlabelled.as_array().is_some_and(Vec::is_empty),
            "controls without a label: {unlabelled}"
        );
        // Tab from the top of the page reaches the top-k selector and the
        // file input (the drop zone), in that order.
        let mut order = Vec::new();
        for _ in 0..12 {
            p.client
                .active_element()
                .await?
                .send_keys(&Key::Tab)
                .await?;
            let id = p.js("return document.activeElement.id").await?;
            order.push(id.as_str().unwrap_or_default().to_string());
            if order.last().is_some_and(|id| id == "file-input") {
                break;
            }
        }
        let k = order.iter().position(|id| id == "top-k");
        let file = order.iter().position(|id| id == "file-input");
        ensure!(
            k.is_some() && file.is_some() && k < file,
            "tab order: {order:?}"
        );
        let ring = p
            .js("return getComputedStyle(document.getElementById('dropzone')).outlineStyle")
            .await?;
        ensure!(ring != "none", "the drop zone shows keyboard focus");
        // Changing the selector by keyboard is remembered.
        p.client
            .find(Locator::Css("#top-k"))
            .await?
            .select_by_value("7")
            .await?;
        p.reload().await?;
        let k = p
            .js("return document.getElementById('top-k').value")
            .await?;
        ensure!(k == "7", "top-k remembered across reloads: {k}");
        Ok(())
    });
}

#[test]
fn a_text_file_named_jpg_shows_a_readable_error_and_the_next_upload_works() {
    browser_test("text-as-jpg", &[], async |p: &Page| {
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("holiday.jpg");
        std::fs::write(&fake, "This is a text file, not a photo.\n".repeat(20))?;
        p.open().await?;
        p.upload(&[&fake]).await?;
        let error = p
            .wait_js(
                "const c = document.querySelector('.result[data-job=\"1\"][data-state=\"error\"]');
                 if (!c) return null;
                 const box = c.querySelector('[role=alert]');
                 return { text: box.innerText, badge: c.querySelector('.badge').textContent,
                          message: c.querySelector('.error-message').textContent }",
                RESULT_WAIT,
                "an error next to the text file",
            )
            .await?;
        let message = error["message"].as_str().unwrap_or_default();
        let text = error["text"].as_str().unwrap_or_default();
        eprintln!("error shown: {text:?}");
        ensure!(
            message.len() > 10 && !message.contains('{') && !message.contains("<"),
            "the error should be a readable sentence: {error}"
        );
        ensure!(
            text.contains("supported image") && text.contains("415"),
            "the error should say the file is not a supported image (415): {error}"
        );

        // The page still works.
        p.upload(&[&imgclass_testkit::photo("coffee.png")]).await?;
        let top = p.wait_done(2).await?;
        ensure!(
            is_coffee(&top),
            "after the error, coffee's top bar says {top:?}"
        );
        let still_there = p
            .js("return document.querySelector('.result[data-job=\"1\"]').dataset.state")
            .await?;
        ensure!(
            still_there == "error",
            "the error stays next to its image: {still_there}"
        );
        p.screenshot("page-error.png").await?;
        Ok(())
    });
}

#[test]
fn history_gallery_shows_uploads_after_reload_pages_and_opens_a_result() {
    browser_test("history", &[], async |p: &Page| {
        p.open().await?;
        // Fourteen distinct photos in one go (the page queues them): more
        // than one page of history.
        let photos: Vec<PathBuf> = HISTORY_PHOTOS
            .iter()
            .map(|name| imgclass_testkit::photo(name))
            .collect();
        let refs: Vec<&Path> = photos.iter().map(PathBuf::as_path).collect();
        p.upload(&refs).await?;
        for job in 1..=photos.len() {
            p.wait_done(job).await?;
        }
        let last = p
            .js(&format!(
                "return document.querySelector('.result[data-job=\"{}\"]').dataset.imageId",
                photos.len()
            ))
            .await?;
        let last = last
            .as_str()
            .context("the card carries its image id")?
            .to_string();
        ensure!(last.len() == 64, "X-Image-Id {last:?}");
        let coffee_id = p
            .js("return document.querySelector('.result[data-job=\"1\"]').dataset.imageId")
            .await?;
        let coffee_id = coffee_id.as_str().context("coffee's image id")?.to_string();

        p.reload().await?;
        let results_after_reload = p
            .js("return document.querySelectorAll('.result').length")
            .await?;
        ensure!(
            results_after_reload == 0,
            "a reload starts with no result cards"
        );
        let first = p
            .wait_js(
                "const b = document.querySelectorAll('#history-grid .history-item');
                 return b.length ? { n: b.length, first: b[0].dataset.id,
                                     more: !document.getElementById('history-more').hidden } : null",
                RESULT_WAIT,
                "the history gallery after reload",
            )
            .await?;
        ensure!(
            first["first"] == last.as_str(),
            "newest first: {first}, last upload {last}"
        );
        ensure!(
            first["n"] == 12 && first["more"] == true,
            "first page of 12 with load more: {first}"
        );

        p.client
            .find(Locator::Css("#history-more"))
            .await?
            .click()
            .await?;
        let all = p
            .wait_js(
                &format!(
                    "const n = document.querySelectorAll('#history-grid .history-item').length;
                     return n === {} ? {{ n, more: !document.getElementById('history-more').hidden }} : null",
                    photos.len()
                ),
                RESULT_WAIT,
                "every upload after load more",
            )
            .await?;
        ensure!(all["more"] == false, "no more pages after the last: {all}");

        // Thumbnails load from /api/images/{id}.
        p.wait_js(
            "return [...document.querySelectorAll('#history-grid .history-item img')]
                .slice(0, 12).every(i => i.complete && i.naturalWidth > 0)",
            RESULT_WAIT,
            "the first twelve thumbnails",
        )
        .await?;

        // Clicking the coffee shows its full stored result.
        let coffee_item = p
            .client
            .find(Locator::Css(&format!(
                "#history-grid .history-item[data-id=\"{coffee_id}\"]"
            )))
            .await?;
        let label = coffee_item
            .find(Locator::Css(".h-label"))
            .await?
            .text()
            .await?;
        ensure!(is_coffee(&label), "coffee's history label {label:?}");
        coffee_item.click().await?;
        let detail = p
            .wait_js(
                "const d = document.getElementById('detail'); const i = document.getElementById('detail-img');
                 return d.open && i.complete && i.naturalWidth > 0
                   ? { title: document.getElementById('detail-title').textContent,
                       bars: document.querySelectorAll('#detail-bars .bar-row').length,
                       meta: document.getElementById('detail-meta').innerText } : null",
                RESULT_WAIT,
                "the result dialog with its image",
            )
            .await?;
        let title = detail["title"].as_str().unwrap_or_default();
        ensure!(title.starts_with(label.as_str()), "dialog title {title:?}");
        ensure!(detail["bars"] == 5, "the stored top 5: {detail}");
        let meta = detail["meta"].as_str().unwrap_or_default();
        ensure!(
            meta.contains("coffee.png") && meta.contains("efficientnet"),
            "metadata: {meta:?}"
        );
        p.screenshot("page-history-detail.png").await?;
        p.client
            .find(Locator::Css("#detail-close"))
            .await?
            .click()
            .await?;
        p.wait_js(
            "return !document.getElementById('detail').open",
            Duration::from_secs(2),
            "the dialog to close",
        )
        .await?;
        Ok(())
    });
}

#[test]
fn dropped_and_pasted_images_are_queued_and_classified() {
    browser_test("drop-paste", &[], async |p: &Page| {
        p.open().await?;
        // Real drag-and-drop and clipboard events carrying PNG files the page
        // draws itself (WebDriver cannot drag files from the desktop).
        p.js("const png = (hue) => new Promise((resolve) => {
                const c = document.createElement('canvas'); c.width = 160; c.height = 120;
                const g = c.getContext('2d');
                g.fillStyle = `hsl(${hue} 70% 50%)`; g.fillRect(0, 0, 160, 120);
                g.fillStyle = '#fff'; g.beginPath(); g.arc(80, 60, 30, 0, 7); g.fill();
                c.toBlob((b) => resolve(new File([b], `drawn-${hue}.png`, { type: 'image/png' })), 'image/png');
              });
              window.__drop = async () => {
                const dt = new DataTransfer();
                dt.items.add(await png(20)); dt.items.add(await png(200));
                const zone = document.getElementById('dropzone');
                zone.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
                zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
                zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
                const clip = new DataTransfer();
                clip.items.add(await png(120));
                document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: clip, bubbles: true, cancelable: true }));
                window.__dropped = true;
              };
              window.__drop();")
            .await?;
        p.wait_js(
            "return window.__dropped === true",
            Duration::from_secs(5),
            "the synthetic drop and paste",
        )
        .await?;
        for job in 1..=3 {
            p.wait_done(job).await?;
        }
        let names = p
            .js("return [...document.querySelectorAll('.result .file-name')].map(e => e.textContent)")
            .await?;
        let names: Vec<&str> = names
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ensure!(names.len() == 3, "three result cards: {names:?}");
        ensure!(
            names.contains(&"drawn-20.png") && names.contains(&"drawn-200.png"),
            "dropped files: {names:?}"
        );
        ensure!(names.contains(&"drawn-120.png"), "pasted file: {names:?}");
        let dragging = p
            .js("return document.getElementById('dropzone').classList.contains('dragging')")
            .await?;
        ensure!(
            dragging == false,
            "the drop zone highlight ends with the drop"
        );
        Ok(())
    });
}

#[test]
fn stats_panel_shows_requests_after_uploads() {
    browser_test("stats", &[], async |p: &Page| {
        p.open().await?;
        let stats = p
            .js(
                "return { model: document.getElementById('stat-model').textContent,
                          engine: document.getElementById('stat-engine').textContent }",
            )
            .await?;
        ensure!(
            stats["model"] == "efficientnet-lite0",
            "model shown: {stats}"
        );
        ensure!(
            stats["engine"]
                .as_str()
                .is_some_and(|e| e.len() > 1 && e != "—"),
            "engine shown: {stats}"
        );

        p.upload(&[
            &imgclass_testkit::photo("coffee.png"),
            &imgclass_testkit::photo("chelsea.png"),
            &imgclass_testkit::photo("rocket.jpg"),
        ])
        .await?;
        for job in 1..=3 {
            p.wait_done(job).await?;
        }
        let shown = p
            .wait_js(
                "const n = parseInt(document.getElementById('stat-requests').textContent, 10);
                 const p50 = document.getElementById('stat-p50').textContent;
                 return n >= 3 && p50 !== '—' ? { n, p50,
                   rps: document.getElementById('stat-rps').textContent,
                   lines: document.querySelectorAll('#chart-rps polyline, #chart-latency polyline').length } : null",
                Duration::from_secs(5),
                "the stats panel to count the three requests",
            )
            .await?;
        eprintln!("stats panel: {shown}");
        ensure!(
            shown["rps"] != "0" && shown["rps"] != "—",
            "requests/s: {shown}"
        );
        ensure!(
            shown["lines"].as_u64() >= Some(3),
            "both charts draw lines: {shown}"
        );
        Ok(())
    });
}

#[test]
fn api_key_is_kept_in_local_storage_and_sent_as_bearer() {
    const KEY: &str = "browser-test-key-7f3a";
    browser_test("api-key", &["--api-key", KEY], async |p: &Page| {
        p.open().await?;
        // Without the key: a readable 401 next to the image, and history says why it is empty.
        p.wait_js(
            "return document.getElementById('history-status').innerText.includes('API key')",
            RESULT_WAIT,
            "history to ask for the API key",
        )
        .await?;
        p.upload(&[&imgclass_testkit::photo("coffee.png")]).await?;
        let error = p
            .wait_js(
                "const c = document.querySelector('.result[data-job=\"1\"][data-state=\"error\"]');
                 return c ? c.querySelector('[role=alert]').innerText : null",
                RESULT_WAIT,
                "the 401 error",
            )
            .await?;
        let error = error.as_str().unwrap_or_default();
        ensure!(
            error.contains("401") && error.contains("API key"),
            "401 message: {error:?}"
        );

        // Enter the key, then retry the same upload.
        p.client
            .find(Locator::Css("#settings-toggle"))
            .await?
            .click()
            .await?;
        let input = p.client.find(Locator::Css("#api-key")).await?;
        input.send_keys(KEY).await?;
        p.client
            .find(Locator::Css("#settings-form button[type=submit]"))
            .await?
            .click()
            .await?;
        let stored = p
            .js("return localStorage.getItem('imgclass.apiKey')")
            .await?;
        ensure!(stored == KEY, "key in localStorage: {stored}");
        p.client
            .find(Locator::Css(
                ".result[data-job=\"1\"] .error-actions button",
            ))
            .await?
            .click()
            .await?;
        let top = p.wait_done(1).await?;
        ensure!(
            is_coffee(&top),
            "with the key, coffee's top bar says {top:?}"
        );

        // After a reload the key is still there and history (and its
        // thumbnails, fetched with the header) load.
        p.reload().await?;
        let field = p
            .js("return document.getElementById('api-key').value")
            .await?;
        ensure!(
            field == KEY,
            "the field is filled from localStorage: {field}"
        );
        p.wait_js(
            "const i = document.querySelector('#history-grid .history-item img');
             return i && i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')",
            RESULT_WAIT,
            "a history thumbnail fetched with the key",
        )
        .await?;
        Ok(())
    });
}
