#!/usr/bin/env bash
# Lays out a build context for deploy/docker/Dockerfile with
# --build-arg ARTIFACTS=prebuilt, from this host: the release binary (built
# with cargo here, stripped of its debug line tables, which are for the host)
# and the model home (`imgclass model fetch`: a no-op when it is complete).
#
#   deploy/docker/prebuilt-context.sh DIR
#
# Env: IMGCLASS_BIN (a release imgclass binary to use instead of building
# one, e.g. the one `cargo test --release` just built), CARGO_TARGET_DIR
# (~/.cache/imgclass/target), IMGCLASS_HOME (~/.cache/imgclass). Used by
# deploy/e2e-compose.sh and deploy/e2e-k8s.sh.
set -euo pipefail
ctx="${1:?usage: $0 DIR}"
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"
bin="${IMGCLASS_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p imgclass --quiet
  bin="$CARGO_TARGET_DIR/release/imgclass"
fi
home="${IMGCLASS_HOME:-$HOME/.cache/imgclass}"
"$bin" --home "$home" model fetch >/dev/null
mkdir -p "$ctx/prebuilt/bin" "$ctx/prebuilt/home"
strip --strip-debug -o "$ctx/prebuilt/bin/imgclass" "$bin"
cp -r "$home/efficientnet-lite0" "$home/runtime" "$ctx/prebuilt/home/"
