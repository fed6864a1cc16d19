#!/usr/bin/env bash
# Issue-2 figures, side by side in one run: images/s of `imgclass classify`
# over a folder of ~50 real photos for each engine (median of 3 runs), and
# engine-only ms/image at batch 1 and 8.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"
cargo build --release -q --workspace --bins --examples
bin="$CARGO_TARGET_DIR/release/imgclass"
photos="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}/photos-v2"
[ -d "$photos" ] || cargo test --release -q --workspace --test real_model real_photos >/dev/null
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
# 18 photos x 3 copies = 54 images (PNG/JPEG as shipped, 82 KB–790 KB).
for i in 1 2 3; do for f in "$photos"/*; do cp "$f" "$dir/$i-$(basename "$f")"; done; done
n=$(ls "$dir" | wc -l)
echo "folder: $n images"
for engine in ort tract; do
  rates=()
  for run in 1 2 3; do
    s=$(date +%s.%N)
    RUST_LOG=warn "$bin" classify --engine "$engine" "$dir" >/dev/null
    e=$(date +%s.%N)
    rates+=("$(awk -v n="$n" -v s="$s" -v e="$e" 'BEGIN { print n / (e - s) }')")
  done
  med=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
  printf 'classify %-5s: median %.1f images/s (runs: %s)\n' "$engine" "$med" "$(printf '%.1f ' "${rates[@]}")"
done
for engine in ort tract; do
  RUST_LOG=warn "$bin" model bench --engine "$engine" --sessions 1 --batch 1,8 --iterations 40
done
