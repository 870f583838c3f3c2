//! vmnet-tray's command line, for the man page generator (`packaging/generate`); the program
//! is `main.rs`.

pub mod cli;
