//! `vmnetctl qemu-args`' text, shared by every client that shows it (vmnetctl, vmnet-tray).

use crate::{GuestInfo, QEMU_NETDEV_ID};

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
}
