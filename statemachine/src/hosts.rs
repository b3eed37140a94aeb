//! Hosts and the volumes mapped to them (DS CLI's host connections and volume groups): which
//! TLS identity may see, read and write which volumes over NBD. While no host is defined the
//! data path is open — every client sees every volume — as it was before hosts existed.

use crate::apply::{Failure, Tx};
use crate::error::CommandError;
use crate::event::Event;
use crate::track::{TrackReader, VolumeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How a host proves who it is on a TLS connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostIdentity {
    /// The PSK identity (user name) of a TLS-PSK connection, as in a psktool key file.
    Psk(String),
    /// The common name (CN) of a verified client certificate.
    CertCn(String),
}

impl fmt::Display for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostIdentity::Psk(id) => write!(f, "psk-identity {id}"),
            HostIdentity::CertCn(cn) => write!(f, "cert-cn {cn}"),
        }
    }
}

/// What a host may do with a mapped volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub identity: HostIdentity,
    /// Bound to the volume, not its name: a volume deleted and created again is not mapped.
    pub volumes: BTreeMap<VolumeId, Access>,
}

/// One row of `lshost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub identity: HostIdentity,
    /// Mapped volumes by name, with their access.
    pub volumes: BTreeMap<String, Access>,
}

/// Longest PSK identity or certificate name a host may carry.
const MAX_IDENTITY: usize = 255;

fn validate_identity(identity: &HostIdentity) -> Result<(), CommandError> {
    let (value, option) = match identity {
        HostIdentity::Psk(id) => (id, "--psk-identity"),
        HostIdentity::CertCn(cn) => (cn, "--cert-cn"),
    };
    // A colon ends the identity in a psktool key file line.
    let colon = matches!(identity, HostIdentity::Psk(_)) && value.contains(':');
    if value.is_empty() || value.len() > MAX_IDENTITY || value.chars().any(char::is_control) || colon {
        return Err(CommandError::InvalidOption {
            option: option.to_string(),
            reason: format!(
                "\"{value}\" is not a valid identity: use 1 to {MAX_IDENTITY} printable characters{}",
                if matches!(identity, HostIdentity::Psk(_)) {
                    ", without ':'"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(())
}

fn host_not_found(name: &str) -> CommandError {
    CommandError::HostNotFound { name: name.to_string() }
}

pub(crate) fn create<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    name: &str,
    identity: &HostIdentity,
) -> Result<(), Failure<R::Error>> {
    crate::volume::validate_name(name).map_err(|_| CommandError::InvalidHostName { name: name.to_string() })?;
    validate_identity(identity)?;
    if tx.state.hosts.contains_key(name) {
        return Err(CommandError::HostExists { name: name.to_string() }.into());
    }
    if let Some(other) = tx.state.hosts.values().find(|h| &h.identity == identity) {
        return Err(CommandError::IdentityInUse {
            identity: identity.to_string(),
            host: other.name.clone(),
        }
        .into());
    }
    tx.hosts_mut().insert(
        name.to_string(),
        Host {
            name: name.to_string(),
            identity: identity.clone(),
            volumes: BTreeMap::new(),
        },
    );
    tx.events.push(Event::HostCreated {
        host: name.to_string(),
        identity: identity.to_string(),
    });
    Ok(())
}

pub(crate) fn delete<R: TrackReader>(tx: &mut Tx<'_, R>, name: &str) -> Result<(), Failure<R::Error>> {
    let host = tx.state.hosts.get(name).ok_or_else(|| host_not_found(name))?;
    if let Some(volume) = host.volumes.keys().next() {
        return Err(CommandError::HostHasVolumes {
            name: name.to_string(),
            count: host.volumes.len(),
            volume: tx.name(*volume),
        }
        .into());
    }
    tx.hosts_mut().remove(name);
    tx.events.push(Event::HostDeleted { host: name.to_string() });
    Ok(())
}

/// Maps a volume to a host, or changes the access of a mapping.
pub(crate) fn map<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    host: &str,
    read_only: bool,
) -> Result<(), Failure<R::Error>> {
    let id = tx.state.volume_id(volume).ok_or_else(|| CommandError::VolumeNotFound {
        name: volume.to_string(),
    })?;
    if !tx.state.hosts.contains_key(host) {
        return Err(host_not_found(host).into());
    }
    let access = if read_only { Access::ReadOnly } else { Access::ReadWrite };
    tx.hosts_mut()
        .get_mut(host)
        .expect("checked")
        .volumes
        .insert(id, access);
    tx.events.push(Event::VolumeMapped {
        volume: volume.to_string(),
        host: host.to_string(),
        read_only,
    });
    Ok(())
}

pub(crate) fn unmap<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str, host: &str) -> Result<(), Failure<R::Error>> {
    let id = tx.state.volume_id(volume).ok_or_else(|| CommandError::VolumeNotFound {
        name: volume.to_string(),
    })?;
    let mapped = tx.state.hosts.get(host).ok_or_else(|| host_not_found(host))?;
    if !mapped.volumes.contains_key(&id) {
        return Err(CommandError::NotMapped {
            volume: volume.to_string(),
            host: host.to_string(),
        }
        .into());
    }
    tx.hosts_mut().get_mut(host).expect("checked").volumes.remove(&id);
    tx.events.push(Event::VolumeUnmapped {
        volume: volume.to_string(),
        host: host.to_string(),
    });
    Ok(())
}

/// The host a volume is mapped to, if any (a mapped volume may not be deleted).
pub(crate) fn mapped_to(hosts: &BTreeMap<String, Host>, volume: VolumeId) -> Option<&str> {
    hosts
        .values()
        .find(|h| h.volumes.contains_key(&volume))
        .map(|h| h.name.as_str())
}
