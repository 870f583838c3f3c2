//! `vmnetctl qemu-args` and `libvirt-xml`: how to put a guest on its tap.

use serde_json::json;
use vmnet_dbus::{qemu_args, shell_line, GuestInfo};

use crate::bus::Bus;
use crate::exit::CliError;
use crate::output::{print, print_json};

/// A libvirt `<interface type='ethernet'>` element for the guest's tap.
pub fn libvirt_xml(guest: &GuestInfo) -> String {
    format!(
        "<interface type='ethernet'>\n  <mac address='{}'/>\n  <target dev='{}' managed='no'/>\n  \
         <model type='virtio'/>\n</interface>\n",
        xml_escape(&guest.mac),
        xml_escape(&guest.tap)
    )
}

/// `text` safe inside an XML attribute value or element.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

pub async fn print_qemu_args(bus: &Bus, name: &str, json: bool) -> Result<(), CliError> {
    let args = qemu_args(&bus.guest(name).await?);
    if json {
        return print_json(&json!(args));
    }
    let (line, quoted) = shell_line(&args);
    if quoted {
        eprintln!("vmnetctl: some arguments are quoted for the shell: use them with eval, or use --json");
    }
    print(&format!("{line}\n"))
}

pub async fn print_libvirt_xml(bus: &Bus, name: &str, json: bool) -> Result<(), CliError> {
    let guest = bus.guest(name).await?;
    if !guest.qmp.is_empty() {
        eprintln!(
            "vmnetctl: note: libvirt keeps its own QMP monitor; the QMP socket registered for {name} \
             ({}) is not used by a libvirt guest",
            guest.qmp
        );
    }
    let xml = libvirt_xml(&guest);
    if json {
        print_json(&json!({ "xml": xml }))
    } else {
        print(&xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_xml_is_escaped() {
        let web =
            GuestInfo { tap: "vmt-web".into(), mac: "0a:76:6d:32:d1:81".into(), ..GuestInfo::default() };
        assert_eq!(
            libvirt_xml(&web),
            "<interface type='ethernet'>\n  <mac address='0a:76:6d:32:d1:81'/>\n  \
             <target dev='vmt-web' managed='no'/>\n  <model type='virtio'/>\n</interface>\n"
        );
        assert_eq!(xml_escape(r#"a'b"c<d>&e"#), "a&apos;b&quot;c&lt;d&gt;&amp;e");
    }
}
