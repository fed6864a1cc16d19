//! Monitoring as operators run it, with the real parts.
//!
//! - promtool (Debian's `prometheus` package) checks the shipped
//!   configuration and alert rules, and runs the rules' unit tests
//!   (`deploy/prometheus/rule-tests.yml`).
//! - A real Prometheus, started here on loopback twice — once with
//!   `prometheus.yml` (compose) and once with `prometheus-k8s.yml`
//!   (Kubernetes), each rewritten only where this machine differs (targets,
//!   1 s intervals instead of 15 s, and the shipped `alerts.yml` with every
//!   `for:` divided by the same 15, so that it spans as many scrapes and
//!   evaluations as shipped; the unit tests check the shipped `for:`s) —
//!   scrapes two real `imgclass serve` replicas under `imgclass loadtest`
//!   traffic. Every panel query of the shipped Grafana dashboard returns
//!   data; killing one replica makes `ImgclassReplicaDown` go pending at
//!   once and fire after its (scaled) `for:`, for that replica only.
//! - The page's deployment-wide live figures: the real nginx gateway
//!   (deploy/nginx) in front of both replicas, which know the Prometheus:
//!   `/api/stats/deployment` through the gateway is 502 before Prometheus
//!   runs, then both replicas' figures summed, then one replica up of two
//!   after the kill.
//! - A replica's `/metrics` passes `promtool check metrics`.
//! - The compose file with the monitoring services validates and its parts
//!   agree (service names, ports, mounts); the Kubernetes monitoring
//!   component renders and passes the strict schema check, and its
//!   ConfigMaps are the shipped files.
//!
//! Debian's Prometheus is built without Kubernetes service discovery, so
//! for the Kubernetes configuration `kubernetes_sd_configs` is replaced by
//! a file listing what pod discovery reports for the ml pods (their
//! annotations as deploy/k8s/base writes them): the relabelling that turns
//! annotations into targets runs for real.
//!
//! Required: Debian's `prometheus` (prometheus + promtool; or
//! IMGCLASS_PROMETHEUS / IMGCLASS_PROMTOOL), kubectl or kustomize, PyPI's
//! kubernetes-validate, docker-compose — all from scripts/install-deps.sh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgclass::cli::values::parse_duration;
use imgclass_testkit::{self as kit, deploy, eventually};
use serde::Deserialize as _;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- files --

fn repo() -> PathBuf {
    imgclass_testkit::deploy::repo_root()
}

fn shipped(path: &str) -> PathBuf {
    repo().join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml_ng::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Multi-document YAML (rendered manifests).
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn write_yaml(path: &Path, value: &Value) {
    std::fs::write(path, serde_yaml_ng::to_string(value).unwrap()).unwrap();
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&shipped("deploy/grafana/dashboards/imgclass.json")))
        .expect("the dashboard is JSON")
}

/// The alerting rules of the shipped alerts.yml.
fn alert_rules() -> Vec<Value> {
    let rules = yaml_file(&shipped("deploy/prometheus/alerts.yml"));
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// The `for:` of one shipped alert.
fn alert_for(name: &str) -> Duration {
    let rule = alert_rules()
        .into_iter()
        .find(|r| r["alert"] == name)
        .unwrap_or_else(|| panic!("no alert {name} in alerts.yml"));
    parse_duration(rule["for"].as_str().unwrap()).unwrap()
}

// ---------------------------------------------------------------- tools --

/// Debian's `prometheus` (or `$IMGCLASS_PROMETHEUS`).
fn prometheus_bin() -> PathBuf {
    std::env::var_os("IMGCLASS_PROMETHEUS")
        .map(PathBuf::from)
        .or_else(|| deploy::on_path("prometheus"))
        .unwrap_or_else(|| {
            panic!(
                "`prometheus` is required by this test: install Debian's `prometheus` package \
                 (scripts/install-deps.sh) or set IMGCLASS_PROMETHEUS"
            )
        })
}

/// `promtool ARGS PATHS`: Ok(output) when it succeeds, else Err(output).
fn promtool(args: &[&str], paths: &[&Path]) -> Result<String, String> {
    let out = deploy::run(Command::new(deploy::promtool()).args(args).args(paths));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A child process, its output in a log file, killed when dropped.
struct Running {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Running {
    fn start(cmd: &mut Command, name: &str, dir: &Path) -> Running {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Running {
            child,
            name: name.to_string(),
            log,
        }
    }

    /// Err with the end of its log when it has exited.
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait().unwrap() {
            None => Ok(()),
            Some(status) => {
                let log = read(&self.log);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                Err(format!(
                    "{} exited ({status}); its log ends with:\n{}",
                    self.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ))
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----------------------------------------------------------------- http --

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build(),
    )
}

/// GET: (status, body), or the transport error.
fn get(url: &str, query: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut request = agent().get(url);
    for (k, v) in query {
        request = request.query(*k, *v);
    }
    let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((status, body))
}

/// A Prometheus HTTP API call: its `data`, or why not.
fn api(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
    let (status, body) = get(&format!("{base}{path}"), query)?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
    if status == 200 && v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!("{path} {query:?}: {status} {body}"))
    }
}

/// An instant query's result vector.
fn query(base: &str, expr: &str) -> Result<Vec<Value>, String> {
    let data = api(base, "/api/v1/query", &[("query", expr)])?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

// ------------------------------------------------------------ processes --

/// One `imgclass serve` replica on a loopback port, with the real model,
/// whose deployment figures come from the Prometheus at `prometheus`.
fn start_replica(dir: &Path, name: &str, prometheus: &str) -> (Running, String) {
    let port = kit::free_port();
    let images = dir.join(format!("{name}-images"));
    let mut cmd = kit::replica_command(Path::new(env!("CARGO_BIN_EXE_imgclass")), port, &images);
    cmd.env("RUST_LOG", "warn")
        .env("IMGCLASS_PROMETHEUS_URL", prometheus);
    (
        Running::start(&mut cmd, name, dir),
        format!("127.0.0.1:{port}"),
    )
}

fn wait_ready(proc: &mut Running, url: &str) {
    eventually(Duration::from_secs(90), Duration::from_millis(100), || {
        proc.alive()?;
        match get(url, &[]) {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{} not ready at {url}: {other:?}", proc.name)),
        }
    })
}

/// `imgclass loadtest` at a steady rate against one replica, with the real
/// photos, until killed.
fn start_traffic(dir: &Path, name: &str, target: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgclass"));
    cmd.arg("loadtest")
        .arg("--url")
        .arg(format!("http://{target}"))
        .arg("--images")
        .arg(kit::photos_dir())
        .args(["--rate", "10", "--duration", "10m", "--timeout", "10s"])
        .args(["--progress", "off", "--out"])
        .arg(dir.join(name));
    Running::start(&mut cmd, name, dir)
}

/// A Prometheus on loopback with `config`, its data in `dir`.
fn start_prometheus(dir: &Path, name: &str, config: &Value, port: u16) -> (Running, String) {
    let file = dir.join(format!("{name}.yml"));
    write_yaml(&file, config);
    let data = dir.join(format!("{name}-data"));
    let mut cmd = Command::new(prometheus_bin());
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=1h");
    let mut proc = Running::start(&mut cmd, name, dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&mut proc, &format!("{base}/-/ready"));
    (proc, base)
}

/// The shipped nginx gateway in front of `upstreams`, on a loopback port.
fn start_gateway(dir: &Path, upstreams: &[String]) -> (Running, String) {
    let port = kit::free_port();
    let upstream_conf: String = upstreams
        .iter()
        .map(|u| format!("server {u} max_fails=3 fail_timeout=10s;\n"))
        .collect();
    let prefix = deploy::nginx_prefix(dir, &upstream_conf, &format!("listen 127.0.0.1:{port};\n"));
    let mut cmd = Command::new(deploy::nginx_bin());
    cmd.arg("-p").arg(format!("{}/", prefix.display())).args([
        "-c",
        "conf/nginx.conf",
        "-g",
        "worker_processes 1;",
    ]);
    let mut proc = Running::start(&mut cmd, "nginx", dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&mut proc, &format!("{base}/healthz"));
    (proc, base)
}

/// `GET url` as JSON, expecting 200.
fn get_json(url: &str) -> Result<Value, String> {
    match get(url, &[])? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("{url}: {e}: {body}")),
        (status, body) => Err(format!("{url}: {status} {body}")),
    }
}

// ------------------------------------------- configurations for the test --

/// A scrape job of a configuration, by name.
fn job<'a>(config: &'a mut Value, name: &str) -> &'a mut Map<String, Value> {
    config["scrape_configs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["job_name"] == name)
        .unwrap_or_else(|| panic!("no scrape job {name}"))
        .as_object_mut()
        .unwrap()
}

/// How much faster the test's Prometheus runs than the shipped one: the
/// shipped scrape interval over the test's 1 s.
fn speedup() -> u32 {
    let config = yaml_file(&shipped("deploy/prometheus/prometheus.yml"));
    let interval = parse_duration(config["global"]["scrape_interval"].as_str().unwrap()).unwrap();
    (interval.as_secs_f64() / TEST_INTERVAL.as_secs_f64()).round() as u32
}

/// The test's scrape and evaluation interval.
const TEST_INTERVAL: Duration = Duration::from_secs(1);

/// A shipped `for:` on the test's clock: divided by [`speedup`], so that
/// it spans as many scrapes and evaluations as the shipped one does.
fn scaled(for_: Duration) -> Duration {
    (for_ / speedup()).max(TEST_INTERVAL)
}

/// The shipped alerts.yml with every `for:` [`scaled`]; expressions,
/// labels and annotations as shipped.
fn alerts_for_this_machine(dir: &Path) -> PathBuf {
    let mut rules = yaml_file(&shipped("deploy/prometheus/alerts.yml"));
    for group in rules["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            if let Some(for_) = rule.get("for").and_then(Value::as_str) {
                let d = scaled(parse_duration(for_).unwrap());
                rule["for"] = json!(format!("{}ms", d.as_millis()));
            }
        }
    }
    let file = dir.join("alerts-scaled.yml");
    write_yaml(&file, &rules);
    file
}

/// What every test configuration changes in a shipped one: 1 s intervals
/// instead of 15 s, the shipped rules with their `for:` scaled alike
/// ([`alerts_for_this_machine`]), and Prometheus scraping itself on its
/// test port. Jobs and relabelling stay.
fn for_this_machine(mut config: Value, dir: &Path, self_port: u16) -> Value {
    assert_eq!(
        config["rule_files"],
        json!(["alerts.yml"]),
        "the shipped configuration loads alerts.yml beside it"
    );
    config["rule_files"] = json!([alerts_for_this_machine(dir)]);
    let global = config["global"].as_object_mut().unwrap();
    let interval = format!("{}s", TEST_INTERVAL.as_secs());
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        global.insert(key.into(), json!(interval));
    }
    job(&mut config, "prometheus").insert(
        "static_configs".into(),
        json!([{ "targets": [format!("127.0.0.1:{self_port}")] }]),
    );
    config
}

/// deploy/prometheus/prometheus.yml with the replicas for the `ml` name.
fn compose_config(replicas: &[String], dir: &Path, self_port: u16) -> Value {
    let mut config = for_this_machine(
        yaml_file(&shipped("deploy/prometheus/prometheus.yml")),
        dir,
        self_port,
    );
    let imgclass = job(&mut config, "imgclass");
    let dns = imgclass
        .remove("dns_sd_configs")
        .expect("the compose job discovers replicas by DNS");
    assert_eq!(dns[0]["names"], json!(["ml"]), "{dns}");
    imgclass.insert("static_configs".into(), json!([{ "targets": replicas }]));
    config
}

/// deploy/prometheus/prometheus-k8s.yml with pod discovery read from
/// `pods` (a file_sd file) instead of the Kubernetes API.
fn k8s_config(pods: &Path, dir: &Path, self_port: u16) -> Value {
    let mut config = for_this_machine(
        yaml_file(&shipped("deploy/prometheus/prometheus-k8s.yml")),
        dir,
        self_port,
    );
    let imgclass = job(&mut config, "imgclass");
    let sd = imgclass
        .remove("kubernetes_sd_configs")
        .expect("the Kubernetes job discovers pods");
    assert_eq!(
        sd,
        json!([{ "role": "pod", "namespaces": { "own_namespace": true } }]),
        "pod discovery in Prometheus's own namespace (what the component's Role allows)"
    );
    imgclass.insert(
        "file_sd_configs".into(),
        json!([{ "files": [pods], "refresh_interval": "1s" }]),
    );
    config
}

/// The ml pods' annotations and container port, as deploy/k8s/base has them.
fn ml_pod_template() -> (Map<String, Value>, u64) {
    let ml = yaml_file(&shipped("deploy/k8s/base/ml-deployment.yaml"));
    let template = &ml["spec"]["template"];
    let annotations = template["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .clone();
    let port = template["spec"]["containers"][0]["ports"][0]["containerPort"]
        .as_u64()
        .unwrap();
    (annotations, port)
}

/// What Prometheus's Kubernetes pod discovery reports for one pod with one
/// container port, as a file_sd target group (the `__meta_kubernetes_*`
/// labels of the Prometheus documentation).
fn discovered_pod(name: &str, phase: &str, annotations: &Map<String, Value>, port: u64) -> Value {
    let mut labels = Map::new();
    let meta = |k: &str| {
        format!(
            "__meta_kubernetes_pod_annotation_{}",
            k.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    };
    for (k, v) in annotations {
        labels.insert(meta(k), v.clone());
    }
    for (k, v) in [
        ("__meta_kubernetes_namespace", "imgclass"),
        ("__meta_kubernetes_pod_name", name),
        ("__meta_kubernetes_pod_ip", "127.0.0.1"),
        ("__meta_kubernetes_pod_phase", phase),
        ("__meta_kubernetes_pod_node_name", "node-1"),
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_component",
            name.split('-').next().unwrap(),
        ),
    ] {
        labels.insert(k.into(), json!(v));
    }
    json!({ "targets": [format!("127.0.0.1:{port}")], "labels": labels })
}

// ------------------------------------------------------------ dashboard --

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// A panel query as Grafana sends it to Prometheus: its variables and
/// macros replaced ($instance = All).
fn as_grafana_sends(expr: &str) -> String {
    let text = expr
        .replace("$__rate_interval", "10s")
        .replace("$__range", "1m")
        .replace("$instance", ".*");
    assert!(
        !text.contains('$'),
        "a dashboard query uses a variable the test does not know: {expr}"
    );
    text
}

/// (panel title, query) for every query of every panel.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

// ---------------------------------------------------------------- tests --

/// The shipped files pass promtool: both configurations, the rules, and
/// the rules' unit tests; every alert has `for:`, a severity, a one-line
/// description, and a unit test that makes it fire.
#[test]
fn promtool_accepts_the_shipped_configuration_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = shipped("deploy/prometheus/alerts.yml");
    let said = promtool(&["check", "rules"], &[&rules]).unwrap_or_else(|e| panic!("{e}"));
    let alerts = alert_rules();
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{said}"
    );
    promtool(
        &["check", "config"],
        &[&shipped("deploy/prometheus/prometheus.yml")],
    )
    .unwrap_or_else(|e| panic!("prometheus.yml: {e}"));
    // Debian's promtool has no Kubernetes discovery: check the rest of the
    // Kubernetes configuration with file discovery in its place.
    let copy = dir.path().join("prometheus-k8s.yml");
    write_yaml(
        &copy,
        &k8s_config(&dir.path().join("pods.json"), dir.path(), kit::free_port()),
    );
    promtool(&["check", "config"], &[&copy]).unwrap_or_else(|e| panic!("prometheus-k8s.yml: {e}"));

    promtool(
        &["test", "rules"],
        &[&shipped("deploy/prometheus/rule-tests.yml")],
    )
    .unwrap_or_else(|e| panic!("promtool test rules deploy/prometheus/rule-tests.yml:\n{e}"));

    let tests = yaml_file(&shipped("deploy/prometheus/rule-tests.yml"));
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    let required = [
        "ImgclassReplicaDown",
        "ImgclassHighErrorRatio",
        "ImgclassHighLatencyP95",
        "ImgclassShedding",
        "ImgclassQueueSaturated",
        "ImgclassStoreFailures",
        "ImgclassMemoryGrowth",
    ];
    for rule in &alerts {
        let name = rule["alert"].as_str().unwrap();
        let for_ = rule["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no for:"));
        parse_duration(for_).unwrap();
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: severity"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no {key}"));
            assert!(!text.is_empty() && !text.contains('\n'), "{name}: {key}");
        }
        assert!(fired.contains(name), "no unit test makes {name} fire");
        assert!(
            rule["expr"].as_str().unwrap().contains("job=\"imgclass\""),
            "{name} selects the replicas' job"
        );
    }
    let names: BTreeSet<&str> = alerts
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for name in required {
        assert!(names.contains(name), "alerts.yml lacks {name}");
    }

    // The checker itself: a broken expression fails.
    let broken = dir.path().join("alerts.yml");
    std::fs::write(
        &broken,
        read(&rules).replacen("up{job=\"imgclass\"} == 0", "up{job=\"imgclass\" == 0", 1),
    )
    .unwrap();
    let err = promtool(&["check", "rules"], &[&broken]).expect_err("a broken expression");
    assert!(
        err.contains("ImgclassReplicaDown") || err.contains("parse"),
        "{err}"
    );
}

/// The dashboard is Grafana's format: a Prometheus data-source variable
/// that every panel and query uses, unique ids, a place on the grid, and
/// the panels an operator needs.
#[test]
fn dashboard_has_the_panels_and_uses_the_datasource_variable() {
    let d = dashboard();
    assert!(d["uid"].is_string() && d["title"].is_string());
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data-source variable");
    assert_eq!(ds["name"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let mut ids = BTreeSet::new();
    let all = panels(&d);
    for p in &all {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id twice");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(t["refId"].is_string() && t["expr"].is_string(), "{title}");
        }
    }
    assert!(all.len() >= 8, "{} panels", all.len());
    let queries: Vec<String> = panel_queries(&d).into_iter().map(|(_, q)| q).collect();
    let uses = |needle: &str| queries.iter().any(|q| q.contains(needle));
    for metric in [
        "imgclass_requests_total",
        "imgclass_request_duration_seconds_bucket",
        "imgclass_queue_depth",
        "imgclass_queue_duration_seconds_bucket",
        "imgclass_batch_size",
        "imgclass_inference_duration_seconds_bucket",
        "imgclass_preprocess_duration_seconds_bucket",
        "imgclass_images_stored_total",
        "imgclass_store_failures_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(uses(metric), "no panel shows {metric}");
    }
    assert!(uses("by (route, status, model)"));
    for q in ["0.5", "0.95", "0.99"] {
        assert!(
            uses(&format!(
                "histogram_quantile({q}, sum by (le, model) (rate(imgclass_request_duration_seconds_bucket"
            )),
            "latency p{q}"
        );
    }
    // Every query is valid PromQL once Grafana has filled it in.
    for (title, q) in panel_queries(&d) {
        as_grafana_sends(&q);
        assert!(q.contains("job=\"imgclass\""), "{title}: {q}");
    }
}

/// Prometheus, twice (compose and Kubernetes configurations), scrapes two
/// real replicas under traffic; every dashboard query returns data from
/// both; a replica's metrics pass promtool; killing one replica makes
/// ImgclassReplicaDown pending at once and firing after its `for:`.
#[test]
fn prometheus_scrapes_the_replicas_and_alerts_when_one_dies() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The replicas know the (compose) Prometheus before it runs, as in a
    // deployment whose Prometheus starts later or restarts.
    let (compose_port, k8s_port) = (kit::free_port(), kit::free_port());
    let compose = format!("http://127.0.0.1:{compose_port}");
    let (mut a, a_addr) = start_replica(root, "replica-a", &compose);
    let (mut b, b_addr) = start_replica(root, "replica-b", &compose);
    wait_ready(&mut a, &format!("http://{a_addr}/readyz"));
    wait_ready(&mut b, &format!("http://{b_addr}/readyz"));
    let replicas = [a_addr.clone(), b_addr.clone()];
    eprintln!("replicas ready after {:?}", started.elapsed());
    let (_gateway, gateway) = start_gateway(root, &replicas);

    // No Prometheus yet: the deployment's figures are a clear 502 (the
    // page then shows the replica's own /api/stats), at once.
    let asked = Instant::now();
    let (status, body) = get(&format!("{gateway}/api/stats/deployment"), &[]).unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("cannot reach Prometheus"), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    // Kubernetes pod discovery as a file: the two ml pods with the base's
    // annotations (the port pointed at the test's replicas), a web pod
    // without them, and an ml pod that has ended.
    let (annotations, container_port) = ml_pod_template();
    assert_eq!(
        annotations["prometheus.io/port"],
        json!(container_port.to_string()),
        "the ml pods' scrape port is their container port"
    );
    let pod_for = |name: &str, phase: &str, addr: &str| {
        let mut a = annotations.clone();
        a.insert(
            "prometheus.io/port".into(),
            json!(addr.rsplit(':').next().unwrap()),
        );
        discovered_pod(name, phase, &a, container_port)
    };
    let pods = root.join("pods.json");
    std::fs::write(
        &pods,
        json!([
            pod_for("ml-a", "Running", &a_addr),
            pod_for("ml-b", "Running", &b_addr),
            pod_for(
                "ml-old",
                "Succeeded",
                &format!("127.0.0.1:{}", kit::free_port())
            ),
            discovered_pod("web-0", "Running", &Map::new(), 8080),
        ])
        .to_string(),
    )
    .unwrap();

    let (_prom_compose, compose_base) = start_prometheus(
        root,
        "prometheus-compose",
        &compose_config(&replicas, root, compose_port),
        compose_port,
    );
    let (_prom_k8s, k8s) = start_prometheus(
        root,
        "prometheus-k8s",
        &k8s_config(&pods, root, k8s_port),
        k8s_port,
    );
    assert_eq!(compose_base, compose);
    let proms = [("compose", compose.as_str()), ("kubernetes", k8s.as_str())];
    let _traffic_a = start_traffic(root, "loadtest-a", &a_addr);
    let mut traffic_b = start_traffic(root, "loadtest-b", &b_addr);
    eprintln!(
        "Prometheus x2 and traffic started after {:?}",
        started.elapsed()
    );

    // Both configurations find exactly the two replicas and scrape them.
    for (name, base) in proms {
        let targets = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
            let data = api(base, "/api/v1/targets", &[])?;
            let active: Vec<Value> = data["activeTargets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["labels"]["job"] == "imgclass")
                .cloned()
                .collect();
            let up = active.iter().filter(|t| t["health"] == "up").count();
            if active.len() == 2 && up == 2 {
                Ok(active)
            } else {
                Err(format!("{name}: imgclass targets {active:?}"))
            }
        });
        let instances: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["labels"]["instance"].as_str().unwrap())
            .collect();
        assert_eq!(
            instances,
            replicas
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<&str>>(),
            "{name}"
        );
        if name == "kubernetes" {
            let pods: BTreeSet<&str> = targets
                .iter()
                .map(|t| t["labels"]["pod"].as_str().unwrap())
                .collect();
            assert_eq!(pods, BTreeSet::from(["ml-a", "ml-b"]));
            for t in &targets {
                assert_eq!(t["labels"]["namespace"], "imgclass");
                assert_eq!(t["labels"]["component"], "ml");
                assert_eq!(
                    t["scrapeUrl"].as_str().unwrap().rsplit('/').next(),
                    Some("metrics")
                );
            }
        }
    }

    // Every panel query returns data, on both, once the traffic has filled
    // the rate windows.
    let d = dashboard();
    let queries = panel_queries(&d);
    for (name, base) in proms {
        eventually(Duration::from_secs(30), Duration::from_millis(500), || {
            for (title, q) in &queries {
                let result = query(base, &as_grafana_sends(q))?;
                if !result.iter().any(|s| sample_value(s).is_finite()) {
                    return Err(format!(
                        "{name}: panel {title:?}: no data for {q}: {result:?}"
                    ));
                }
            }
            Ok(())
        });
        // Per-replica panels show both replicas.
        for expr in [
            "process_resident_memory_bytes{job=\"imgclass\"}",
            "rate(process_cpu_seconds_total{job=\"imgclass\"}[10s])",
        ] {
            eventually(
                Duration::from_secs(15),
                Duration::from_millis(500),
                || match query(base, expr)?.len() {
                    2 => Ok(()),
                    n => Err(format!("{name}: {expr}: {n} series, not one per replica")),
                },
            );
        }
        // The instance variable lists both replicas.
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(def) = v["definition"].as_str() else {
                continue;
            };
            let (selector, label) = def
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(", "))
                .unwrap_or_else(|| panic!("variable {def}"));
            let values = api(
                base,
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", selector)],
            )
            .unwrap();
            for r in &replicas {
                assert!(
                    values.as_array().unwrap().contains(&json!(r)),
                    "{name}: {def}: {values}"
                );
            }
        }
    }
    eprintln!("every panel query answered after {:?}", started.elapsed());

    // The page's live panel behind the gateway: /api/stats/deployment,
    // whichever replica answers it, is both replicas together. Each replica
    // stores into a folder of its own, so once every photo has been sent
    // both counts stand still and the deployment's is exactly their sum.
    let deployment_url = format!("{gateway}/api/stats/deployment");
    // Prometheus sees a replica's requests a scrape late: the deployment's
    // requests/s approach the sum of the replicas' as its data grows.
    let stored = |v: &Value| v["images_stored"].as_u64().unwrap_or(0);
    let rps = |v: &Value| v["requests_per_second"].as_f64().unwrap();
    let (deployment, own_a, own_b) =
        eventually(Duration::from_secs(30), Duration::from_millis(500), || {
            let own_a = get_json(&format!("http://{a_addr}/api/stats"))?;
            let own_b = get_json(&format!("http://{b_addr}/api/stats"))?;
            let first = get_json(&deployment_url)?;
            let second = get_json(&deployment_url)?;
            let sum = stored(&own_a) + stored(&own_b);
            let whole = |d: &Value| {
                d["replicas"] == json!({ "discovered": 2, "up": 2, "ready": 2 }) && stored(d) == sum
            };
            let both = |d: &Value| rps(d) > 1.3 * rps(&own_a).max(rps(&own_b));
            if stored(&own_a) > 0
                && stored(&own_b) > 0
                && whole(&first)
                && whole(&second)
                && both(&second)
            {
                Ok((second, own_a, own_b))
            } else {
                Err(format!(
                    "deployment {first} / {second}, replicas {own_a} / {own_b}"
                ))
            }
        });
    eprintln!("deployment figures {deployment}; replica a {own_a}");
    assert_eq!(deployment["scope"], "deployment");
    assert_eq!(deployment["source"], compose.as_str());
    assert_eq!(deployment["ready"], true);
    assert_eq!(deployment["model"], own_a["model"]);
    assert_eq!(deployment["engine"], own_a["engine"]);
    assert!(
        rps(&deployment) < 1.2 * (rps(&own_a) + rps(&own_b)),
        "the deployment's requests/s are no more than both replicas': {deployment} vs {own_a} / {own_b}"
    );
    for p in ["p50", "p95", "p99"] {
        assert!(
            deployment["latency_ms"][p]
                .as_f64()
                .is_some_and(|ms| ms > 0.0),
            "{p}: {deployment}"
        );
    }
    let batches = |v: &Value| v["batches"].as_u64().unwrap();
    assert!(
        batches(&deployment) > batches(&own_a).max(batches(&own_b)),
        "{deployment}"
    );
    assert_eq!(
        deployment["models"][0]["name"], own_a["model"],
        "{deployment}"
    );
    assert!(rps(&deployment["models"][0]) > 0.0, "{deployment}");

    // The figures agree with /proc.
    let rss = |pid: u32| -> f64 {
        let status = read(Path::new(&format!("/proc/{pid}/status")));
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024.0
    };
    let scraped = sample_value(
        &query(
            &compose,
            &format!("process_resident_memory_bytes{{instance=\"{a_addr}\"}}"),
        )
        .unwrap()[0],
    );
    let actual = rss(a.child.id());
    assert!(
        (scraped / actual - 1.0).abs() < 0.25,
        "scraped RSS {scraped} vs /proc {actual}"
    );

    // A replica's metrics under traffic pass promtool, lints included.
    let (status, metrics) = get(&format!("http://{a_addr}/metrics"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("process_resident_memory_bytes "));
    assert!(metrics.contains("imgclass_build_info{"));
    deploy::check_metrics(&metrics)
        .unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{metrics}"));

    // Kill one replica: its alert goes pending at the next evaluations and
    // fires once its `for:` has passed, on both; nothing else alerts.
    let for_ = scaled(alert_for("ImgclassReplicaDown"));
    traffic_b.kill();
    let killed = Instant::now();
    b.kill();
    eprintln!("replica b killed after {:?}", started.elapsed());
    let mut pending: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut firing: BTreeMap<&str, (Duration, Value)> = BTreeMap::new();
    while firing.len() < proms.len() {
        let now = killed.elapsed();
        assert!(
            now < for_ + Duration::from_secs(15),
            "ImgclassReplicaDown did not fire within its for: ({for_:?}) + 15 s: pending {pending:?}, firing {firing:?}"
        );
        for (name, base) in proms {
            a.alive().unwrap();
            let alerts = api(base, "/api/v1/alerts", &[]).unwrap();
            for alert in alerts["alerts"].as_array().unwrap() {
                let labels = &alert["labels"];
                let ours = labels["alertname"] == "ImgclassReplicaDown"
                    && labels["instance"] == b_addr.as_str();
                if !ours {
                    // Another rule may be pending (a few seconds of start-up
                    // are a steep memory slope) but none may fire.
                    assert_ne!(alert["state"], "firing", "{name}: unexpected alert {alert}");
                    continue;
                }
                match alert["state"].as_str().unwrap() {
                    "pending" => {
                        pending.entry(name).or_insert(now);
                    }
                    "firing" => {
                        firing.entry(name).or_insert((now, alert.clone()));
                    }
                    other => panic!("{name}: state {other}"),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "pending {pending:?}, firing {:?} after the kill (for: {for_:?}); test took {:?}",
        firing.iter().map(|(k, v)| (*k, v.0)).collect::<Vec<_>>(),
        started.elapsed()
    );
    // The deployment's figures now count one replica up of two.
    eventually(Duration::from_secs(10), Duration::from_millis(250), || {
        let d = get_json(&deployment_url)?;
        if d["replicas"] == json!({ "discovered": 2, "up": 1, "ready": 1 }) {
            Ok(())
        } else {
            Err(format!("after the kill: {d}"))
        }
    });
    for (name, _) in proms {
        let went_pending = pending
            .get(name)
            .unwrap_or_else(|| panic!("{name}: never seen pending"));
        assert!(
            *went_pending < Duration::from_secs(10),
            "{name}: pending only {went_pending:?} after the kill"
        );
        let (fired, alert) = &firing[name];
        assert!(
            *fired >= for_,
            "{name}: fired {fired:?} after the kill, before its for: {for_:?}"
        );
        assert_eq!(alert["labels"]["severity"], "warning");
        assert!(
            alert["annotations"]["description"]
                .as_str()
                .unwrap()
                .starts_with(&b_addr),
            "{alert}"
        );
        if name == "kubernetes" {
            assert_eq!(alert["labels"]["pod"], "ml-b", "{alert}");
        }
    }
}

/// deploy/compose.yaml with the monitoring services validates, and its
/// parts agree: Prometheus reads the shipped folder and scrapes the `ml`
/// service on its port; Grafana's provisioning points at the `prometheus`
/// service and at the folder the dashboards are mounted in.
#[test]
fn compose_file_with_monitoring_validates_and_agrees_with_the_shipped_files() {
    let config = deploy::compose_config(&shipped("deploy/compose.yaml"))
        .unwrap_or_else(|e| panic!("deploy/compose.yaml is invalid:\n{e}"));
    let doc = yaml_docs(&config).remove(0);
    let services = &doc["services"];
    let (prom, grafana, ml) = (
        &services["prometheus"],
        &services["grafana"],
        &services["ml"],
    );
    for (name, s) in [("prometheus", prom), ("grafana", grafana)] {
        let image = s["image"].as_str().unwrap();
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: {image} untagged"));
        assert!(
            tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: {image}"
        );
        assert!(s["healthcheck"]["test"].is_array(), "{name} healthcheck");
        assert_eq!(s["restart"], "unless-stopped", "{name}");
        assert_eq!(s["read_only"], true, "{name}");
        let ports = serde_json::to_string(&s["ports"]).unwrap();
        assert!(
            ports.contains("127.0.0.1"),
            "{name} on loopback by default: {ports}"
        );
    }
    // Bind mounts: source (absolute after `config`) → target.
    let mounts = |s: &Value| -> BTreeMap<String, PathBuf> {
        s["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let (source, target) = match v {
                    Value::String(t) => {
                        let parts: Vec<&str> = t.split(':').collect();
                        (parts[0].to_string(), parts[1].to_string())
                    }
                    v => (
                        v["source"].as_str()?.to_string(),
                        v["target"].as_str()?.to_string(),
                    ),
                };
                source
                    .starts_with('/')
                    .then(|| (target, PathBuf::from(source)))
            })
            .collect()
    };
    let same = |a: &Path, b: &str| {
        assert_eq!(
            a.canonicalize().unwrap(),
            shipped(b).canonicalize().unwrap(),
            "{} is not {b}",
            a.display()
        )
    };
    let prom_mounts = mounts(prom);
    same(&prom_mounts["/etc/prometheus"], "deploy/prometheus");
    let command = serde_json::to_string(&prom["command"]).unwrap();
    assert!(
        command.contains("--config.file=/etc/prometheus/prometheus.yml"),
        "{command}"
    );
    let graf_mounts = mounts(grafana);
    same(
        &graf_mounts["/etc/grafana/provisioning"],
        "deploy/grafana/provisioning",
    );
    same(
        &graf_mounts["/etc/grafana/dashboards"],
        "deploy/grafana/dashboards",
    );

    // Prometheus scrapes every `ml` replica on the port it listens on.
    let scrape = yaml_file(&shipped("deploy/prometheus/prometheus.yml"));
    let dns = &scrape["scrape_configs"][0]["dns_sd_configs"][0];
    assert_eq!(scrape["scrape_configs"][0]["job_name"], "imgclass");
    assert_eq!(dns["names"], json!(["ml"]));
    assert_eq!(
        dns["port"].to_string(),
        ml["environment"]["IMGCLASS_PORT"].as_str().unwrap()
    );
    // Grafana: the data source is the prometheus service, the dashboards
    // come from where they are mounted.
    let datasource = yaml_file(&shipped(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ));
    assert_eq!(
        datasource["datasources"][0]["url"],
        "http://prometheus:9090"
    );
    assert_eq!(datasource["datasources"][0]["type"], "prometheus");
    assert!(command.contains("--web.listen-address=:9090"), "{command}");
    // The replicas read the page's deployment-wide figures from it too.
    assert_eq!(
        ml["environment"]["IMGCLASS_PROMETHEUS_URL"],
        "http://prometheus:9090"
    );
    let provider = yaml_file(&shipped(
        "deploy/grafana/provisioning/dashboards/imgclass.yml",
    ));
    assert_eq!(
        provider["providers"][0]["options"]["path"],
        "/etc/grafana/dashboards"
    );
    assert_eq!(
        grafana["depends_on"]["prometheus"]["condition"],
        "service_healthy"
    );
    for volume in ["prometheus-data", "grafana-data"] {
        assert!(doc["volumes"].get(volume).is_some(), "volume {volume}");
    }
}

/// The Kubernetes monitoring component, through overlays/monitoring:
/// renders, passes strict validation for every supported version, and is
/// what it should be — Prometheus with the shipped configuration, allowed
/// to list pods in its own namespace only; Grafana with the shipped
/// dashboard; the base's objects untouched.
#[test]
fn kubernetes_monitoring_component_renders_and_passes_strict_validation() {
    let yaml = deploy::render(&shipped("deploy/k8s/overlays/monitoring"))
        .unwrap_or_else(|e| panic!("render: {e}"));
    deploy::validate(&yaml).unwrap_or_else(|e| panic!("strict validation failed:\n{e}"));
    let mut objs = BTreeMap::new();
    for doc in yaml_docs(&yaml) {
        let kind = doc["kind"].as_str().unwrap().to_string();
        let mut name = doc["metadata"]["name"].as_str().unwrap().to_string();
        if kind == "ConfigMap"
            && let Some((base, _hash)) = name.rsplit_once('-')
        {
            name = base.to_string();
        }
        assert_ne!(
            kind, "ClusterRole",
            "pod discovery needs no cluster-wide role"
        );
        if kind != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "imgclass", "{kind}/{name}");
        }
        objs.insert(format!("{kind}/{name}"), doc);
    }
    for key in [
        "Deployment/ml",
        "Deployment/web",
        "Deployment/prometheus",
        "Service/prometheus",
        "ServiceAccount/prometheus",
        "Role/prometheus",
        "RoleBinding/prometheus",
        "PersistentVolumeClaim/prometheus-data",
        "ConfigMap/prometheus-config",
        "Deployment/grafana",
        "Service/grafana",
        "ConfigMap/grafana-datasources",
        "ConfigMap/grafana-dashboard-provider",
        "ConfigMap/grafana-dashboards",
    ] {
        assert!(objs.contains_key(key), "{key} missing: {:?}", objs.keys());
    }

    // The ConfigMaps hold the shipped files, byte for byte.
    let data = |cm: &str, key: &str| {
        objs[&format!("ConfigMap/{cm}")]["data"][key]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (cm, key, file, copy) in [
        (
            "prometheus-config",
            "prometheus.yml",
            "deploy/prometheus/prometheus-k8s.yml",
            "deploy/k8s/components/monitoring/prometheus/prometheus-k8s.yml",
        ),
        (
            "prometheus-config",
            "alerts.yml",
            "deploy/prometheus/alerts.yml",
            "deploy/k8s/components/monitoring/prometheus/alerts.yml",
        ),
        (
            "grafana-datasources",
            "prometheus.yml",
            "deploy/grafana/provisioning/datasources/prometheus.yml",
            "deploy/k8s/components/grafana/grafana/datasource-prometheus.yml",
        ),
        (
            "grafana-dashboard-provider",
            "imgclass.yml",
            "deploy/grafana/provisioning/dashboards/imgclass.yml",
            "deploy/k8s/components/grafana/grafana/dashboard-provider.yml",
        ),
        (
            "grafana-dashboards",
            "imgclass.json",
            "deploy/grafana/dashboards/imgclass.json",
            "deploy/k8s/components/grafana/grafana/imgclass.json",
        ),
    ] {
        assert_eq!(
            data(cm, key),
            read(&shipped(file)),
            "{copy} differs from {file}: cp {file} {copy}"
        );
    }

    // Prometheus: its service account may get/list/watch pods, in its own
    // namespace; the configuration is mounted where it reads it.
    let role = &objs["Role/prometheus"]["rules"][0];
    assert_eq!(role["resources"], json!(["pods"]));
    assert_eq!(role["verbs"], json!(["get", "list", "watch"]));
    let binding = &objs["RoleBinding/prometheus"];
    assert_eq!(binding["roleRef"]["name"], "prometheus");
    assert_eq!(binding["subjects"][0]["name"], "prometheus");
    let pod = &objs["Deployment/prometheus"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "prometheus");
    assert_eq!(pod["automountServiceAccountToken"], true);
    let c = &pod["containers"][0];
    let args = serde_json::to_string(&c["args"]).unwrap();
    assert!(
        args.contains("--config.file=/etc/prometheus/prometheus.yml"),
        "{args}"
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/prometheus")
        .expect("configuration mount");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(
        volume["configMap"]["name"]
            .as_str()
            .unwrap()
            .starts_with("prometheus-config-"),
        "{volume}"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        objs["Service/prometheus"]["spec"]["selector"],
        objs["Deployment/prometheus"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            .as_str()
            .map(|n| json!({ "app.kubernetes.io/name": n }))
            .unwrap()
    );
    // Grafana: the dashboards are mounted where the provider looks.
    let g = &objs["Deployment/grafana"]["spec"]["template"]["spec"]["containers"][0];
    assert!(
        g["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/etc/grafana/dashboards")
    );
    // The replicas read the page's deployment-wide figures from it.
    assert_eq!(
        objs["ConfigMap/ml-config"]["data"]["IMGCLASS_PROMETHEUS_URL"],
        format!(
            "http://prometheus:{}",
            objs["Service/prometheus"]["spec"]["ports"][0]["port"]
        )
    );
    // The ml pods still ask to be scraped, as the scrape configuration expects.
    let ml = &objs["Deployment/ml"]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ml["prometheus.io/scrape"], "true");
}
