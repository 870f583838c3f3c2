// Entry point for GNOME Shell 43 and 44 (`imports.*`); the logic is in vmnet.js.
/* exported init */
'use strict';

const {Clutter, Gio, GLib, GObject, Polkit, St} = imports.gi;
const Dialog = imports.ui.dialog;
const Main = imports.ui.main;
const ModalDialog = imports.ui.modalDialog;
const PopupMenu = imports.ui.popupMenu;
const QuickSettings = imports.ui.quickSettings;
const Me = imports.misc.extensionUtils.getCurrentExtension();
const {createIndicator} = Me.imports.vmnet;

class VmnetExtension {
    enable() {
        this._indicator = createIndicator(
            {Clutter, Gio, GLib, GObject, Polkit, St, Dialog, Main, ModalDialog, PopupMenu, QuickSettings});
    }

    disable() {
        this._indicator?.remove();
        this._indicator = null;
    }
}

function init() {
    return new VmnetExtension();
}
