#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need, only when missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)  # make test-stress: the suite under CPU load
# PostgreSQL for the scale-out mode's tests (initdb/pg_ctl live outside PATH on Debian)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
