#!/usr/bin/env bash
# Long fuzz run of everything that reads client bytes (crate imgclass-fuzz:
# image probe/decoder/preprocessor, the /classify multipart reader, the
# KServe JSON + binary parser), on stable Rust. CI runs the same harness
# with about 95,000 cases (about 10 s); this runs many more, from a fresh seed each time
# unless one is given, and keeps going round after round until the time is up.
#
#   scripts/fuzz.sh                     # 10 minutes, random seeds
#   scripts/fuzz.sh --minutes 60 --cases 500000
#   scripts/fuzz.sh --seed 1234 --rounds 1        # replay one run's cases
#   IMGCLASS_FUZZ_REPLAY=target/fuzz-crashes/image-....bin scripts/fuzz.sh --rounds 1
#
# A failing case is saved under target/fuzz-crashes/ (IMGCLASS_FUZZ_CRASHES)
# and the run stops with the file name and how to replay it. The targets are
# plain fn(&[u8]) (imgclass_fuzz::{image,multipart,infer}::fuzz_one), ready
# for a cargo-fuzz/libFuzzer harness on nightly.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"

minutes=10
cases=200000
rounds=0
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cargo test --release -p imgclass-fuzz --no-run -q
deadline=$(( $(date +%s) + minutes * 60 ))
round=0
while :; do
  round=$((round + 1))
  s=${seed:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
  echo "round $round: seed $s, $cases cases (scaled per target)"
  IMGCLASS_FUZZ_CASES=$cases IMGCLASS_FUZZ_SEED=$s \
    cargo test --release -q -p imgclass-fuzz --test fuzz -- --nocapture 2>&1 |
    grep -vE '^(running|test result|$)' || { echo "round $round failed (seed $s)" >&2; exit 1; }
  [ "$rounds" != 0 ] && [ "$round" -ge "$rounds" ] && break
  [ "$(date +%s)" -ge "$deadline" ] && break
done
echo "fuzz: $round round(s), no failure"
