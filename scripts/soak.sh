#!/usr/bin/env bash
# Soak: N minutes at about 80% of capacity with a mix of good, corrupt and
# oversized uploads, against one replica or three (sharing one images
# folder; optionally behind the deployment's nginx), printing per minute:
# requests/s, p50/p99 of the successes, answers by class (200, expected
# 4xx, 5xx, transport errors), and each replica's RSS and open file
# descriptors (under load and idle). Ends with the verdict against the
# goals: RSS drift < 10% after the warm-up minute, zero 5xx, zero
# transport errors, no fd growth; exits 1 when one is missed.
#
#   scripts/soak.sh                      # 10 minutes, 1 replica
#   scripts/soak.sh --minutes 3 --replicas 3 --gateway
#
# Options (or IMGCLASS_SOAK_* variables):
#   --minutes N     minutes of soak (MINUTES, default 10)
#   --replicas 1|3  serve processes (REPLICAS, default 1)
#   --gateway       put nginx (deploy/nginx/nginx.conf) in front (GATEWAY=1);
#                   without it, each replica gets its own generator
#   --load F        fraction of the measured capacity (LOAD, default 0.8)
#   --keep          keep the work folder (logs, CSVs) and print its path
# IMGCLASS_BIN: a built binary to use instead of building this checkout.
# IMGCLASS_HOME: the model home (default ~/.cache/imgclass).
#
# Each minute is one `imgclass loadtest --rate R --duration 60s` per target,
# so a minute's figures are exact (not a rolling window); between minutes
# the generator pauses for about a second while the next run loads its
# images, and the fds are sampled then, with no client connected.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

minutes=${IMGCLASS_SOAK_MINUTES:-10}
replicas=${IMGCLASS_SOAK_REPLICAS:-1}
gateway=${IMGCLASS_SOAK_GATEWAY:-0}
load=${IMGCLASS_SOAK_LOAD:-0.8}
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --gateway) gateway=1; shift ;;
    --load) load=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$replicas" in 1|3) ;; *) echo "--replicas must be 1 or 3" >&2; exit 2 ;; esac

if [ -n "${IMGCLASS_BIN:-}" ]; then
  bin=$IMGCLASS_BIN
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"
  cargo build --release -q --workspace --bins --examples
  bin="$CARGO_TARGET_DIR/release/imgclass"
fi
export IMGCLASS_HOME="${IMGCLASS_HOME:-$HOME/.cache/imgclass}"
photos="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}/photos-v2"
[ -d "$photos" ] || cargo test --release -q --workspace --test real_model real_photos >/dev/null
if [ "$gateway" = 1 ]; then
  nginx=${IMGCLASS_NGINX:-$(PATH=$PATH:/usr/sbin:/sbin command -v nginx || true)}
  [ -n "$nginx" ] || { echo "--gateway needs nginx (scripts/install-deps.sh installs it)" >&2; exit 2; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/imgclass-soak.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # url, pid, log
  for _ in $(seq 1 1200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "process $2 died; its log ends with:" >&2; tail -20 "$3" >&2; exit 1; }
    sleep 0.25
  done
  echo "$1 not ready after 5 minutes" >&2; exit 1
}

# ---- the upload mix -------------------------------------------------------
# Good: the real photos. Corrupt (422/415/400): truncated, bit-flipped,
# spliced, garbage, empty. Oversized: over --max-body-size (413) and a
# pixel bomb over --max-pixels (422).
mix="$work/mix"
mkdir -p "$mix"
cp "$photos"/* "$mix/"
python3 - "$photos" "$mix" <<'EOF'
import os, random, struct, sys, zlib
src, out = sys.argv[1], sys.argv[2]
rng = random.Random(13)
names = sorted(os.listdir(src))
def data(n): return open(os.path.join(src, n), "rb").read()
def ext(n): return os.path.splitext(n)[1]
jpgs = [n for n in names if ext(n).lower() in (".jpg", ".jpeg")] or names
pngs = [n for n in names if ext(n).lower() == ".png"] or names
def write(name, b): open(os.path.join(out, name), "wb").write(b)
for i, n in enumerate((jpgs + pngs)[:2]):
    b = data(n); write(f"bad-truncated-{i}{ext(n)}", b[: len(b) * 2 // 5])
for i, n in enumerate(pngs[:2]):
    b = bytearray(data(n))
    for _ in range(64):
        p = rng.randrange(64, len(b)); b[p] ^= 1 << rng.randrange(8)
    write(f"bad-bitflip-{i}{ext(n)}", bytes(b))
a, b = data(jpgs[0]), data(jpgs[-1])
write("bad-splice.jpg", a[: len(a) // 2] + b[len(b) // 2 :])
write("bad-garbage.png", rng.randbytes(50_000))
write("bad-empty.jpg", b"")
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
write("big-bomb.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))
write("big-12mib.jpg", b"\xff\xd8\xff\xe0" + rng.randbytes(12 << 20))
EOF
n_good=$(ls "$photos" | wc -l); n_all=$(ls "$mix" | wc -l)

# ---- replicas (and the gateway) -------------------------------------------
mkdir -p "$work/images"
ports=(); serve_pids=()
for i in $(seq 1 "$replicas"); do
  port=$(free_port)
  RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$port" --images-dir "$work/images" \
    >"$work/serve-$i.log" 2>&1 &
  pids+=("$!"); serve_pids+=("$!"); ports+=("$port")
done
for i in "${!ports[@]}"; do
  wait_ready "http://127.0.0.1:${ports[$i]}/readyz" "${serve_pids[$i]}" "$work/serve-$((i + 1)).log"
done
targets=()
if [ "$gateway" = 1 ]; then
  gw=$(free_port)
  prefix="$work/gateway"
  mkdir -p "$prefix/conf"
  cp deploy/nginx/nginx.conf "$prefix/conf/"
  for p in "${ports[@]}"; do echo "server 127.0.0.1:$p max_fails=3 fail_timeout=10s;"; done >"$prefix/conf/upstream.conf"
  echo "listen 127.0.0.1:$gw;" >"$prefix/conf/listen.conf"
  cp -r web "$prefix/web"
  chmod 755 "$work" "$prefix"
  "$nginx" -p "$prefix/" -c conf/nginx.conf -g 'worker_processes 1;' >"$work/nginx-access.log" 2>"$work/nginx.log" &
  pids+=("$!")
  wait_ready "http://127.0.0.1:$gw/healthz" "$!" "$work/nginx.log"
  targets=("http://127.0.0.1:$gw")
else
  for p in "${ports[@]}"; do targets+=("http://127.0.0.1:$p"); done
fi
nt=${#targets[@]}

# Runs one loadtest per target in parallel: run NAME ARGS... (outputs in $work/NAME-i).
run() {
  local name=$1; shift
  local i=0 lp=()
  for t in "${targets[@]}"; do
    "$bin" loadtest --url "$t" --images "$mix" --progress off --timeout 30s \
      --out "$work/$name-$i" "$@" >"$work/$name-$i.out" 2>&1 &
    lp+=("$!"); i=$((i + 1))
  done
  local rc=0
  for p in "${lp[@]}"; do wait "$p" || rc=$?; done
  # loadtest exits 1 only for --fail-under, which is not used; anything else is a failure.
  [ "$rc" = 0 ] || { echo "loadtest failed:" >&2; cat "$work/$name"-*.out >&2; exit 1; }
}

# Per-minute figures from the runs' results.csv: req/s p50 p99 n200 n4xx n5xx nerr
figures() {
  python3 - "$work" "$1" "$nt" <<'EOF'
import csv, json, sys
work, name, nt = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok, n, c200, c4, c5, err, span = [], 0, 0, 0, 0, 0, 0.0
for i in range(nt):
    d = f"{work}/{name}-{i}"
    span = max(span, json.load(open(f"{d}/summary.json"))["elapsed_s"])
    for r in csv.DictReader(open(f"{d}/results.csv")):
        n += 1
        e = r["error"]
        if e == "":
            ok.append(float(r["response_time"]))
            c200 += r["http_status"] == "200"
        elif e == "4xx": c4 += 1
        elif e == "5xx": c5 += 1
        else: err += 1  # timeout, connect, closed, protocol, 3xx, other
ok.sort()
q = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] * 1e3 if ok else float("nan")
print(f"{n / span if span else 0:.1f} {q(0.5):.1f} {q(0.99):.1f} {c200} {c4} {c5} {err}")
EOF
}

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
sample_all() { # prints "rss/fds" per replica, space-separated
  local out=()
  for p in "${serve_pids[@]}"; do out+=("$(rss_mb "$p")/$(fds "$p")"); done
  echo "${out[*]}"
}

echo "soak: $minutes min, $replicas replica(s)$([ "$gateway" = 1 ] && echo ' behind nginx'), mix of $n_all uploads ($n_good good photos, $((n_all - n_good)) corrupt or oversized)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- capacity: a short closed loop with the same mix ------------------------
run capacity --concurrency 8 --duration 20s
read -r cap _ <<<"$(figures capacity)"
cap_total=$(awk -v c="$cap" 'BEGIN { printf "%.1f", c }')
rate=$(awk -v c="$cap" -v l="$load" -v n="$nt" 'BEGIN { r = c * l / n; printf "%.1f", (r < 1 ? 1 : r) }')
echo "capacity (closed loop, 8 in flight per target, 20 s): $cap_total req/s; soak at $load of it: $rate req/s per target × $nt"

# ---- the soak -----------------------------------------------------------------
printf '\n%6s %8s %8s %8s %7s %6s %5s %6s  %s\n' minute 'req/s' 'p50 ms' 'p99 ms' 200 4xx 5xx neterr 'replicas: RSS MB/fds under load → fds idle'
declare -a rss_first rss_last fd_first fd_last
total5=0; totalerr=0
for m in $(seq 1 "$minutes"); do
  ( sleep 30; sample_all >"$work/mid-$m" ) &
  sampler=$!
  run "minute-$m" --rate "$rate" --duration 60s
  wait "$sampler" || true
  read -r rps p50 p99 c200 c4 c5 err <<<"$(figures "minute-$m")"
  read -r -a mid <<<"$(cat "$work/mid-$m")"
  cells=()
  for i in "${!serve_pids[@]}"; do
    idle_fds=$(fds "${serve_pids[$i]}")
    cells+=("${mid[$i]}→$idle_fds")
    rss=${mid[$i]%%/*}
    if [ "$m" = 2 ] || { [ "$minutes" = 1 ] && [ "$m" = 1 ]; }; then rss_first[$i]=$rss; fi
    if [ "$m" = 1 ]; then fd_first[$i]=$idle_fds; fi
    rss_last[$i]=$rss; fd_last[$i]=$idle_fds
  done
  total5=$((total5 + c5)); totalerr=$((totalerr + err))
  printf '%6s %8s %8s %8s %7s %6s %5s %6s  %s\n' "$m" "$rps" "$p50" "$p99" "$c200" "$c4" "$c5" "$err" "${cells[*]}"
done

# ---- verdict ------------------------------------------------------------------
echo
fail=0
for i in "${!serve_pids[@]}"; do
  drift=$(awk -v a="${rss_first[$i]}" -v b="${rss_last[$i]}" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
  verdict=$(awk -v d="$drift" 'BEGIN { print (d < 10 ? "ok" : "FAIL") }')
  [ "$verdict" = ok ] || fail=1
  echo "replica $((i + 1)): RSS ${rss_first[$i]} MB after warm-up → ${rss_last[$i]} MB at the end (drift $drift%, goal < 10%): $verdict"
  # A few fds of slack: connections of the last run may still be closing.
  if [ "${fd_last[$i]}" -le $((fd_first[$i] + 4)) ]; then v=ok; else v=FAIL; fail=1; fi
  echo "replica $((i + 1)): idle fds ${fd_first[$i]} after minute 1 → ${fd_last[$i]} at the end (goal: no growth): $v"
done
if [ "$total5" = 0 ]; then v=ok; else v=FAIL; fail=1; fi
echo "5xx answers: $total5 (goal 0): $v"
if [ "$totalerr" = 0 ]; then v=ok; else v=FAIL; fail=1; fi
echo "transport errors (timeouts, resets, refused): $totalerr (goal 0): $v"
for p in "${ports[@]}"; do
  curl -fsS "http://127.0.0.1:$p/metrics" | grep -E '^imgclass_(connections_(open|accepted_total|refused_total|evicted_total)|connection_timeouts_total|images_stored_total|store_failures_total)' |
    sed "s/^/  :$p /"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$fail"
