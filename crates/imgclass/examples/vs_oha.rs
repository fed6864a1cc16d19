//! Compares `imgclass loadtest` with `oha` against the same trivial local
//! endpoint, at the same concurrency, in the same run: requests/s, CPU time
//! (user + system, from `wait4`) and latency percentiles.
//!
//! Both tools run as child processes of this program so they are measured
//! the same way; the endpoint is a third process (this program again, with
//! `serve`). oha gets byte-for-byte the multipart body we send.
//!
//! ```text
//! cargo install oha --version 1.16.0 --locked --root ~/.cache/imgclass/oha
//! CARGO_TARGET_DIR=~/.cache/imgclass/target cargo run --release -p imgclass \
//!     --example vs_oha -- --oha ~/.cache/imgclass/oha/bin/oha -c 50 -n 200000 --rounds 3
//! ```
//!
//! Flags: `--oha PATH` (default `oha` on PATH), `-c N` (50), `-n N` requests
//! per run (200000), `--rounds N` (3, alternating oha / ours), `--server-threads N` (1).

#[path = "../tests/loadtest_support/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;
use imgclass::cli::loadtest::Loadtest;
use imgclass::cli::{Cli, Command as Cmd};

#[derive(Parser)]
struct Bench {
    #[arg(long, default_value = "oha")]
    oha: String,
    #[arg(short = 'c', default_value_t = 50)]
    concurrency: u32,
    #[arg(short = 'n', default_value_t = 200_000)]
    requests: u64,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
}

/// What one run of one tool measured.
struct Measured {
    requests: f64,
    rps: f64,
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("serve") => serve(argv.get(2).and_then(|t| t.parse().ok()).unwrap_or(1)),
        Some("loadtest") => {
            let argv = std::iter::once("imgclass".to_string()).chain(argv[1..].iter().cloned());
            let Cmd::Loadtest(args) = Cli::parse_from(argv).command else {
                unreachable!("parsed as loadtest")
            };
            let Ok(Loadtest::Run(options)) = args.plan() else {
                panic!("expected a loadtest run")
            };
            let code = imgclass_loadtest::run(options).expect("loadtest failed");
            std::process::exit(if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                1
            });
        }
        _ => compare(Bench::parse()),
    }
}

/// The endpoint: always 200 with a small JSON classification.
fn serve(threads: usize) {
    let s = server::Server::start(
        |_| server::Action::Ok,
        server::Options {
            threads,
            serial: false,
            log: false,
        },
    );
    println!("{}", s.url());
    // Run until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Waits for `pid` and returns (user, system) CPU seconds of that child.
fn wait_cpu(pid: u32) -> (f64, f64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, pid as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(usage.ru_utime), t(usage.ru_stime))
}

// The child is reaped by `wait4` in `wait_cpu`, which std cannot see.
#[allow(clippy::zombie_processes)]
fn run_child(mut cmd: Command) -> (String, f64, (f64, f64)) {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let cpu = wait_cpu(child.id());
    (out, start.elapsed().as_secs_f64(), cpu)
}

fn compare(b: Bench) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    img.save(images.join("bench.png")).unwrap();
    let payloads = imgclass_loadtest::images::load(&images, "image").unwrap();
    let body_path = dir.path().join("body.bin");
    std::fs::write(&body_path, &payloads.items[0].body).unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut srv = Command::new(&exe)
        .args(["serve", &b.server_threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(srv.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    let target = format!("{url}/classify");

    println!(
        "endpoint {target} ({} server thread(s)), body {} bytes, -c {}, -n {}, {} rounds, {} cores",
        b.server_threads,
        payloads.items[0].body.len(),
        b.concurrency,
        b.requests,
        b.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (mut oha_runs, mut our_runs) = (Vec::new(), Vec::new());
    for round in 0..b.rounds {
        // oha
        let mut cmd = Command::new(&b.oha);
        cmd.args(["--no-tui", "--output-format", "json", "-m", "POST"])
            .args([
                "-c",
                &b.concurrency.to_string(),
                "-n",
                &b.requests.to_string(),
            ])
            .args([
                "-T",
                &payloads.content_type,
                "-D",
                body_path.to_str().unwrap(),
                &target,
            ]);
        let (out, wall_s, (user_s, sys_s)) = run_child(cmd);
        let json: serde_json::Value = serde_json::from_str(&out).expect("oha JSON");
        let ok = json["statusCodeDistribution"]["200"]
            .as_f64()
            .unwrap_or(0.0);
        let m = Measured {
            requests: ok,
            rps: json["summary"]["requestsPerSec"].as_f64().unwrap(),
            wall_s,
            user_s,
            sys_s,
            p50_ms: json["latencyPercentiles"]["p50"]
                .as_f64()
                .unwrap_or(f64::NAN)
                * 1000.0,
            p99_ms: json["latencyPercentiles"]["p99"]
                .as_f64()
                .unwrap_or(f64::NAN)
                * 1000.0,
        };
        report("oha", round, &m);
        oha_runs.push(m);

        // ours
        let out_dir = dir.path().join(format!("ours-{round}"));
        let mut cmd = Command::new(&exe);
        cmd.args([
            "loadtest",
            "--url",
            &url,
            "--images",
            images.to_str().unwrap(),
        ])
        .args([
            "-c",
            &b.concurrency.to_string(),
            "-n",
            &b.requests.to_string(),
        ])
        .args(["--progress", "off", "--out", out_dir.to_str().unwrap()]);
        let (_, wall_s, (user_s, sys_s)) = run_child(cmd);
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
        let m = Measured {
            requests: s["successes"].as_f64().unwrap(),
            rps: s["requests"].as_f64().unwrap() / s["elapsed_s"].as_f64().unwrap(),
            wall_s,
            user_s,
            sys_s,
            p50_ms: s["latency_ms"]["p50"].as_f64().unwrap(),
            p99_ms: s["latency_ms"]["p99"].as_f64().unwrap(),
        };
        report("imgclass", round, &m);
        our_runs.push(m);
    }
    drop(srv.stdin.take());
    let _ = srv.wait();

    let median = |runs: &[Measured], f: fn(&Measured) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let cpu_per_10k = |m: &Measured| (m.user_s + m.sys_s) / m.requests * 10_000.0;
    let (oha_rps, our_rps) = (median(&oha_runs, |m| m.rps), median(&our_runs, |m| m.rps));
    let (oha_cpu, our_cpu) = (
        median(&oha_runs, cpu_per_10k),
        median(&our_runs, cpu_per_10k),
    );
    println!(
        "median: oha {oha_rps:.0} req/s, {oha_cpu:.3} CPU s/10k req | imgclass {our_rps:.0} req/s, {our_cpu:.3} CPU s/10k req | ratio {:.3} (throughput), {:.3} (CPU)",
        our_rps / oha_rps,
        our_cpu / oha_cpu
    );
}

fn report(tool: &str, round: u32, m: &Measured) {
    println!(
        "{tool:<9} round {round}: {:>8.0} ok, {:>8.0} req/s, wall {:>6.2} s, CPU user {:>5.2} s + sys {:>5.2} s = {:.3} s/10k req, p50 {:.3} ms, p99 {:.3} ms",
        m.requests,
        m.rps,
        m.wall_s,
        m.user_s,
        m.sys_s,
        (m.user_s + m.sys_s) / m.requests * 10_000.0,
        m.p50_ms,
        m.p99_ms
    );
}
