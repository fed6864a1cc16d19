#!/usr/bin/env bash
# Builds a minimal Debian base image without pulling from any registry:
# debootstrap (minbase) into a folder, trim it, `docker import` it.
#
#   deploy/docker/make-base.sh [TAG]      (default imgclass-base:bookworm)
#
# Env: SUITE (bookworm), MIRROR (http://deb.debian.org/debian), DOCKER (docker).
# Does nothing when TAG already exists (remove it to rebuild). Needs root
# (debootstrap) and Debian's debootstrap package.
set -euo pipefail
tag="${1:-imgclass-base:bookworm}"
suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

if $docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "debootstrap $suite (minbase) from $mirror ..."
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  exit 1
}
# Same trims as the usual slim images: no caches, docs or man pages; apt
# keeps no downloaded packages and fetches no translations.
cat >"$root/etc/apt/apt.conf.d/90imgclass-slim" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Binary::apt::APT::Keep-Downloaded-Packages "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CONF
cat >"$root/etc/dpkg/dpkg.cfg.d/90imgclass-nodoc" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CONF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/tmp/*
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
# The host's resolver and hostname do not belong in an image.
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"
tar --numeric-owner -C "$root" -c . | $docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "imported $tag ($($docker image inspect -f '{{.Size}}' "$tag") bytes)"
