//! `report.html`: one self-contained page (no scripts, no external files; the
//! charts are inlined as SVG) that can be mailed or attached to a ticket.
//!
//! Number formats: latencies in ms with 3 decimals, rates with 2 decimals,
//! the success rate as a percentage with 2 decimals.

use std::fmt::Write as _;

use crate::plots::Chart;
use crate::stats::{Latency, Summary};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What each chart shows, under its heading.
fn caption(name: &str) -> &'static str {
    match name {
        "response_times" => {
            "Each request in the order it was scheduled; failures are red crosses. Large runs show per-bucket mean and maximum."
        }
        "success_failure_pie" => "Share of requests that got a complete 2xx answer.",
        "latency_histogram" => {
            "Response times of successful requests; the slowest 0.1% fall into the last bar. Lines mark p50 and p99."
        }
        "throughput" => {
            "Requests completed in each second of the run, successes and failures stacked."
        }
        _ => "",
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1060px;color:#222;padding:0 1rem}\
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .8rem;border-bottom:1px solid #eee;text-align:right}\
td:first-child,th:first-child{text-align:left}code{background:#f4f4f4;padding:.2rem .4rem;border-radius:3px;word-break:break-all}\
figure{margin:1.5rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.9rem}\
.ok{color:#2ea043}.bad{color:#da3633}footer{margin-top:3rem;color:#888;font-size:.8rem}";

/// Renders the page.
pub fn render(summary: &Summary, charts: &[Chart], generated_at: &str) -> String {
    let s = summary;
    let mut h =
        String::with_capacity(64 * 1024 + charts.iter().map(|c| c.svg.len()).sum::<usize>());
    let target = s.settings.as_ref().map(|st| st.url.as_str()).unwrap_or("");
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>imgclass load test {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>imgclass load test</h1>\n<p>{} &middot; generated {}</p>\n",
        escape(target),
        escape(target),
        escape(generated_at)
    );
    if let Some(cmd) = &s.command {
        let _ = writeln!(h, "<p>Command: <code>{}</code></p>", escape(cmd));
    }

    let rate_class = if s.failures == 0 { "ok" } else { "bad" };
    let _ = writeln!(h, "<h2>Summary</h2>\n<table id=\"summary\">");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(h, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
    };
    row("Requests", s.requests.to_string());
    row("Successes", s.successes.to_string());
    row("Failures", s.failures.to_string());
    row(
        "Success rate",
        format!(
            "<span class=\"{rate_class}\">{:.2}%</span>",
            s.success_rate * 100.0
        ),
    );
    row("Elapsed", format!("{:.3} s", s.elapsed_s));
    row(
        "Throughput (successful requests)",
        format!("{:.2} req/s", s.throughput_rps),
    );
    row(
        "Achieved request rate",
        format!("{:.2} req/s", s.achieved_rate_rps),
    );
    row(
        "Offered rate",
        s.offered_rate_rps
            .map_or("closed loop".to_string(), |r| format!("{r:.2} req/s")),
    );
    row("Bytes sent", s.bytes_sent.to_string());
    row("Bytes received", s.bytes_received.to_string());
    let _ = writeln!(h, "</table>");

    let _ = writeln!(
        h,
        "<h2>Latency (ms)</h2>\n<table id=\"latency\">\n<tr><th></th><th>count</th><th>min</th><th>mean</th>\
         <th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>stdev</th></tr>"
    );
    for (name, l) in [
        ("successful", &s.latency_ms),
        ("all requests", &s.latency_all_ms),
    ] {
        let Latency {
            count,
            min,
            mean,
            stdev,
            p50,
            p90,
            p95,
            p99,
            p99_9,
            max,
        } = *l;
        let _ = writeln!(
            h,
            "<tr><th>{name}</th><td>{count}</td><td>{min:.3}</td><td>{mean:.3}</td><td>{p50:.3}</td>\
             <td>{p90:.3}</td><td>{p95:.3}</td><td>{p99:.3}</td><td>{p99_9:.3}</td><td>{max:.3}</td><td>{stdev:.3}</td></tr>"
        );
    }
    let _ = writeln!(h, "</table>");

    let _ = writeln!(
        h,
        "<h2>Outcomes</h2>\n<table id=\"outcomes\"><tr><th>outcome</th><th>requests</th></tr>"
    );
    for (k, v) in &s.outcomes {
        let _ = writeln!(h, "<tr><td>{}</td><td>{v}</td></tr>", escape(k));
    }
    let _ = writeln!(
        h,
        "</table>\n<table id=\"http-status\"><tr><th>HTTP status</th><th>responses</th></tr>"
    );
    for (k, v) in &s.http_status {
        let _ = writeln!(h, "<tr><td>{}</td><td>{v}</td></tr>", escape(k));
    }
    let _ = writeln!(h, "</table>");

    let st = &s.server_timing_ms;
    if st.queue_ms.is_some() || st.inference_ms.is_some() || st.total_ms.is_some() {
        let f = |v: Option<f64>| v.map_or("&ndash;".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            h,
            "<h2>Server timing (mean ms, from response headers)</h2>\n<table id=\"server-timing\">\
             <tr><th>X-Queue-Time</th><td>{}</td></tr><tr><th>X-Inference-Time</th><td>{}</td></tr>\
             <tr><th>X-Total-Time</th><td>{}</td></tr></table>",
            f(st.queue_ms),
            f(st.inference_ms),
            f(st.total_ms)
        );
    }

    let _ = writeln!(h, "<h2>Charts</h2>");
    for c in charts {
        let _ = writeln!(
            h,
            "<figure id=\"{}\">\n<h3>{}</h3>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            c.name,
            escape(c.title),
            strip_xml_prolog(&c.svg),
            caption(c.name)
        );
    }

    if let Some(st) = &s.settings {
        let _ = writeln!(h, "<h2>Settings</h2>\n<table id=\"settings\">");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(h, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        row("URL", st.url.clone());
        row("Multipart field", st.field.clone());
        row(
            "Images",
            format!("{} ({} files)", st.images, st.image_count),
        );
        row(
            "Load model",
            match st.mode.as_str() {
                "open" => "open loop (constant arrival rate)".into(),
                _ => "closed loop".into(),
            },
        );
        row(
            if st.mode == "open" {
                "Max in flight"
            } else {
                "Concurrency"
            },
            st.concurrency.to_string(),
        );
        row("Rate", opt(st.rate.map(|r| format!("{r} req/s"))));
        row("Requests", opt(st.requests.map(|r| r.to_string())));
        row("Duration", opt(st.duration_s.map(|d| format!("{d} s"))));
        row("Warm-up requests", st.warmup.to_string());
        row("Timeout", format!("{} s", st.timeout_s));
        row("API key", if st.api_key { "set" } else { "none" }.into());
        row(
            "Fail under",
            opt(st.fail_under.map(|f| format!("{:.2}% success", f * 100.0))),
        );
        let _ = writeln!(h, "</table>");
    }
    let _ = write!(
        h,
        "<footer>{} {}</footer>\n</body>\n</html>\n",
        escape(&s.tool),
        escape(&s.version)
    );
    h
}

/// SVG documents may start with an XML declaration, which is not allowed
/// inside HTML.
fn strip_xml_prolog(svg: &str) -> &str {
    match svg.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, after)| after.trim_start()),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            strip_xml_prolog("<?xml version=\"1.0\"?>\n<svg/>"),
            "<svg/>"
        );
        assert_eq!(strip_xml_prolog("<svg/>"), "<svg/>");
    }
}
