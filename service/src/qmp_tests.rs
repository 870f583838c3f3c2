//! The QMP client against a fake QEMU on a unix socket in a temporary directory: it answers
//! like QEMU 7.2 unless a test tells it to misbehave on a given command.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::*;

const MAC: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const GREETING: &str =
    r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}"#;

/// What the fake does instead of answering a command (matched by substring).
#[derive(Clone)]
enum Misbehave {
    Close,
    Hang,
    Error,
}

struct FakeQemu {
    dir: PathBuf,
    socket: PathBuf,
    /// Every command received, with the number of its connection (0, 1, ...).
    commands: Arc<Mutex<Vec<(u32, String)>>>,
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fake QEMU that sends `greeting` on connect and, on the connection numbered (every one
/// for `None`), does `misbehave` for a command containing `trigger`.
type Misbehaviour = (Option<u32>, &'static str, Misbehave);

fn fake_qemu(greeting: String, misbehave: Option<Misbehaviour>) -> FakeQemu {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vmnetd-qmp-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("qmp.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let commands = Arc::new(Mutex::new(Vec::new()));
    let seen = commands.clone();
    tokio::spawn(async move {
        for connection in 0.. {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (greeting, misbehave, seen) = (greeting.clone(), misbehave.clone(), seen.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(format!("{greeting}\n").as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    seen.lock().unwrap().push((connection, line.clone()));
                    let answer = match &misbehave {
                        Some((on, trigger, how))
                            if on.is_none_or(|on| on == connection) && line.contains(trigger) =>
                        {
                            match how {
                                Misbehave::Close => return,
                                Misbehave::Hang => return std::future::pending().await,
                                Misbehave::Error => {
                                    r#"{"error": {"class": "GenericError", "desc": "no"}}"#.into()
                                }
                            }
                        }
                        _ if line.contains("query-rx-filter") => {
                            r#"{"return": [{"name": "net0", "main-mac": "52:54:00:12:34:56"}]}"#.to_owned()
                        }
                        _ => r#"{"return": {}}"#.to_owned(),
                    };
                    if write.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    FakeQemu { dir, socket, commands }
}

fn own_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The `set_link` commands seen, as (connection, up).
fn set_links(fake: &FakeQemu) -> Vec<(u32, bool)> {
    let commands = fake.commands.lock().unwrap();
    commands
        .iter()
        .filter(|(_, line)| line.contains("set_link"))
        .map(|(connection, line)| (*connection, line.contains(r#""up":true"#)))
        .collect()
}

#[tokio::test]
async fn flaps_the_nic_with_the_guests_mac() {
    let fake = fake_qemu(GREETING.into(), None);
    assert_eq!(flap_link(&fake.socket, own_uid(), MAC).await.unwrap(), "net0");
    assert_eq!(set_links(&fake), [(0, false), (0, true)]);
    let other = Mac([0x52, 0x54, 0, 0, 0, 1]);
    assert!(matches!(flap_link(&fake.socket, own_uid(), other).await, Err(QmpError::NoNic(_))));
}

#[tokio::test]
async fn set_link_up_only_sets_the_guests_nic_up_and_only_for_its_owner() {
    let fake = fake_qemu(GREETING.into(), None);
    assert_eq!(set_link_up(&fake.socket, own_uid(), MAC).await.unwrap(), "net0");
    assert_eq!(set_links(&fake), [(0, true)]);
    let refused = set_link_up(&fake.socket, own_uid().wrapping_add(1), MAC).await;
    assert!(matches!(refused, Err(QmpError::WrongOwner { .. })), "{refused:?}");
    assert_eq!(set_links(&fake), [(0, true)], "nothing sent to another user's QEMU");
}

/// Also a root peer for another user's guest: only the owner's own QEMU is driven.
#[tokio::test]
async fn a_peer_that_is_not_exactly_the_owner_is_not_driven() {
    let fake = fake_qemu(GREETING.into(), None);
    let owner = own_uid().wrapping_add(1);
    match flap_link(&fake.socket, owner, MAC).await {
        Err(QmpError::WrongOwner { peer, owner: o }) => assert_eq!((peer, o), (own_uid(), owner)),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(fake.commands.lock().unwrap().is_empty(), "a command was sent");
}

#[tokio::test]
async fn an_overlong_line_or_endless_events_end_the_exchange() {
    let long = format!(r#"{{"QMP": "{}"}}"#, "x".repeat(MAX_LINE));
    let fake = fake_qemu(long, None);
    let error = flap_link(&fake.socket, own_uid(), MAC).await.unwrap_err();
    assert!(error.to_string().contains("longer than"), "{error}");

    let events =
        format!(r#"{{"event": "NIC_RX_FILTER_CHANGED"}}{}"#, "\n{\"event\": \"X\"}".repeat(MAX_EVENTS));
    let fake = fake_qemu(events, None);
    let error = flap_link(&fake.socket, own_uid(), MAC).await.unwrap_err();
    assert!(error.to_string().contains("events and no reply"), "{error}");
}

#[tokio::test]
async fn an_interrupted_flap_brings_the_link_back_up_on_a_fresh_connection() {
    for how in [Misbehave::Close, Misbehave::Error] {
        let fake = fake_qemu(GREETING.into(), Some((Some(0), r#""up":true"#, how)));
        assert!(flap_link(&fake.socket, own_uid(), MAC).await.is_err());
        assert_eq!(set_links(&fake), [(0, false), (0, true), (1, true)]);
    }
    // QEMU hangs after the link went down: the whole exchange times out, and then the link
    // is restored.
    let fake = fake_qemu(GREETING.into(), Some((Some(0), r#""up":false"#, Misbehave::Hang)));
    assert!(matches!(flap_link(&fake.socket, own_uid(), MAC).await, Err(QmpError::Timeout)));
    assert_eq!(set_links(&fake), [(0, false), (1, true)]);
}

#[tokio::test]
async fn a_link_that_cannot_be_restored_is_reported() {
    let fake = fake_qemu(GREETING.into(), Some((None, r#""up":true"#, Misbehave::Close)));
    match flap_link(&fake.socket, own_uid(), MAC).await {
        Err(QmpError::LinkLeftDown { nic, .. }) => assert_eq!(nic, "net0"),
        other => panic!("{other:?}"),
    }
    assert_eq!(set_links(&fake), [(0, false), (0, true), (1, true), (2, true), (3, true)]);
    // Nothing went down when the socket is gone: nothing to restore.
    drop(std::fs::remove_file(&fake.socket));
    assert!(matches!(flap_link(&fake.socket, own_uid(), MAC).await, Err(QmpError::Io(_))));
}

#[test]
fn replies_are_parsed_and_bad_ones_refused() {
    assert_eq!(parse_reply(br#"{"return": [1]}"#).unwrap(), Some(json!([1])));
    assert_eq!(parse_reply(br#"{"event": "STOP"}"#).unwrap(), None);
    let error = parse_reply(br#"{"error": {"desc": "bad\nthing"}}"#).unwrap_err();
    assert_eq!(error.to_string(), "QMP error: bad\\nthing");
    for bad in [&b"[1]"[..], b"\"x\"", b"{", b"", b"\xff"] {
        assert!(parse_reply(bad).is_err(), "{bad:?}");
    }
    assert_eq!(nic_with_mac(&json!([{"name": 1}, {"main-mac": 2}, "x"]), MAC), None);
}
