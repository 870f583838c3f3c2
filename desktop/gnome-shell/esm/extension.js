// Entry point for GNOME Shell 45 and later (ES modules); the logic is in vmnet.js.
import Clutter from 'gi://Clutter';
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Polkit from 'gi://Polkit?version=1.0';
import St from 'gi://St';
import * as Dialog from 'resource:///org/gnome/shell/ui/dialog.js';
import * as Main from 'resource:///org/gnome/shell/ui/main.js';
import * as ModalDialog from 'resource:///org/gnome/shell/ui/modalDialog.js';
import * as PopupMenu from 'resource:///org/gnome/shell/ui/popupMenu.js';
import * as QuickSettings from 'resource:///org/gnome/shell/ui/quickSettings.js';
import {Extension} from 'resource:///org/gnome/shell/extensions/extension.js';

import {createIndicator} from './vmnet.js';

export default class VmnetExtension extends Extension {
    enable() {
        this._indicator = createIndicator(
            {Clutter, Gio, GLib, GObject, Polkit, St, Dialog, Main, ModalDialog, PopupMenu, QuickSettings});
    }

    disable() {
        this._indicator?.remove();
        this._indicator = null;
    }
}
