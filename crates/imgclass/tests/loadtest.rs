//! End-to-end tests of `imgclass loadtest` against real servers on
//! 127.0.0.1, started inside each test. Every run is bounded by a request
//! count or a duration of a few seconds.

mod loadtest_support;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use imgclass_loadtest::{ErrorKind, plots};
use loadtest_support::server::{Action, Options, Server};
use loadtest_support::{Fixture, parse, run};

/// 60 requests, 4 workers, against a server that answers 500 to every 5th
/// request, closes the connection on every 7th, and stalls past the 300 ms
/// timeout on every 11th: the CSV must say exactly what the server did.
#[test]
fn counts_match_what_the_server_did() {
    let server = Server::start(
        |n| match n {
            n if n % 5 == 0 => Action::Status(500),
            n if n % 7 == 0 => Action::Close,
            n if n % 11 == 0 => Action::Stall(Duration::from_millis(1500)),
            _ => Action::Ok,
        },
        Options::default(),
    );
    let fx = Fixture::new();
    let code = run(&format!(
        "--url {} --images {} --out {} --concurrency 4 --requests 60 --timeout 300ms --api-key s3cret --fail-under 90% --progress plain",
        server.url(),
        fx.images(),
        fx.out()
    ));
    assert_eq!(
        code,
        ExitCode::FAILURE,
        "62% success is under --fail-under 90%"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 60, "the server saw each request once");
    let mut did: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &seen {
        let key = match s.action {
            Action::Ok => "success",
            Action::Status(_) => "5xx",
            Action::Close => "closed",
            Action::Stall(_) => "timeout",
        };
        *did.entry(key).or_default() += 1;
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/classify");
        assert_eq!(s.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(s.field.as_deref(), Some("image"));
        assert!(
            s.content_type
                .as_deref()
                .unwrap()
                .starts_with("multipart/form-data; boundary=")
        );
        let filename = s.filename.as_deref().unwrap();
        assert!(fx.names.iter().any(|n| n.ends_with(filename)), "{filename}");
        let expected_type = if filename.ends_with(".png") {
            "image/png"
        } else if filename.ends_with(".bmp") {
            "image/bmp"
        } else {
            "image/jpeg"
        };
        assert_eq!(s.part_type.as_deref(), Some(expected_type), "{filename}");
    }
    assert_eq!(
        did,
        BTreeMap::from([("5xx", 12), ("closed", 7), ("success", 37), ("timeout", 4)])
    );

    let records = fx.records();
    assert_eq!(records.len(), 60, "one row per request");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    let mut got: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &records {
        *got.entry(r.outcome()).or_default() += 1;
        match r.error {
            None => {
                assert_eq!(r.http_status, Some(200));
                let top1 = r.top1.as_ref().unwrap();
                assert_eq!((top1.label.as_str(), top1.probability), ("tabby", 0.75));
                assert_eq!(r.server.total_ms, Some(2.0));
                assert_eq!(r.server.inference_ms, Some(1.25));
                assert_eq!(r.server.queue_ms, Some(0.5));
            }
            Some(ErrorKind::Status5xx) => assert_eq!(r.http_status, Some(500)),
            Some(ErrorKind::Timeout) => {
                assert!((300_000..1_000_000).contains(&r.response_time_us), "{r:?}")
            }
            Some(ErrorKind::Closed) => assert_eq!(r.http_status, None),
            other => panic!("unexpected outcome {other:?}"),
        }
        assert!(r.bytes_sent > 0);
    }
    assert_eq!(got, did, "CSV outcomes = what the server did");
    // Images are cycled: 60 requests over 5 images = 12 each.
    let mut per_file: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &records {
        *per_file.entry(&r.file).or_default() += 1;
    }
    assert_eq!(per_file.len(), 5);
    assert!(per_file.values().all(|&c| c == 12), "{per_file:?}");

    let summary = fx.summary();
    assert_eq!(summary["requests"], 60);
    assert_eq!(summary["successes"], 37);
    assert_eq!(summary["failures"], 23);
    assert_eq!(summary["outcomes"]["5xx"], 12);
    assert_eq!(summary["outcomes"]["closed"], 7);
    assert_eq!(summary["outcomes"]["timeout"], 4);
    assert_eq!(summary["http_status"]["500"], 12);
    assert_eq!(summary["http_status"]["200"], 37);
    assert_eq!(summary["server_timing_ms"]["total_ms"], 2.0);
}

/// Open loop at 200 requests/s for 5 s against a fast endpoint: 1000
/// requests, scheduled exactly every 5 ms, achieved rate within 5%.
#[test]
fn open_loop_holds_the_rate() {
    let server = Server::start(|_| Action::Ok, Options::default());
    let fx = Fixture::new();
    let code = run(&format!(
        "--url {} --images {} --out {} --rate 200 --duration 5s --progress off",
        server.url(),
        fx.images(),
        fx.out()
    ));
    assert_eq!(code, ExitCode::SUCCESS);
    let summary = fx.summary();
    assert_eq!(summary["requests"], 1000);
    assert_eq!(summary["successes"], 1000);
    assert_eq!(summary["offered_rate_rps"], 200.0);
    let achieved = summary["achieved_rate_rps"].as_f64().unwrap();
    assert!(
        (190.0..=210.0).contains(&achieved),
        "achieved {achieved} req/s"
    );
    let throughput = summary["throughput_rps"].as_f64().unwrap();
    assert!(
        (190.0..=210.0).contains(&throughput),
        "throughput {throughput} req/s"
    );
    let records = fx.records();
    for r in &records {
        assert_eq!(
            r.start_us,
            r.seq * 5000,
            "request {} is due at {} ms",
            r.seq,
            r.seq * 5
        );
    }
    assert_eq!(server.seen().len(), 1000);
}

/// Open loop at 200 requests/s for 3 s against a server that handles one
/// request at a time and stalls for 1 s on its 100th: the requests scheduled
/// during the stall must carry it (latency counted from their due time),
/// decreasing from ~1 s to ~0 as they were due later.
#[test]
fn open_loop_shows_a_stall_on_requests_behind_it() {
    let server = Server::start(
        |n| {
            if n == 100 {
                Action::Stall(Duration::from_secs(1))
            } else {
                Action::Ok
            }
        },
        Options {
            serial: true,
            ..Options::default()
        },
    );
    let fx = Fixture::new();
    let code = run(&format!(
        "--url {} --images {} --out {} --rate 200 --duration 3s --progress off",
        server.url(),
        fx.images(),
        fx.out()
    ));
    assert_eq!(code, ExitCode::SUCCESS);
    let records = fx.records();
    assert_eq!(records.len(), 600);
    assert!(records.iter().all(|r| r.success()));
    let ms = |i: usize| records[i].response_time_us as f64 / 1000.0;
    // The stalled request is the slowest one; it is (about) the 100th sent.
    let stalled = (0..records.len())
        .max_by_key(|&i| records[i].response_time_us)
        .unwrap();
    assert!((90..110).contains(&stalled), "stall on request {stalled}");
    assert!(
        ms(stalled) >= 990.0,
        "stalled request took {} ms",
        ms(stalled)
    );
    // Requests due k×5 ms after the stall began waited about 1000 − 5k ms.
    for k in [10usize, 50, 100, 150] {
        let expected = 1000.0 - 5.0 * k as f64;
        let got = ms(stalled + k);
        assert!(
            (expected - 60.0..=expected + 150.0).contains(&got),
            "request due {} ms after the stall: {got} ms, expected about {expected} ms",
            5 * k
        );
    }
    // About 100 requests (those due in the first half of the stall) > 500 ms.
    let slow = records
        .iter()
        .filter(|r| r.response_time_us > 500_000)
        .count();
    assert!((85..=115).contains(&slow), "{slow} requests over 500 ms");
    // Long after the stall, latency is back to normal.
    assert!(ms(stalled + 300) < 100.0, "{} ms", ms(stalled + 300));
    let summary = fx.summary();
    let p99 = summary["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 800.0, "p99 {p99} ms must show the stall");
}

/// Every output file exists and has the promised shape; `report` rebuilds the
/// same summary from the CSV.
#[test]
fn writes_every_output_and_report_regenerates_it() {
    let server = Server::start(
        |n| {
            if n % 5 == 0 {
                Action::Status(503)
            } else {
                Action::Ok
            }
        },
        Options::default(),
    );
    let fx = Fixture::new();
    let code = run(&format!(
        "--url {}/ --images {} --out {} -c 2 -n 25 --warmup 5 --fail-under 0.8 --progress off",
        server.url(),
        fx.images(),
        fx.out()
    ));
    assert_eq!(
        code,
        ExitCode::SUCCESS,
        "20/25 = 0.8 meets --fail-under 0.8"
    );
    assert_eq!(server.seen().len(), 30, "5 warm-up + 25 measured");
    let connections = server.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        connections, 2,
        "one per worker, kept from warm-up to measurement"
    );

    let out = &fx.out;
    for name in ["results.csv", "results.txt", "summary.json", "report.html"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for name in plots::NAMES {
        let png = image::open(out.join(format!("{name}.png"))).unwrap();
        assert_eq!(
            (png.width(), png.height()),
            (plots::WIDTH, plots::HEIGHT),
            "{name}.png"
        );
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{name}.svg"
        );
    }

    // results.txt: exactly `filename,Success|Failure,seconds`, in CSV order.
    let txt = std::fs::read_to_string(out.join("results.txt")).unwrap();
    let records = fx.records();
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(lines.len(), 25);
    assert!(txt.ends_with('\n'));
    for (line, r) in lines.iter().zip(&records) {
        let parts: Vec<&str> = line.split(',').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert!(!parts[0].contains('/'), "bare file name: {line}");
        assert_eq!(parts[0], r.file_name());
        assert_eq!(parts[1], if r.success() { "Success" } else { "Failure" });
        let secs: f64 = parts[2].parse().unwrap();
        assert!(
            parts[2].contains('.') && parts[2].chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{line}"
        );
        assert_eq!((secs * 1e6).round() as u64, r.response_time_us);
    }
    assert_eq!(lines.iter().filter(|l| l.contains(",Failure,")).count(), 5);

    // The HTML is self-contained and shows the summary's numbers.
    let summary = fx.summary();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("<script"),
        "self-contained"
    );
    assert_eq!(html.matches("<svg").count(), 4, "charts inlined");
    let lat = &summary["latency_ms"];
    for needle in [
        format!("<td>{}</td>", summary["requests"]),
        format!("<td>{}</td>", summary["successes"]),
        format!("{:.2}%", summary["success_rate"].as_f64().unwrap() * 100.0),
        format!("{:.2} req/s", summary["throughput_rps"].as_f64().unwrap()),
        format!("<td>{:.3}</td>", lat["p50"].as_f64().unwrap()),
        format!("<td>{:.3}</td>", lat["p99"].as_f64().unwrap()),
        format!("<td>{:.3}</td>", lat["max"].as_f64().unwrap()),
        "80.00% success".to_string(),
        format!("http://{}/classify", server.addr),
    ] {
        assert!(html.contains(&needle), "report.html lacks {needle:?}");
    }
    assert_eq!(summary["outcomes"]["5xx"], 5);
    assert_eq!(summary["settings"]["warmup"], 5);

    // `report` from the CSV: the same summary, fresh charts and page.
    let again = fx.tmp.path().join("again");
    let csv = out.join("results.csv");
    let code = run(&format!(
        "report {} --out {}",
        csv.to_str().unwrap(),
        again.to_str().unwrap()
    ));
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(
        loadtest_support::read_json(&again.join("summary.json")),
        summary
    );
    for name in plots::NAMES {
        assert!(again.join(format!("{name}.png")).is_file());
        assert!(again.join(format!("{name}.svg")).is_file());
    }
    assert!(again.join("report.html").is_file());
}

/// Nothing listening: every request is a `connect` failure, and without
/// --fail-under the run itself still succeeds.
#[test]
fn connect_errors_are_recorded() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fx = Fixture::new();
    let code = run(&format!(
        "--url 127.0.0.1:{} --images {} --out {} --progress off",
        port,
        fx.images(),
        fx.out()
    ));
    assert_eq!(code, ExitCode::SUCCESS);
    let records = fx.records();
    assert_eq!(records.len(), 5, "one pass over the 5 images by default");
    assert!(records.iter().all(|r| r.error == Some(ErrorKind::Connect)));
}

/// The flags parse as the binary wires them, every flag has an
/// `IMGCLASS_LOADTEST_*` variable, and mistakes are refused.
#[test]
fn command_line() {
    use clap::CommandFactory;
    let a = parse("--images imgs --rate 50 --duration 2m --fail-under 99.5%").unwrap();
    assert_eq!(a.rate, Some(50.0));
    assert_eq!(a.duration.unwrap(), Duration::from_secs(120));
    assert_eq!(a.fail_under.unwrap(), 0.995);
    assert_eq!(a.url, "http://127.0.0.1:8080");
    assert_eq!((a.path.as_str(), a.field.as_str()), ("/classify", "image"));
    assert!(a.command.is_none());

    let r = parse("report x/results.csv --out elsewhere").unwrap();
    match r.command {
        Some(imgclass::cli::loadtest::LoadtestCommand::Report(r)) => {
            assert_eq!(r.csv.to_str(), Some("x/results.csv"));
            assert_eq!(r.out.unwrap().to_str(), Some("elsewhere"));
        }
        other => panic!("{other:?}"),
    }

    assert!(parse("").is_err(), "--images is required for a run");
    assert!(parse("--images i --fail-under 95").is_err());
    assert!(parse("--images i --rate 0").is_err());
    assert!(parse("--images i --timeout soon").is_err());
    assert!(parse("--images i -c 0").is_err());

    let cmd = imgclass::cli::Cli::command();
    let loadtest = cmd.find_subcommand("loadtest").unwrap();
    let mut checked = 0;
    for arg in loadtest.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") || arg.is_positional() {
            continue;
        }
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{id} has no env var"));
        let expected = format!("IMGCLASS_LOADTEST_{}", id.to_ascii_uppercase());
        assert_eq!(env.to_str(), Some(expected.as_str()));
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
}
