//! Authorization of org.vmnet callers.
//!
//! [`Authorizer`] answers one question: may the *caller* of this D-Bus message perform this
//! action? [`Polkit`] asks polkitd, naming the caller by its unique bus name from the message
//! header (never the daemon itself), allows interactive authentication, and fails closed: any
//! error talking to polkit is a refusal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use zbus::message::Header;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add or remove one's own guests.
    ManageGuests,
    /// Add or remove guests owned by another user.
    ManageAllGuests,
    /// Re-read the uplink and reconcile.
    Resync,
}

impl Action {
    /// The polkit action id, as declared in `org.vmnet.policy`.
    pub fn id(self) -> &'static str {
        match self {
            Action::ManageGuests => "org.vmnet.manage-guests",
            Action::ManageAllGuests => "org.vmnet.manage-all-guests",
            Action::Resync => "org.vmnet.resync",
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("polkit refused {action} for this caller")]
    Refused { action: &'static str },
    #[error("{action} needs authentication and no polkit agent answered")]
    ChallengeUnanswered { action: &'static str },
    #[error("the D-Bus message names no sender")]
    NoSender,
    #[error("could not ask polkit about {action}: {reason}")]
    Unreachable { action: &'static str, reason: String },
}

/// A boxed future, so that `Authorizer` can be used as a trait object.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Denied>> + Send + 'a>>;

/// Decides whether the sender of a message may perform an action.
pub trait Authorizer: Send + Sync {
    fn authorize<'a>(&'a self, header: &'a Header<'_>, action: Action) -> AuthFuture<'a>;
}

/// [`Authorizer`] backed by polkitd on the system bus.
pub struct Polkit {
    authority: AuthorityProxy<'static>,
}

impl Polkit {
    /// Talks to polkit over `connection`. Does not contact polkitd yet: a polkitd that is
    /// missing now (or later) only refuses the calls made while it is missing.
    pub async fn new(connection: &zbus::Connection) -> zbus::Result<Self> {
        let authority = AuthorityProxy::builder(connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(Self { authority })
    }

    async fn check(&self, header: &Header<'_>, action: Action) -> Result<(), Denied> {
        let id = action.id();
        let subject = Subject::new_for_message_header(header).map_err(|_| Denied::NoSender)?;
        let result = self
            .authority
            .check_authorization(
                &subject,
                id,
                &HashMap::new(),
                CheckAuthorizationFlags::ALLOW_USER_INTERACTION,
                "",
            )
            .await
            .map_err(|e| Denied::Unreachable { action: id, reason: e.to_string() })?;
        tracing::debug!(action = id, ?result, "polkit answered");
        match (result.is_authorized, result.is_challenge) {
            (true, _) => Ok(()),
            (false, true) => Err(Denied::ChallengeUnanswered { action: id }),
            (false, false) => Err(Denied::Refused { action: id }),
        }
    }
}

impl Authorizer for Polkit {
    fn authorize<'a>(&'a self, header: &'a Header<'_>, action: Action) -> AuthFuture<'a> {
        Box::pin(self.check(header, action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_match_the_policy_file() {
        let policy = include_str!("../../packaging/polkit/org.vmnet.policy");
        for action in [Action::ManageGuests, Action::ManageAllGuests, Action::Resync] {
            let declared = format!("<action id=\"{}\">", action.id());
            assert!(policy.contains(&declared), "{} not declared", action.id());
        }
    }
}
