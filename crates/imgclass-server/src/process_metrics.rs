//! The process's own figures, named as every Prometheus client library
//! names them (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! …), and `imgclass_build_info`, appended to `/metrics`.
//!
//! The figures come from `/proc/self` through the `procfs` crate (the one
//! the Rust Prometheus client uses). A figure that cannot be read is left
//! out of that scrape, as the client libraries do, rather than reported as
//! a made-up value. Off Linux only the build info is rendered.

use std::fmt::Write as _;

/// `imgclass_build_info` labels: the crate version, the compiler and the
/// target triple, captured by build.rs.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const RUSTC: &str = env!("IMGCLASS_BUILD_RUSTC");
const TARGET: &str = env!("IMGCLASS_BUILD_TARGET");

/// Appends the `process_*` series and `imgclass_build_info` to `out`
/// (Prometheus text format 0.0.4).
pub(crate) fn render(out: &mut String) {
    #[cfg(target_os = "linux")]
    linux::render(out);
    family(
        out,
        "imgclass_build_info",
        "gauge",
        "A metric with a constant '1' value labelled by the version, compiler and target imgclass was built from.",
    );
    let _ = writeln!(
        out,
        "imgclass_build_info{{version=\"{VERSION}\",rustc=\"{RUSTC}\",target=\"{TARGET}\"}} 1"
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt::Write as _;
    use std::sync::OnceLock;

    use procfs::process::{LimitValue, Process};

    use super::family;

    /// Writes one unlabelled series, header and sample.
    fn series(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }

    /// What the client libraries report for an unlimited resource limit.
    fn limit(value: LimitValue) -> f64 {
        match value {
            LimitValue::Value(v) => v as f64,
            LimitValue::Unlimited => u64::MAX as f64,
        }
    }

    pub(super) fn render(out: &mut String) {
        let Ok(me) = Process::myself() else {
            return;
        };
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(stat) = me.stat() {
            series(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (stat.utime + stat.stime) as f64 / ticks,
            );
            series(
                out,
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                stat.vsize as f64,
            );
            series(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                (stat.rss * procfs::page_size()) as f64,
            );
            series(
                out,
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                stat.num_threads as f64,
            );
            // The start never changes: read the boot time once.
            static START: OnceLock<Option<f64>> = OnceLock::new();
            let start = START.get_or_init(|| {
                procfs::boot_time_secs()
                    .ok()
                    .map(|boot| boot as f64 + stat.starttime as f64 / ticks)
            });
            if let Some(start) = start {
                series(
                    out,
                    "process_start_time_seconds",
                    "gauge",
                    "Start time of the process since unix epoch in seconds.",
                    *start,
                );
            }
        }
        if let Ok(open) = me.fd_count() {
            series(
                out,
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                open as f64,
            );
        }
        if let Ok(limits) = me.limits() {
            series(
                out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                limit(limits.max_open_files.soft_limit),
            );
            series(
                out,
                "process_virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                limit(limits.max_address_space.soft_limit),
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::*;

    /// Sample name → value, and name → TYPE, of rendered text.
    fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let (mut samples, mut types) = (BTreeMap::new(), BTreeMap::new());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let (name, value) = line.rsplit_once(' ').unwrap();
                let name = name.split('{').next().unwrap();
                samples.insert(name.to_string(), value.parse().unwrap());
            }
        }
        (samples, types)
    }

    fn rendered() -> BTreeMap<String, f64> {
        let mut out = String::new();
        render(&mut out);
        parse(&out).0
    }

    /// A field of /proc/self/status in kB, e.g. `VmRSS`.
    fn status_kb(field: &str) -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    }

    #[test]
    fn every_client_library_series_is_rendered_with_its_type() {
        let mut out = String::new();
        render(&mut out);
        let (samples, types) = parse(&out);
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_virtual_memory_max_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("process_threads", "gauge"),
            ("imgclass_build_info", "gauge"),
        ] {
            assert_eq!(types.get(name).map(String::as_str), Some(kind), "{out}");
            assert!(samples.contains_key(name), "{name} has no sample:\n{out}");
        }
        assert!(
            out.contains(&format!(
                "imgclass_build_info{{version=\"{}\",rustc=\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{out}"
        );
        // Label values need no escaping.
        for v in [RUSTC, TARGET, VERSION] {
            assert!(!v.is_empty() && !v.contains(['"', '\\', '\n']), "{v:?}");
        }
    }

    #[test]
    fn memory_agrees_with_proc_status() {
        // Touch 64 MiB so the resident set is well above noise.
        let block = vec![1u8; 64 << 20];
        let m = rendered();
        let rss = status_kb("VmRSS") * 1024.0;
        let vsize = status_kb("VmSize") * 1024.0;
        let ours = m["process_resident_memory_bytes"];
        assert!(
            ours >= 64.0 * 1024.0 * 1024.0,
            "RSS {ours} below the 64 MiB held"
        );
        // Other tests run in parallel threads: allow 32 MiB of drift.
        assert!(
            (ours - rss).abs() < 32.0 * 1024.0 * 1024.0,
            "{ours} vs {rss}"
        );
        let ours = m["process_virtual_memory_bytes"];
        assert!(
            ours >= m["process_resident_memory_bytes"],
            "virtual {ours} < resident"
        );
        assert!(
            (ours - vsize).abs() < 256.0 * 1024.0 * 1024.0,
            "{ours} vs {vsize}"
        );
        std::hint::black_box(&block);
    }

    #[test]
    fn file_descriptors_agree_with_proc() {
        let dir = tempfile::tempdir().unwrap();
        let held: Vec<std::fs::File> = (0..32)
            .map(|i| std::fs::File::create(dir.path().join(i.to_string())).unwrap())
            .collect();
        let m = rendered();
        let listed = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
        let open = m["process_open_fds"];
        assert!(open >= 32.0 + 3.0, "{open} open fds with 32 held");
        assert!((open - listed).abs() <= 16.0, "{open} vs {listed} listed");
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let soft: f64 = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(m["process_max_fds"], soft);
        assert!(m["process_max_fds"] >= open);
        drop(held);
    }

    /// The process's CPU clock (CLOCK_PROCESS_CPUTIME_ID), in seconds: the
    /// kernel's figure that /proc's utime + stime are derived from.
    fn cpu_clock(id: rustix::time::ClockId) -> f64 {
        let t = rustix::time::clock_gettime(id);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    #[test]
    fn cpu_time_agrees_with_the_cpu_clock_and_start_time_is_this_process() {
        use rustix::time::ClockId::{ProcessCPUTime, ThreadCPUTime};
        let before = rendered();
        // Burn 300 ms of this thread's CPU time (however busy the machine).
        let spin = cpu_clock(ThreadCPUTime);
        let wall = Instant::now();
        let mut x = 0u64;
        while cpu_clock(ThreadCPUTime) - spin < 0.3 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            assert!(
                wall.elapsed() < Duration::from_secs(60),
                "no CPU time for a minute"
            );
        }
        let after = rendered();
        let clock = cpu_clock(ProcessCPUTime);
        let ours = after["process_cpu_seconds_total"];
        let grew = ours - before["process_cpu_seconds_total"];
        assert!(
            grew >= 0.28,
            "300 ms of spinning added {grew} s of CPU time"
        );
        // /proc counts in clock ticks (10 ms): a few ticks apart at most.
        assert!(
            ours <= clock + 0.01 && ours > clock - 0.1,
            "process_cpu_seconds_total {ours} vs the CPU clock {clock}"
        );

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = after["process_start_time_seconds"];
        // The test binary started less than 10 minutes ago (boot time has
        // one-second resolution).
        assert!(
            start <= now + 1.0 && start > now - 600.0,
            "start {start}, now {now}"
        );
        assert_eq!(start, before["process_start_time_seconds"]);
        assert!(after["process_threads"] >= 1.0);
    }

    /// promtool (Debian's `prometheus` package, scripts/install-deps.sh)
    /// accepts the text, lints included.
    #[test]
    fn promtool_accepts_the_text() {
        let mut out = String::new();
        render(&mut out);
        imgclass_testkit::deploy::check_metrics(&out)
            .unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{out}"));
    }
}
