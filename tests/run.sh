#!/usr/bin/env bash
# Runs vmnet's whole test suite: unit tests, and integration tests that build private network
# namespaces, a private system bus and a real polkitd (all removed again afterwards). Needs
# root; re-runs itself through sudo otherwise. Installs missing Debian packages first.
# Extra arguments go to `cargo test` (e.g. a test name filter, or `--test guests`). Tests named
# slow_* boot a QEMU guest under TCG (about 10 s each); they run too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  exec sudo env "PATH=$PATH" "$0" "$@"
fi
mapfile -t wanted < <(grep -v '^#' tests/apt-packages | grep .)
missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
exec cargo test --workspace --locked "$@"
