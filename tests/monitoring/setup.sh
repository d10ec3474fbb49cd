#!/bin/sh
# Installs the Prometheus tools the monitoring tests use (promtool and the
# prometheus server) from Debian's `prometheus` package. Called by
# tests/it/monitoring.rs under a file lock when `promtool` is missing; CI
# and these machines run as root. Safe to run by hand: sh tests/monitoring/setup.sh
set -eu
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool/prometheus missing and cannot apt-get install them (not root, or not Debian)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
# The package's post-install starts no server here (no systemd as PID 1).
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
