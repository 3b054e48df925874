#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages this project needs that are missing. Idempotent:
# when everything is present it only checks and returns. Runs `apt-get update` at most once.
#   scripts/setup.sh            packages to build, test and run
#   scripts/setup.sh --bench    also the benchmark peers and load tools
set -eu
pkgs=(make gcc pkg-config ca-certificates
      libmicrohttpd-dev libcurl4-openssl-dev libexpat1-dev libjansson-dev
      libhiredis-dev redis-server libopenblas-dev libcmocka-dev
      clang-14 libclang-rt-14-dev gnuplot-nox zlib1g-dev
      chromium nodejs)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(wrk python3-faiss python3-locust python3-numpy nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing missing packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The page tests drive chromium with playwright-core from npm (pinned in the lock file).
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$root/tests/page/node_modules/playwright-core" ]; then
  echo "setup: installing playwright-core for the page tests (npm ci)"
  (cd "$root/tests/page" && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "setup: npm ci failed: page tests will be reported as skipped" >&2
fi
