#!/usr/bin/env bash
# Builds the Debian package (cargo deb), installs it with apt (which pulls in dbus and polkitd)
# and starts vmnetd. Run it as yourself from a clone; it uses sudo where it needs root.
#
# With systemd, the package enables and starts vmnetd.service. Without systemd (a container),
# vmnetd is D-Bus-activated: the first call to org.vmnet (here `vmnetctl status`) starts it as
# root through dbus-daemon's activation helper; this script starts the system bus and polkitd
# if nothing else has.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Build tools: dpkg-dev finds the shared-library dependencies; `make deb` installs cargo-deb.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
command -v dpkg-shlibdeps >/dev/null && command -v make >/dev/null || apt_install dpkg-dev make
rm -f target/debian/vmnet_*.deb
make deb
apt_install "$(realpath target/debian/vmnet_*.deb)"

# Without NetworkManager, follow the Wi-Fi interface (or that of the default route) through
# rtnetlink instead, unless the configuration was changed already.
config=/etc/vmnet/vmnetd.toml
if ! busctl status org.freedesktop.NetworkManager >/dev/null 2>&1 && cmp -s "$config" packaging/vmnetd.toml; then
  uplink=$(ls -d /sys/class/net/*/wireless 2>/dev/null | head -n 1 | xargs -r dirname | xargs -r basename)
  [ -n "$uplink" ] || uplink=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
  if [ -n "$uplink" ]; then
    sed -e 's/^source = .*/source = "kernel"/' -e "s/^# interface = .*/interface = \"$uplink\"/" packaging/vmnetd.toml |
      $SUDO tee "$config" >/dev/null
    echo "install.sh: no NetworkManager: $config now follows $uplink through rtnetlink"
  fi
fi

if [ -d /run/systemd/system ]; then
  $SUDO systemctl restart vmnetd.service # picks up a configuration changed above
  systemctl --no-pager --lines=0 status vmnetd.service || true
else
  if [ ! -S /run/dbus/system_bus_socket ]; then
    $SUDO mkdir -p /run/dbus
    $SUDO dbus-daemon --system --fork
  fi
  if ! busctl status org.freedesktop.PolicyKit1 >/dev/null 2>&1; then
    $SUDO sh -c 'nohup /usr/lib/polkit-1/polkitd --no-debug >/var/log/polkitd.log 2>&1 &'
    for _ in $(seq 50); do busctl status org.freedesktop.PolicyKit1 >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  echo "install.sh: no systemd: vmnetd starts by D-Bus activation on the first call"
fi
vmnetctl status
user=${SUDO_USER:-$(id -un)}
[ "$user" = root ] || printf '\nTo manage guests without a password: sudo adduser %s vmnet\n' "$user"
