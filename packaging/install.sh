#!/usr/bin/env bash
# Builds vmnetd and vmnetctl, installs them with vmnetd's D-Bus policy, polkit actions and config, and starts it.
#   packaging/install.sh            # build as you, install and start with sudo
#   PREFIX=/usr packaging/install.sh
# Without systemd as PID 1, vmnetd is started in the background (log: /var/log/vmnetd.log);
# with systemd, as vmnetd.service.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
for package in dbus dbus-daemon polkitd iproute2; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo build --release --locked -p vmnetd -p vmnet-dispatcher -p vmnetctl
bin="$PREFIX/sbin/vmnetd"
$SUDO install -Dm755 target/release/vmnetd "$bin"
$SUDO install -Dm755 target/release/vmnetctl "$PREFIX/bin/vmnetctl"
$SUDO install -Dm644 packaging/dbus/org.vmnet.conf /usr/share/dbus-1/system.d/org.vmnet.conf
$SUDO install -Dm644 dbus/org.vmnet.Manager1.xml /usr/share/dbus-1/interfaces/org.vmnet.Manager1.xml
$SUDO install -Dm644 packaging/polkit/org.vmnet.policy /usr/share/polkit-1/actions/org.vmnet.policy
$SUDO install -Dm644 packaging/iproute2/vmnet.conf /etc/iproute2/rt_protos.d/vmnet.conf
if [ -d /usr/lib/NetworkManager ]; then
  $SUDO install -Dm755 target/release/vmnet-dispatcher /usr/lib/NetworkManager/dispatcher.d/90-vmnet
fi

if [ ! -e /etc/vmnet/vmnetd.toml ]; then
  if busctl status org.freedesktop.NetworkManager >/dev/null 2>&1; then
    # The default: follow NetworkManager's Wi-Fi connection.
    $SUDO install -Dm644 packaging/vmnetd.toml /etc/vmnet/vmnetd.toml
    echo "install.sh: wrote /etc/vmnet/vmnetd.toml (following NetworkManager)"
  else
    # No NetworkManager: follow the Wi-Fi interface, or else that of the default route.
    uplink=$(basename "$(dirname "$(ls -d /sys/class/net/*/wireless 2>/dev/null | head -n1)")" 2>/dev/null || true)
    [ -n "$uplink" ] && [ "$uplink" != . ] || uplink=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
    [ -n "$uplink" ] || { echo "install.sh: no uplink found; set uplink.interface in /etc/vmnet/vmnetd.toml" >&2; uplink=wlan0; }
    sed -e 's/^source = .*/source = "kernel"/' -e "s/^# interface = .*/interface = \"$uplink\"/" packaging/vmnetd.toml |
      $SUDO install -Dm644 /dev/stdin /etc/vmnet/vmnetd.toml
    echo "install.sh: wrote /etc/vmnet/vmnetd.toml (kernel source on $uplink)"
  fi
fi

if [ -d /run/systemd/system ]; then
  sed "s|^ExecStart=.*|ExecStart=$bin|" packaging/systemd/vmnetd.service | $SUDO install -Dm644 /dev/stdin /etc/systemd/system/vmnetd.service
  sed "s|^Exec=.*|Exec=$bin|" packaging/dbus/org.vmnet.service | $SUDO install -Dm644 /dev/stdin /usr/share/dbus-1/system-services/org.vmnet.service
  $SUDO systemctl reload dbus || true
  $SUDO systemctl daemon-reload
  $SUDO systemctl enable --now vmnetd.service
  $SUDO systemctl restart vmnetd.service
  systemctl --no-pager status vmnetd.service | head -n 5
else
  if ! pgrep -x dbus-daemon >/dev/null; then
    $SUDO mkdir -p /run/dbus
    $SUDO dbus-daemon --system --fork
  fi
  $SUDO busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
  pgrep -x polkitd >/dev/null || $SUDO sh -c '/usr/lib/polkit-1/polkitd --no-debug >/var/log/polkitd.log 2>&1 &'
  $SUDO pkill -x vmnetd || true
  $SUDO sh -c "nohup $bin >>/var/log/vmnetd.log 2>&1 &"
  for _ in $(seq 50); do busctl status org.vmnet >/dev/null 2>&1 && break; sleep 0.1; done
  echo "install.sh: vmnetd runs without systemd; log: /var/log/vmnetd.log"
fi
busctl get-property org.vmnet /org/vmnet org.vmnet.Manager1 State
