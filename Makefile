# vmnet: build, install and package.
#   make                                  build the release binaries
#   make install DESTDIR=/tmp/root        install below DESTDIR (for distribution packages)
#   make deb                              the Debian packages, target/debian/vmnet{,-desktop}_*.deb
#   make extension                        the GNOME Shell extension, target/gnome-shell-extension/
# GNOME_SHELL_API=legacy (GNOME 43/44) or esm (45+) picks the extension's entry point; the default
# (auto) follows the installed gnome-shell, esm without one.
#   make test                             the whole test suite (tests/run.sh, as root)
# D-Bus and polkit read their files only below /usr/share, so PREFIX stays /usr unless the
# bus and polkit are configured otherwise.
PREFIX ?= /usr
SYSCONFDIR ?= /etc
DESTDIR ?=
CARGO ?= cargo
INSTALL ?= install
CARGO_DEB_VERSION := 3.8.0

BIN := target/release
SBINDIR := $(PREFIX)/sbin
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
DATADIR := $(PREFIX)/share
DOCDIR := $(DATADIR)/doc/vmnet
GENERATED := packaging/generated
GNOME_SHELL_API ?= auto
EXTENSION_UUID := vmnet@example.org
EXTENSIONDIR := $(DATADIR)/gnome-shell/extensions

.PHONY: all build install uninstall deb test generate extension

all: build

build:
	$(CARGO) build --release --locked -p vmnetd -p vmnetctl -p vmnet-dispatcher -p vmnet-tray

extension:
	desktop/gnome-shell/build target/gnome-shell-extension $(GNOME_SHELL_API)

install: build
	$(INSTALL) -Dm755 $(BIN)/vmnetd $(DESTDIR)$(SBINDIR)/vmnetd
	$(INSTALL) -Dm755 $(BIN)/vmnetctl $(DESTDIR)$(BINDIR)/vmnetctl
	$(INSTALL) -Dm755 $(BIN)/vmnet-dispatcher $(DESTDIR)$(LIBDIR)/NetworkManager/dispatcher.d/90-vmnet
	$(INSTALL) -Dm644 packaging/vmnetd.toml $(DESTDIR)$(SYSCONFDIR)/vmnet/vmnetd.toml
	$(INSTALL) -Dm644 packaging/iproute2/vmnet.conf $(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d/vmnet.conf
	sed 's|^ExecStart=.*|ExecStart=$(SBINDIR)/vmnetd|' packaging/systemd/vmnetd.service \
		| $(INSTALL) -Dm644 /dev/stdin $(DESTDIR)$(LIBDIR)/systemd/system/vmnetd.service
	$(INSTALL) -Dm644 packaging/sysusers/vmnet.conf $(DESTDIR)$(LIBDIR)/sysusers.d/vmnet.conf
	$(INSTALL) -Dm644 packaging/dbus/org.vmnet.conf $(DESTDIR)$(DATADIR)/dbus-1/system.d/org.vmnet.conf
	sed 's|^Exec=.*|Exec=$(SBINDIR)/vmnetd|' packaging/dbus/org.vmnet.service \
		| $(INSTALL) -Dm644 /dev/stdin $(DESTDIR)$(DATADIR)/dbus-1/system-services/org.vmnet.service
	$(INSTALL) -Dm644 dbus/org.vmnet.Manager1.xml $(DESTDIR)$(DATADIR)/dbus-1/interfaces/org.vmnet.Manager1.xml
	$(INSTALL) -Dm644 packaging/polkit/org.vmnet.policy $(DESTDIR)$(DATADIR)/polkit-1/actions/org.vmnet.policy
	$(INSTALL) -Dm644 packaging/polkit/50-vmnet.rules $(DESTDIR)$(DATADIR)/polkit-1/rules.d/50-vmnet.rules
	$(INSTALL) -Dm644 $(GENERATED)/man/vmnetd.8 $(DESTDIR)$(DATADIR)/man/man8/vmnetd.8
	$(INSTALL) -Dm644 $(GENERATED)/man/vmnet-dispatcher.8 $(DESTDIR)$(DATADIR)/man/man8/vmnet-dispatcher.8
	$(INSTALL) -Dm644 $(GENERATED)/man/vmnetctl.1 $(DESTDIR)$(DATADIR)/man/man1/vmnetctl.1
	$(INSTALL) -Dm644 $(GENERATED)/completions/vmnetctl.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/vmnetctl
	$(INSTALL) -Dm644 $(GENERATED)/completions/_vmnetctl $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_vmnetctl
	$(INSTALL) -Dm644 $(GENERATED)/completions/vmnetctl.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/vmnetctl.fish
	$(INSTALL) -Dm755 $(BIN)/vmnet-tray $(DESTDIR)$(BINDIR)/vmnet-tray
	$(INSTALL) -Dm644 packaging/desktop/vmnet-tray.desktop $(DESTDIR)$(SYSCONFDIR)/xdg/autostart/vmnet-tray.desktop
	$(INSTALL) -Dm644 $(GENERATED)/man/vmnet-tray.1 $(DESTDIR)$(DATADIR)/man/man1/vmnet-tray.1
	desktop/gnome-shell/build $(DESTDIR)$(EXTENSIONDIR) $(GNOME_SHELL_API)
	$(INSTALL) -Dm644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -Dm644 docs/dbus-api.md $(DESTDIR)$(DOCDIR)/dbus-api.md
	@echo "Installed. Then, as root: systemd-sysusers; systemctl daemon-reload; systemctl enable --now vmnetd"

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vmnetd $(DESTDIR)$(BINDIR)/vmnetctl \
		$(DESTDIR)$(LIBDIR)/NetworkManager/dispatcher.d/90-vmnet \
		$(DESTDIR)$(LIBDIR)/systemd/system/vmnetd.service $(DESTDIR)$(LIBDIR)/sysusers.d/vmnet.conf \
		$(DESTDIR)$(DATADIR)/dbus-1/system.d/org.vmnet.conf \
		$(DESTDIR)$(DATADIR)/dbus-1/system-services/org.vmnet.service \
		$(DESTDIR)$(DATADIR)/dbus-1/interfaces/org.vmnet.Manager1.xml \
		$(DESTDIR)$(DATADIR)/polkit-1/actions/org.vmnet.policy \
		$(DESTDIR)$(DATADIR)/polkit-1/rules.d/50-vmnet.rules \
		$(DESTDIR)$(DATADIR)/man/man8/vmnetd.8 $(DESTDIR)$(DATADIR)/man/man8/vmnet-dispatcher.8 \
		$(DESTDIR)$(DATADIR)/man/man1/vmnetctl.1 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/vmnetctl \
		$(DESTDIR)$(DATADIR)/zsh/vendor-completions/_vmnetctl \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/vmnetctl.fish \
		$(DESTDIR)$(BINDIR)/vmnet-tray $(DESTDIR)$(SYSCONFDIR)/xdg/autostart/vmnet-tray.desktop \
		$(DESTDIR)$(DATADIR)/man/man1/vmnet-tray.1
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(EXTENSIONDIR)/$(EXTENSION_UUID)
	@echo "Left in place: $(SYSCONFDIR)/vmnet, $(SYSCONFDIR)/iproute2/rt_protos.d/vmnet.conf and /var/lib/vmnet"

# Needs dpkg-dev (dpkg-shlibdeps); installs cargo-deb first when it is missing.
deb: extension
	@[ "$$($(CARGO) deb --version 2>/dev/null)" = "$(CARGO_DEB_VERSION)" ] || \
		$(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION)
	$(CARGO) deb -p vmnetd --locked
	$(CARGO) deb -p vmnet-tray --locked

test:
	tests/run.sh

generate:
	$(CARGO) run -q -p vmnet-generate
