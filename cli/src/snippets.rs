//! `vmnetctl qemu-args` and `libvirt-xml`: how to put a guest on its tap.

use serde_json::json;
use vmnet_dbus::{GuestInfo, QEMU_NETDEV_ID};

use crate::bus::Bus;
use crate::exit::CliError;
use crate::output::{print, print_json};

/// QEMU's argv for the guest's NIC on its tap, plus its QMP socket when one is registered.
pub fn qemu_args(guest: &GuestInfo) -> Vec<String> {
    let id = QEMU_NETDEV_ID;
    let mut args = vec![
        "-netdev".to_owned(),
        format!("tap,id={id},ifname={},script=no,downscript=no", qemu_value(&guest.tap)),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev={id},mac={}", qemu_value(&guest.mac)),
    ];
    if !guest.qmp.is_empty() {
        args.push("-qmp".to_owned());
        args.push(format!("unix:{},server=on,wait=off", qemu_value(&guest.qmp)));
    }
    args
}

/// A value inside a QEMU option list, where a comma is written as two.
fn qemu_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// `arg` as one shell word: unchanged when it has only characters that no shell treats
/// specially (so `$(vmnetctl qemu-args NAME)` works), otherwise in single quotes.
pub fn shell_word(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The arguments as one shell line; whether any of them needed quotes.
pub fn shell_line(args: &[String]) -> (String, bool) {
    let words: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    let quoted = words.iter().zip(args).any(|(word, arg)| word != arg);
    (words.join(" "), quoted)
}

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

    fn web(qmp: &str) -> GuestInfo {
        GuestInfo {
            name: "web".into(),
            tap: "vmt-web".into(),
            mac: "0a:76:6d:32:d1:81".into(),
            qmp: qmp.into(),
            ..GuestInfo::default()
        }
    }

    #[test]
    fn qemu_args_name_the_shared_netdev_id() {
        let (line, quoted) = shell_line(&qemu_args(&web("")));
        assert_eq!(
            line,
            "-netdev tap,id=vmnet,ifname=vmt-web,script=no,downscript=no \
             -device virtio-net-pci,netdev=vmnet,mac=0a:76:6d:32:d1:81"
        );
        assert!(!quoted, "plain arguments work in $(...)");
    }

    #[test]
    fn qmp_socket_is_added_with_commas_doubled_and_quoted_when_needed() {
        let args = qemu_args(&web("/run/user/1000/web.qmp"));
        assert_eq!(args[4..], ["-qmp", "unix:/run/user/1000/web.qmp,server=on,wait=off"]);
        let args = qemu_args(&web("/tmp/my vm,1/it's.qmp"));
        assert_eq!(args[5], "unix:/tmp/my vm,,1/it's.qmp,server=on,wait=off");
        let (line, quoted) = shell_line(&args);
        assert!(quoted);
        assert!(line.ends_with(r" -qmp 'unix:/tmp/my vm,,1/it'\''s.qmp,server=on,wait=off'"), "{line}");
    }

    #[test]
    fn shell_words_quote_everything_special() {
        for special in ["", "a b", "$HOME", "a*", "x;y", "`id`", "a\nb", "~", "[x]", "\"q\""] {
            assert!(shell_word(special).starts_with('\''), "{special:?}");
        }
        assert_eq!(shell_word("virtio-net-pci,netdev=vmnet"), "virtio-net-pci,netdev=vmnet");
    }

    #[test]
    fn libvirt_xml_is_escaped() {
        assert_eq!(
            libvirt_xml(&web("")),
            "<interface type='ethernet'>\n  <mac address='0a:76:6d:32:d1:81'/>\n  \
             <target dev='vmt-web' managed='no'/>\n  <model type='virtio'/>\n</interface>\n"
        );
        assert_eq!(xml_escape(r#"a'b"c<d>&e"#), "a&apos;b&quot;c&lt;d&gt;&amp;e");
    }
}
