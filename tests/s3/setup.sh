#!/bin/sh
# Creates the Python virtual environment the S3 state tests start their
# servers from: moto (behaviour) and ministack (atomic conditional writes,
# for races). Called by tests/it/s3/server.rs under a file lock; safe to run
# by hand: sh tests/s3/setup.sh target/s3-venv
set -eu
venv=${1:?usage: setup.sh VENV_DIR}
ready="$venv/.oapkg-s3-ready-1"
[ -f "$ready" ] && exit 0
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[s3,server]==5.1.22" "ministack==1.5.33" "boto3==1.43.106"
touch "$ready"
