//! The admin API's JSON shapes, shared by the server and the CLI client.

use serde::{Deserialize, Serialize};

pub const API_PREFIX: &str = "/v1";
/// Set on a request a follower forwards, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-flashcopy-forwarded";
/// Largest request body (volume data writes included).
pub const MAX_BODY: usize = 32 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkFlash {
    pub pairs: Vec<String>,
    #[serde(default)]
    pub nocp: bool,
    #[serde(default)]
    pub persist: bool,
    #[serde(default)]
    pub record: bool,
    #[serde(default)]
    pub tgtinhibit: bool,
    #[serde(default)]
    pub freeze: bool,
    #[serde(default)]
    pub seqnum: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmFlash {
    pub pairs: Vec<String>,
    #[serde(default)]
    pub cp: bool,
    pub seqnum: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResyncFlash {
    pub pairs: Vec<String>,
    #[serde(default)]
    pub nocp: bool,
    #[serde(default)]
    pub tgtinhibit: bool,
    pub seqnum: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseFlash {
    pub pairs: Vec<String>,
    #[serde(default)]
    pub fast: bool,
    pub seqnum: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnfreezeFlash {
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub id: u64,
    pub url: String,
}

/// What a command did: the events it produced, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandReply {
    pub index: u64,
    pub events: Vec<statemachine::Event>,
}

/// `GET /v1/node`: who this node is and where it stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub api: String,
    pub raft: String,
    pub applied_index: u64,
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: u64,
    pub url: String,
    pub role: String,
    pub applied_index: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub leader: Option<u64>,
    pub nodes: Vec<ClusterNode>,
    pub node_id: u64,
    pub applied_index: u64,
    pub digest: String,
}

pub fn digest_hex(digest: u64) -> String {
    format!("{digest:016x}")
}
