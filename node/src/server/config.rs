//! `flashcopy serve`'s options, and the checked configuration a node starts from. Bad values
//! are usage errors (exit 2) with a message naming the option.

use crate::logs::LogFormat;
use crate::server::nbd::tls::{TlsConfigError, TlsFiles, TlsMode, TlsServer};
use crate::server::nbd::TlsPolicy;
use crate::units::format_bytes;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, default_value = "./flashcopy-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// This node's id (fixed by the data directory after the first start).
    #[arg(long, value_name = "N")]
    pub node_id: Option<u64>,
    /// Admin API listen address.
    #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
    pub api: String,
    /// Raft peer listen address.
    #[arg(long, default_value = "127.0.0.1:7701", value_name = "ADDR")]
    pub raft: String,
    /// NBD listen address: hosts reach volumes here (export name = volume name).
    #[arg(long, default_value = "127.0.0.1:10809", value_name = "ADDR")]
    pub nbd: String,
    /// The admin API URL other nodes and clients use (default: from --api; for 0.0.0.0, this
    /// machine's hostname).
    #[arg(long, value_name = "URL")]
    pub advertise_api: Option<String>,
    /// The Raft address peers connect to (default: from --raft, as for --advertise-api).
    #[arg(long, value_name = "ADDR")]
    pub advertise_raft: Option<String>,
    /// Join the cluster whose admin API is at URL instead of starting a new one.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Require this bearer token for the admin API and between nodes.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Cluster-wide background-copy limit in MiB/s (unlimited by default, or with 0).
    #[arg(long, value_name = "MIB_PER_S")]
    pub copy_rate: Option<f64>,
    /// Build a snapshot (and purge the log before it) every this many entries.
    #[arg(long, default_value_t = 20_000, value_name = "ENTRIES", value_parser = clap::value_parser!(u64).range(10..))]
    pub snapshot_every: u64,
    /// MiB the Raft log may hold before it is cut back: past this, a snapshot (a checkpoint of
    /// the state, no copy) is taken and the log purged up to it, so sustained writes of large
    /// entries do not fill the disk between `--snapshot-every` snapshots.
    #[arg(long, default_value_t = 1024, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub max_log_size: u64,
    /// NBD connections served at once (direct and forwarded); more are closed at accept, so
    /// idle clients cannot take the node's file handles.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub nbd_max_connections: u64,
    /// Seconds an NBD client has to pick an export before it is disconnected.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nbd_handshake_limit: u64,
    /// MiB of request and reply data all NBD connections together may hold in memory (each
    /// connection also holds at most 96 MiB).
    #[arg(long, default_value_t = 1024, value_name = "MIB", value_parser = clap::value_parser!(u64).range(96..=1_048_576))]
    pub nbd_memory: u64,
    /// Free space kept on the data directory's filesystem: host data writes are refused
    /// (ENOSPC) below it, so the disk never fills; they resume when space returns. MiB, a size
    /// with K/M/G/T, or a percentage of the filesystem (`10%`).
    #[arg(long, default_value = "256", value_name = "MIB|SIZE|PERCENT%", value_parser = parse_reserve)]
    pub disk_reserve: Reserve,
    /// Used share of the data directory's filesystem at which the node warns (log, metric,
    /// `cluster status`, `lspool`) before writes are refused.
    #[arg(long, default_value_t = 80, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub disk_warning: u8,
    /// TLS on NBD: `require` refuses everything but STARTTLS until the client has started TLS;
    /// `off` serves plain NBD (and still offers STARTTLS when credentials are given).
    #[arg(long, value_enum, default_value = "off")]
    pub nbd_tls: TlsMode,
    /// The server's certificate chain (PEM) for NBD TLS.
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --nbd-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must then present a certificate one of them signed; its
    /// common name is the identity `mkhost --cert-cn` names.
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_ca: Option<PathBuf>,
    /// TLS-PSK keys in the psktool format (IDENTITY:HEXKEY per line); the identity is what
    /// `mkhost --psk-identity` names.
    #[arg(long, value_name = "FILE")]
    pub nbd_tls_psk: Option<PathBuf>,
    /// Run without a token although an address is reachable from other machines: anyone who
    /// can reach the node may then read and write every volume and change the cluster.
    #[arg(long)]
    pub insecure: bool,
    /// Serve `/metrics` without the token (it lists volume and relationship names).
    #[arg(long)]
    pub open_metrics: bool,
    /// Serve the admin API over HTTPS with this certificate chain (PEM); remote sites and
    /// clients check it against a CA they name.
    #[arg(long, value_name = "FILE")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub api_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) this node trusts when it calls the other nodes' admin APIs over
    /// HTTPS (forwarding to the leader, joining).
    #[arg(long, value_name = "FILE")]
    pub api_tls_ca: Option<PathBuf>,
    /// Milliseconds a Metro Mirror secondary may take to confirm before its pair suspends:
    /// host writes to a full-duplex primary wait at most about this long on a dead link. The
    /// default outlasts a leader election at the secondary's site (a 2 s lease, a 1-2 s
    /// election timeout, the vote), so losing one node there suspends nothing.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub mirror_timeout: u64,
    /// Log lines as text, or as one JSON object per line for log shippers (RUST_LOG sets the level).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// What a node starts from, checked.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub node_id: Option<u64>,
    pub api: String,
    pub raft: String,
    /// NBD listen address.
    pub nbd: String,
    pub advertise_api: Option<String>,
    pub advertise_raft: Option<String>,
    pub join: Option<String>,
    /// The cluster secret; empty when the cluster runs without one.
    pub token: String,
    /// Background-copy limit in bytes per second.
    pub copy_rate: Option<u64>,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// Log bytes at which the log is cut back (see `ServeArgs::max_log_size`).
    pub max_log_size: u64,
    pub nbd_max_connections: usize,
    pub nbd_handshake_limit: std::time::Duration,
    /// Bytes all NBD connections together may hold.
    pub nbd_memory: u64,
    /// `/metrics` without the token.
    pub open_metrics: bool,
    /// Free space kept on the data directory's filesystem.
    pub disk_reserve: Reserve,
    /// Used percentage of the filesystem at which the node warns.
    pub disk_warning: u8,
    /// NBD TLS: credentials loaded and checked at start, and whether TLS is required.
    pub nbd_tls: TlsPolicy,
    /// How long a mirror secondary may take to confirm before its pair suspends.
    pub mirror_timeout: std::time::Duration,
    /// HTTPS for the admin API.
    pub api_tls: Option<crate::server::api::tls::ApiTls>,
    /// CA certificates (PEM) trusted for other nodes' admin APIs.
    pub api_ca: Option<Vec<u8>>,
}

/// The free space a node keeps: a size, or a share of its filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    Bytes(u64),
    Percent(u8),
}

impl Reserve {
    /// In bytes, on a filesystem of `capacity` bytes.
    pub fn bytes(self, capacity: u64) -> u64 {
        match self {
            Reserve::Bytes(bytes) => bytes,
            Reserve::Percent(percent) => capacity / 100 * u64::from(percent),
        }
    }
}

/// `--disk-reserve`: MiB (a plain number, as before), a size with a unit, or `N%`.
fn parse_reserve(text: &str) -> Result<Reserve, String> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<u8>() {
            Ok(p) if p <= 90 => Ok(Reserve::Percent(p)),
            _ => Err(format!("\"{text}\" is not a percentage from 0% to 90%")),
        };
    }
    if let Ok(mib) = text.parse::<u64>() {
        return mib
            .checked_mul(1 << 20)
            .map(Reserve::Bytes)
            .ok_or_else(|| format!("{text} MiB is too large"));
    }
    crate::units::parse_size(text)
        .map(Reserve::Bytes)
        .map_err(|_| format!("\"{text}\" is not MiB, a size (e.g. 2G) or a percentage (e.g. 10%)"))
}

/// An option `serve` cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("token-file: cannot read {path}: {reason}")]
    TokenUnreadable { path: String, reason: String },
    #[error("token-file: {path} is empty")]
    TokenEmpty { path: String },
    #[error("usage: --copy-rate must be a positive number of MiB/s, not {0}")]
    CopyRate(f64),
    #[error("nbd-tls: {0}")]
    Tls(#[from] TlsConfigError),
    #[error("api-tls: {0}")]
    ApiTls(String),
    #[error("disk-reserve: --disk-reserve {} plus the {} the node keeps free for its state's memtables is not less than the data disk's whole capacity ({}): no host write could ever be accepted; give a smaller reserve, or a larger disk", format_bytes(*.reserve), format_bytes(storage::UNFLUSHED_MAX), format_bytes(*.capacity))]
    ReserveTooLarge { reserve: u64, capacity: u64 },
    #[error("insecure: --{option} {addr} is reachable from other machines and the cluster has no token: give every node the same --token-file, or say --insecure to run it open")]
    Insecure { option: &'static str, addr: String },
}

/// Whether every address `addr` names is a loopback address (unresolvable: assume not).
fn loopback_only(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs.all(|a| a.ip().is_loopback()),
        Err(_) => false,
    }
}

impl ServeArgs {
    pub fn config(&self) -> Result<ServeConfig, ConfigError> {
        let token = match &self.token_file {
            None => String::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenUnreadable {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                let token = text.trim().to_string();
                if token.is_empty() {
                    return Err(ConfigError::TokenEmpty {
                        path: path.display().to_string(),
                    });
                }
                token
            }
        };
        if token.is_empty() && !self.insecure {
            for (option, addr) in [("api", &self.api), ("raft", &self.raft), ("nbd", &self.nbd)] {
                if !loopback_only(addr) {
                    return Err(ConfigError::Insecure {
                        option,
                        addr: addr.clone(),
                    });
                }
            }
        }
        // The data directory, or the nearest one above it (the node makes it at start).
        let existing = self.data_dir.ancestors().find(|dir| dir.is_dir());
        if let Some(capacity) = existing.and_then(|dir| storage::total_bytes(dir).ok()) {
            // The disk guard keeps what a flush may write free on top of the reserve.
            let reserve = self.disk_reserve.bytes(capacity);
            if reserve.saturating_add(storage::UNFLUSHED_MAX) >= capacity {
                return Err(ConfigError::ReserveTooLarge { reserve, capacity });
            }
        }
        let copy_rate = match self.copy_rate {
            // 0: unlimited, so a deployment can pass the option always.
            None | Some(0.0) => None,
            Some(r) if r.is_finite() && r > 0.0 => Some((r * 1024.0 * 1024.0) as u64),
            Some(r) => return Err(ConfigError::CopyRate(r)),
        };
        let files = TlsFiles {
            cert: self.nbd_tls_cert.clone(),
            key: self.nbd_tls_key.clone(),
            ca: self.nbd_tls_ca.clone(),
            psk: self.nbd_tls_psk.clone(),
        };
        let nbd_tls = TlsPolicy {
            server: TlsServer::from_files(self.nbd_tls, &files)?.map(Arc::new),
            required: self.nbd_tls == TlsMode::Require,
        };
        let api_tls = match (&self.api_tls_cert, &self.api_tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::api::tls::acceptor(cert, key).map_err(ConfigError::ApiTls)?),
            (None, None) => None,
            _ => {
                return Err(ConfigError::ApiTls(
                    "--api-tls-cert and --api-tls-key go together: give both".into(),
                ))
            }
        };
        let api_ca = match &self.api_tls_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ConfigError::ApiTls(format!("--api-tls-ca {}: {e}", path.display())))?;
                reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| ConfigError::ApiTls(format!("--api-tls-ca {}: {e}", path.display())))?;
                Some(pem)
            }
            None => None,
        };
        Ok(ServeConfig {
            data_dir: self.data_dir.clone(),
            node_id: self.node_id,
            api: self.api.clone(),
            raft: self.raft.clone(),
            nbd: self.nbd.clone(),
            advertise_api: self.advertise_api.clone(),
            advertise_raft: self.advertise_raft.clone(),
            join: self.join.clone(),
            token,
            copy_rate,
            snapshot_every: self.snapshot_every,
            max_log_size: self.max_log_size << 20,
            nbd_max_connections: self.nbd_max_connections as usize,
            nbd_handshake_limit: std::time::Duration::from_secs(self.nbd_handshake_limit),
            nbd_memory: self.nbd_memory << 20,
            open_metrics: self.open_metrics,
            disk_reserve: self.disk_reserve,
            disk_warning: self.disk_warning,
            nbd_tls,
            mirror_timeout: std::time::Duration::from_millis(self.mirror_timeout),
            api_tls,
            api_ca,
        })
    }
}
