#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with a Rust toolchain and
# python3 + pip. Installs what the tests need, then runs every test in
# release mode (the real model runs at real speed; builds are cached in
# $CARGO_TARGET_DIR, default ~/.cache/imgclass/target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"

# System packages the tests use (only what is missing is installed).
scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace --all-targets "$@"
