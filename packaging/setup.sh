#!/bin/sh
# Installs the packaging tool the Debian package is built with (cargo-deb,
# from crates.io, pinned) under TOOLS_DIR/bin. Called by
# packaging/debian/build.sh and the package test (tests/it/deb.rs); safe to
# run by hand: sh packaging/setup.sh target/tools
# Takes about 3.5 minutes on 2 cores the first time, nothing after.
set -eu
root=${1:?usage: setup.sh TOOLS_DIR}
version=3.8.0
ready="$root/.oapkg-cargo-deb-$version"
[ -f "$ready" ] && exit 0
cargo install cargo-deb --version "$version" --locked --root "$root"
touch "$ready"
