// vmnet's quick-settings item, for GNOME Shell 43–48. This file imports nothing: the entry
// point (extension.js) passes in the modules, which GNOME 43/44 load with `imports.*` and 45+
// as ES modules. The 45+ build appends an `export` line (see desktop/gnome-shell/build).
/* exported createIndicator */
'use strict';

var createIndicator = (function () {
    const BUS_NAME = 'org.vmnet';
    const MANAGER_PATH = '/org/vmnet';
    const MANAGER_IFACE = 'org.vmnet.Manager1';
    const GUEST_IFACE = 'org.vmnet.Guest1';
    const MANAGE_ACTION = 'org.vmnet.manage-guests';
    // The QEMU netdev id that `vmnetctl qemu-args` names (vmnet-dbus QEMU_NETDEV_ID).
    const NETDEV_ID = 'vmnet';

    let classes = null;

    /** A value inside a QEMU option list, where a comma is written as two. */
    function qemuValue(value) {
        return value.replaceAll(',', ',,');
    }

    /** One shell word, quoted only when needed (as vmnetctl's shell_word). */
    function shellWord(arg) {
        if (arg.length > 0 && /^[A-Za-z0-9@%+=:,./_-]+$/.test(arg))
            return arg;
        return `'${arg.replaceAll("'", "'\\''")}'`;
    }

    /** The same text as `vmnetctl qemu-args NAME`. */
    function qemuArgs(guest) {
        const args = [
            '-netdev', `tap,id=${NETDEV_ID},ifname=${qemuValue(guest.tap)},script=no,downscript=no`,
            '-device', `virtio-net-pci,netdev=${NETDEV_ID},mac=${qemuValue(guest.mac)}`,
        ];
        if (guest.qmp)
            args.push('-qmp', `unix:${qemuValue(guest.qmp)},server=on,wait=off`);
        return args.map(shellWord).join(' ');
    }

    function property(proxy, name, fallback) {
        const value = proxy?.get_cached_property(name);
        return value ? value.deepUnpack() : fallback;
    }

    function guestOf(proxy) {
        return {
            path: proxy.get_object_path(),
            name: property(proxy, 'Name', ''),
            tap: property(proxy, 'Tap', ''),
            mac: property(proxy, 'Mac', ''),
            qmp: property(proxy, 'Qmp', ''),
            address: property(proxy, 'Address', ''),
            state: property(proxy, 'State', ''),
            reason: property(proxy, 'StateReason', ''),
            running: property(proxy, 'Running', false),
        };
    }

    /** What a person reads about a guest on its row. */
    function guestSummary(guest) {
        const parts = [guest.name, guest.address || 'no address', guest.state];
        if (guest.running)
            parts.push('running');
        return parts.join(' · ');
    }

    function build(m) {
        const {Gio, GLib, GObject, St, Clutter, Polkit, Main, PopupMenu, QuickSettings, ModalDialog, Dialog} = m;

        /** A menu line whose text wraps instead of being cut off. */
        function textItem(text, params) {
            const item = new PopupMenu.PopupMenuItem(text, params);
            item.label.clutter_text.line_wrap = true;
            item.label.clutter_text.ellipsize = 0; // Pango.EllipsizeMode.NONE
            return item;
        }

        /** A failed call for people: vmnetd's message, without GDBus's error-name prefix. */
        function errorText(error) {
            const refused = Gio.DBusError.get_remote_error(error) === 'org.vmnet.Error.NotAuthorized';
            const message = error.message.replace(/^GDBus\.Error:[^ ]+ /, '');
            return refused ? `not allowed (${message})` : message;
        }

        const AddGuestDialog = GObject.registerClass(
            class VmnetAddGuestDialog extends ModalDialog.ModalDialog {
                _init(onAdd) {
                    super._init({styleClass: 'prompt-dialog'});
                    this._onAdd = onAdd;
                    const content = new Dialog.MessageDialogContent({
                        title: 'Add a virtual machine',
                        description: 'vmnetd creates a tap for it and gives it an address on this network.',
                    });
                    this.contentLayout.add_child(content);
                    this._entry = new St.Entry({
                        style_class: 'prompt-dialog-password-entry',
                        hint_text: 'Name, e.g. web',
                        can_focus: true,
                        x_expand: true,
                    });
                    this.contentLayout.add_child(this._entry);
                    this._error = new St.Label({style_class: 'prompt-dialog-error-message', visible: false});
                    this.contentLayout.add_child(this._error);
                    this._entry.clutter_text.connect('activate', () => this._add());
                    this.setButtons([
                        {label: 'Cancel', action: () => this.close(), key: Clutter.KEY_Escape},
                        {label: 'Add', action: () => this._add(), default: true},
                    ]);
                    this.setInitialKeyFocus(this._entry);
                }

                async _add() {
                    const name = this._entry.get_text().trim();
                    if (!name) {
                        this._showError('Give the virtual machine a name.');
                        return;
                    }
                    try {
                        await this._onAdd(name);
                        this.close();
                    } catch (e) {
                        this._showError(errorText(e));
                    }
                }

                _showError(text) {
                    this._error.text = text;
                    this._error.show();
                }
            });

        const VmnetToggle = GObject.registerClass(
            class VmnetToggle extends QuickSettings.QuickMenuToggle {
                _init(onGuests) {
                    super._init({toggleMode: false});
                    this._onGuests = onGuests;
                    this._setTitle('Virtual machines', '');
                    this.iconName = 'computer-symbolic';
                    this.menu.setHeader('computer-symbolic', 'Virtual machines');
                    this.connect('clicked', () => this.menu.open());

                    this._status = textItem('', {reactive: false});
                    this.menu.addMenuItem(this._status);
                    this._message = textItem('', {reactive: false});
                    this._message.hide();
                    this.menu.addMenuItem(this._message);
                    this.menu.addMenuItem(new PopupMenu.PopupSeparatorMenuItem());
                    this._guestSection = new PopupMenu.PopupMenuSection();
                    this.menu.addMenuItem(this._guestSection);
                    this._noGuests = textItem('No virtual machines', {reactive: false});
                    this.menu.addMenuItem(this._noGuests);
                    this.menu.addMenuItem(new PopupMenu.PopupSeparatorMenuItem());
                    this._addItem = this.menu.addAction('Add guest…', () => this._openAddDialog());
                    this._guestItems = new Map();
                    this._permission = null;
                    this._canManage = true;
                    this._cancellable = new Gio.Cancellable();
                    this.connect('destroy', () => this._cancellable.cancel());
                    this.menu.connect('open-state-changed', (menu, open) => {
                        if (open)
                            this._activate();
                    });
                    this._connect();
                    this._sync();
                }

                /** 43 calls the text `label`; 44+ `title` (with a subtitle). */
                _setTitle(title, subtitle) {
                    if ('title' in this) {
                        this.title = title;
                        this.subtitle = subtitle || null;
                    } else {
                        this.label = title;
                    }
                }

                _connect() {
                    const flags = Gio.DBusProxyFlags.DO_NOT_AUTO_START;
                    this._manager = new Gio.DBusProxy({
                        g_connection: Gio.DBus.system,
                        g_name: BUS_NAME,
                        g_object_path: MANAGER_PATH,
                        g_interface_name: MANAGER_IFACE,
                        g_flags: flags,
                    });
                    // connectObject: disconnected when the toggle is destroyed (on disable).
                    this._manager.connectObject(
                        'g-properties-changed', () => this._sync(),
                        'notify::g-name-owner', () => this._sync(),
                        'g-signal', (proxy, sender, signal, params) => {
                            if (signal === 'Rehomed')
                                this._rehomed(...params.deepUnpack());
                        }, this);
                    this._manager.init_async(GLib.PRIORITY_DEFAULT, this._cancellable, (proxy, result) => {
                        try {
                            proxy.init_finish(result);
                        } catch (e) {
                            if (!e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                                console.error(`vmnet: cannot watch vmnetd: ${e.message}`);
                            return;
                        }
                        this._sync();
                    });

                    Gio.DBusObjectManagerClient.new_for_bus(Gio.BusType.SYSTEM,
                        Gio.DBusObjectManagerClientFlags.DO_NOT_AUTO_START, BUS_NAME, MANAGER_PATH,
                        null, this._cancellable, (source, result) => {
                            try {
                                this._objects = Gio.DBusObjectManagerClient.new_for_bus_finish(result);
                            } catch (e) {
                                if (!e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                                    console.error(`vmnet: cannot follow guests: ${e.message}`);
                                return;
                            }
                            const sync = () => this._sync();
                            this._objects.connectObject('object-added', sync, 'object-removed', sync,
                                'interface-proxy-properties-changed', sync, 'notify::name-owner', sync, this);
                            this._sync();
                        });

                    Polkit.Permission.new(MANAGE_ACTION, null, this._cancellable, (source, result) => {
                        try {
                            this._permission = Polkit.Permission.new_finish(result);
                        } catch (e) {
                            // No polkit: vmnetd itself still decides on every call.
                            console.warn(`vmnet: cannot ask polkit about ${MANAGE_ACTION}: ${e.message}`);
                            return;
                        }
                        this._permission.connectObject('notify', () => this._sync(), this);
                        this._sync();
                    });
                }

                /** Opening the menu D-Bus-activates vmnetd when it is not running. */
                _activate() {
                    if (this._manager.g_name_owner)
                        return;
                    Gio.DBus.system.call('org.freedesktop.DBus', '/org/freedesktop/DBus',
                        'org.freedesktop.DBus', 'StartServiceByName',
                        new GLib.Variant('(su)', [BUS_NAME, 0]), null, Gio.DBusCallFlags.NONE, -1,
                        this._cancellable, (connection, result) => {
                            try {
                                connection.call_finish(result);
                            } catch (e) {
                                if (!e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                                    this._showMessage(`vmnetd cannot be started: ${errorText(e)}`);
                            }
                        });
                }

                _guests() {
                    if (!this._objects?.name_owner)
                        return [];
                    return this._objects.get_objects()
                        .map(object => object.get_interface(GUEST_IFACE))
                        .filter(proxy => proxy)
                        .map(guestOf)
                        .sort((a, b) => a.name.localeCompare(b.name));
                }

                _sync() {
                    const running = !!this._manager?.g_name_owner;
                    const state = property(this._manager, 'State', '');
                    const subnet = property(this._manager, 'Subnet', '');
                    const gateway = property(this._manager, 'HostAddress', '');
                    let status, subtitle;
                    if (!running) {
                        status = 'vmnetd is not running';
                        subtitle = 'Not running';
                    } else if (state === 'online') {
                        status = `Online: ${subnet}, gateway ${gateway}`;
                        subtitle = subnet;
                    } else {
                        status = 'Offline: the Wi-Fi has no IPv4 address';
                        subtitle = 'Offline';
                    }
                    this._status.label.text = status;
                    this._setTitle('Virtual machines', subtitle);
                    this.menu.setHeader('computer-symbolic', 'Virtual machines', subtitle);
                    this.checked = running && state === 'online';

                    const p = this._permission;
                    this._canManage = !p || p.allowed || p.can_acquire;
                    if (!this._canManage)
                        this._showMessage('You are not allowed to manage virtual machines');
                    else if (this._message.label.text.startsWith('You are not allowed'))
                        this._message.hide();
                    this._addItem.reactive = running && this._canManage;
                    this._syncGuests(running ? this._guests() : []);
                }

                _syncGuests(guests) {
                    const seen = new Set(guests.map(g => g.path));
                    for (const [path, item] of this._guestItems) {
                        if (!seen.has(path)) {
                            item.destroy();
                            this._guestItems.delete(path);
                        }
                    }
                    guests.forEach((guest, position) => {
                        let item = this._guestItems.get(guest.path);
                        if (!item) {
                            item = this._guestItem();
                            this._guestItems.set(guest.path, item);
                            this._guestSection.addMenuItem(item, position);
                        }
                        item.vmnetGuest = guest;
                        item.label.text = guestSummary(guest);
                        item.reasonItem.label.text = guest.reason;
                        item.reasonItem.visible = guest.reason !== '';
                        item.copyAddress.reactive = guest.address !== '';
                        item.remove.reactive = this._canManage;
                    });
                    this._noGuests.visible = guests.length === 0 && !!this._manager?.g_name_owner;
                    this._onGuests(guests);
                }

                _guestItem() {
                    const item = new PopupMenu.PopupSubMenuMenuItem('', false);
                    item.label.clutter_text.line_wrap = true;
                    item.label.clutter_text.ellipsize = 0;
                    item.reasonItem = textItem('', {reactive: false});
                    item.menu.addMenuItem(item.reasonItem);
                    item.copyAddress = item.menu.addAction('Copy address',
                        () => this._copy(item.vmnetGuest.address));
                    item.menu.addAction('Copy QEMU arguments', () => this._copy(qemuArgs(item.vmnetGuest)));
                    item.remove = item.menu.addAction('Remove', () => this._remove(item.vmnetGuest.name));
                    return item;
                }

                _copy(text) {
                    St.Clipboard.get_default().set_text(St.ClipboardType.CLIPBOARD, text);
                }

                /** A mutation, with interactive authorization: the shell's polkit agent may ask. */
                _call(method, params) {
                    return new Promise((resolve, reject) => {
                        this._manager.call(method, params,
                            Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, -1, this._cancellable,
                            (proxy, result) => {
                                try {
                                    resolve(proxy.call_finish(result));
                                } catch (e) {
                                    reject(e);
                                }
                            });
                    });
                }

                async _remove(name) {
                    try {
                        await this._call('RemoveGuest', new GLib.Variant('(s)', [name]));
                        this._message.hide();
                    } catch (e) {
                        this._showMessage(`Cannot remove ${name}: ${errorText(e)}`);
                    }
                }

                _openAddDialog() {
                    Main.panel.closeQuickSettings?.();
                    this.menu.close();
                    const add = name => this._call('AddGuest', new GLib.Variant('(sa{sv})', [name, {}]));
                    this._addDialog = new AddGuestDialog(add);
                    this._addDialog.connect('closed', () => (this._addDialog = null));
                    this._addDialog.open();
                }

                _showMessage(text) {
                    this._message.label.text = text;
                    this._message.show();
                }

                _rehomed(oldSubnet, newSubnet) {
                    const count = this._guests().length;
                    const details = `From ${oldSubnet}: ${count} guest${count === 1 ? '' : 's'} got addresses in the new subnet.`;
                    Main.notify(`Guests moved to ${newSubnet}`, details);
                }
            });

        const VmnetIndicator = GObject.registerClass(
            class VmnetIndicator extends QuickSettings.SystemIndicator {
                _init() {
                    super._init();
                    this._icon = this._addIndicator();
                    this._icon.iconName = 'computer-symbolic';
                    this._icon.visible = false;
                    // The panel icon shows while a guest runs.
                    this.toggle = new VmnetToggle(guests => {
                        this._icon.visible = guests.some(guest => guest.running);
                    });
                    this.quickSettingsItems.push(this.toggle);
                }

                /** Takes the item out of the quick settings again (on disable). */
                remove() {
                    this.quickSettingsItems.forEach(item => item.destroy());
                    this.destroy();
                }
            });

        return {VmnetIndicator};
    }

    /** Creates the indicator and puts it into the quick settings; returns it. */
    return function (modules) {
        classes ??= build(modules);
        const indicator = new classes.VmnetIndicator();
        const quickSettings = modules.Main.panel.statusArea.quickSettings;
        if (quickSettings.addExternalIndicator) {
            quickSettings.addExternalIndicator(indicator);
        } else {
            quickSettings._indicators.insert_child_at_index(indicator, 0);
            quickSettings._addItems(indicator.quickSettingsItems);
        }
        return indicator;
    };
}());
