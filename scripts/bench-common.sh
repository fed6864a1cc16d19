# Shared by the benchmark scripts (sourced, not run): the imgclass binary,
# oha, the fp32 peer (../shared/peer) and its venv, a scratch folder
# cleaned up on exit, the benchmark images derived from a real test photo,
# and the load and readiness helpers. Expects `set -euo pipefail` and the
# repository root as the working directory.
#
# env: CARGO_TARGET_DIR, IMGCLASS_BIN, IMGCLASS_HOME, OHA, PEER_DIR,
#      PEER_VENV, IMGCLASS_TEST_CACHE, DURATION (15s)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"
DURATION="${DURATION:-15s}"
PEER_DIR="${PEER_DIR:-$(cd .. && pwd)/shared/peer}"
home="${IMGCLASS_HOME:-$HOME/.cache/imgclass}"
model_dir="$home/efficientnet-lite0"

bin="${IMGCLASS_BIN:-$CARGO_TARGET_DIR/release/imgclass}"
# oha, pinned, built once into the cache (a few minutes the first time).
oha="${OHA:-$HOME/.cache/imgclass/oha/bin/oha}"
[ -x "$oha" ] || cargo install oha --version 1.16.0 --locked --root "$HOME/.cache/imgclass/oha"
[ -x "$bin" ] || cargo build --release -q --workspace --bins --examples
"$bin" model fetch >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The peer serves our own converted fp32 Lite0. Its venv (pinned
# requirements, made by its first start) also has Pillow and numpy, used
# here to derive the benchmark images from a real test photo.
export PEER_VENV="${PEER_VENV:-$HOME/.cache/imgclass/peer-venv}"
export PEER_MODEL="$model_dir/model.onnx" PEER_LABELS="$model_dir/labels.txt"
export PEER_IMAGES_DIR="$work/peer-images"
peer_pid=$("$PEER_DIR/run.sh" 18431 1 1)
kill "$peer_pid"
py="$PEER_VENV/bin/python"

# The benchmark images, each also as one multipart body ($work/NAME.body)
# that oha sends byte for byte to every server:
#   small:    500x375 JPEG        big-jpeg: 4032x3024 JPEG
#   big-bmp:  1920x1440 BMP
photos="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}/photos-v2"
[ -d "$photos" ] || cargo test --release -q --workspace --test real_model real_photos >/dev/null
mkdir -p "$work"/{small,big-jpeg,big-bmp}
"$py" - "$photos/chelsea.png" "$work" <<'PY'
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
img = Image.open(src).convert("RGB")
img.resize((500, 375), Image.BICUBIC).save(f"{out}/small/cat-500x375.jpg", quality=90)
img.resize((4032, 3024), Image.BICUBIC).save(f"{out}/big-jpeg/cat-4032x3024.jpg", quality=90)
img.resize((1920, 1440), Image.BICUBIC).save(f"{out}/big-bmp/cat-1920x1440.bmp")
PY
for f in "$work"/small/* "$work"/big-jpeg/* "$work"/big-bmp/*; do
  "$py" - "$f" "$(dirname "$f").body" <<'PY'
import mimetypes, sys
src, out = sys.argv[1:3]
data = open(src, "rb").read()
kind = mimetypes.guess_type(src)[0] or "application/octet-stream"
head = (f"--imgclassbench\r\nContent-Disposition: form-data; name=\"image\"; "
        f"filename=\"{src.rsplit('/', 1)[-1]}\"\r\nContent-Type: {kind}\r\n\r\n").encode()
open(out, "wb").write(head + data + b"\r\n--imgclassbench--\r\n")
PY
done

# `load URL BODY C [QUERY]` prints "req/s p50_ms failed" of one oha run
# of POST URL/classify[QUERY] (after a short warm-up run): failed = non-2xx
# answers + client-side errors. `-w` lets the requests in flight at the end
# of the run finish; without it oha aborts them and reports them as errors
# ("aborted due to deadline").
load() {
  local args=(-m POST -D "$2" -T "multipart/form-data; boundary=imgclassbench" --no-tui -c "$3")
  "$oha" "${args[@]}" -n 40 "$1/classify${4:-}" >/dev/null
  "$oha" "${args[@]}" -z "$DURATION" -w --output-format json "$1/classify${4:-}" | "$py" -c '
import json, sys
s = json.load(sys.stdin)
codes = s.get("statusCodeDistribution", {})
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
errors = s.get("errorDistribution", {})
if bad or errors:
    print("failed:", codes, errors, file=sys.stderr)
print(s["summary"]["requestsPerSec"], 1000 * s["latencyPercentiles"]["p50"], bad + sum(errors.values()))'
}

# `wait_ready URL` waits up to 20 s for URL to answer 2xx.
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  return 1
}

# `peer_small PORT` appends the peer's "req/s p50 bad" at c=16 (2 workers x
# 1 thread, its best throughput) and at c=1 (1 worker x 2 threads, its best
# latency) on the 500x375 JPEG to results[peer,c16] and results[peer,c1].
# The caller declares `results` (declare -A).
peer_small() {
  local port=$1 pid
  pid=$("$PEER_DIR/run.sh" "$port" 2 1)
  pids+=("$pid")
  results[peer,c16]+="$(load "http://127.0.0.1:$port" "$work/small.body" 16);"
  kill "$pid"
  sleep 1
  pid=$("$PEER_DIR/run.sh" "$port" 1 2)
  pids+=("$pid")
  results[peer,c1]+="$(load "http://127.0.0.1:$port" "$work/small.body" 1);"
  kill "$pid"
  sleep 1
}
