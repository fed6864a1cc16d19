#!/usr/bin/env bash
# imgclass against the peer (../shared/peer: Flask + gunicorn + onnxruntime
# serving our own converted model), one after the other in the same run,
# with the same load generator and the
# same images, driven by the same `oha` runs:
#   c=16  500x375 JPEG    req/s   (peer: 2 workers x 1 thread, its best throughput)
#   c=1   500x375 JPEG    p50     (peer: 1 worker x 2 threads, its best latency)
#   c=4   4032x3024 JPEG  req/s   (peer: 2 x 1)
#   c=4   1920x1440 BMP   req/s   (peer: 2 x 1)
# plus engine-only images/s of Python onnxruntime (best of 2 processes x 1
# thread and 1 x 2 threads, batch 1), the ceiling an end-to-end server
# approaches. Each load runs REPEAT times; medians are printed with the
# ratios and the CPU model. Not a test: machines differ, so only the
# same-run ratios mean something.
#
# usage: scripts/bench-vs-peer.sh            env: REPEAT (3), DURATION (15s),
#        PEER_DIR (../shared/peer), IMGCLASS_SERVE_ARGS (extra `serve` flags)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT="${REPEAT:-3}"
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

# `stages URL` prints the server's cumulative "sum count" of each stage
# histogram; the difference over a load gives its mean per image.
STAGES="request_duration preprocess_duration queue_duration inference_duration"
stages() {
  curl -fs "$1/metrics" | "$py" -c '
import sys, re
want = sys.argv[1].split()
tot = {w: [0.0, 0.0] for w in want}
for line in sys.stdin:
    m = re.match(r"imgclass_(\w+)_seconds_(sum|count)(\{[^}]*\})? (\S+)", line)
    if m and m.group(1) in tot:
        tot[m.group(1)][0 if m.group(2) == "sum" else 1] += float(m.group(4))
print(" ".join(f"{tot[w][0]} {tot[w][1]}" for w in want))' "$STAGES"
}

declare -A results
run_imgclass() {
  local port=18432
  RUST_LOG=warn "$bin" serve --port "$port" --images-dir "$work/imgclass-images" \
    ${IMGCLASS_SERVE_ARGS:-} >"$work/imgclass.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_ready "http://127.0.0.1:$port/readyz"
  local url="http://127.0.0.1:$port" kind c before
  for kind in c16:small:16 c1:small:1 jpeg12:big-jpeg:4 bmp3:big-bmp:4; do
    IFS=: read -r key body c <<<"$kind"
    before=$(stages "$url")
    results[imgclass,$key]+="$(load "$url" "$work/$body.body" "$c");"
    results[stages,$key]+="$before $(stages "$url");"
  done
  results[imgclass,rss]+="$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status");"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

run_peer() {
  local port=18433 pid
  peer_small "$port"
  pid=$("$PEER_DIR/run.sh" "$port" 2 1)
  pids+=("$pid")
  results[peer,jpeg12]+="$(load "http://127.0.0.1:$port" "$work/big-jpeg.body" 4);"
  results[peer,bmp3]+="$(load "http://127.0.0.1:$port" "$work/big-bmp.body" 4);"
  kill "$pid"
  sleep 1
}

# Engine only: images/s of onnxruntime at batch 1 on one preprocessed image.
engine_only() {
  "$py" - "$PEER_MODEL" <<'EOF'
import multiprocessing as mp, sys, time
import numpy as np, onnxruntime as ort
model = sys.argv[1]
def run(threads, seconds, q):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    name = s.get_inputs()[0].name
    for _ in range(20):
        s.run(None, {name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.run(None, {name: x}); n += 1
    q.put(n / (time.perf_counter() - t0))
def layout(procs, threads):
    q = mp.Queue()
    ps = [mp.Process(target=run, args=(threads, 8, q)) for _ in range(procs)]
    for p in ps: p.start()
    for p in ps: p.join()
    return sum(q.get() for _ in ps)
print(max(layout(2, 1), layout(1, 2)))
EOF
}

for i in $(seq 1 "$REPEAT"); do
  echo "round $i of $REPEAT" >&2
  run_imgclass
  run_peer
  results[engine]+="$(engine_only);"
done

"$py" - "$(lscpu | sed -n 's/^Model name: *//p')" "$(nproc)" "$DURATION" <<EOF
import statistics as st, sys
cpu, n, duration = sys.argv[1:4]
r = {k: [list(map(float, x.split())) for x in v.strip(';').split(';')] for k, v in {
$(for k in "${!results[@]}"; do printf '"%s": "%s",\n' "$k" "${results[$k]}"; done)
}.items()}
med = lambda k, i: st.median(x[i] for x in r[k])
fails = sum(int(x[2]) for k, v in r.items() if k.startswith(("peer,", "imgclass,c", "imgclass,j", "imgclass,b")) for x in v)
print(f"CPU: {cpu}, {n} vCPU; {len(r['engine'])} rounds of {duration} per load; medians; failed requests: {fails:.0f}")
print("| load | peer | imgclass | ratio |")
print("|---|---|---|---|")
for key, what in [("c16", "c=16, 500x375 JPEG, req/s"), ("jpeg12", "c=4, 4032x3024 JPEG, req/s"), ("bmp3", "c=4, 1920x1440 BMP, req/s")]:
    p, m = med(f"peer,{key}", 0), med(f"imgclass,{key}", 0)
    print(f"| {what} | {p:.1f} | {m:.1f} | {m / p:.2f}x |")
p, m = med("peer,c1", 1), med("imgclass,c1", 1)
print(f"| c=1, 500x375 JPEG, p50 ms | {p:.2f} | {m:.2f} | {m / p:.2f}x |")
e, m = st.median(x[0] for x in r["engine"]), med("imgclass,c16", 0)
print(f"| c=16 end-to-end / engine-only (Python ORT, best layout) | | {m:.1f} / {e:.1f} | {m / e:.2f} |")
print()
print("imgclass server-side stage means per image, ms (from /metrics; preprocess = hash + decode + resize + normalise,")
print("split below; inference is per engine call; request = the whole handler; rest = request - preprocess - queue")
print("- inference: multipart, storage, response and the hand-offs between them):")
names = ["request", "preprocess", "queue", "inference"]
print("| load | " + " | ".join(names) + " | rest |")
print("|---|" + "---|" * (len(names) + 1))
for key, what in [("c16", "c=16 500x375 JPEG"), ("c1", "c=1 500x375 JPEG"), ("jpeg12", "c=4 12 MP JPEG"), ("bmp3", "c=4 3 MP BMP")]:
    cells = []
    for i in range(len(names)):
        means = []
        for x in r[f"stages,{key}"]:
            half = len(x) // 2
            ds, dc = x[half + 2 * i] - x[2 * i], x[half + 2 * i + 1] - x[2 * i + 1]
            means.append(1000 * ds / dc if dc else float("nan"))
        cells.append(st.median(means))
    cells.append(cells[0] - sum(cells[1:]))
    print(f"| {what} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
print(f"imgclass peak RSS (VmHWM) over the loads: {st.median(x[0] for x in r['imgclass,rss']):.0f} MiB")
EOF

# Per-stage CPU time of preprocessing (thread CPU time, before/after this
# decoder) for the same kinds of images.
# The example as the test suite built it (`cargo run -p` would build it
# with that crate's own features: a second build of the dependencies).
cargo build --release -q --workspace --examples
"$CARGO_TARGET_DIR/release/examples/preprocess_bench" --runs 15
