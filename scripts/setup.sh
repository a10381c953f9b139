#!/usr/bin/env bash
# Install sdgen's build dependencies from Debian (idempotent: a no-op when they are present).
set -euo pipefail
# libmicrohttpd-dev: the HTTP server of `sdgen serve` (docs/SERVER.md); curl and python3: its tests' clients
pkgs=(build-essential cmake libopenblas-dev libcjson-dev libstb-dev zlib1g-dev libmicrohttpd-dev curl python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
