//! The test user `vmnet-tester` (in group `vmnet`), which exists only in private copies of
//! /etc/passwd and /etc/group. dbus-daemon and polkitd see them bind-mounted over the real files
//! in their own mount namespaces: dbus-daemon drops connections of uids it cannot resolve, and
//! polkitd reads group membership from /etc/group.

use crate::cmd::error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An unprivileged uid (and gid) that is not in group `vmnet`.
pub const NOBODY: u32 = 65534;
/// The test user in group `vmnet`.
pub const TESTER: &str = "vmnet-tester";
/// The group of the example rules file.
pub const GROUP: &str = "vmnet";

pub struct TestUsers {
    /// uid and primary gid of `vmnet-tester`; `vmnet` has gid `uid + 1`.
    pub uid: u32,
    pub passwd: PathBuf,
    pub group: PathBuf,
}

/// The first id in 60000..65000 whose uid is unused and whose gid and gid+1 are unused.
fn free_id(passwd: &str, group: &str) -> io::Result<u32> {
    let ids =
        |text: &str| -> Vec<u32> { text.lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect() };
    let (uids, gids) = (ids(passwd), ids(group));
    (60000..64999)
        .find(|id| !uids.contains(id) && !gids.contains(id) && !gids.contains(&(id + 1)))
        .ok_or_else(|| error("no free uid/gid in 60000..65000"))
}

/// `text` without the entries named `names`, plus `extra`.
fn with_entries(text: &str, names: &[&str], extra: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !names.contains(&l.split(':').next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(extra);
    out
}

impl TestUsers {
    /// Writes `<dir>/passwd` and `<dir>/group`: the real files plus the test user and group.
    pub fn write(dir: &Path) -> io::Result<TestUsers> {
        let passwd = fs::read_to_string("/etc/passwd")?;
        let group = fs::read_to_string("/etc/group")?;
        let uid = free_id(&passwd, &group)?;
        let user = format!("{TESTER}:x:{uid}:{uid}:vmnet test:/nonexistent:/usr/sbin/nologin\n");
        let groups = format!("{TESTER}:x:{uid}:\n{GROUP}:x:{}:{TESTER}\n", uid + 1);
        let users = TestUsers { uid, passwd: dir.join("passwd"), group: dir.join("group") };
        fs::write(&users.passwd, with_entries(&passwd, &[TESTER], &user))?;
        fs::write(&users.group, with_entries(&group, &[TESTER, GROUP], &groups))?;
        Ok(users)
    }

    /// The files [`TestUsers::write`] wrote into a World's directory.
    pub fn of_world(dir: &Path, uid: u32) -> TestUsers {
        TestUsers { uid, passwd: dir.join("passwd"), group: dir.join("group") }
    }

    /// `unshare -m ... sh -c SCRIPT`, in a private mount namespace where the copies are
    /// bind-mounted over /etc/passwd and /etc/group. In SCRIPT, `$1` and `$2` are taken;
    /// `args` follow as `$3`, `$4`...
    pub fn unshare(&self, script: &str, args: &[&Path]) -> Command {
        let script = format!("mount --bind \"$1\" /etc/passwd && mount --bind \"$2\" /etc/group && {script}");
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .args([&self.passwd, &self.group])
            .args(args);
        cmd
    }
}
