#!/usr/bin/env bash
# Triton's perf_analyzer against an imgclass (or any KServe v2) server over
# HTTP, sending one real photo per batch item as a BYTES input.
#
#   scripts/perf-analyzer.sh --url 127.0.0.1:8080 --model efficientnet-lite0 \
#       --image photo.jpg [--input image] [--api-key KEY] [-- PERF_ANALYZER_ARGS...]
#   e.g. ... -- --concurrency-range 1:4 --measurement-interval 5000
#
# perf_analyzer ships as a binary inside the tritonclient 2.44.0 wheel
# (tritonclient-2.44.0.data/data/bin/perf_analyzer; newer wheels either
# lack it or need glibc 2.38, Debian 12 has 2.36). It links two libraries
# Debian 12 does not have installed: libb64.so.0d (Debian's libb64-0d) and
# libcudart.so.12 (PyPI's nvidia-cuda-runtime-cu12; loaded but no GPU is
# needed over HTTP). All three come by pinned version and sha256 into
# $IMGCLASS_PA_HOME (default ~/.cache/imgclass/perf-analyzer-2.44.0); nothing
# is installed system-wide. Point it at a server on this machine only.
#
# What the server must offer (perf_analyzer reads all of it): GET /v2 with
# "extensions" (with "statistics" it also reads GET /v2/models/M/stats and
# needs "version" as a number string, all eight inference_stats entries and
# inference_stats.queue.count rising per request), GET /v2/models/M, and
# GET /v2/models/M/config whose input[] names all appear in the metadata;
# it sends every metadata input except those the config marks "optional"
# and the input data leaves out. BYTES data given as {"b64": ...} is sent
# verbatim as the tensor's binary data, so the file made here holds each
# photo already serialized (4-byte little-endian length, then the bytes).
set -euo pipefail

PA_VERSION=2.44.0
TRITON_WHEEL=tritonclient-2.44.0-py3-none-manylinux1_x86_64.whl
TRITON_SHA=ed8a64ecbb7594ea196dfdc9678d6356b24fdf484995f53400004a195ef33749
CUDART_PIN=nvidia-cuda-runtime-cu12==12.4.127
CUDART_WHEEL=nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl
CUDART_SHA=64403288fa2136ee8e467cdc9c9427e0434110899d07c779f25b5c068934faa5
B64_PIN=libb64-0d=1.2-5+b1
B64_DEB=libb64-0d_1.2-5+b1_amd64.deb
B64_SHA=b0e1d6fde8bdccc18c3884144aede064dc82464dd4777275fa80e74c05583e82

home="${IMGCLASS_PA_HOME:-$HOME/.cache/imgclass/perf-analyzer-$PA_VERSION}"
url="" model="" image="" input="image" api_key=""
while (($#)); do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --input) input="$2"; shift 2 ;;
    --api-key) api_key="$2"; shift 2 ;;
    --install-only) install_only=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

check_sha() { # file sha
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  [ "$got" = "$2" ] || { echo "sha256 mismatch for $1: $got, pinned $2" >&2; exit 1; }
}

install() {
  local stage
  mkdir -p "$(dirname "$home")"
  stage="$(mktemp -d "$(dirname "$home")/.stage-pa-XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/bin" "$stage/lib" "$stage/dl"
  local pip=(python3 -m pip download --disable-pip-version-check --no-input -q --no-deps
    --only-binary=:all: -d "$stage/dl")
  "${pip[@]}" --platform manylinux1_x86_64 "tritonclient==$PA_VERSION"
  check_sha "$stage/dl/$TRITON_WHEEL" "$TRITON_SHA"
  "${pip[@]}" --platform manylinux2014_x86_64 "$CUDART_PIN"
  check_sha "$stage/dl/$CUDART_WHEEL" "$CUDART_SHA"
  (cd "$stage/dl" && { apt-get download -q "$B64_PIN" 2>/dev/null ||
    { apt-get update -qq && apt-get download -q "$B64_PIN"; }; } >/dev/null)
  check_sha "$stage/dl/$B64_DEB" "$B64_SHA"

  python3 - "$stage" "$TRITON_WHEEL" "$CUDART_WHEEL" "$PA_VERSION" <<'EOF'
import os, sys, zipfile
stage, triton, cudart, version = sys.argv[1:]
with zipfile.ZipFile(f"{stage}/dl/{triton}") as z:
    with open(f"{stage}/bin/perf_analyzer", "wb") as f:
        f.write(z.read(f"tritonclient-{version}.data/data/bin/perf_analyzer"))
os.chmod(f"{stage}/bin/perf_analyzer", 0o755)
with zipfile.ZipFile(f"{stage}/dl/{cudart}") as z:
    with open(f"{stage}/lib/libcudart.so.12", "wb") as f:
        f.write(z.read("nvidia/cuda_runtime/lib/libcudart.so.12"))
EOF
  dpkg-deb -x "$stage/dl/$B64_DEB" "$stage/deb"
  cp "$stage/deb/usr/lib/x86_64-linux-gnu/libb64.so.0d" "$stage/lib/"
  rm -rf "$stage/dl" "$stage/deb"
  if LD_LIBRARY_PATH="$stage/lib" ldd "$stage/bin/perf_analyzer" | grep -q "not found"; then
    echo "perf_analyzer still lacks libraries:" >&2
    LD_LIBRARY_PATH="$stage/lib" ldd "$stage/bin/perf_analyzer" | grep "not found" >&2
    exit 1
  fi
  rm -rf "$home"
  mv "$stage" "$home"
  trap - EXIT
}

[ -x "$home/bin/perf_analyzer" ] || install
pa=(env LD_LIBRARY_PATH="$home/lib" "$home/bin/perf_analyzer")
if [ -n "${install_only:-}" ]; then
  "${pa[@]}" --version 2>&1 | head -1 >&2 || true
  echo "$home/bin/perf_analyzer"
  exit 0
fi
[ -n "$url" ] && [ -n "$model" ] && [ -n "$image" ] ||
  { echo "--url, --model and --image are required (see --help)" >&2; exit 2; }

data="$(mktemp --suffix=.json)"
trap 'rm -f "$data"' EXIT
python3 - "$image" "$input" "$data" <<'EOF'
import base64, json, struct, sys
image, name, out = sys.argv[1:]
raw = open(image, "rb").read()
element = struct.pack("<I", len(raw)) + raw
json.dump({"data": [{name: {"b64": base64.b64encode(element).decode()}}]}, open(out, "w"))
EOF
headers=()
[ -n "$api_key" ] && headers=(-H "Authorization: Bearer $api_key")
"${pa[@]}" -i http -u "$url" -m "$model" --input-data "$data" "${headers[@]}" "$@"
