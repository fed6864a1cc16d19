# The web tier: nginx serving the page (web/) and proxying the API to the
# classifier replicas, configured by deploy/nginx/.
#
#   docker build -f deploy/docker/web.Dockerfile -t imgclass-web .
#
# RUNTIME_BASE: Debian 12 (bookworm) or a locally imported equivalent
# (deploy/docker/make-base.sh); nginx comes from Debian's archive.
# Runs as an unprivileged user; listens on 80 (Docker lets unprivileged
# processes bind low ports in a container's own network namespace; set
# IMGCLASS_GATEWAY_PORT=8080 where that is not so). See
# deploy/docker/gateway-entrypoint.sh for the configuration variables.
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim
FROM ${RUNTIME_BASE}
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
      /etc/nginx/sites-enabled/* /var/www/html; \
    echo 'gateway:x:10002:10002:imgclass gateway:/nonexistent:/usr/sbin/nologin' >>/etc/passwd; \
    echo 'gateway:x:10002:' >>/etc/group; \
    nginx -v
COPY deploy/nginx/nginx.conf deploy/nginx/upstream.conf deploy/nginx/listen.conf /etc/imgclass-gateway/
COPY web/ /usr/share/imgclass/web/
COPY deploy/docker/gateway-entrypoint.sh /usr/local/bin/imgclass-gateway
USER 10002:10002
EXPOSE 80
# nginx finishes the requests in flight on SIGQUIT.
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${IMGCLASS_GATEWAY_PORT:-80} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["/usr/local/bin/imgclass-gateway"]
