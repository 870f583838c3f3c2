//! Exit statuses and the errors that lead to them, in one place.

use std::fmt;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use zbus::DBusError;

/// Exit statuses; `--help` lists them (see [`EXIT_STATUS_HELP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Success = 0,
    /// vmnetd refused the request (invalid argument, already exists, no address available) or
    /// failed to carry it out.
    Refused = 1,
    /// Bad command line (clap's own status for usage errors).
    Usage = 2,
    /// polkit, or the bus policy, did not allow the call.
    NotAuthorized = 3,
    /// No guest of that name.
    NotFound = 4,
    /// The system bus or vmnetd cannot be reached, or vmnetd did not answer in time
    /// (EX_UNAVAILABLE from sysexits.h).
    Unavailable = 69,
}

/// The exit statuses, for `--help` and the man page.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success
  1   vmnetd refused or failed the request (invalid argument, already exists,
      no address available, the kernel refused)
  2   usage error
  3   not authorized (polkit)
  4   no such guest
  69  the system bus or vmnetd cannot be reached, or vmnetd did not answer in time

Environment:
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to use (default: the usual system bus socket)";

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: what to tell the user, and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError { exit, message: message.into() }
    }

    /// No guest named `name` (worded like vmnetd's own NotFound).
    pub fn no_guest(name: &str) -> CliError {
        CliError::new(Exit::NotFound, format!("no guest named {name:?}"))
    }

    /// The system bus itself could not be reached.
    pub fn no_bus(error: impl fmt::Display) -> CliError {
        CliError::new(Exit::Unavailable, format!("cannot reach the system bus: {error}"))
    }

    /// Stops the command without a message and with status 0 (e.g. stdout was closed).
    pub fn quiet() -> CliError {
        CliError::new(Exit::Success, "")
    }

    /// An error while writing the output (a closed pipe is handled by the caller).
    pub fn output(error: io::Error) -> CliError {
        CliError::new(Exit::Refused, format!("cannot write the output: {error}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Names of bus errors that mean vmnetd is not there: not running and not activatable, or its
/// activation failed, or it went away before answering.
fn means_unreachable(name: &str) -> bool {
    matches!(
        name,
        "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner"
            | "org.freedesktop.DBus.Error.NoReply"
            | "org.freedesktop.DBus.Error.Timeout"
            | "org.freedesktop.DBus.Error.TimedOut"
            | "org.freedesktop.DBus.Error.Disconnected"
            | "org.freedesktop.DBus.Error.NoServer"
    ) || name.starts_with("org.freedesktop.DBus.Error.Spawn.")
}

/// Maps a transport-level error of a call to vmnetd; `timeout` is the method timeout in force.
pub fn from_zbus(error: &zbus::Error, timeout: Duration) -> CliError {
    match error {
        zbus::Error::InputOutput(e) if e.kind() == io::ErrorKind::TimedOut => CliError::new(
            Exit::Unavailable,
            format!("vmnetd did not answer within {} s (see --timeout)", timeout.as_secs()),
        ),
        zbus::Error::InputOutput(_)
        | zbus::Error::Address(_)
        | zbus::Error::Handshake(_)
        | zbus::Error::Connection(..) => CliError::no_bus(error),
        _ => match error_reply(error) {
            Some((name, text)) if means_unreachable(&name) => {
                CliError::new(Exit::Unavailable, format!("cannot reach vmnetd on the system bus: {text}"))
            }
            Some((name, text)) if name == "org.freedesktop.DBus.Error.AccessDenied" => {
                CliError::new(Exit::NotAuthorized, format!("not authorized: {text}"))
            }
            Some((name, text)) => CliError::new(Exit::Refused, format!("{name}: {text}")),
            None => CliError::new(Exit::Refused, format!("D-Bus error: {error}")),
        },
    }
}

/// The name and message of an error reply, if `error` is one.
fn error_reply(error: &zbus::Error) -> Option<(String, String)> {
    match error {
        zbus::Error::FDO(e) => Some((e.name().to_string(), e.description().unwrap_or_default().to_owned())),
        zbus::Error::MethodError(name, text, _) => Some((name.to_string(), text.clone().unwrap_or_default())),
        _ => None,
    }
}

/// Maps an error of a vmnetd method to a plain message and its exit status.
pub fn from_vmnet(error: &vmnet_dbus::Error, timeout: Duration) -> CliError {
    use vmnet_dbus::Error as E;
    match error {
        E::NotAuthorized(m) => CliError::new(Exit::NotAuthorized, format!("not authorized: {m}")),
        E::NotFound(m) => CliError::new(Exit::NotFound, m.clone()),
        E::InvalidArgument(m) | E::AlreadyExists(m) | E::AddressUnavailable(m) | E::LimitExceeded(m) => {
            CliError::new(Exit::Refused, m.clone())
        }
        E::Failed(m) => CliError::new(Exit::Refused, format!("vmnetd failed: {m}")),
        E::ZBus(e) => from_zbus(e, timeout),
    }
}

/// Whether a property read failed because there is no such object (no such guest).
pub fn is_unknown_object(error: &zbus::Error) -> bool {
    error_reply(error).is_some_and(|(name, _)| {
        matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.UnknownObject" | "org.freedesktop.DBus.Error.UnknownInterface"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmnet_dbus::Error as E;

    const T: Duration = Duration::from_secs(25);

    fn fdo(error: zbus::fdo::Error) -> zbus::Error {
        zbus::Error::FDO(Box::new(error))
    }

    #[test]
    fn service_errors_map_to_their_statuses_and_plain_messages() {
        let refused = from_vmnet(&E::NotAuthorized("polkit said no".into()), T);
        assert_eq!(refused, CliError::new(Exit::NotAuthorized, "not authorized: polkit said no"));
        let missing = from_vmnet(&E::NotFound("no guest named \"x\"".into()), T);
        assert_eq!(missing, CliError::new(Exit::NotFound, "no guest named \"x\""));
        for e in [
            E::InvalidArgument("a".into()),
            E::AlreadyExists("a".into()),
            E::AddressUnavailable("a".into()),
            E::LimitExceeded("a".into()),
        ] {
            assert_eq!(from_vmnet(&e, T), CliError::new(Exit::Refused, "a"));
        }
        assert_eq!(from_vmnet(&E::Failed("tap".into()), T).message, "vmnetd failed: tap");
    }

    #[test]
    fn an_absent_service_or_bus_is_unavailable() {
        let unknown = fdo(zbus::fdo::Error::ServiceUnknown("The name is not activatable".into()));
        let e = from_vmnet(&E::ZBus(unknown), T);
        assert_eq!(e.exit, Exit::Unavailable);
        assert_eq!(e.message, "cannot reach vmnetd on the system bus: The name is not activatable");
        let spawn = fdo(zbus::fdo::Error::SpawnChildExited("exited with status 1".into()));
        assert_eq!(from_zbus(&spawn, T).exit, Exit::Unavailable);
        let io = zbus::Error::InputOutput(io::Error::from(io::ErrorKind::NotFound).into());
        assert_eq!(from_zbus(&io, T).exit, Exit::Unavailable);
        assert!(from_zbus(&io, T).message.starts_with("cannot reach the system bus: "));
        let late = zbus::Error::InputOutput(io::Error::from(io::ErrorKind::TimedOut).into());
        assert_eq!(from_zbus(&late, T).message, "vmnetd did not answer within 25 s (see --timeout)");
    }

    #[test]
    fn bus_policy_denial_is_not_authorized_and_others_are_refusals() {
        let denied = fdo(zbus::fdo::Error::AccessDenied("policy".into()));
        assert_eq!(from_zbus(&denied, T), CliError::new(Exit::NotAuthorized, "not authorized: policy"));
        let other = fdo(zbus::fdo::Error::UnknownMethod("no Frobnicate".into()));
        assert_eq!(from_zbus(&other, T).exit, Exit::Refused);
    }

    #[test]
    fn unknown_objects_are_recognized() {
        assert!(is_unknown_object(&fdo(zbus::fdo::Error::UnknownObject("/org/vmnet/guests/x".into()))));
        assert!(!is_unknown_object(&fdo(zbus::fdo::Error::ServiceUnknown("x".into()))));
    }

    #[test]
    fn statuses_are_distinct_numbers() {
        let all = [Exit::Success, Exit::Refused, Exit::Usage, Exit::NotAuthorized, Exit::NotFound];
        let codes: Vec<u8> = all.iter().chain([Exit::Unavailable].iter()).map(|e| *e as u8).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 69]);
        for code in codes {
            assert!(EXIT_STATUS_HELP.contains(&format!("\n  {code} ")), "{code} is documented");
        }
    }
}
