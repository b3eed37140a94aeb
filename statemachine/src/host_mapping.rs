//! Host commands: `mkhost`, `rmhost`, `mapvol`, `unmapvol` (the types are in `hosts.rs`).

use crate::error::CommandError;
use crate::event::Event;
use crate::hosts::{validate_identity, Access, Host, HostIdentity};
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};
use std::collections::BTreeMap;

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
    if tx.state().hosts.contains_key(name) {
        return Err(CommandError::HostExists { name: name.to_string() }.into());
    }
    if let Some(other) = tx.state().hosts.values().find(|h| &h.identity == identity) {
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
    tx.push_event(Event::HostCreated {
        host: name.to_string(),
        identity: identity.to_string(),
    });
    Ok(())
}

pub(crate) fn delete<R: TrackReader>(tx: &mut Tx<'_, R>, name: &str) -> Result<(), Failure<R::Error>> {
    let host = tx.state().hosts.get(name).ok_or_else(|| host_not_found(name))?;
    if let Some(volume) = host.volumes.keys().next() {
        return Err(CommandError::HostHasVolumes {
            name: name.to_string(),
            count: host.volumes.len(),
            volume: tx.name(*volume),
        }
        .into());
    }
    tx.hosts_mut().remove(name);
    tx.push_event(Event::HostDeleted { host: name.to_string() });
    Ok(())
}

/// Maps a volume to a host, or changes the access of a mapping.
pub(crate) fn map<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    host: &str,
    read_only: bool,
) -> Result<(), Failure<R::Error>> {
    let id = tx
        .state()
        .volume_id(volume)
        .ok_or_else(|| CommandError::VolumeNotFound {
            name: volume.to_string(),
        })?;
    if !tx.state().hosts.contains_key(host) {
        return Err(host_not_found(host).into());
    }
    let access = if read_only { Access::ReadOnly } else { Access::ReadWrite };
    tx.hosts_mut()
        .get_mut(host)
        .expect("checked")
        .volumes
        .insert(id, access);
    tx.push_event(Event::VolumeMapped {
        volume: volume.to_string(),
        host: host.to_string(),
        read_only,
    });
    Ok(())
}

pub(crate) fn unmap<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str, host: &str) -> Result<(), Failure<R::Error>> {
    let id = tx
        .state()
        .volume_id(volume)
        .ok_or_else(|| CommandError::VolumeNotFound {
            name: volume.to_string(),
        })?;
    let mapped = tx.state().hosts.get(host).ok_or_else(|| host_not_found(host))?;
    if !mapped.volumes.contains_key(&id) {
        return Err(CommandError::NotMapped {
            volume: volume.to_string(),
            host: host.to_string(),
        }
        .into());
    }
    tx.hosts_mut().get_mut(host).expect("checked").volumes.remove(&id);
    tx.push_event(Event::VolumeUnmapped {
        volume: volume.to_string(),
        host: host.to_string(),
    });
    Ok(())
}
