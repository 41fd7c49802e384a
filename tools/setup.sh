#!/usr/bin/env bash
# Installs every Debian package and Python package Turbine's build, tests and benchmarks need.
# Idempotent: a second run changes nothing. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential pkg-config scons clang clang-format libclang-rt-14-dev
  libzmq3-dev libmsgpack-dev libyaml-dev libjansson-dev libpcre2-dev libcmocka-dev
  libmicrohttpd-dev libutf8proc-dev libsodium-dev libcurl4-openssl-dev etcd-server
  python3 python3-venv python3-yaml python3-numpy python3-torch libopenblas0-pthread
  curl nginx-light wrk iproute2
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Independent references for the tests (HF tokenizers, jinja2, gguf, the openai client) live in a
# virtualenv over Debian's python3, so that Debian's python3-torch is visible to it.
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
REQ=tools/requirements.txt
STAMP="$VENV/.req-stamp"
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$STAMP"
fi
echo "setup: ok"
