#!/usr/bin/env bash
# A real container run of deploy/compose.yaml: builds both images, starts
# the stack with 3 `ml` replicas, uploads photos through the gateway on
# port 8080, checks the answers, the spread over the replicas, the shared
# images volume and a `kill -9` of one replica under load, then tears it all
# down. Exits non-zero on the first failed check.
#
#   sudo deploy/e2e-compose.sh          (root: debootstrap and dockerd)
#
# No image is pulled from any registry: the base image is made here with
# debootstrap + `docker import` (deploy/docker/make-base.sh) and passed as
# RUNTIME_BASE. The classifier image is built with ARTIFACTS=prebuilt from a
# binary built on this host (cargo, release profile, shared target dir) and
# the host's model home, so nothing compiles inside a container; the
# Dockerfile's default (ARTIFACTS=source) is the full multi-stage build.
#
# Needs: docker.io (dockerd is started if it is not running, and stopped
# again), docker-compose (v1) or the compose v2 plugin, debootstrap, curl,
# python3, cargo. The test photos come from the test suite's cache
# (${IMGCLASS_TEST_CACHE:-~/.cache/imgclass-test}/photos-v2; any
# `cargo test` that uses imgclass-testkit fills it).
#
# A dockerd started here is stopped at the end, and the host networking it
# changed is put back as it was: net.ipv4.ip_forward, the iptables and
# ip6tables rules (its DOCKER chains, MASQUERADE, the FORWARD policy DROP)
# and the bridges it made (docker0, compose's br-*). A dockerd that was
# already running is left alone, with its state.
#
# Env: IMGCLASS_E2E_WEB_PORT (8080), IMGCLASS_E2E_KEEP=1 (leave the stack up),
# BASE_IMAGE (imgclass-base:bookworm), DOCKER (docker CLI to use),
# IMGCLASS_BIN (a release binary instead of building one).
set -euo pipefail
start_time=$(date +%s)
cd "$(dirname "$0")/.."
repo="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"
web_port="${IMGCLASS_E2E_WEB_PORT:-8080}"
base_image="${BASE_IMAGE:-imgclass-base:bookworm}"
project=imgclass-e2e
ml_image=imgclass-ml:e2e
web_image=imgclass-web:e2e
work="$(mktemp -d)"
started_dockerd=""
net_saved=""

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------
for tool in curl python3 cargo debootstrap; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done
# A docker CLI that can build with BuildKit (to skip the unused build
# stage): one with buildx, or a pre-23 CLI with DOCKER_BUILDKIT=1 (Debian 12's).
build_cmd=()
for cand in ${DOCKER:-docker /usr/bin/docker}; do
  command -v "$cand" >/dev/null || continue
  if "$cand" buildx version >/dev/null 2>&1; then
    docker="$cand"; build_cmd=("$cand" buildx build --load); break
  fi
  major="$("$cand" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)"
  if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 23)); then
    docker="$cand"; build_cmd=(env DOCKER_BUILDKIT=1 "$cand" build); break
  fi
done
((${#build_cmd[@]})) || fail "need a docker CLI with buildx, or Debian's docker.io CLI (BuildKit via DOCKER_BUILDKIT=1)"
if "$docker" compose version >/dev/null 2>&1; then
  compose=("$docker" compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  fail "need docker compose (v2 plugin) or docker-compose (Debian's docker-compose)"
fi
compose+=(-p "$project" -f "$repo/deploy/compose.yaml")
export IMGCLASS_ML_IMAGE="$ml_image" IMGCLASS_WEB_IMAGE="$web_image"
export IMGCLASS_WEB_PORT="$web_port" IMGCLASS_ML_PORTS="127.0.0.1:5001-5003"
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"

# ---- host networking, as it was before dockerd ------------------------------
# Saved before starting dockerd; restored after stopping it.
save_host_network() {
  net_saved="$work/net"
  mkdir -p "$net_saved"
  sysctl -n net.ipv4.ip_forward >"$net_saved/ip_forward"
  ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1 | sort >"$net_saved/bridges"
  local v
  for v in iptables ip6tables; do
    if command -v "$v-save" >/dev/null; then
      "$v-save" >"$net_saved/$v" 2>/dev/null || rm -f "$net_saved/$v"
    fi
  done
}

restore_host_network() {
  [ -n "$net_saved" ] && [ -d "$net_saved" ] || return 0
  local v table bridge chain
  for v in iptables ip6tables; do
    [ -f "$net_saved/$v" ] || continue
    # iptables-save lists only the tables in use: one dockerd brought in
    # (nat, at first use) is emptied, then the saved ones are put back whole.
    for table in $("$v-save" 2>/dev/null | sed -n 's/^\*//p'); do
      grep -qx "\*$table" "$net_saved/$v" && continue
      "$v" -t "$table" -F && "$v" -t "$table" -X || true
      for chain in $("$v" -t "$table" -S 2>/dev/null | awk '$1 == "-P" {print $2}'); do
        "$v" -t "$table" -P "$chain" ACCEPT || true
      done
    done
    "$v-restore" <"$net_saved/$v" || echo "e2e-compose: could not restore $v" >&2
  done
  ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1 | sort >"$net_saved/bridges.after"
  for bridge in $(comm -13 "$net_saved/bridges" "$net_saved/bridges.after"); do
    ip link delete "$bridge" || echo "e2e-compose: could not delete bridge $bridge" >&2
  done
  sysctl -q -w net.ipv4.ip_forward="$(cat "$net_saved/ip_forward")" || true
  echo "e2e-compose: host networking restored (ip_forward=$(sysctl -n net.ipv4.ip_forward), iptables, bridges)"
}

cleanup() {
  local rc=$?
  if [ "${IMGCLASS_E2E_KEEP:-0}" != 1 ] && [ -n "${compose_up:-}" ]; then
    if ((rc != 0)); then
      echo "--- last container logs" >&2
      "${compose[@]}" logs --no-color --tail=15 >&2 || true
    fi
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
    restore_host_network
  fi
  rm -rf "$work"
  echo "e2e-compose: $( ((rc == 0)) && echo PASSED || echo FAILED ) in $(( $(date +%s) - start_time )) s"
}
trap cleanup EXIT

if ! "$docker" info >/dev/null 2>&1; then
  say "starting dockerd"
  [ "$(id -u)" = 0 ] || fail "dockerd is not running and only root can start it"
  save_host_network
  dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
  "$docker" info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
fi

# ---- images -----------------------------------------------------------------
say "base image $base_image (debootstrap + docker import)"
DOCKER="$docker" "$repo/deploy/docker/make-base.sh" "$base_image"

say "classifier binary and model home (host build)"
ctx="$work/context"
"$repo/deploy/docker/prebuilt-context.sh" "$ctx"

say "docker build $ml_image (ARTIFACTS=prebuilt)"
"${build_cmd[@]}" -q -f "$repo/deploy/docker/Dockerfile" \
  --build-arg ARTIFACTS=prebuilt --build-arg RUNTIME_BASE="$base_image" \
  -t "$ml_image" "$ctx" >/dev/null
say "docker build $web_image"
"${build_cmd[@]}" -q -f "$repo/deploy/docker/web.Dockerfile" \
  --build-arg RUNTIME_BASE="$base_image" -t "$web_image" "$repo" >/dev/null
for img in "$base_image" "$ml_image" "$web_image"; do
  printf '  %-24s %6.1f MB\n' "$img" "$(( $("$docker" image inspect -f '{{.Size}}' "$img") / 100000 ))e-1"
done

# ---- the stack --------------------------------------------------------------
say "compose up: web + 3 ml replicas"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
compose_up=1
# Only ml and web: the monitoring services' images come from a registry.
"${compose[@]}" up -d --no-build --scale ml=3 ml web >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up"; }
base="http://127.0.0.1:$web_port"
for _ in $(seq 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
  sleep 1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] || fail "gateway not ready on $base"
mapfile -t ml_ids < <("${compose[@]}" ps -q ml)
((${#ml_ids[@]} == 3)) || fail "expected 3 ml containers, got ${#ml_ids[@]}"
for id in "${ml_ids[@]}"; do
  user="$("$docker" inspect -f '{{.Config.User}}' "$id")"
  [ "$user" = "10001:10001" ] || fail "ml runs as '$user', not the unprivileged user"
done
web_user="$("$docker" inspect -f '{{.Config.User}}' "$("${compose[@]}" ps -q web)")"
[ "$web_user" = "10002:10002" ] || fail "web runs as '$web_user', not the unprivileged user"
echo "  ready; ml containers: ${#ml_ids[@]}; all unprivileged"

# ---- checks -----------------------------------------------------------------
photos="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}/photos-v2"
[ -f "$photos/coffee.png" ] || fail "no test photos in $photos (run the test suite once)"
# photo = accepted top-1 labels
declare -A expect=(
  [coffee.png]="espresso|cup"
  [chelsea.png]="tabby|tiger cat|Egyptian cat"
  [rocket.jpg]="missile|projectile"
  [motorcycle_left.png]="moped|motor scooter"
)
check_top1() { # file json
  python3 - "$1" "$2" "${expect[$1]}" <<'PY'
import json, sys
name, body, accepted = sys.argv[1], sys.argv[2], sys.argv[3].split("|")
preds = json.loads(body)
top = preds[0]["label"]
if top not in accepted:
    sys.exit(f"{name}: top-1 {top!r} is not one of {accepted}")
print(f"  {name:22} {top} ({preds[0]['probability']:.3f})")
PY
}

say "page and API through the gateway"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/")" = 200 ] || fail "GET /"
# Read the page first: `curl | grep -q` under pipefail fails when grep stops
# reading early (curl then exits 23).
page="$(curl -s "$base/")"
grep -q '<script src="app.js"' <<<"$page" || fail "GET / is not the page"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/app.js")" = 200 ] || fail "GET /app.js"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:5001/readyz")" = 200 ] || fail "ml not published on 5001"

say "uploads through $base/classify"
for name in "${!expect[@]}"; do
  body="$(curl -sf -F "image=@$photos/$name" "$base/classify")" || fail "upload $name"
  check_top1 "$name" "$body"
done

say "48 uploads, 4 at a time, with kill -9 of one replica's process after 12"
victim="${ml_ids[0]}"
victim_pid="$("$docker" inspect -f '{{.State.Pid}}' "$victim")"
python3 - "$base" "$photos" 48 12 "$victim_pid" <<'PY' || fail "uploads failed during the kill"
import collections, os, signal, sys, threading, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
base, photos, count, after, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
names = ["coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
done, lock, killed = 0, threading.Lock(), threading.Event()
def upload(i):
    global done
    name = names[i % len(names)]
    data = open(os.path.join(photos, name), "rb").read()
    b = "e2e-boundary-7f3a"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(base + "/classify", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={b}", "X-Request-Id": f"kill-{i}"})
    try:
        with opener.open(req, timeout=60) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception as e:
        code = f"error: {e}"
    with lock:
        done += 1
        if done == after and not killed.is_set():
            os.kill(pid, signal.SIGKILL)
            killed.set()
    return code
with ThreadPoolExecutor(4) as pool:
    codes = list(pool.map(upload, range(count)))
for code, n in sorted(collections.Counter(map(str, codes)).items()):
    print(f"  status {code}: {n}")
print(f"  killed pid {pid} after {after} answers: {killed.is_set()}")
sys.exit(0 if killed.is_set() and all(c == 200 for c in codes) else 1)
PY

say "requests spread over every replica (gateway access log)"
"${compose[@]}" logs --no-color web >"$work/web.log" 2>&1
python3 - "$work/web.log" <<'PY'
import json, sys, collections
answered = collections.Counter()
retried = 0
for line in open(sys.argv[1]):
    brace = line.find("{")
    if brace < 0:
        continue
    try:
        rec = json.loads(line[brace:])
    except ValueError:
        continue
    if rec.get("uri", "").startswith("/classify") and rec.get("status") == 200:
        tried = [a.strip() for a in rec["upstream"].replace(" : ", ",").split(",")]
        answered[tried[-1]] += 1
        retried += len(tried) > 1
for addr, n in sorted(answered.items()):
    print(f"  {addr:22} {n} answers")
print(f"  retried on another replica: {retried}")
if len(answered) < 3:
    sys.exit(f"only {len(answered)} replicas answered")
PY

say "shared images volume"
"${compose[@]}" exec -T web sh -c 'find /var/lib/imgclass/images -type f ! -name ".*"' >"$work/files" || fail "listing the volume"
images=$(grep -vc '\.json$' "$work/files" || true)
sidecars=$(grep -c '\.json$' "$work/files" || true)
echo "  $images images, $sidecars sidecars"
((images == ${#expect[@]} && sidecars == ${#expect[@]})) || fail "expected ${#expect[@]} images + sidecars"
history="$(curl -sf "$base/api/history?limit=50")" || fail "history"
n=$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["items"]))' "$history")
((n == ${#expect[@]})) || fail "history lists $n results, expected ${#expect[@]}"

say "the killed replica is restarted (restart policy) and healthy again"
h=""
for _ in $(seq 60); do
  h="$("$docker" inspect -f '{{.State.Health.Status}}' "$victim" 2>/dev/null || true)"
  [ "$h" = healthy ] && break
  sleep 1
done
[ "$h" = healthy ] || fail "killed replica is '$h' after 60 s"
echo "  $(echo "$victim" | cut -c1-12): $h (restarts: $("$docker" inspect -f '{{.RestartCount}}' "$victim"))"

say "graceful stop"
"${compose[@]}" stop -t 40 >/dev/null 2>&1
for id in "${ml_ids[@]}"; do
  code="$("$docker" inspect -f '{{.State.ExitCode}}' "$id")"
  [ "$code" = 0 ] || fail "ml container $(echo "$id" | cut -c1-12) exited $code after SIGTERM"
done
echo "  every ml replica exited 0 after SIGTERM"
