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

/// `mkhost`: exactly one of the identities.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHost {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_cn: Option<String>,
}

/// `mapvol`, posted to the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapVolume {
    pub volume: String,
    #[serde(default)]
    pub read_only: bool,
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
    /// MiB/s of background copy at most (absent: as fast as the node allows; 0: none).
    #[serde(default)]
    pub copy_rate: Option<u32>,
    /// The target may be a Metro Mirror primary: what the FlashCopy places on it is copied to
    /// its secondary.
    #[serde(default)]
    pub tgtpprc: bool,
    /// Remote Pair FlashCopy: the same FlashCopy between the secondaries, at the same point.
    #[serde(default)]
    pub pmir: Option<Pmir>,
}

/// `mkflash --pmir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pmir {
    /// Refuse when the same FlashCopy cannot run at the secondaries' site.
    Required,
    /// Fall back to --tgtpprc when it cannot.
    Preferred,
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

/// `setflashrevertible` (`seqnum` sets the relationships' sequence number), `commitflash` and
/// `revertflash` (`seqnum` must match it, when given).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    pub pairs: Vec<String>,
    pub seqnum: Option<u32>,
}

/// `chflash`: `copy_rate` is MiB/s (0: no background copy), `null` as fast as the node allows.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChFlash {
    pub pairs: Vec<String>,
    /// Required (`null` spelled out): a body that forgot it must not lift a rate.
    #[serde(deserialize_with = "Option::deserialize")]
    pub copy_rate: Option<u32>,
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
    pub disk: DiskStatus,
}

/// One node's data disk, in bytes. Every node holds a whole replica, so each node's disk
/// counts: a follower that cannot append cannot acknowledge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    /// `ok`, `warning` (past the warning threshold) or `full` (under the reserve: host writes
    /// are refused).
    pub status: String,
    /// Size of the filesystem holding the data directory.
    pub capacity: u64,
    pub free: u64,
    pub reserve: u64,
    /// Used share of the filesystem (percent) at which the node warns.
    pub warning_percent: u8,
    /// What the state holds (volume blocks, records, history), garbage not counted.
    pub used_by_state: u64,
    /// Blob garbage not collected yet (deleted or overwritten blocks).
    pub garbage: u64,
    /// What the Raft log's files hold.
    pub used_by_log: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: u64,
    pub url: String,
    pub role: String,
    pub applied_index: Option<u64>,
    /// `None` while the node cannot be reached.
    pub disk: Option<DiskStatus>,
}

/// `GET /v1/pool`: the capacity view (`lspool`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pool {
    pub volumes: usize,
    /// Sum of the volumes' sizes: what hosts could write if every volume filled.
    pub virtual_capacity: u64,
    /// Sum of what the volumes use (stored tracks).
    pub used_by_volumes: u64,
    /// The smallest node disk's capacity: every node holds a whole replica.
    pub capacity: u64,
    /// Virtual capacity per capacity, in percent (over 100: overallocated, as thin pools are).
    pub overallocation_percent: u64,
    pub nodes: Vec<PoolNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolNode {
    pub id: u64,
    /// `None` while the node cannot be reached.
    pub disk: Option<DiskStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The id remote sites know this cluster by (`None` until its first leader named it).
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub leader: Option<u64>,
    pub nodes: Vec<ClusterNode>,
    pub node_id: u64,
    pub applied_index: u64,
    pub digest: String,
}

pub fn digest_hex(digest: u64) -> String {
    format!("{digest:016x}")
}

/// `GET /v1/audit`: one journal record, readable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    pub index: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// The command, summarised (host writes as volume, offset, length and checksum).
    pub command: String,
    pub volumes: Vec<String>,
    /// `ok`, `refused`, or `held` (a write a freeze holds until the thaw).
    pub outcome: String,
    pub refused: Option<ErrorDetail>,
    /// For a group-committed batch of several writes: each write and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<WriteEntry>,
    pub events: Vec<statemachine::Event>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteEntry {
    pub command: String,
    /// `ok`, `held` (by a freeze) or `refused <code>`.
    pub outcome: String,
}

impl From<&storage::AuditRecord> for AuditEntry {
    fn from(record: &storage::AuditRecord) -> Self {
        use statemachine::{Command, Event, HostWrite};
        // How each write of a batch ended: its own event says so.
        let write_outcome = |w: &HostWrite| {
            record.events.iter().find_map(|e| match e {
                Event::Written { tag, .. } if *tag == w.tag => Some(("ok".to_string(), None)),
                Event::WriteHeld { tag, .. } if *tag == w.tag => Some(("held".to_string(), None)),
                Event::WriteRefused { tag, error, .. } if *tag == w.tag => Some((
                    "refused".to_string(),
                    Some(ErrorDetail {
                        code: error.code().to_string(),
                        message: error.to_string(),
                    }),
                )),
                _ => None,
            })
        };
        let (mut outcome, mut refused) = match &record.result {
            Ok(()) => ("ok".to_string(), None),
            Err(e) => (
                "refused".to_string(),
                Some(ErrorDetail {
                    code: e.code().to_string(),
                    message: e.to_string(),
                }),
            ),
        };
        let (command, writes) = match &record.command {
            Command::WriteBatch(writes) if writes.len() > 1 => (
                record.command.summary(),
                writes
                    .iter()
                    .map(|w| WriteEntry {
                        command: w.summary(),
                        outcome: match write_outcome(w) {
                            Some((o, Some(e))) => format!("{o} {}", e.code),
                            Some((o, None)) => o,
                            None => "unknown".into(),
                        },
                    })
                    .collect(),
            ),
            // One write alone: the entry's outcome is the write's.
            Command::WriteBatch(writes) if writes.len() == 1 && record.result.is_ok() => {
                if let Some(o) = write_outcome(&writes[0]) {
                    (outcome, refused) = o;
                }
                (record.command.summary(), Vec::new())
            }
            command => (command.summary(), Vec::new()),
        };
        AuditEntry {
            index: record.index,
            time: record.time.rfc3339(),
            command,
            volumes: record.volumes().into_iter().map(String::from).collect(),
            outcome,
            refused,
            writes,
            events: record.events.clone(),
        }
    }
}

/// `GET /v1/audit/at`: the volumes and relationships as they were after entry `index`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditAt {
    pub index: u64,
    pub time: String,
    /// Journal records replayed to rebuild it.
    pub entries: u64,
    pub volumes: Vec<statemachine::VolumeInfo>,
    pub relationships: Vec<statemachine::RelationshipInfo>,
}

/// `mkpprcpath`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkPprcPath {
    /// The remote's admin API (`URL` or `URL,URL,...` naming several of its nodes).
    pub remote: String,
    #[serde(default)]
    pub token: Option<String>,
    /// CA certificates (PEM) to check the remote's HTTPS certificate against.
    #[serde(default)]
    pub ca: Option<String>,
}

/// One row of `lspprcpath`: the path and what the link cost so far (on the node answering).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathRow {
    #[serde(flatten)]
    pub path: statemachine::PathInfo,
    pub requests: u64,
    pub failures: u64,
    pub bytes_sent: u64,
    /// Milliseconds, the last and a moving average of the round trips.
    pub last_rtt_ms: Option<f64>,
    pub average_rtt_ms: Option<f64>,
}

/// `mkpprc LOCAL:REMOTE ...`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkPprc {
    pub pairs: Vec<String>,
    /// Needed when there is more than one path.
    #[serde(default)]
    pub remote_cluster: Option<String>,
}

/// `pausepprc`, `resumepprc`, `failoverpprc`, `failbackpprc`, `rmpprc`: volumes here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PprcVolumes {
    pub volumes: Vec<String>,
    /// `rmpprc --unconditional`: remove the pair here even if the remote cannot be told.
    #[serde(default)]
    pub unconditional: bool,
}

/// Site to site: the secondary's side of `mkpprc`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptSecondary {
    pub volume: String,
    pub primary_cluster: String,
    pub primary_volume: String,
    pub size: u64,
    pub generation: u64,
}

/// Site to site: the secondary's answer to a mirror batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MirrorReply {
    /// Per secondary volume of the request, the highest sequence number applied.
    pub confirmed: std::collections::BTreeMap<String, u64>,
}

/// Site to site: failback asks the old primary to become the secondary.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BecomeSecondary {
    pub volume: String,
    pub generation: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BecameSecondary {
    /// Tracks it changed since the sites last agreed.
    pub tracks: Vec<u32>,
}

/// Site to site: `rmpprc` at the primary removes the secondary's side too.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovePair {
    pub volume: String,
    pub generation: u64,
}

/// Site to site: a FlashCopy command on the secondaries, part of a Remote Pair FlashCopy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFlash {
    pub command: statemachine::Command,
}

#[cfg(test)]
mod tests {
    use super::ChFlash;

    #[test]
    fn chflash_needs_its_rate_spelled_out() {
        let parse = |body: &str| serde_json::from_str::<ChFlash>(body);
        assert!(
            parse(r#"{"pairs":["a:b"]}"#).is_err(),
            "a forgotten rate is not unlimited"
        );
        assert_eq!(parse(r#"{"pairs":["a:b"],"copy_rate":null}"#).unwrap().copy_rate, None);
        assert_eq!(parse(r#"{"pairs":["a:b"],"copy_rate":5}"#).unwrap().copy_rate, Some(5));
    }
}
