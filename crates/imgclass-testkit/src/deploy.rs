//! The tools that check deployment files, as the tests run them: kustomize
//! (`kubectl kustomize`, or `kustomize build`), PyPI's
//! `kubernetes-validate --strict`, `docker compose config` (or compose
//! v1's `docker-compose config`) and promtool (Debian's `prometheus`). Each panics with an install hint when its
//! tool is missing, and returns the tool's complaint as `Err` otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Kubernetes versions the base and overlays/local must be valid for: the
/// oldest with the preStop `sleep` action on by default, and the newest known.
pub const K8S_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// What overlays/local-1.20 must be valid for (deploy/e2e-k8s.sh runs it on
/// 1.20; 1.21 and 1.22 still serve the beta APIs it uses).
pub const K8S_LEGACY_VERSIONS: &[&str] = &["1.20.0", "1.22.0"];

/// kubernetes-validate's last release with schemas older than 1.25, in a
/// folder of its own (`pip install --target`) beside the current one:
/// `$IMGCLASS_KUBERNETES_VALIDATE_LEGACY`, default
/// ~/.cache/imgclass/kubernetes-validate-1.28.3 (scripts/install-deps.sh).
pub fn legacy_validator() -> PathBuf {
    std::env::var_os("IMGCLASS_KUBERNETES_VALIDATE_LEGACY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/imgclass/kubernetes-validate-1.28.3")
        })
}

/// An executable of that name on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The repository's root. Every crate is `crates/<name>`, so it is two
/// levels above the package directory that cargo gives the running test
/// (`CARGO_MANIFEST_DIR` at run time). The compile-time value is only the
/// fallback: test binaries in a shared `CARGO_TARGET_DIR` are reused by
/// another clone of the repository when nothing changed, and then name
/// the clone that built them, which may be gone.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

/// A tool a test cannot do without: named by `env`, else found on PATH
/// (plus the sbin folders a non-root PATH may lack), else the test fails
/// here saying how to install it.
pub fn require_tool(name: &str, env: &str, install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is required by this test and was not found on PATH or in /usr/sbin: {install} (or set {env})")
        })
}

/// Debian's nginx (or `$IMGCLASS_NGINX`).
pub fn nginx_bin() -> PathBuf {
    require_tool(
        "nginx",
        "IMGCLASS_NGINX",
        "install Debian's `nginx` package (scripts/install-deps.sh)",
    )
}

/// An nginx prefix in `root/gateway`: `conf/` with the shipped
/// deploy/nginx/nginx.conf and the given includes, `web/` with the page.
/// World-readable, so that nginx's workers (`nobody` when the test runs as
/// root) can read it. Run it with `nginx -p PREFIX/ -c conf/nginx.conf`.
pub fn nginx_prefix(root: &Path, upstream_conf: &str, listen_conf: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let prefix = root.join("gateway");
    std::fs::create_dir_all(prefix.join("conf")).unwrap();
    std::fs::copy(
        repo_root().join("deploy/nginx/nginx.conf"),
        prefix.join("conf/nginx.conf"),
    )
    .unwrap();
    std::fs::write(prefix.join("conf/upstream.conf"), upstream_conf).unwrap();
    std::fs::write(prefix.join("conf/listen.conf"), listen_conf).unwrap();
    crate::copy_tree(&repo_root().join("web"), &prefix.join("web"));
    for dir in [root, prefix.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    prefix
}

/// Runs `cmd` to completion, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` with `input` on its standard input, capturing its output.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // A tool may exit before reading everything; its output says why.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// The Python interpreter: `$IMGCLASS_PYTHON`, default `python3`.
pub fn python() -> String {
    std::env::var("IMGCLASS_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `kubectl kustomize DIR` (or `kustomize build DIR`): the rendered YAML,
/// or the tool's error.
pub fn render(dir: &Path) -> Result<String, String> {
    let out = if let Some(kubectl) = on_path("kubectl") {
        run(Command::new(kubectl).arg("kustomize").arg(dir))
    } else if let Some(kustomize) = on_path("kustomize") {
        run(Command::new(kustomize).arg("build").arg(dir))
    } else {
        panic!(
            "rendering the manifests needs `kubectl` (with its built-in kustomize) or `kustomize` on PATH; \
             neither was found"
        );
    };
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubernetes-validate --strict` on rendered YAML, for every version in
/// K8S_VERSIONS: Ok, or the validator's complaints.
pub fn validate(yaml: &str) -> Result<(), String> {
    validate_for(yaml, K8S_VERSIONS, None)
}

/// `kubernetes-validate --strict` for each of `versions`, with the validator
/// found in `pythonpath` if given. An object whose kind and apiVersion the
/// version has no schema for (which the validator only warns about) fails.
pub fn validate_for(
    yaml: &str,
    versions: &[&str],
    pythonpath: Option<&Path>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut problems = String::new();
    for version in versions {
        let mut cmd = Command::new(python());
        cmd.args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            version,
        ])
        .arg(&file);
        if let Some(path) = pythonpath {
            assert!(
                path.join("kubernetes_validate").is_dir(),
                "no kubernetes-validate in {}: pip install --no-deps --target {} kubernetes-validate==1.28.3 \
                 (scripts/install-deps.sh)",
                path.display(),
                path.display()
            );
            cmd.env("PYTHONPATH", path);
        }
        let out = run(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("No module named kubernetes_validate"),
            "PyPI's kubernetes-validate is required: pip install kubernetes-validate==1.37.0 ({stderr})"
        );
        if !out.status.success()
            || stdout.contains("Couldn't find schema")
            || stderr.contains("Couldn't find schema")
        {
            problems.push_str(&format!("[{version}] {stdout}{stderr}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `docker compose` (v2 plugin) if present, else compose v1.
fn compose() -> Command {
    if let Some(docker) = on_path("docker") {
        let v2 = Command::new(&docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if v2 {
            let mut c = Command::new(docker);
            c.arg("compose");
            return c;
        }
    }
    match on_path("docker-compose") {
        Some(v1) => Command::new(v1),
        None => panic!(
            "validating deploy/compose.yaml needs `docker compose` (v2 plugin) or `docker-compose` \
             (Debian's docker-compose package); neither was found"
        ),
    }
}

/// `compose -f FILE -p imgclass config` with the file's defaults (no
/// `IMGCLASS_*` variable of the caller's environment): the resolved YAML,
/// or compose's error.
pub fn compose_config(file: &Path) -> Result<String, String> {
    let mut cmd = compose();
    cmd.arg("-f").arg(file).args(["-p", "imgclass", "config"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IMGCLASS_") {
            cmd.env_remove(name);
        }
    }
    let out = run(&mut cmd);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// promtool: `$IMGCLASS_PROMTOOL`, else the one on PATH (Debian's
/// `prometheus` package, installed by scripts/install-deps.sh).
pub fn promtool() -> PathBuf {
    std::env::var_os("IMGCLASS_PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| on_path("promtool"))
        .unwrap_or_else(|| {
            panic!(
                "`promtool` is required: install Debian's `prometheus` package \
                 (scripts/install-deps.sh) or set IMGCLASS_PROMTOOL"
            )
        })
}

/// `promtool check metrics` on exposition text: Ok, or its complaints
/// (lint warnings included: it prints nothing for clean text).
pub fn check_metrics(text: &str) -> Result<(), String> {
    let out = run_with_input(
        Command::new(promtool()).args(["check", "metrics"]),
        text.as_bytes(),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}
