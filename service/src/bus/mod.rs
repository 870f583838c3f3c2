//! The org.vmnet D-Bus objects. They answer reads from the published view and send every
//! change into the reconciler; they own no state.

pub mod guest;
pub mod manager;
pub mod options;
pub mod publish;
