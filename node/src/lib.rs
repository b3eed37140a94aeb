//! The flashcopy node. Two halves that share only the admin API's types ([`protocol`]):
//! - [`server`]: `flashcopy serve` — openraft wiring, the peer transport, the admin API, the
//!   NBD server, group commit of host writes, the background-copy scheduler.
//! - [`cli`]: every other verb — a client of the admin API (plus the offline
//!   `audit verify --data-dir` and the embedded `demo`).

pub mod cli;
pub mod logs;
pub mod protocol;
pub mod server;
