use super::*;
use crate::model::Mac;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmnet-state-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn guest(name: &str) -> Guest {
    Guest {
        name: name.into(),
        tap: format!("vmt-{name}"),
        mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 3]),
        owner: 1000,
        qmp: Some(format!("/run/user/1000/{name}.qmp")),
    }
}

/// A reconciler's worth of state, saved the way the reconciler saves it.
#[derive(Default)]
struct Book {
    guests: BTreeMap<String, (Guest, Option<u32>)>,
    saved: SavedSysctls,
    last_subnet: Option<Subnet>,
}

impl Book {
    fn save(&self, file: &mut StateFile, changed: &[&str], host: bool) -> Result<(), StateError> {
        let host_ref = HostRef { saved_sysctls: &self.saved, last_subnet: self.last_subnet };
        file.save(
            || ChangeRef {
                guests: changed.iter().filter_map(|n| self.guests.get(*n)).map(stored).collect(),
                removed: changed.iter().copied().filter(|n| !self.guests.contains_key(*n)).collect(),
                host: host.then_some(host_ref),
            },
            || StateRef { guests: self.guests.values().map(stored).collect(), host: host_ref },
        )
    }

    fn expected(&self) -> State {
        State {
            version: FORMAT_VERSION,
            generation: 0,
            guests: self
                .guests
                .values()
                .map(|(guest, host_number)| StoredGuest {
                    guest: guest.clone(),
                    host_number: *host_number,
                    addresses6: Default::default(),
                })
                .collect(),
            saved_sysctls: self.saved.clone(),
            last_subnet: self.last_subnet,
        }
    }
}

fn stored((guest, host_number): &(Guest, Option<u32>)) -> StoredGuestRef<'_> {
    StoredGuestRef { guest, host_number: *host_number, addresses6: &crate::planner::NO_ADDRESSES6 }
}

fn without_generation(mut state: State) -> State {
    state.generation = 0;
    state
}

#[test]
fn missing_files_are_an_empty_state_and_changes_round_trip() {
    let dir = temp_dir("rt");
    let mut file = StateFile::new(&dir);
    assert!(file.load().unwrap().guests.is_empty());
    let mut book = Book::default();
    book.guests.insert("web".into(), (guest("web"), Some(200)));
    book.saved.insert("net/ipv4/ip_forward".into(), "0".into());
    book.last_subnet = Some(String::from("198.51.100.0/24").try_into().unwrap());
    book.save(&mut file, &["web"], true).unwrap();
    let text = fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(text.contains("\"mac\": \"0a:76:6d:01:02:03\""), "{text}");
    assert!(text.contains("\"host_number\": 200"), "the format stays flat: {text}");
    assert!(text.contains("\"version\": 2"), "{text}");
    assert!(!dir.join("state.json.tmp").exists() && !dir.join("journal.jsonl.tmp").exists());

    // Later changes are journal lines: one added, one changed, one removed, the host part.
    for name in ["db", "cache"] {
        book.guests.insert(name.into(), (guest(name), Some(201)));
        book.save(&mut file, &[name], false).unwrap();
    }
    book.guests.get_mut("db").unwrap().1 = Some(202);
    book.guests.remove("cache");
    book.last_subnet = Some(String::from("203.0.113.0/24").try_into().unwrap());
    book.save(&mut file, &["db", "cache"], true).unwrap();
    assert_eq!(fs::read_to_string(dir.join("state.json")).unwrap(), text, "the snapshot stays");
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 4, "a header and three changes: {journal}");
    assert_eq!(without_generation(file.load().unwrap()), book.expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_journal_that_outgrows_its_snapshot_is_folded_into_a_new_one() {
    let dir = temp_dir("fold");
    let mut file = StateFile::new(&dir);
    let mut book = Book::default();
    book.save(&mut file, &[], true).unwrap();
    for i in 0..1000 {
        let name = format!("g{i}");
        book.guests.insert(name.clone(), (guest(&name), Some(i)));
        book.save(&mut file, &[&name], false).unwrap();
        let journal = fs::metadata(dir.join("journal.jsonl")).unwrap().len();
        let snapshot = fs::metadata(dir.join("state.json")).unwrap().len();
        assert!(journal <= snapshot.max(journal::MIN_FOLD) + 1024, "{journal} vs {snapshot}");
    }
    let state = file.load().unwrap();
    assert!(state.generation > 1, "folded at least once");
    assert_eq!(without_generation(state), book.expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cut_short_last_line_and_a_journal_of_an_older_snapshot_are_ignored() {
    let dir = temp_dir("torn");
    let mut file = StateFile::new(&dir);
    let mut book = Book::default();
    book.guests.insert("web".into(), (guest("web"), Some(200)));
    book.save(&mut file, &["web"], true).unwrap();
    book.guests.insert("db".into(), (guest("db"), Some(201)));
    book.save(&mut file, &["db"], false).unwrap();
    let journal = dir.join("journal.jsonl");
    let whole = fs::read(&journal).unwrap();
    // A crash in the middle of the next line.
    fs::write(&journal, [&whole[..], br#"{"removed":["w"#].concat()).unwrap();
    assert_eq!(without_generation(file.load().unwrap()), book.expected());

    // A crash after a new snapshot but before its journal: the old journal is not replayed
    // over it (it would bring back what the snapshot no longer has).
    let old_journal = fs::read(&journal).unwrap();
    book.guests.remove("db");
    let mut restarted = StateFile::new(&dir);
    book.save(&mut restarted, &["db"], false).unwrap();
    fs::write(&journal, old_journal).unwrap();
    assert_eq!(without_generation(StateFile::new(&dir).load().unwrap()), book.expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_restarted_vmnetd_starts_a_new_snapshot_before_appending() {
    let dir = temp_dir("restart");
    let mut book = Book::default();
    book.guests.insert("web".into(), (guest("web"), Some(200)));
    book.save(&mut StateFile::new(&dir), &["web"], true).unwrap();
    book.guests.insert("db".into(), (guest("db"), None));
    book.save(&mut StateFile::new(&dir), &["db"], false).unwrap();
    let file = StateFile::new(&dir);
    let state = file.load().unwrap();
    assert_eq!(state.generation, 2);
    assert_eq!(without_generation(state), book.expected());
    assert_eq!(fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count(), 1);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_version_1_state_file_is_read_and_replaced_by_version_2() {
    let dir = temp_dir("v1");
    fs::create_dir_all(&dir).unwrap();
    let v1 = r#"{"version": 1, "guests": [{"name": "web", "tap": "vmt-web", "mac": "0a:76:6d:01:02:03",
        "owner": 1000, "qmp": null, "host_number": 200}], "saved_sysctls": {"net/ipv4/ip_forward": "0"},
        "last_subnet": "198.51.100.0/24"}"#;
    fs::write(dir.join("state.json"), v1).unwrap();
    let mut file = StateFile::new(&dir);
    let state = file.load().unwrap();
    assert_eq!((state.guests.len(), state.guests[0].host_number), (1, Some(200)));
    assert_eq!(state.saved_sysctls["net/ipv4/ip_forward"], "0");
    let mut book = Book { last_subnet: state.last_subnet, saved: state.saved_sysctls, ..Book::default() };
    let stored = &state.guests[0];
    book.guests.insert("web".into(), (stored.guest.clone(), stored.host_number));
    book.save(&mut file, &[], true).unwrap();
    assert!(fs::read_to_string(dir.join("state.json")).unwrap().contains("\"version\": 2"));
    assert_eq!(without_generation(file.load().unwrap()), book.expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_or_future_files_are_refused() {
    let dir = temp_dir("bad");
    fs::create_dir_all(&dir).unwrap();
    let file = StateFile::new(&dir);
    fs::write(dir.join("state.json"), "{not json").unwrap();
    assert!(matches!(file.load(), Err(StateError::Corrupt { .. })));
    fs::write(dir.join("state.json"), r#"{"version": 9, "guests": []}"#).unwrap();
    assert!(matches!(file.load(), Err(StateError::Version { found: 9, .. })));
    fs::write(dir.join("state.json"), r#"{"version": 2, "generation": 4, "guests": []}"#).unwrap();
    fs::write(dir.join("journal.jsonl"), "{\"generation\": 4}\n{\"guests\": 7}\n").unwrap();
    let refused = file.load().unwrap_err();
    assert!(matches!(refused, StateError::CorruptJournal { line: 2, .. }), "{refused}");
    fs::remove_dir_all(dir).unwrap();
}
