#!/usr/bin/env bash
# A real Kubernetes run of deploy/k8s: brings up a one-node cluster on this
# machine (Kubernetes built from Debian's source package, etcd, dockerd,
# kubelet with dockershim, kube-proxy in iptables mode), builds both images
# into the node's docker, applies deploy/k8s/overlays/local-1.20 and checks
# everything through the web Service's NodePort on 127.0.0.1:30080:
#
#   - the page, and every test photo classified with a 3-item answer;
#   - the uploads in the shared volume as every ml pod sees it, and in
#     /api/history;
#   - no failed request while an ml pod is deleted, and while ml and web are
#     rolled (`kubectl rollout restart`), under load;
#   - `kubectl scale deployment/ml --replicas=5` under load: the new pods'
#     share of the requests from 10 s after they are Ready;
#   - requests per ml pod at a steady 15 req/s and at full load (from the
#     gateways' access logs), max/min <= 1.5;
#   - time from `kubectl apply` to every pod Ready, and the RSS of each pod.
#
# It ends with one JSON line (ready_s, delete_failures, web_rollout_failures,
# ml_rollout_failures, scale_new_pod_share, requests_per_ml_pod,
# total_requests) and exits non-zero if a check failed.
#
#   sudo deploy/e2e-k8s.sh              run, then tear everything down
#   sudo deploy/e2e-k8s.sh teardown     tear down what a kept run left up
#   sudo deploy/e2e-k8s.sh prepare      only install packages and build
#                                        Kubernetes (cached)
#
# Env: IMGCLASS_E2E_K8S_KEEP=1 leaves the cluster up and prints the page's URL
# (KUBECONFIG and DOCKER_HOST to use it are printed too); IMGCLASS_E2E_K8S_CACHE
# (~/.cache/imgclass/e2e-k8s: the Kubernetes build and the base image, kept
# between runs), IMGCLASS_E2E_K8S_STATE (/tmp/imgclass-e2e-k8s: the cluster's
# state, removed by teardown), IMGCLASS_HOME (model home for the image,
# ~/.cache/imgclass), IMGCLASS_BIN (a release binary for the image instead of
# `cargo build --release -p imgclass`), IMGCLASS_TEST_CACHE (test photos).
#
# Why Kubernetes 1.20: it is the newest release whose source Debian ships
# (bookworm's `kubernetes` source package, all Go modules vendored, built with
# Debian's Go), and nothing can be downloaded here but Debian/PyPI/crates.io/npm
# packages. The base (deploy/k8s/base) targets current Kubernetes;
# overlays/local-1.20 swaps the three API fields 1.20 lacks.
#
# What a bare cluster needs that a distribution would bring:
#   - DNS: no CoreDNS package in Debian, so deploy/e2e-k8s/cluster-dns.py
#     serves the Service names from the API (ClusterIP, or the Ready pod
#     addresses of a headless Service) through dnsmasq on the node's bridge;
#   - storage: a hostPath PersistentVolume for the images claim, a folder
#     owned by the image's user (hostPath ignores fsGroup);
#   - images: no registry; built into the node's docker, imagePullPolicy Never;
#     the pause image is Debian's static catatonit FROM scratch;
#   - this VM lacks CAP_SYS_RESOURCE, so a runc wrapper clamps the negative
#     oomScoreAdj kubelet asks for to 0 (deploy/e2e-k8s/runc-oom-clamp).
#
# The machine is shared: everything listens on 127.0.0.1 or on the bridge
# this script creates (imgk8s0, 10.79.0.1/24; Services in 10.79.1.0/24; an
# unreachable route covers the rest of 10.79.0.0/16, and nothing is forwarded
# or masqueraded off the node). dockerd runs with its own socket, data root and
# bridge and without touching iptables; the kubelet's cloud credential lookups
# are off (AWS_EC2_METADATA_DISABLED, no cloud provider). Teardown stops what
# the run started by PID, restores the sysctls kubelet and kube-proxy change,
# removes kube-proxy's iptables chains (`kube-proxy --cleanup` and any KUBE-*
# chain left), the bridge, the route, the mounts under the state folder and the
# kubelet folders the run created.
#
# Needs root. Installs (Debian): docker.io, etcd-server, catatonit,
# debootstrap, golang-go, dpkg-dev, iptables, ipset, conntrack, dnsmasq-base,
# jq, curl. Uses kubectl from PATH only to render the kustomization (kustomize
# v5; scripts/install-deps.sh installs it); the cluster is driven by the
# kubectl built with it. First run: ~5 min to build Kubernetes, ~2 min for the
# base image; then the whole run takes about 5 minutes.
set -euo pipefail
start_time=$(date +%s)
cd "$(dirname "$0")/.."
repo="$PWD"
here="$repo/deploy/e2e-k8s"
cache="${IMGCLASS_E2E_K8S_CACHE:-$HOME/.cache/imgclass/e2e-k8s}"
state="${IMGCLASS_E2E_K8S_STATE:-/tmp/imgclass-e2e-k8s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgclass/target}"

# The node's network: a bridge of our own, pods on it, Services beside it.
bridge=imgk8s0
node_ip=10.79.0.1
pod_cidr=10.79.0.0/24
service_cidr=10.79.1.0/24
own_net=10.79.0.0/16
apiserver=https://127.0.0.1:16443
node_port=30080
base_url="http://127.0.0.1:$node_port"
ns=imgclass
fw_chain=IMGCLASS-E2E-K8S
# sysctls kubelet (setupKernelTunables) and kube-proxy set: saved before, restored by teardown.
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
  net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Folders kubelet and dockershim create outside their --root-dir: removed by
# teardown only when the run created them.
node_paths=(/var/log/pods /var/log/containers /var/lib/kubelet /var/lib/dockershim
  /var/run/dockershim.sock /var/run/kubernetes /etc/kubernetes)
# ... and those dockerd creates whatever its roots (its trust key, plugin
# sockets folder): kept while another dockerd runs.
docker_paths=(/etc/docker /run/docker)

say() { printf '\n== %s [%ss]\n' "$*" "$(($(date +%s) - start_time))"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (dockerd, kubelet, iptables)"

# ---- packages and the Kubernetes build (cached) ----------------------------
debian_packages=(docker.io etcd-server catatonit debootstrap golang-go dpkg-dev iptables ipset
  conntrack dnsmasq-base jq curl rsync)
install_packages() {
  local need=() pkg
  for pkg in "${debian_packages[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  ((${#need[@]})) || return 0
  say "installing Debian packages: ${need[*]}"
  apt-get update -qq
  # policy-rc.d-less machines would start docker.io's service on install:
  # this run starts its own dockerd.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

k8s_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# Sets k8s_version and k8s_bin (where the build of that version is kept).
k8s_paths() {
  k8s_version="$(apt-cache show --no-all-versions kubernetes-client 2>/dev/null | awk '/^Version:/ { print $2; exit }')"
  if [ -z "$k8s_version" ]; then
    apt-get update -qq
    k8s_version="$(apt-cache show --no-all-versions kubernetes-client | awk '/^Version:/ { print $2; exit }')"
  fi
  k8s_bin="$cache/kubernetes-$k8s_version/bin"
}
build_kubernetes() {
  local version bindir src lists
  k8s_paths
  version="$k8s_version" bindir="$k8s_bin"
  [ -x "$bindir/kube-proxy" ] && [ -x "$bindir/kubectl" ] && return 0
  say "building Kubernetes $version from Debian's source package (once, ~5 min)"
  src="$cache/kubernetes-$version/src"
  rm -rf "$src" && mkdir -p "$src" "$cache/apt/sources.list.d" "$cache/apt/lists/partial"
  # deb-src twins of this machine's own apt sources (same mirrors and keys).
  lists="$cache/apt/sources.list.d"
  rm -f "$lists"/*
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^deb \(.*\)/deb-src \1/p' "$f" >"$lists/$(basename "$f" .list).list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" >"$lists/$(basename "$f")"
  done
  local apt_src=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$lists" -o APT::Sandbox::User=root
    -o "Dir::State::Lists=$cache/apt/lists")
  apt-get "${apt_src[@]}" update -qq
  (cd "$src" && apt-get "${apt_src[@]}" source --download-only -qq "kubernetes=$version") >/dev/null
  (cd "$src" && dpkg-source -x --no-check kubernetes_*.dsc tree) >/dev/null
  # GOPATH layout the 1.20 build expects; every Go module is vendored.
  mkdir -p "$src/tree/.go/src/k8s.io" "$src/home"
  ln -sfn ../../.. "$src/tree/.go/src/k8s.io/kubernetes"
  local what="" c
  for c in "${k8s_components[@]}"; do what+=" cmd/$c"; done
  (cd "$src/tree" && env HOME="$src/home" GOPATH="$src/tree/.go" GOCACHE="$src/home/go-cache" \
    CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor nice make WHAT="${what# }") >"$src/build.log" 2>&1 ||
    { tail -30 "$src/build.log" >&2; fail "Kubernetes build (log: $src/build.log)"; }
  mkdir -p "$bindir"
  for c in "${k8s_components[@]}"; do cp "$src/tree/_output/bin/$c" "$bindir/"; done
  rm -rf "$src"   # 1+ GB of sources and objects; the binaries are what is kept
}

# ---- the node's processes, by PID -------------------------------------------
pids="$state/pids"
logs="$state/logs"
before="$state/before"
docker=/usr/bin/docker   # Debian's docker.io CLI: BuildKit via DOCKER_BUILDKIT=1
export DOCKER_HOST="unix://$state/docker/docker.sock"
export KUBECONFIG="$state/kubeconfig"

start() { # name command...: runs it in the background, PID in $pids/name
  local name=$1
  shift
  nohup "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name"
}

# Stops a process this run started: by the PID it recorded, only if that PID
# still runs the same program; SIGTERM, then SIGKILL after 30 s.
stop() {
  local name=$1 pid exe
  pid="$(cat "$pids/$name" 2>/dev/null)" || return 0
  exe="$(cat "$pids/$name.exe" 2>/dev/null || true)"
  if kill -0 "$pid" 2>/dev/null && { [ -z "$exe" ] || [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]; }; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "  $name ($pid) did not stop on SIGTERM: SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "  stopped $name ($pid)"
  fi
  rm -f "$pids/$name" "$pids/$name.exe"
}

# Remember which program a PID runs, once it has exec'd (nohup execs it).
note_exe() { sleep 0.3; readlink "/proc/$(cat "$pids/$1")/exe" >"$pids/$1.exe" 2>/dev/null || true; }

wait_for() { # seconds what command...: polls every 0.5 s
  local secs=$1 what=$2
  shift 2
  for _ in $(seq $((secs * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "$what not up within $secs s (logs: $logs)"
}

kc() { "$k8s_bin/kubectl" --request-timeout=30s "$@"; }

# ---- teardown ---------------------------------------------------------------
teardown() {
  [ -d "$state" ] || { echo "nothing to tear down ($state does not exist)"; return 0; }
  say "teardown"
  k8s_paths
  if [ -s "$pids/apiserver" ] && kc get ns "$ns" >/dev/null 2>&1; then
    # Pods stopped by kubelet: their volumes are unmounted the normal way.
    kc delete ns "$ns" --wait=true --timeout=90s >/dev/null 2>&1 || echo "  namespace $ns not gone in 90 s"
    kc delete pv imgclass-images --ignore-not-found >/dev/null 2>&1 || true
  fi
  local n
  for n in cluster-dns kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd dnsmasq; do stop "$n"; done
  if [ -S "$state/docker/docker.sock" ] && "$docker" info >/dev/null 2>&1; then
    local ids
    ids="$("$docker" ps -aq)"
    [ -z "$ids" ] || { "$docker" rm -f $ids >/dev/null && echo "  removed leftover containers"; }
    "$docker" image prune -f >/dev/null 2>&1 || true
  fi
  stop dockerd
  # kube-proxy's rules: its own cleanup, then any KUBE-* chain it left (canary
  # and mark chains) that did not exist before the run.
  if [ -x "$k8s_bin/kube-proxy" ]; then
    "$k8s_bin/kube-proxy" --cleanup >"$logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  local cmd table chain
  for cmd in iptables ip6tables; do
    command -v $cmd >/dev/null || continue
    for table in filter nat mangle; do
      for chain in $($cmd -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
        grep -qx "$cmd $table $chain" "$before/chains" 2>/dev/null && continue
        # Rules elsewhere that jump to it first, then the chain itself.
        $cmd -t $table -S 2>/dev/null | awk -v c="$chain" '$1 == "-A" && $0 ~ ("-j " c "( |$)") && $2 != c' |
          sed 's/^-A /-D /' | while read -r rule; do eval "$cmd -t $table $rule" 2>/dev/null || true; done
        $cmd -t $table -F "$chain" 2>/dev/null || true
        $cmd -t $table -X "$chain" 2>/dev/null || true
      done
    done
  done
  # Mounts under the state folder and the docker data root, deepest first
  # (kubelet bind-mounts its root dir onto itself; pod volumes; overlays).
  local m
  for m in $(awk -v a="$state" -v b="$cache/docker" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if iptables -S "$fw_chain" >/dev/null 2>&1; then
    iptables -D FORWARD -j "$fw_chain" 2>/dev/null || true
    iptables -F "$fw_chain" && iptables -X "$fw_chain"
  fi
  ip route del unreachable "$own_net" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  # Container cgroups dockerd made under its own parent.
  for m in /sys/fs/cgroup/*/imgclass-e2e-k8s /sys/fs/cgroup/imgclass-e2e-k8s; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -f "$before/sysctl" ]; then
    local key value now
    while IFS='=' read -r key value; do
      now="$(sysctl -n "$key" 2>/dev/null)" || continue
      [ "$now" = "$value" ] || { sysctl -qw "$key=$value" && echo "  restored $key = $value (was $now)"; }
    done <"$before/sysctl"
  fi
  local p other_dockerd=""
  pgrep -x dockerd >/dev/null && other_dockerd=1
  for p in "${node_paths[@]}" "${docker_paths[@]}"; do
    [ -e "$p" ] || continue
    grep -qx "$p" "$before/paths" 2>/dev/null && continue
    case " ${docker_paths[*]} " in *" $p "*) [ -z "$other_dockerd" ] || continue ;; esac
    rm -rf "$p" && echo "  removed $p (made by this run)"
  done
  # What is left, for the record: none of it should be.
  local left=""
  left+="$(awk -v a="$state" 'index($2, a) == 1' /proc/mounts)"
  for cmd in iptables ip6tables; do for table in filter nat mangle; do
    left+="$($cmd -t $table -S 2>/dev/null | awk -v c="$cmd" -v t="$table" '$1 == "-N" && $2 ~ /^KUBE-/ { print c, t, $2 }' |
      grep -vxF -f "$before/chains" 2>/dev/null || true)"
  done; done
  left+="$(iptables -S "$fw_chain" 2>/dev/null || true)"
  left+="$(ip link show "$bridge" 2>/dev/null || true)"
  rm -rf "$state"
  if [ -n "$left" ]; then printf '  left behind:\n%s\n' "$left"; else echo "  machine restored"; fi
}

if [ "${1:-run}" = prepare ]; then
  install_packages
  build_kubernetes
  echo "Kubernetes binaries: $k8s_bin"
  exit 0
fi
if [ "${1:-run}" = teardown ]; then
  teardown
  exit 0
fi
[ "${1:-run}" = run ] || fail "usage: $0 [run|teardown|prepare]"

# ---- preflight --------------------------------------------------------------
[ ! -d "$state" ] || teardown   # a kept or interrupted run
install_packages
build_kubernetes
for tool in cargo python3 curl kubectl; do command -v "$tool" >/dev/null || fail "$tool is required"; done
photos="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}/photos-v2"
[ -f "$photos/coffee.png" ] || fail "no test photos in $photos (run the test suite once)"
for port in 12379 12380 16443 10248 10249 10256 10257 10259 "$node_port"; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "port 127.0.0.1:$port is in use"
done
addresses="$(ip -4 addr)"
! grep -q ' 10\.79\.' <<<"$addresses" || fail "10.79.0.0/16 is already in use on this machine"
! ip link show "$bridge" >/dev/null 2>&1 || fail "interface $bridge exists"

mkdir -p "$state" "$pids" "$logs" "$before" "$state/certs" "$state/dns" "$state/runs" "$cache"
chmod 0755 "$state" "$state/dns"
for key in "${sysctls[@]}"; do
  value="$(sysctl -n "$key" 2>/dev/null)" && echo "$key=$value"
done >"$before/sysctl"
for p in "${node_paths[@]}" "${docker_paths[@]}"; do [ -e "$p" ] && echo "$p"; done >"$before/paths" || true
for cmd in iptables ip6tables; do for table in filter nat mangle; do
  $cmd -t $table -S 2>/dev/null | awk -v c="$cmd" -v t="$table" '$1 == "-N" { print c, t, $2 }'
done; done >"$before/chains"

finish() {
  local rc=$?
  if ((rc != 0)); then
    echo "--- logs in $logs (last lines of the node's)" >&2
    for f in kubelet kube-apiserver dockerd; do [ -f "$logs/$f.log" ] && tail -5 "$logs/$f.log" >&2; done
    if [ -s "$pids/kube-apiserver" ]; then kc -n "$ns" get pods -o wide >&2 2>/dev/null || true; fi
  fi
  if [ "${IMGCLASS_E2E_K8S_KEEP:-0}" = 1 ]; then keep_message; else teardown || true; fi
  echo "e2e-k8s: FAILED in $(($(date +%s) - start_time)) s"
}
keep_message() {
  printf '\nkept up: the page is at %s/\n  export KUBECONFIG=%s DOCKER_HOST=%s\n  kubectl: %s\n  remove it all: %s teardown\n' \
    "$base_url" "$KUBECONFIG" "$DOCKER_HOST" "$k8s_bin/kubectl" "$repo/deploy/e2e-k8s.sh"
}
trap finish EXIT

# ---- network and dockerd ----------------------------------------------------
say "bridge $bridge ($node_ip/24) and dockerd"
ip link add "$bridge" type bridge
ip addr add "$node_ip/24" dev "$bridge"
ip link set "$bridge" up
# Anything in 10.79.0.0/16 that is not on the bridge (or DNATed by
# kube-proxy to it) stays on this machine.
ip route add unreachable "$own_net"
# Pod-to-pod traffic on the bridge passes the FORWARD chain (bridge netfilter);
# another dockerd on the machine may have set its policy to DROP.
iptables -N "$fw_chain"
iptables -A "$fw_chain" -i "$bridge" -o "$bridge" -j ACCEPT
iptables -I FORWARD 1 -j "$fw_chain"
mkdir -p "$state/docker" "$cache/docker" "$state/bin"
cp "$here/runc-oom-clamp" "$state/bin/" && chmod 0755 "$state/bin/runc-oom-clamp"
start dockerd dockerd --data-root "$cache/docker" --exec-root "$state/docker/exec" \
  -H "$DOCKER_HOST" --pidfile "$state/docker/dockerd.pid" --bridge "$bridge" \
  --iptables=false --ip-forward=false --ip-masq=false --userland-proxy=false \
  --cgroup-parent=/imgclass-e2e-k8s --add-runtime "clamp=$state/bin/runc-oom-clamp" \
  --default-runtime clamp --log-level warn
note_exe dockerd
wait_for 60 dockerd "$docker" info

# ---- images -----------------------------------------------------------------
say "images: base (debootstrap), imgclass-ml:local (host binary), imgclass-web:local, pause"
DOCKER="$docker" "$repo/deploy/docker/make-base.sh" imgclass-base:bookworm
ctx="$state/ml-context"
"$repo/deploy/docker/prebuilt-context.sh" "$ctx"
export DOCKER_BUILDKIT=1
"$docker" build -q -f "$repo/deploy/docker/Dockerfile" --build-arg ARTIFACTS=prebuilt \
  --build-arg RUNTIME_BASE=imgclass-base:bookworm -t imgclass-ml:local "$ctx" >/dev/null
# The web image installs nginx-light with apt: its build steps use the host's
# network (this dockerd gives containers no route off the node).
"$docker" build -q --network host -f "$repo/deploy/docker/web.Dockerfile" \
  --build-arg RUNTIME_BASE=imgclass-base:bookworm -t imgclass-web:local "$repo" >/dev/null
mkdir -p "$state/pause-context"
cp /usr/bin/catatonit "$state/pause-context/" && cp "$here/pause.Dockerfile" "$state/pause-context/Dockerfile"
"$docker" build -q -t imgclass-e2e/pause:1 "$state/pause-context" >/dev/null
rm -rf "$ctx"
for img in imgclass-ml:local imgclass-web:local imgclass-e2e/pause:1; do
  printf '  %-22s %6.1f MB\n' "$img" "$(( $("$docker" image inspect -f '{{.Size}}' "$img") / 100000 ))e-1"
done

# ---- the cluster -------------------------------------------------------------
say "cluster: etcd, kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy, DNS"
openssl genrsa -out "$state/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$state/certs/sa.key" -pubout -out "$state/certs/sa.pub" 2>/dev/null
token="$(openssl rand -hex 24)"
echo "$token,admin,admin,system:masters" >"$state/certs/tokens.csv"
chmod 0600 "$state/certs/tokens.csv" "$state/certs/sa.key"
cat >"$KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "$apiserver", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: $token}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
KC
chmod 0600 "$KUBECONFIG"
start etcd etcd --name node1 --data-dir "$state/etcd" \
  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster node1=http://127.0.0.1:12380
note_exe etcd
wait_for 30 etcd curl -sf http://127.0.0.1:12379/health
start kube-apiserver "$k8s_bin/kube-apiserver" --etcd-servers=http://127.0.0.1:12379 \
  --bind-address=127.0.0.1 --secure-port=16443 --insecure-port=0 --advertise-address="$node_ip" \
  --cert-dir="$state/certs" --token-auth-file="$state/certs/tokens.csv" --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$state/certs/sa.pub" --service-account-signing-key-file="$state/certs/sa.key" \
  --service-cluster-ip-range="$service_cidr" --service-node-port-range=30000-32767 \
  --kubelet-preferred-address-types=InternalIP
note_exe kube-apiserver
wait_for 60 kube-apiserver kc get --raw /readyz
start kube-controller-manager "$k8s_bin/kube-controller-manager" --kubeconfig="$KUBECONFIG" \
  --port=0 --secure-port=10257 --bind-address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$state/certs/sa.key" --root-ca-file="$state/certs/apiserver.crt" \
  --controllers='*,-nodeipam,-cloud-node-lifecycle' --use-service-account-credentials=false
note_exe kube-controller-manager
start kube-scheduler "$k8s_bin/kube-scheduler" --kubeconfig="$KUBECONFIG" --port=0 \
  --secure-port=10259 --bind-address=127.0.0.1 --leader-elect=false
note_exe kube-scheduler
sed "s/@NODE_IP@/$node_ip/g" "$here/kubelet.yaml" >"$state/kubelet.yaml"
# AWS_EC2_METADATA_DISABLED: the in-tree image credential lookup would ask a
# cloud metadata address otherwise; no cloud provider either.
start kubelet env AWS_EC2_METADATA_DISABLED=true "$k8s_bin/kubelet" --kubeconfig="$KUBECONFIG" \
  --config="$state/kubelet.yaml" --container-runtime=docker --docker-endpoint="$DOCKER_HOST" \
  --pod-infra-container-image=imgclass-e2e/pause:1 --root-dir="$state/kubelet" \
  --cert-dir="$state/kubelet/pki" --experimental-dockershim-root-directory="$state/dockershim" \
  --hostname-override=node1 --node-ip="$node_ip" --cloud-provider= --resolv-conf=
note_exe kubelet
start kube-proxy "$k8s_bin/kube-proxy" --kubeconfig="$KUBECONFIG" --proxy-mode=iptables \
  --cluster-cidr="$pod_cidr" --hostname-override=node1 --bind-address=127.0.0.1 \
  --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 \
  --nodeport-addresses=127.0.0.0/8 --oom-score-adj=0 --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
note_exe kube-proxy
# Cluster DNS on the bridge address, answering only cluster.local names.
: >"$state/dns/hosts"
chmod 0644 "$state/dns/hosts"
start dnsmasq dnsmasq --keep-in-foreground --listen-address="$node_ip" --bind-interfaces --port=53 \
  --no-resolv --no-hosts --no-poll --addn-hosts="$state/dns/hosts" --local=/cluster.local/ \
  --domain-needed --bogus-priv --pid-file="$state/dns/dnsmasq.pid"
note_exe dnsmasq
export K8S_API="$apiserver" K8S_TOKEN="$token"
start cluster-dns python3 "$here/e2e.py" dns "$state/dns/hosts" "$pids/dnsmasq"
wait_for 90 "node1 Ready" sh -c "'$k8s_bin/kubectl' get node node1 | grep -qw Ready"
kc get nodes -o wide | sed 's/^/  /'

# ---- deploy -------------------------------------------------------------------
say "deploy overlays/local-1.20"
# The images claim's volume: what a provisioner would make. hostPath ignores
# fsGroup, so the folder belongs to the ml image's user (10001) and its group
# (the pods' fsGroup): the web pods (10002, fsGroup 10001) can read it.
install -d -o 10001 -g 10001 -m 2770 "$state/pv/images"
kc apply -f - >/dev/null <<PV
apiVersion: v1
kind: PersistentVolume
metadata:
  name: imgclass-images
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "$state/pv/images", type: Directory}
  claimRef: {namespace: $ns, name: images}
PV
kubectl kustomize "$repo/deploy/k8s/overlays/local-1.20" >"$state/rendered.yaml"
runs="$state/runs"
python3 "$here/e2e.py" watch-ready "$runs/ready.json" 6 &
watcher=$!
applied="$(date +%s.%N)"
kc apply -f "$state/rendered.yaml" | sed 's/^/  /'
wait "$watcher" || fail "6 pods not Ready within 180 s"
kc -n "$ns" get pods -o wide | sed 's/^/  /'
ready_s="$(python3 - "$runs/ready.json" "$applied" <<'PY'
import json, sys
pods, applied = json.load(open(sys.argv[1])), float(sys.argv[2])
for name, p in sorted(pods.items()):
    if "ready_seen" in p:
        print(f"  {name:28} Ready {p['ready_seen'] - applied:5.1f} s after apply, "
              f"{p['ready_seen'] - p['running_seen']:4.1f} s after its container was seen running", file=sys.stderr)
print(f"{max(p['ready_seen'] for p in pods.values() if 'ready_seen' in p) - applied:.1f}")
PY
)"
echo "  apply -> 3 ml + 3 web Ready: $ready_s s"

# ---- checks -----------------------------------------------------------------
ml_pods() { kc -n "$ns" get pods -l app.kubernetes.io/component=ml --field-selector=status.phase=Running -o name | sed 's|^pod/||'; }
web_logs() { kc -n "$ns" logs -l app.kubernetes.io/component=web --tail=-1 --max-log-requests=10 2>/dev/null; }
load() { # tag options...: a load run through the NodePort
  local tag=$1
  shift
  python3 "$here/e2e.py" load "$base_url" "$photos" "$tag" "$runs/$tag.jsonl" "$@"
}
failures() { python3 -c 'import json,sys; print(sum(json.loads(l)["status"] != 200 for l in open(sys.argv[1])))' "$runs/$1.jsonl"; }

say "the page and every photo through $base_url"
page="$(curl -sf "$base_url/")" || fail "GET /"
grep -q '<script src="app.js"' <<<"$page" || fail "GET / is not the page"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base_url/app.js")" = 200 ] || fail "GET /app.js"
python3 "$here/e2e.py" photos "$base_url" "$photos" || fail "a photo got no 3-item answer"

say "the uploads in the shared volume, from every ml pod, and in /api/history"
distinct="$(sha256sum "$photos"/*.png "$photos"/*.jpg | awk '{ print $1 }' | sort -u | wc -l)"
for pod in $(ml_pods); do
  n=0
  for _ in $(seq 20); do
    n="$(kc -n "$ns" exec "$pod" -- find /var/lib/imgclass/images -type f ! -name '.*' ! -name '*.json' | wc -l)"
    ((n >= distinct)) && break
    sleep 0.5
  done
  echo "  $pod sees $n images ($distinct distinct photos uploaded)"
  ((n == distinct)) || fail "$pod sees $n images, expected $distinct"
done
history="$(curl -sf "$base_url/api/history?limit=100")" || fail "GET /api/history"
n="$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["items"]))' "$history")"
echo "  /api/history lists $n results"
((n == distinct)) || fail "/api/history lists $n results, expected $distinct"

say "delete one ml pod during 25 s of uploads at 15/s"
load delete rate=15 duration=25 &
loader=$!
sleep 5
victim="$(ml_pods | sed -n 1p)"
echo "  deleting pod/$victim"
kc -n "$ns" delete pod "$victim" --wait=false | sed 's/^/  /'
wait "$loader"
delete_failures="$(failures delete)"

# Under load until the rollout is done and every old pod has gone (preStop
# and drain included), then 3 s more.
rollout_under_load() { # deployment
  local tag="$1-rollout" t0
  rm -f "$runs/$tag.stop"
  load "$tag" rate=15 "until=$runs/$tag.stop" &
  loader=$!
  sleep 3
  t0=$(date +%s)
  kc -n "$ns" rollout restart "deployment/$1" | sed 's/^/  /'
  kc -n "$ns" rollout status "deployment/$1" --timeout=180s >/dev/null
  for _ in $(seq 120); do
    [ "$(kc -n "$ns" get pods -l "app.kubernetes.io/component=$1" --no-headers | wc -l)" = 3 ] && break
    sleep 0.5
  done
  echo "  rollout of $1: $(($(date +%s) - t0)) s until the old pods were gone"
  sleep 3
  touch "$runs/$tag.stop"
  wait "$loader"
}
say "kubectl rollout restart deployment/ml under load (15/s)"
rollout_under_load ml
ml_rollout_failures="$(failures ml-rollout)"

say "requests per ml pod at a steady 15 req/s (30 s; every pod is new since the rollout)"
load steady rate=15 duration=30
kc -n "$ns" get pods -l app.kubernetes.io/component=ml -o json >"$runs/ml-pods.json"
steady="$(web_logs | python3 "$here/e2e.py" spread steady "$runs/ml-pods.json")"
echo "  $steady"

say "requests per ml pod at full load (8 clients, no pause, 30 s)"
load full concurrency=8 duration=30
full="$(web_logs | python3 "$here/e2e.py" spread full "$runs/ml-pods.json")"
echo "  $full"

say "kubectl rollout restart deployment/web under load (15/s)"
rollout_under_load web
web_rollout_failures="$(failures web-rollout)"

say "kubectl scale deployment/ml --replicas=5 under load (15/s)"
old_pods="$(ml_pods | sort | tr '\n' ' ')"
rm -f "$runs/scale.stop"
load scale rate=15 "until=$runs/scale.stop" &
loader=$!
sleep 5
kc -n "$ns" scale deployment/ml --replicas=5 | sed 's/^/  /'
python3 "$here/e2e.py" watch-ready "$runs/scale-ready.json" 8 || fail "5 ml pods not Ready"
new_pods="$(ml_pods | sort | grep -vxF -f <(tr ' ' '\n' <<<"$old_pods" | sed '/^$/d') | paste -sd, -)"
ready_at="$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(max(p[n]["ready_seen"] for n in sys.argv[2].split(",")))' \
  "$runs/scale-ready.json" "$new_pods")"
echo "  new pods $new_pods Ready; measuring their share from 10 s to 30 s after"
sleep "$(python3 -c "import time; print(max(0, $ready_at + 30 - time.time()))")"
touch "$runs/scale.stop"
wait "$loader"
kc -n "$ns" get pods -l app.kubernetes.io/component=ml -o json >"$runs/ml-pods.json"
scale="$(web_logs | python3 "$here/e2e.py" share scale "$runs/ml-pods.json" "$new_pods" \
  "$(python3 -c "print($ready_at + 10)")" "$(python3 -c "print($ready_at + 30)")")"
echo "  $scale"
scale_failures="$(failures scale)"

say "memory (RSS of each pod's processes)"
rss_json="{"
while read -r id pod; do
  kib="$("$docker" top "$id" -o pid,rss | awk 'NR > 1 { s += $2 } END { print s + 0 }')"
  printf '  %-30s %6.1f MiB\n' "$pod" "$(python3 -c "print($kib / 1024)")"
  rss_json+="\"$pod\": $(python3 -c "print(round($kib / 1024, 1))"), "
done < <("$docker" ps --filter "label=io.kubernetes.pod.namespace=$ns" --filter label=io.kubernetes.docker.type=container \
  --format '{{.ID}} {{.Label "io.kubernetes.pod.name"}}' | sort -k2)
rss_json="${rss_json%, }}"

# ---- verdict -------------------------------------------------------------------
total_requests="$(cat "$runs"/*.jsonl | wc -l)"
total_requests=$((total_requests + $(ls "$photos"/*.png "$photos"/*.jpg | wc -l)))
result="$(python3 - "$steady" "$full" "$scale" <<PY
import json, sys
steady, full, scale = (json.loads(a) for a in sys.argv[1:4])
problems = []
for what, s in (("steady 15 req/s", steady), ("full load", full)):
    if s["max_over_min"] is None or s["max_over_min"] > 1.5:
        problems.append(f"{what}: requests per ml pod {s['per_pod']} (max/min > 1.5)")
window = list(scale["per_pod"].values())
if scale["new_share"] < 0.4 / 1.5 or not min(window) or max(window) / min(window) > 1.5:
    problems.append(f"scale-out: new pods' share {scale['new_share']} (fair 0.4), per pod {scale['per_pod']}")
for what, n in (("pod delete", $delete_failures), ("ml rollout", $ml_rollout_failures),
                ("web rollout", $web_rollout_failures), ("scale", $scale_failures)):
    if n:
        problems.append(f"{what}: {n} failed requests")
print(json.dumps({
    "ready_s": $ready_s, "delete_failures": $delete_failures, "web_rollout_failures": $web_rollout_failures,
    "ml_rollout_failures": $ml_rollout_failures, "scale_new_pod_share": scale["new_share"],
    "requests_per_ml_pod": list(steady["per_pod"].values()),
    "requests_per_ml_pod_full_load": list(full["per_pod"].values()),
    "total_requests": $total_requests, "rss_mib": $rss_json}))
for p in problems:
    print("PROBLEM: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
)" || { echo "$result"; fail "see PROBLEM lines above"; }

# Passed: tear down (or keep), then the summary as the very last line.
trap - EXIT
if [ "${IMGCLASS_E2E_K8S_KEEP:-0}" = 1 ]; then keep_message; else teardown; fi
echo "e2e-k8s: PASSED in $(($(date +%s) - start_time)) s"
echo "$result"
