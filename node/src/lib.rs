//! The flashcopy node, in two halves:
//! - [`server`]: `flashcopy serve` — openraft wiring, the peer transport, the admin API, the
//!   NBD server, host I/O, group commit of host writes, the background-copy scheduler.
//! - [`cli`]: every other verb — a client of the admin API. Besides the API's types
//!   ([`protocol`] and the state machine's listing types it carries), it takes `serve`'s
//!   arguments from the server, and two verbs use the server's parts directly: the offline
//!   `audit verify --data-dir` (storage) and `demo` (an embedded node).

pub mod cli;
pub mod logs;
pub mod protocol;
pub mod server;
pub mod units;
