#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with a Rust toolchain and
# python3 + pip. Installs what the tests need (scripts/install-deps.sh),
# checks formatting and lints, then runs every test in release mode: the
# real model runs at real speed and the build shares compiled dependencies
# with `cargo run --release`. Builds are cached in $CARGO_TARGET_DIR
# (default ~/.cache/imgclass/target). IMGCLASS_E2E_DOCKER=1 also runs the
# container end-to-end run (deploy/e2e-compose.sh), IMGCLASS_E2E_K8S=1 the
# Kubernetes one (deploy/e2e-k8s.sh: a one-node cluster on this machine;
# root, ~5 min, plus ~5 min the first time to build Kubernetes).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"

scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace --all-targets "$@"

# The end-to-end runs put the release binary `cargo test` just built into
# their image (a `cargo build` would compile the dependencies again, without
# the dev-dependencies' features).
export IMGCLASS_BIN="${IMGCLASS_BIN:-$CARGO_TARGET_DIR/release/imgclass}"
if [ "${IMGCLASS_E2E_DOCKER:-0}" = 1 ]; then
  deploy/e2e-compose.sh
fi

if [ "${IMGCLASS_E2E_K8S:-0}" = 1 ]; then
  deploy/e2e-k8s.sh
fi
