//! vmnetd: puts virtual machines on the laptop's Wi-Fi LAN (routed taps, proxy ARP) and
//! re-homes them when the uplink moves to another subnet. The binary (`main.rs`) only parses the
//! command line and starts [`daemon::run`]; the modules are a library so that unit tests, fuzz
//! targets and the man page generator reach them.

pub mod address_book;
pub mod arp;
pub mod bus;
pub mod carrier;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deadline;
pub mod dhcp;
pub mod executor;
pub mod firewall;
pub mod model;
pub mod model6;
pub mod names;
pub mod ndp;
pub mod netlink;
pub mod packet;
pub mod planner;
pub mod qmp;
pub mod reconciler;
pub mod state;
pub mod uplink;
pub mod view;
