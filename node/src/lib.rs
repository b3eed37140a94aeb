//! The flashcopy node: openraft wiring, the peer transport, the admin API, the NBD server, the
//! background-copy scheduler, and the `flashcopy` command line.

pub mod api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod controller;
pub mod copy_scheduler;
pub mod demo;
pub mod metrics;
pub mod nbd;
pub mod progress;
pub mod protocol;
pub mod report;
pub mod server;
pub mod size;
pub mod transport;
pub mod write_batcher;
