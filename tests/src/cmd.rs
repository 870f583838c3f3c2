//! Small helpers around `std::process::Command`.

use std::io;
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// An `io::Error` with a message.
pub fn error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// The command line of `cmd`, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion and returns its output, whatever its exit status.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.output().map_err(|e| error(format!("cannot run `{}`: {e}", describe(cmd))))
}

/// Runs `cmd` and returns its stdout; a non-zero exit status is an error carrying stderr.
pub fn run(cmd: &mut Command) -> io::Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(error(format!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ARGS...`, returning stdout.
pub fn ip(ns: &str, args: &[&str]) -> io::Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// A command that runs `argv` inside netns `ns` (`ip netns exec`, which execs: same pid).
pub fn in_netns(ns: &str, argv: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv);
    cmd
}

/// A command for `program`, run as root (`None`) or as `uid` through
/// `setpriv --reuid=UID --regid=UID --clear-groups` (gid = uid, no supplementary groups).
pub fn command_as(uid: Option<u32>, program: &str) -> Command {
    match uid {
        None => Command::new(program),
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).args(["--clear-groups", program]);
            cmd
        }
    }
}

/// Polls `check` every `every` until it returns true or `timeout` has passed.
pub fn wait_until(timeout: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(every);
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
