#!/usr/bin/env bash
# Installs every Debian package that building, running and testing Skiff need.
# Safe to run again; quiet when everything is there.
set -euo pipefail
pkgs=(
  build-essential pkg-config git
  clang libclang-rt-dev # make fuzz: libFuzzer and the sanitizer runtimes are only recommended by clang
  libuv1-dev libhttp-parser-dev libjansson-dev libsqlite3-dev libcmocka-dev libwslay-dev
  runc crun debootstrap util-linux iproute2 procps
  python3 python3-pytest python3-cloudpickle
  # web endpoints: the frameworks user code serves, and bench/web's load generator and baseline
  python3-fastapi python3-flask python3-uvicorn python3-uvloop python3-httptools python3-websockets
  wrk
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "skiff: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "skiff: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
