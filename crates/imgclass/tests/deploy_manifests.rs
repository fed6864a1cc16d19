//! The deployment files as CI checks them: the Kubernetes kustomizations
//! render (`kubectl kustomize`) and pass strict schema validation
//! (`kubernetes-validate --strict`), and a broken copy fails the same
//! check; the compose file validates (`docker compose config`, or compose
//! v1's `docker-compose config`), and a broken copy fails; the shell
//! scripts parse.
//!
//! Required tools, which fail these tests with an install hint when missing:
//! kubectl (with its built-in kustomize) or kustomize; python3 with PyPI's
//! `kubernetes-validate` (which brings PyYAML, used here to read the
//! rendered YAML), and its 1.28.3 release in a folder of its own for the
//! Kubernetes 1.20 schemas (newer releases ship 1.25+ only); Debian's
//! `docker-compose` (or the compose v2 plugin). scripts/install-deps.sh
//! installs them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgclass_testkit::deploy::{
    K8S_LEGACY_VERSIONS, compose_config, legacy_validator, python, render, run, run_with_input,
    validate, validate_for,
};
use serde_json::Value;

fn repo() -> PathBuf {
    imgclass_testkit::deploy::repo_root()
}

/// Multi-document YAML as JSON values (PyYAML, which kubernetes-validate
/// depends on).
fn yaml_docs(yaml: &str) -> Vec<Value> {
    let out = run_with_input(
        Command::new(python()).args([
            "-c",
            "import sys, json, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ]),
        yaml.as_bytes(),
    );
    assert!(
        out.status.success(),
        "reading YAML needs python3 with PyYAML (a dependency of kubernetes-validate): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// Rendered objects by "Kind/name" (generated ConfigMaps lose their hash
/// suffix here).
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in yaml_docs(yaml) {
        let kind = doc["kind"].as_str().unwrap().to_string();
        let mut name = doc["metadata"]["name"].as_str().unwrap().to_string();
        if kind == "ConfigMap"
            && let Some((base, _hash)) = name.rsplit_once('-')
        {
            name = base.to_string();
        }
        let key = format!("{kind}/{name}");
        assert!(out.insert(key.clone(), doc).is_none(), "{key} twice");
    }
    out
}

fn container<'a>(objs: &'a BTreeMap<String, Value>, deployment: &str) -> &'a Value {
    &objs[&format!("Deployment/{deployment}")]["spec"]["template"]["spec"]["containers"][0]
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn kustomize_base_renders_and_passes_strict_validation() {
    let yaml = render(&repo().join("deploy/k8s/base")).unwrap_or_else(|e| panic!("render: {e}"));
    validate(&yaml).unwrap_or_else(|e| panic!("strict validation failed:\n{e}"));
    let objs = objects(&yaml);
    let kinds: Vec<&str> = objs.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap/gateway-config",
            "ConfigMap/ml-config",
            "Deployment/ml",
            "Deployment/web",
            "HorizontalPodAutoscaler/ml",
            "Namespace/imgclass",
            "PersistentVolumeClaim/images",
            "PodDisruptionBudget/ml",
            "PodDisruptionBudget/web",
            "Service/ml",
            "Service/ml-pods",
            "Service/web",
        ]
    );
    for (key, obj) in &objs {
        if key != "Namespace/imgclass" {
            assert_eq!(obj["metadata"]["namespace"], "imgclass", "{key}");
        }
    }

    // The gateway's configuration is deploy/nginx/nginx.conf itself.
    let gateway = &objs["ConfigMap/gateway-config"]["data"];
    assert_eq!(
        gateway["nginx.conf"].as_str().unwrap(),
        std::fs::read_to_string(repo().join("deploy/nginx/nginx.conf")).unwrap(),
        "deploy/k8s/base/gateway/nginx.conf differs from deploy/nginx/nginx.conf: \
         cp deploy/nginx/nginx.conf deploy/k8s/base/gateway/nginx.conf"
    );
    assert!(
        gateway["upstream.conf"]
            .as_str()
            .unwrap()
            .contains("server ml:5000")
    );

    // ml: 3 replicas, probes, limits, hardening, config from env, storage.
    let ml = &objs["Deployment/ml"];
    assert_eq!(ml["spec"]["replicas"], 3);
    let c = container(&objs, "ml");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for r in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(c["resources"][r][what].is_string(), "ml {r}.{what}");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        ml["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        10001
    );
    let config = &objs["ConfigMap/ml-config"]["data"];
    assert_eq!(config["IMGCLASS_PORT"], "5000");
    assert_eq!(config["IMGCLASS_HOST"], "0.0.0.0");
    let images_dir = config["IMGCLASS_IMAGES_DIR"].as_str().unwrap();
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "images" && m["mountPath"] == images_dir)
    );
    assert_eq!(c["ports"][0]["containerPort"], 5000);

    // web: 3 replicas of nginx with the ConfigMap, listening where listen.conf says.
    let web = &objs["Deployment/web"];
    assert_eq!(web["spec"]["replicas"], 3);
    let w = container(&objs, "web");
    let listen = gateway["listen.conf"].as_str().unwrap();
    let port = w["ports"][0]["containerPort"].as_u64().unwrap();
    assert!(listen.contains(&format!("listen {port};")), "{listen}");
    let mounts = w["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "gateway-config" && m["mountPath"] == "/etc/imgclass-gateway")
    );
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "images" && m["readOnly"] == true)
    );
    assert_eq!(w["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(
        w["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "IMGCLASS_GATEWAY_WORKERS"),
        "nginx's `auto` would count the node's CPUs"
    );

    // Services select their Deployment's pods; ml answers on 5000.
    for name in ["ml", "web"] {
        assert_eq!(
            objs[&format!("Service/{name}")]["spec"]["selector"],
            objs[&format!("Deployment/{name}")]["spec"]["template"]["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    let mut l = l.clone();
                    l.remove("app.kubernetes.io/part-of");
                    Value::Object(l)
                })
                .unwrap(),
            "Service/{name} selector"
        );
    }
    assert_eq!(objs["Service/ml"]["spec"]["ports"][0]["port"], 5000);

    // The gateways balance over the ml pods themselves: a headless Service
    // of the Ready pods, re-resolved (IMGCLASS_UPSTREAMS_DNS, read by
    // deploy/docker/gateway-entrypoint.sh).
    let pods = &objs["Service/ml-pods"]["spec"];
    assert_eq!(pods["clusterIP"], "None");
    assert_eq!(pods["publishNotReadyAddresses"], false);
    assert_eq!(pods["selector"], objs["Service/ml"]["spec"]["selector"]);
    assert_eq!(pods["ports"][0]["port"], 5000);
    let env = |name: &str| {
        w["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("web has no {name}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(env("IMGCLASS_UPSTREAMS_DNS"), "ml-pods:5000");
    let refresh: u64 = env("IMGCLASS_UPSTREAMS_REFRESH").parse().unwrap();

    // Readiness about a second after the process is ready, and a few misses
    // in a row before a pod is taken out (no flapping).
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(c[probe]["periodSeconds"], 1, "ml {probe}");
        assert!(
            c[probe].get("initialDelaySeconds").is_none_or(|d| d == 0),
            "ml {probe}"
        );
    }
    assert!(c["readinessProbe"]["failureThreshold"].as_u64().unwrap() >= 3);
    assert_eq!(w["readinessProbe"]["periodSeconds"], 1);
    // A terminating ml pod keeps serving until every gateway has dropped it
    // (CoreDNS caches for 5 s, plus the gateways' refresh), then drains
    // within the grace period.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    assert!(pre_stop > 5 + refresh, "preStop {pre_stop} s");
    let grace: u64 = config["IMGCLASS_SHUTDOWN_GRACE"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let termination = ml["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        termination >= pre_stop + grace,
        "{termination} < {pre_stop} + {grace}"
    );

    assert_eq!(
        objs["PersistentVolumeClaim/images"]["spec"]["accessModes"][0],
        "ReadWriteMany"
    );
    let hpa = &objs["HorizontalPodAutoscaler/ml"];
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "ml");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(objs["PodDisruptionBudget/ml"]["apiVersion"], "policy/v1");
}

#[test]
fn kustomize_local_overlay_renders_and_passes_strict_validation() {
    let yaml =
        render(&repo().join("deploy/k8s/overlays/local")).unwrap_or_else(|e| panic!("render: {e}"));
    validate(&yaml).unwrap_or_else(|e| panic!("strict validation failed:\n{e}"));
    let objs = objects(&yaml);
    let web = &objs["Service/web"]["spec"];
    assert_eq!(web["type"], "NodePort");
    assert_eq!(web["ports"][0]["nodePort"], 30080);
    assert_eq!(
        objs["PersistentVolumeClaim/images"]["spec"]["accessModes"][0],
        "ReadWriteOnce"
    );
    assert_eq!(container(&objs, "ml")["image"], "imgclass-ml:local");
    assert_eq!(container(&objs, "web")["image"], "imgclass-web:local");
    assert_eq!(container(&objs, "ml")["imagePullPolicy"], "Never");
    assert_eq!(
        objs["ConfigMap/ml-config"]["data"]["IMGCLASS_SESSIONS"],
        "1"
    );
    assert_eq!(objs["Deployment/ml"]["spec"]["replicas"], 3);
}

/// overlays/local-1.20 is overlays/local with only what Kubernetes 1.20
/// lacks swapped (HPA autoscaling/v2beta2, PDB policy/v1beta1, preStop as
/// an exec of the same pause), and is strictly valid for 1.20 and 1.22 -
/// while overlays/local itself is not valid for 1.20.
#[test]
fn kustomize_compat_overlay_is_the_local_one_for_kubernetes_1_20() {
    let local_yaml =
        render(&repo().join("deploy/k8s/overlays/local")).unwrap_or_else(|e| panic!("render: {e}"));
    let yaml = render(&repo().join("deploy/k8s/overlays/local-1.20"))
        .unwrap_or_else(|e| panic!("render: {e}"));
    validate_for(&yaml, K8S_LEGACY_VERSIONS, Some(&legacy_validator()))
        .unwrap_or_else(|e| panic!("strict validation for 1.20 failed:\n{e}"));
    let err = validate_for(&local_yaml, &["1.20.0"], Some(&legacy_validator()))
        .expect_err("overlays/local uses APIs 1.20 does not have");
    assert!(
        err.contains("sleep") && err.contains("autoscaling/v2"),
        "{err}"
    );

    let local = objects(&local_yaml);
    let mut compat = objects(&yaml);
    assert_eq!(
        local.keys().collect::<Vec<_>>(),
        compat.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        compat["HorizontalPodAutoscaler/ml"]["apiVersion"],
        "autoscaling/v2beta2"
    );
    for pdb in ["PodDisruptionBudget/ml", "PodDisruptionBudget/web"] {
        assert_eq!(compat[pdb]["apiVersion"], "policy/v1beta1", "{pdb}");
    }
    // Undo the swaps: what is left must be overlays/local exactly.
    for deployment in ["ml", "web"] {
        let pre_stop = &container(&local, deployment)["lifecycle"]["preStop"];
        let seconds = pre_stop["sleep"]["seconds"].as_u64().unwrap();
        let key = format!("Deployment/{deployment}");
        let c = &mut compat.get_mut(&key).unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["lifecycle"]["preStop"],
            serde_json::json!({"exec": {"command": ["sleep", seconds.to_string()]}}),
            "{deployment}: the same pause as the base's preStop sleep"
        );
        c["lifecycle"]["preStop"] = pre_stop.clone();
    }
    for (key, api) in [
        ("HorizontalPodAutoscaler/ml", "autoscaling/v2"),
        ("PodDisruptionBudget/ml", "policy/v1"),
        ("PodDisruptionBudget/web", "policy/v1"),
    ] {
        compat.get_mut(key).unwrap()["apiVersion"] = api.into();
    }
    for (key, obj) in &local {
        assert_eq!(&compat[key], obj, "{key} differs beyond the 1.20 swaps");
    }
}

/// The checker itself: broken copies of the manifests fail it.
#[test]
fn broken_manifests_fail_the_check() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        imgclass_testkit::copy_tree(&repo().join("deploy/k8s"), &dir.path().join("k8s"));
        dir
    };

    // A misspelt field: kustomize passes it through, strict validation does not.
    let dir = fresh();
    let base = dir.path().join("k8s/base");
    edit(
        &base.join("ml-deployment.yaml"),
        "livenessProbe:",
        "livenesProbe:",
    );
    let yaml = render(&base).expect("kustomize renders unknown fields");
    let err = validate(&yaml).expect_err("a misspelt field must fail strict validation");
    assert!(err.contains("livenesProbe"), "{err}");
    // Through the overlay too.
    let yaml = render(&dir.path().join("k8s/overlays/local")).unwrap();
    assert!(validate(&yaml).is_err());

    // A wrong type.
    let dir = fresh();
    let base = dir.path().join("k8s/base");
    edit(
        &base.join("ml-hpa.yaml"),
        "minReplicas: 3",
        "minReplicas: three",
    );
    let err = validate(&render(&base).unwrap()).expect_err("a string where an integer belongs");
    assert!(
        err.contains("minReplicas") || err.contains("three"),
        "{err}"
    );

    // A missing resource file: rendering itself fails.
    let dir = fresh();
    let base = dir.path().join("k8s/base");
    std::fs::remove_file(base.join("web-pdb.yaml")).unwrap();
    assert!(render(&base).is_err());
}

#[test]
fn compose_file_validates_and_a_broken_copy_does_not() {
    let config = compose_config(&repo().join("deploy/compose.yaml"))
        .unwrap_or_else(|e| panic!("deploy/compose.yaml is invalid:\n{e}"));
    let doc = yaml_docs(&config).remove(0);
    let services = &doc["services"];
    let (ml, web) = (&services["ml"], &services["web"]);
    for (name, s) in [("ml", ml), ("web", web)] {
        assert!(s["healthcheck"]["test"].is_array(), "{name} healthcheck");
        assert_eq!(s["restart"], "unless-stopped", "{name}");
        assert_eq!(s["read_only"], true, "{name}");
        let volumes = serde_json::to_string(&s["volumes"]).unwrap();
        assert!(
            volumes.contains("images"),
            "{name} mounts the images volume: {volumes}"
        );
    }
    assert_eq!(ml["deploy"]["replicas"], 3);
    assert_eq!(ml["environment"]["IMGCLASS_PORT"], "5000");
    let ports = |s: &Value| serde_json::to_string(&s["ports"]).unwrap();
    assert!(
        ports(ml).contains("5001") && ports(ml).contains("5000"),
        "{}",
        ports(ml)
    );
    assert!(
        ports(web).contains("8080") && ports(web).contains("80"),
        "{}",
        ports(web)
    );
    assert!(doc["volumes"]["images"].is_object() || doc["volumes"]["images"].is_null());

    // The checker itself.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("deploy/compose.yaml");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::copy(repo().join("deploy/compose.yaml"), &broken).unwrap();
    edit(&broken, "    healthcheck:", "    healtcheck:");
    let err = compose_config(&broken).expect_err("a misspelt key must fail");
    assert!(err.contains("healtcheck"), "{err}");
}

#[test]
fn deployment_scripts_parse() {
    for (shell, script) in [
        ("bash", "deploy/e2e-compose.sh"),
        ("bash", "deploy/e2e-k8s.sh"),
        ("bash", "deploy/docker/make-base.sh"),
        ("bash", "deploy/docker/prebuilt-context.sh"),
        ("sh", "deploy/docker/gateway-entrypoint.sh"),
        ("sh", "deploy/e2e-k8s/runc-oom-clamp"),
    ] {
        let path = repo().join(script);
        let out = run(Command::new(shell).arg("-n").arg(&path));
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
    let helper = repo().join("deploy/e2e-k8s/e2e.py");
    let out = run(Command::new(python())
        .args([
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
        ])
        .arg(&helper));
    assert!(
        out.status.success(),
        "deploy/e2e-k8s/e2e.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
