#!/bin/sh
# Builds the Debian package into target/debian/ and prints its path:
#
#   sh packaging/debian/build.sh [--profile PROFILE] [--deb-version VERSION] [--no-build]
#
# 1. the binary with cargo's PROFILE (default `dist`, the release profile;
#    --no-build packages the one already built),
# 2. the man pages and completions (examples/gen-docs.rs) into target/deb-assets/,
# 3. the systemd unit: examples/oapkg-watch.service with the packaged
#    binary's path,
# 4. cargo-deb (installed by packaging/setup.sh under target/tools) with the
#    metadata in Cargo.toml's [package.metadata.deb]; --deb-version
#    overrides the Debian version (e.g. a rebuilt package of the same binary).
set -eu
cd "$(dirname "$0")/../.."

profile=dist
build=yes
deb_version=
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --deb-version) deb_version=${2:?--deb-version needs a value}; shift 2 ;;
        --no-build) build=no; shift ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

tools=target/tools
sh packaging/setup.sh "$tools" >&2

if [ "$build" = yes ]; then
    cargo build --locked -p oapkg --profile "$profile" --bin oapkg >&2
fi

assets=target/deb-assets
rm -rf "$assets"
cargo run --locked --quiet -p oapkg --example gen-docs -- "$assets" >/dev/null
sed 's#^ExecStart=/usr/local/bin/oapkg #ExecStart=/usr/bin/oapkg #' \
    examples/oapkg-watch.service >"$assets/oapkg-watch.service"
if ! grep -q '^ExecStart=/usr/bin/oapkg watch' "$assets/oapkg-watch.service"; then
    echo "build.sh: examples/oapkg-watch.service has no 'ExecStart=/usr/local/bin/oapkg watch' line to point at /usr/bin/oapkg" >&2
    exit 1
fi

set -- --no-build --profile "$profile" --output target/debian/
if [ -n "$deb_version" ]; then
    set -- "$@" --deb-version "$deb_version"
fi
"$tools/bin/cargo-deb" "$@"
