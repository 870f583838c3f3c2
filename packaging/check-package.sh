#!/usr/bin/env bash
# Builds the Debian packages vmnet and vmnet-desktop, checks them with lintian, installs them on
# this machine and runs the tests of the installed files (tests/tests/installed.rs): a private
# bus with only the installed policy, activation file and polkit files; `make install` against
# the packages' contents; vmnetd.service under a real systemd in a container of this machine;
# the installed GNOME Shell extension in a real headless GNOME Shell. As root (CI runs it).
# Leaves the machine as it found it: packages that were not installed before are purged again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
installed_before=()
for package in vmnet vmnet-desktop; do
  if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    installed_before+=("$package")
  fi
done
restore() {
  local purge=()
  for package in vmnet-desktop vmnet; do
    [[ " ${installed_before[*]} " == *" $package "* ]] || purge+=("$package")
  done
  [ ${#purge[@]} -eq 0 ] || apt-get purge -y -q "${purge[@]}" >/dev/null
}
trap restore EXIT
apt-get install -y -q --no-install-recommends lintian dpkg-dev systemd-container make
rm -f target/debian/vmnet_*.deb target/debian/vmnet-desktop_*.deb
make deb
debs=(target/debian/vmnet_*.deb target/debian/vmnet-desktop_*.deb)
lintian --fail-on error,warning "${debs[@]}"
apt-get install -y -q --no-install-recommends --reinstall "$(realpath "${debs[0]}")" "$(realpath "${debs[1]}")"
cargo test --locked -p vmnet-tests --test installed -- --ignored
