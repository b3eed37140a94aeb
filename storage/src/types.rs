//! The openraft type configuration: what a log entry carries and what applying it returns.

use serde::{Deserialize, Serialize};
use statemachine::{Command, CommandError, Event, Timestamp};
use std::fmt;

/// A command as proposed by the leader, with the leader's wall-clock stamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    pub time: Timestamp,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command.summary())
    }
}

/// The outcome of applying one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Response {
    /// `None` for entries that carry no command (blank and membership entries).
    pub result: Option<Result<(), CommandError>>,
    pub events: Vec<Event>,
}

/// How to reach a node: its admin API (for clients and forwarding) and its Raft address.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    pub api: String,
    pub raft: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api={} raft={}", self.api, self.raft)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot_data::SnapshotData,
        AsyncRuntime = crate::runtime::Runtime,
);
