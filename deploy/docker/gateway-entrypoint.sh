#!/bin/sh
# Starts the imgclass gateway (nginx) as the image's unprivileged user.
#
# nginx runs with a prefix in a writable folder (IMGCLASS_GATEWAY_PREFIX,
# default /tmp/imgclass-gateway: a tmpfs or emptyDir when the root file
# system is read-only) holding conf/, a link to the page, the pid file and
# nginx's scratch folders.
# The configuration comes from IMGCLASS_GATEWAY_CONF (default
# /etc/imgclass-gateway: nginx.conf, upstream.conf, listen.conf; Kubernetes
# mounts its ConfigMap there). Two variables override the included files:
#   IMGCLASS_UPSTREAMS      replicas, space- or comma-separated host:port
#                           (e.g. "ml:5000" or "10.0.0.5:5000,10.0.0.6:5000")
#   IMGCLASS_GATEWAY_PORT   port to listen on (e.g. 80 or 8080)
# and IMGCLASS_GATEWAY_WORKERS sets nginx's worker processes (default auto:
# one per CPU of the machine; set it to the container's CPU limit).
# Any other arguments are passed to nginx (e.g. `-t`).
set -eu
conf_src="${IMGCLASS_GATEWAY_CONF:-/etc/imgclass-gateway}"
prefix="${IMGCLASS_GATEWAY_PREFIX:-/tmp/imgclass-gateway}"
web="${IMGCLASS_GATEWAY_WEB:-/usr/share/imgclass/web}"

mkdir -p "$prefix/conf"
cp "$conf_src/nginx.conf" "$conf_src/upstream.conf" "$conf_src/listen.conf" "$prefix/conf/"
ln -sfn "$web" "$prefix/web"

if [ -n "${IMGCLASS_UPSTREAMS:-}" ]; then
  {
    echo "# from IMGCLASS_UPSTREAMS"
    for s in $(echo "$IMGCLASS_UPSTREAMS" | tr ',' ' '); do
      case "$s" in
        *[!A-Za-z0-9.:_\[\]-]*) echo "invalid upstream address: $s" >&2; exit 64 ;;
      esac
      echo "server $s max_fails=3 fail_timeout=10s;"
    done
  } >"$prefix/conf/upstream.conf"
fi
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

exec nginx -p "$prefix/" -c conf/nginx.conf -g "worker_processes $workers;" "$@"
