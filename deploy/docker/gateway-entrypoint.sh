#!/bin/sh
# Starts the imgclass gateway (nginx) as the image's unprivileged user.
#
# nginx runs with a prefix in a writable folder (IMGCLASS_GATEWAY_PREFIX,
# default /tmp/imgclass-gateway: a tmpfs or emptyDir when the root file
# system is read-only) holding conf/, a link to the page, the pid file and
# nginx's scratch folders.
# The configuration comes from IMGCLASS_GATEWAY_CONF (default
# /etc/imgclass-gateway: nginx.conf, upstream.conf, listen.conf; Kubernetes
# mounts its ConfigMap there). Variables override the included files:
#   IMGCLASS_UPSTREAMS      replicas, space- or comma-separated host:port
#                           (e.g. "ml:5000" or "10.0.0.5:5000,10.0.0.6:5000"),
#                           resolved once, when nginx starts
#   IMGCLASS_UPSTREAMS_DNS  one host:port whose name resolves to every replica
#                           (a Kubernetes headless Service: the Ready pods):
#                           re-resolved every IMGCLASS_UPSTREAMS_REFRESH
#                           seconds (default 1), and nginx reloaded (gracefully)
#                           when the set of addresses changes
#   IMGCLASS_GATEWAY_PORT   port to listen on (e.g. 80 or 8080)
# and IMGCLASS_GATEWAY_WORKERS sets nginx's worker processes (default auto:
# one per CPU of the machine; set it to the container's CPU limit).
# Any other arguments are passed to nginx (e.g. `-t`).
#
# Why re-resolve here: open-source nginx before 1.27.3 resolves upstream
# names only at start (`server ... resolve` came in 1.27.3; Debian 12 has
# 1.22), and a proxy_pass with a variable + `resolver` re-resolves but loses
# the upstream's keepalive pool and shared failure state. One `server` line
# per replica address keeps both, round robin per request, and retries on
# another replica (see deploy/README.md, "Kubernetes").
set -eu
conf_src="${IMGCLASS_GATEWAY_CONF:-/etc/imgclass-gateway}"
prefix="${IMGCLASS_GATEWAY_PREFIX:-/tmp/imgclass-gateway}"
web="${IMGCLASS_GATEWAY_WEB:-/usr/share/imgclass/web}"
server_opts="max_fails=3 fail_timeout=10s"

mkdir -p "$prefix/conf"
cp "$conf_src/nginx.conf" "$conf_src/upstream.conf" "$conf_src/listen.conf" "$prefix/conf/"
ln -sfn "$web" "$prefix/web"

check_address() {
  case "$1" in
    *[!A-Za-z0-9.:_\[\]-]*) echo "invalid upstream address: $1" >&2; exit 64 ;;
  esac
}

if [ -n "${IMGCLASS_UPSTREAMS:-}" ]; then
  {
    echo "# from IMGCLASS_UPSTREAMS"
    for s in $(echo "$IMGCLASS_UPSTREAMS" | tr ',' ' '); do
      check_address "$s"
      echo "server $s $server_opts;"
    done
  } >"$prefix/conf/upstream.conf"
fi

dns_name="" dns_port="" refresh=""
if [ -n "${IMGCLASS_UPSTREAMS_DNS:-}" ]; then
  check_address "$IMGCLASS_UPSTREAMS_DNS"
  dns_name="${IMGCLASS_UPSTREAMS_DNS%:*}"
  dns_port="${IMGCLASS_UPSTREAMS_DNS##*:}"
  case "$dns_port" in
    "" | *[!0-9]* | "$IMGCLASS_UPSTREAMS_DNS") echo "IMGCLASS_UPSTREAMS_DNS must be host:port: $IMGCLASS_UPSTREAMS_DNS" >&2; exit 64 ;;
  esac
  refresh="${IMGCLASS_UPSTREAMS_REFRESH:-1}"
  case "$refresh" in
    "" | *[!0-9]* | 0) echo "invalid IMGCLASS_UPSTREAMS_REFRESH: $refresh" >&2; exit 64 ;;
  esac
fi

# The IPv4 addresses $dns_name resolves to, sorted, one line; empty when the
# lookup fails or finds none.
resolve_replicas() {
  getent ahostsv4 "$dns_name" 2>/dev/null | awk '{ print $1 }' | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# upstream.conf for a set of addresses. None (no replica Ready yet): one
# placeholder marked down, so nginx starts and answers 503 until there is one.
write_replicas() {
  {
    echo "# from IMGCLASS_UPSTREAMS_DNS=$IMGCLASS_UPSTREAMS_DNS: $1"
    [ -n "$1" ] || echo "server 127.0.0.1:$dns_port down;"
    for a in $1; do echo "server $a:$dns_port $server_opts;"; done
  } >"$prefix/conf/upstream.conf.new"
  mv "$prefix/conf/upstream.conf.new" "$prefix/conf/upstream.conf"
}

# Runs beside nginx: a changed set of addresses rewrites upstream.conf and
# reloads nginx (new workers take new requests; the old ones finish theirs).
# A failed or empty lookup keeps the current set: a DNS hiccup must not
# empty the pool (an address that is really gone fails over to the others).
watch_replicas() {
  current="$1"
  while sleep "$refresh"; do
    found="$(resolve_replicas)"
    [ -n "$found" ] && [ "$found" != "$current" ] || continue
    [ -s "$prefix/nginx.pid" ] || continue
    write_replicas "$found"
    echo "imgclass-gateway: replicas of $dns_name now: $found" >&2
    kill -HUP "$(cat "$prefix/nginx.pid")" || true
    current="$found"
  done
}

if [ -n "${IMGCLASS_GATEWAY_PORT:-}" ]; then
  case "$IMGCLASS_GATEWAY_PORT" in
    *[!0-9]*) echo "invalid IMGCLASS_GATEWAY_PORT: $IMGCLASS_GATEWAY_PORT" >&2; exit 64 ;;
  esac
  echo "listen $IMGCLASS_GATEWAY_PORT;" >"$prefix/conf/listen.conf"
fi

workers="${IMGCLASS_GATEWAY_WORKERS:-auto}"
case "$workers" in
  auto | [1-9] | [1-9][0-9]) ;;
  *) echo "invalid IMGCLASS_GATEWAY_WORKERS: $workers" >&2; exit 64 ;;
esac

if [ -n "$dns_name" ]; then
  replicas="$(resolve_replicas)"
  write_replicas "$replicas"
  echo "imgclass-gateway: replicas of $dns_name: ${replicas:-none yet}" >&2
  # Not for `nginx -t` and the like: only a serving nginx has a pid file.
  case " $* " in
    *" -t "* | *" -T "* | *" -s "* | *" -v "* | *" -V "*) ;;
    *) watch_replicas "$replicas" </dev/null & ;;
  esac
fi

exec nginx -p "$prefix/" -c conf/nginx.conf -g "worker_processes $workers;" "$@"
