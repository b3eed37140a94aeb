//! The `flashcopy` command line (SPEC §5), verbs named after the DS8000 DS CLI.

use crate::server::ServeArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "flashcopy",
    version,
    about = "Replicated block storage with Persistent FlashCopy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

/// Where the admin API is and how to authenticate.
/// Metro Mirror modes (`mkpprc --mode`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorMode {
    /// Synchronous: a host write completes once both sites have it.
    Sync,
}

/// `commitflash` and `revertflash`: the relationships whose increments end.
#[derive(Args, Debug, Clone)]
pub struct IncrementEnd {
    #[arg(required = true, value_name = "SRC:TGT")]
    pub pairs: Vec<String>,
    /// Refuse unless each relationship carries this sequence number.
    #[arg(long)]
    pub seqnum: Option<u32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Admin API of any node of the cluster.
    // Global, so they may also follow a verb's subcommand (`cluster status --api URL`).
    #[arg(
        long,
        global = true,
        env = "FLASHCOPY_API",
        default_value = "http://127.0.0.1:7700",
        value_name = "URL"
    )]
    pub api: String,
    /// File holding the cluster token (else FLASHCOPY_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the admin API's HTTPS certificate is checked against.
    #[arg(long, global = true, env = "FLASHCOPY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run a node (with no arguments: a single-node cluster in ./flashcopy-data).
    Serve(Box<ServeArgs>),
    /// Make a Metro Mirror path to a remote cluster (checked: reachable, token accepted).
    Mkpprcpath {
        /// The remote's admin API: http(s)://HOST:PORT, or several of its nodes separated by commas.
        #[arg(long, value_name = "URL")]
        remote: String,
        /// The file holding the remote cluster's token (the local one is --token-file).
        #[arg(long, value_name = "FILE")]
        remote_token_file: Option<PathBuf>,
        /// CA certificates (PEM) the remote's HTTPS certificate is checked against.
        #[arg(long, value_name = "FILE")]
        remote_ca: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List Metro Mirror paths, with what each link cost (round trip, bytes sent).
    Lspprcpath {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a Metro Mirror path (no pair may use it).
    Rmpprcpath {
        /// The remote cluster's id, as lspprcpath shows it.
        remote_cluster: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make synchronous Metro Mirror pairs: LOCAL is the primary here, REMOTE the secondary at
    /// the remote cluster (same size, in no relationship; its content is overwritten).
    Mkpprc {
        #[arg(required = true, value_name = "LOCAL:REMOTE")]
        pairs: Vec<String>,
        /// Which remote cluster (needed when there are several paths).
        #[arg(long, value_name = "ID")]
        remote_cluster: Option<String>,
        /// The mirror mode: only synchronous (Metro Mirror) is built.
        #[arg(long, value_enum, default_value = "sync")]
        mode: MirrorMode,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List Metro Mirror pairs with a volume here.
    Lspprc {
        volumes: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Suspend pairs at their primary: writes go on here and are recorded for resumepprc.
    Pausepprc {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume suspended pairs: copy what changed, then full duplex again.
    Resumepprc {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// At the secondary's site: make the secondary a writable, suspended primary.
    Failoverpprc {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// At a failed-over site: make the old primary its secondary and copy back what changed.
    Failbackpprc {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove pairs (at the primary, the secondary's side too).
    Rmpprc {
        #[arg(required = true, value_name = "VOLUME")]
        volumes: Vec<String>,
        /// Remove the pair here even if the remote cluster cannot be told.
        #[arg(long)]
        unconditional: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a thin volume.
    Mkvol {
        name: String,
        /// Bytes, or with K/M/G/T (powers of 1024); a multiple of 64K.
        // Hyphen values too, so "-1" is refused as a size rather than as an unknown flag.
        #[arg(long, allow_hyphen_values = true)]
        size: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List volumes: size, the space each uses, and for a target what it still shares with
    /// its source.
    Lsvol {
        #[arg(long)]
        json: bool,
        /// Sizes in bytes (for scripts; --json always has bytes).
        #[arg(long)]
        bytes: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Capacity: what the volumes could hold and use, and each node's disk (capacity, used by
    /// the state and by the log, free, reserve, warning threshold).
    Lspool {
        #[arg(long)]
        json: bool,
        /// Sizes in bytes (for scripts; --json always has bytes).
        #[arg(long)]
        bytes: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a volume that is in no relationship.
    Rmvol {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Define a host: a client that proves this TLS identity sees the volumes mapped to it.
    /// Once any host exists, NBD clients see only their host's volumes.
    #[command(group(clap::ArgGroup::new("identity").required(true).args(["psk_identity", "cert_cn"])))]
    Mkhost {
        name: String,
        /// The PSK identity (user name in the --nbd-tls-psk key file).
        #[arg(long, value_name = "ID")]
        psk_identity: Option<String>,
        /// The common name of the host's client certificate (with --nbd-tls-ca).
        #[arg(long, value_name = "CN")]
        cert_cn: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List hosts and the volumes mapped to them.
    Lshost {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a host that has no volumes mapped.
    Rmhost {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a host use a volume over NBD (again: change its access).
    Mapvol {
        volume: String,
        host: String,
        /// The host may read, not write (writes fail with EPERM).
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a volume away from a host (its open connections get EPERM from then on).
    Unmapvol {
        volume: String,
        host: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Establish FlashCopy relationships, all pairs at one point in time.
    Mkflash {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        #[arg(long)]
        nocp: bool,
        #[arg(long)]
        persist: bool,
        #[arg(long)]
        record: bool,
        #[arg(long)]
        tgtinhibit: bool,
        #[arg(long)]
        freeze: bool,
        #[arg(long, default_value_t = 0)]
        seqnum: u32,
        /// Background copy of this relationship at most this fast, in MiB/s (0: none, as
        /// --nocp); the node's own --copy-rate stays a ceiling. chflash changes it.
        #[arg(long, value_name = "MIB/S")]
        copy_rate: Option<u32>,
        /// The target may be a Metro Mirror primary: what the FlashCopy places on it is copied
        /// to its secondary (the pair is copy-pending until it has been).
        #[arg(long)]
        tgtpprc: bool,
        /// Remote Pair FlashCopy: source and target are full-duplex mirror primaries, and the
        /// same FlashCopy runs between their secondaries (no copied data crosses the link).
        #[arg(long, value_enum, value_name = "required|preferred")]
        pmir: Option<crate::protocol::Pmir>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List relationships (of the given volumes, or all).
    Lsflash {
        volumes: Vec<String>,
        #[arg(long)]
        json: bool,
        /// Redisplay every second until interrupted.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Withdraw relationships.
    Rmflash {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        /// Finish the background copy first, then withdraw.
        #[arg(long)]
        cp: bool,
        #[arg(long)]
        seqnum: Option<u32>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Refresh persistent, recording relationships (incremental FlashCopy).
    Resyncflash {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        #[arg(long)]
        nocp: bool,
        #[arg(long)]
        tgtinhibit: bool,
        #[arg(long)]
        seqnum: Option<u32>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reverse relationships: restore each source from its target.
    Reverseflash {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        /// Fast reverse restore: allowed before the copy finished and without recording.
        #[arg(long)]
        fast: bool,
        #[arg(long)]
        seqnum: Option<u32>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a revertible increment: refresh persistent, recording relationships as resyncflash
    /// does, keeping the previous point in time until commitflash or revertflash. Until then
    /// hosts may not write the sources or the targets (EPERM) and no background copy runs.
    Setflashrevertible {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        /// The sequence number the increment carries (commitflash and revertflash may check it).
        #[arg(long)]
        seqnum: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Keep relationships' revertible increments: they become their points in time.
    Commitflash(IncrementEnd),
    /// Throw relationships' revertible increments away: each target holds its previous point
    /// in time again.
    Revertflash(IncrementEnd),
    /// Change relationships' background copy rate (it holds through leader changes).
    Chflash {
        #[arg(required = true, value_name = "SRC:TGT")]
        pairs: Vec<String>,
        /// MiB/s at most (0: no background copy; unlimited: as fast as the node allows).
        #[arg(long, required = true, value_name = "MIB/S|unlimited", value_parser = parse_copy_rate)]
        copy_rate: CopyRate,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Thaw sources frozen by mkflash --freeze; their held writes complete in order.
    Unfreezeflash {
        #[arg(required = true, value_name = "SRC")]
        sources: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cluster membership and status.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The event history (journal), oldest first: every command with its outcome; `--at` and
    /// `verify` replay it.
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only records about this volume.
        #[arg(long, value_name = "VOLUME")]
        volume: Option<String>,
        /// Only records about both volumes of SRC:TGT (either direction).
        #[arg(long, value_name = "SRC:TGT")]
        relationship: Option<String>,
        /// Only records applied at or after TIME (UTC, e.g. 2026-11-24T20:31:02Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Volumes and relationships as they were after log INDEX, or at TIME, rebuilt by
        /// replaying the journal.
        #[arg(long, value_name = "INDEX|TIME", conflicts_with_all = ["relationship", "since"])]
        at: Option<String>,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The persistent-FlashCopy walkthrough on an embedded single-node controller.
    Demo,
    /// Exit 0 if the node at --api answers (for container health checks), else 3.
    Health {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Replay the whole journal in a scratch state machine and compare it with the live state
    /// of the node --api names (each replica can be checked); exit 1 on any difference.
    Verify {
        /// Audit a stopped node's data directory, or a copy of one, instead of the cluster.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Leader, members, and each node's applied index.
    Status,
    /// Add the node whose admin API is at URL.
    Add { node_id: u64, url: String },
    /// Remove a node.
    Remove { node_id: u64 },
}

/// `chflash --copy-rate`: MiB/s, or `unlimited` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRate(pub Option<u32>);

fn parse_copy_rate(raw: &str) -> Result<CopyRate, String> {
    if raw == "unlimited" {
        return Ok(CopyRate(None));
    }
    raw.parse::<u32>().map(|rate| CopyRate(Some(rate))).map_err(|_| {
        format!("'{raw}' is not a rate: give MiB/s as a whole number (0: no background copy) or 'unlimited'")
    })
}
