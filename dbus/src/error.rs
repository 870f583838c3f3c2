/// Errors returned by org.vmnet methods, as `org.vmnet.Error.<Variant>`.
///
/// Each carries a message a person can act on.
#[derive(Debug, Clone, PartialEq, zbus::DBusError)]
#[zbus(prefix = "org.vmnet.Error")]
pub enum Error {
    /// A transport-level error (client side only).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A malformed name, option, MAC or address.
    InvalidArgument(String),
    /// A guest of that name, or a guest with that MAC, already exists.
    AlreadyExists(String),
    /// No guest of that name.
    NotFound(String),
    /// The requested address is outside the subnet or taken, or the pool is exhausted.
    AddressUnavailable(String),
    /// The owner has as many guests as `[limits] guests_per_owner` allows.
    LimitExceeded(String),
    /// polkit refused the caller, or could not be asked.
    NotAuthorized(String),
    /// The kernel refused an operation; the message names it.
    Failed(String),
}
