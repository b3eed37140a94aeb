//! The audit history: one record per applied command, kept for the life of the cluster (it is
//! part of every snapshot, so it is never lost when the log is purged).

use serde::{Deserialize, Serialize};
use statemachine::{Event, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub index: u64,
    pub time: Timestamp,
    /// The command, summarised (host writes as volume/offset/length, never their bytes).
    pub command: String,
    pub volumes: Vec<String>,
    /// `None` if accepted; else the refusal's code and message.
    pub refused: Option<(String, String)>,
    pub events: Vec<Event>,
}
