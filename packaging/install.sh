#!/usr/bin/env bash
# Builds the Debian package (cargo deb), installs it with apt (which pulls in dbus and polkitd)
# and starts vmnetd. Run it as yourself from a clone; it uses sudo where it needs root.
#
#   packaging/install.sh              build target/debian/vmnet_*.deb, install it, start vmnetd
#   packaging/install.sh --deb FILE   install FILE (a vmnet package built before, e.g. by
#                                     `make deb` on another machine or by CI) instead of building
#
# With systemd, the package enables and starts vmnetd.service. Without systemd (a container),
# vmnetd is D-Bus-activated: the first call to org.vmnet (here `vmnetctl status`) starts it as
# root through dbus-daemon's activation helper; this script starts the system bus and polkitd
# if nothing else has. Whatever fails, it says what failed and what to do.
set -eEuo pipefail
cd "$(dirname "$0")/.."

step="starting"
hint=""
# Every failure ends here: the step, the command and its line, and what to do about it.
failed() {
  local status=$1 line=$2 command=$3
  trap - ERR
  echo "install.sh: FAILED while $step: \`$command\` (line $line) exited with status $status" >&2
  [ -z "$hint" ] || echo "install.sh: what to do: $hint" >&2
  exit "$status"
}
# (A command substitution that fails only passes its status on: the main shell reports it.)
trap 'status=$?; if [ "$BASH_SUBSHELL" = 0 ]; then failed $status $LINENO "$BASH_COMMAND"; else exit $status; fi' ERR
# Begins a step: what it does, and what to do if it fails.
step() {
  step=$1
  hint=$2
}

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "$0"
}

deb=
while (($#)); do
  case $1 in
    --deb)
      [ $# -ge 2 ] || { echo "install.sh: --deb needs a file" >&2; exit 2; }
      deb=$2
      shift 2
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -n "$deb" ]; then
  [ -f "$deb" ] || { echo "install.sh: --deb $deb: no such file" >&2; exit 2; }
  deb=$(realpath "$deb")
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
  step "looking for sudo" "run this script as root, or install sudo and allow yourself to use it"
  command -v sudo >/dev/null
  SUDO=sudo
fi

# Installs Debian packages; reads the archive's package lists first only when they are needed,
# so that installing a local package whose dependencies are there works offline.
apt_install() {
  local apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  "${apt[@]}" && return
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${apt[@]}"
}

if [ -z "$deb" ]; then
  # Build tools: dpkg-dev finds the shared-library dependencies; `make deb` installs cargo-deb.
  step "installing the build tools (dpkg-dev, make)" \
    "check that apt can reach the Debian archive (apt-get update), or install dpkg-dev and make yourself"
  command -v dpkg-shlibdeps >/dev/null && command -v make >/dev/null || apt_install dpkg-dev make
  # vmnetd writes its nftables tables through libnftnl: its headers to build against.
  step "installing the build libraries (libnftnl-dev, libmnl-dev, pkg-config)" \
    "check that apt can reach the Debian archive (apt-get update), or install libnftnl-dev yourself"
  pkg-config --exists libnftnl libmnl 2>/dev/null || apt_install libnftnl-dev libmnl-dev pkg-config
  step "building the package (make deb)" \
    "see cargo's message above; a Rust toolchain (rustup.rs, Rust >= 1.85) and crates.io are needed. \
Or build the package elsewhere and run: packaging/install.sh --deb vmnet_VERSION_ARCH.deb"
  command -v cargo >/dev/null
  rm -f target/debian/vmnet_*.deb
  make deb
  deb=$(realpath target/debian/vmnet_*.deb)
fi
step "installing $deb with apt" \
  "see apt's message above; apt needs to reach the Debian archive for the dependencies (dbus, polkitd)"
apt_install "$deb"

# Without NetworkManager, follow the Wi-Fi interface (or that of the default route) through
# rtnetlink instead, unless the configuration was changed already.
config=/etc/vmnet/vmnetd.toml
step "choosing the uplink" "set [uplink] source and interface in $config yourself (see man vmnetd)"
if ! busctl status org.freedesktop.NetworkManager >/dev/null 2>&1 && cmp -s "$config" packaging/vmnetd.toml; then
  uplink=
  for device in /sys/class/net/*; do
    if [ -d "$device/wireless" ]; then
      uplink=${device##*/}
      break
    fi
  done
  [ -n "$uplink" ] ||
    uplink=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
  if [ -n "$uplink" ]; then
    sed -e 's/^source = .*/source = "kernel"/' -e "s/^# interface = .*/interface = \"$uplink\"/" packaging/vmnetd.toml |
      $SUDO tee "$config" >/dev/null
    echo "install.sh: no NetworkManager: $config now follows $uplink through rtnetlink"
  else
    echo "install.sh: no NetworkManager, no Wi-Fi interface and no default route: vmnetd stays offline." >&2
    echo "install.sh: set [uplink] source = \"kernel\" and interface = \"...\" in $config, then restart vmnetd." >&2
  fi
fi

if [ -d /run/systemd/system ]; then
  step "restarting vmnetd.service" "see: journalctl --unit vmnetd.service; systemctl status vmnetd.service"
  $SUDO systemctl restart vmnetd.service # picks up a configuration changed above
  systemctl --no-pager --lines=0 status vmnetd.service || true
else
  step "starting the system bus and polkitd (no systemd)" \
    "start dbus-daemon --system and /usr/lib/polkit-1/polkitd yourself; see /var/log/polkitd.log"
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
step "asking vmnetd for its status (vmnetctl status)" \
  "vmnetd did not answer: see journalctl --unit vmnetd.service (or, without systemd, the system bus's log)"
vmnetctl status
user=${SUDO_USER:-$(id -un)}
[ "$user" = root ] || printf '\nTo manage guests without a password: sudo adduser %s vmnet\n' "$user"
