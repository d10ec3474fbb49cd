#!/bin/sh
# Installs what the Git source tests (tests/it/watch_git.rs) run: `git`
# and `ssh-keygen` (Debian's openssh-client), when missing. Called by the
# tests under a file lock; CI and these machines run as root. Safe to run
# by hand: sh tests/git/setup.sh
set -eu
if command -v git >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "git/ssh-keygen missing and cannot apt-get install them (not root, or not Debian)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends git openssh-client >/dev/null
