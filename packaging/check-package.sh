#!/usr/bin/env bash
# Builds the Debian package, checks it with lintian, installs it on this machine and runs the
# tests of the installed files (tests/tests/installed.rs): a private bus with only the installed
# policy, activation file and polkit files; `make install` against the package's contents; and
# vmnetd.service under a real systemd in a container of this machine. As root (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends lintian dpkg-dev systemd-container make
rm -f target/debian/vmnet_*.deb
make deb
deb=$(ls target/debian/vmnet_*.deb)
lintian --fail-on error,warning "$deb"
apt-get install -y -q --reinstall "$(realpath "$deb")"
cargo test --locked -p vmnet-tests --test installed -- --ignored
