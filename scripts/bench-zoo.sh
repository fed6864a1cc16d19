#!/usr/bin/env bash
# The zoo side by side, and the fp32 peer (../shared/peer: Flask + gunicorn
# + onnxruntime serving our converted fp32 Lite0) in the same run, on the
# same 500x375 JPEG with the same oha runs. Per model:
#   input size, ONNX file size,
#   engine-only images/s (`imgclass model bench`: one session of
#     BENCH_THREADS threads, best of batch 1 and 8),
#   served req/s at c=16 and p50 at c=1 (`imgclass serve --model NAME`,
#     default flags; the peer: its best layout for each, as in
#     scripts/bench-vs-peer.sh),
# then the ratios the issue sets goals for: lite0-int8 >= 2.5x the peer's
# req/s at c=16 and <= 0.5x its p50 at c=1; engine-only int8/fp32 >= 1.8x
# for Lite0. Served loads run REPEAT times, medians printed. Not a test and
# not in CI: only same-run ratios mean something.
#
# usage: scripts/bench-zoo.sh        env: MODELS (the whole catalogue,
#        comma-separated), REPEAT (1), DURATION (10s), BENCH_THREADS (2),
#        BENCH_ITERATIONS (40), PEER_DIR, IMGCLASS_SERVE_ARGS
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT="${REPEAT:-1}"
DURATION="${DURATION:-10s}"
MODELS="${MODELS:-efficientnet-lite0,efficientnet-lite0-int8,efficientnet-lite1,efficientnet-lite1-int8,efficientnet-lite2,efficientnet-lite2-int8}"
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

IFS=, read -r -a models <<<"$MODELS"
"$bin" model fetch "${models[@]}" >/dev/null

# Engine only, every model in one run: "MODEL INPUT MB BATCH IMAGES/S" rows.
RUST_LOG=warn "$bin" model bench --model "$MODELS" --sessions 1 \
  --threads "${BENCH_THREADS:-2}" --latency-threads 0 --batch 1,8 \
  --iterations "${BENCH_ITERATIONS:-40}" | tee "$work/engine.txt" >&2
declare -A results
for m in "${models[@]}"; do
  results[engine,$m]=$(awk -v m="$m" '$1 == m && NF == 5 && $5 ~ /^[0-9]/ {print $2, $3, $5}' "$work/engine.txt")
done

for i in $(seq 1 "$REPEAT"); do
  echo "round $i of $REPEAT" >&2
  for m in "${models[@]}"; do
    port=18442
    RUST_LOG=warn "$bin" serve --port "$port" --no-store --model "$m" \
      ${IMGCLASS_SERVE_ARGS:-} >"$work/serve-$m.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_ready "http://127.0.0.1:$port/readyz"
    results[$m,c16]+="$(load "http://127.0.0.1:$port" "$work/small.body" 16);"
    results[$m,c1]+="$(load "http://127.0.0.1:$port" "$work/small.body" 1);"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
  peer_small 18443
done

"$py" - "$(lscpu | sed -n 's/^Model name: *//p')" "$(nproc)" "$DURATION" "$MODELS" <<EOF
import statistics as st, sys
cpu, n, duration, models = sys.argv[1:5]
models = models.split(",")
raw = {
$(for k in "${!results[@]}"; do printf '"%s": "%s",\n' "$k" "${results[$k]}"; done)
}
r = {k: [list(map(float, x.split())) for x in v.strip(';').split(';') if x.strip()] for k, v in raw.items() if not k.startswith("engine,")}
eng = {k.split(",", 1)[1]: list(map(float, v.split())) for k, v in raw.items() if k.startswith("engine,") and v.strip()}
med = lambda k, i: st.median(x[i] for x in r[k])
fails = sum(int(x[2]) for v in r.values() for x in v)
print(f"CPU: {cpu}, {n} vCPU; {len(r['peer,c16'])} round(s) of {duration} per load; medians; failed requests: {fails}")
pc16, pc1 = med("peer,c16", 0), med("peer,c1", 1)
bad = lambda m: sum(int(x[2]) for k in (f"{m},c16", f"{m},c1") for x in r[k])
print("| model | input | ONNX MB | engine-only img/s | served req/s c=16 | p50 ms c=1 | c=16 vs peer | p50 vs peer | failed |")
print("|---|---|---|---|---|---|---|---|---|")
for m in models:
    size, mb, ips = eng.get(m, [float("nan")] * 3)
    c16, c1 = med(f"{m},c16", 0), med(f"{m},c1", 1)
    print(f"| {m} | {size:.0f} | {mb:.1f} | {ips:.0f} | {c16:.1f} | {c1:.2f} | {c16 / pc16:.2f}x | {c1 / pc1:.2f}x | {bad(m)} |")
print(f"| peer (fp32 Lite0, Python ORT) | 224 | | | {pc16:.1f} | {pc1:.2f} | 1x | 1x | {bad('peer')} |")
print()
if "efficientnet-lite0-int8" in models:
    c16, c1 = med("efficientnet-lite0-int8,c16", 0), med("efficientnet-lite0-int8,c1", 1)
    print(f"goal lite0-int8 c=16 >= 2.5x peer: {c16 / pc16:.2f}x ({'met' if c16 / pc16 >= 2.5 else 'NOT met'})")
    print(f"goal lite0-int8 c=1 p50 <= 0.5x peer: {c1 / pc1:.2f}x ({'met' if c1 / pc1 <= 0.5 else 'NOT met'})")
for m in models:
    fp32 = m[:-len("-int8")] if m.endswith("-int8") else None
    if fp32 in eng and m in eng:
        ratio = eng[m][2] / eng[fp32][2]
        goal = " (goal >= 1.8x: " + ("met" if ratio >= 1.8 else "NOT met") + ")" if fp32 == "efficientnet-lite0" else ""
        print(f"engine-only {m} / {fp32}: {ratio:.2f}x{goal}")
EOF
