//! Provisioning: `mkvol` and `rmvol`. A volume in a relationship, frozen, mapped to a host or
//! still releasing held writes cannot be deleted; the refusal names what holds it.

use crate::error::CommandError;
use crate::event::Event;
use crate::hosts;
use crate::record::VolumeRecord;
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};
use crate::volume::{validate_name, validate_size, Volume};
use std::collections::BTreeSet;

pub(crate) fn create<R: TrackReader>(tx: &mut Tx<'_, R>, name: &str, size: u64) -> Result<(), Failure<R::Error>> {
    validate_name(name)?;
    validate_size(name, size, tx.state().track_size())?;
    if tx.state().volume_id(name).is_some() {
        return Err(CommandError::VolumeExists { name: name.to_string() }.into());
    }
    let id = tx.next_volume_id();
    tx.insert_record(VolumeRecord {
        volume: Volume {
            id,
            name: name.to_string(),
            size,
            incomplete: false,
            frozen_until: None,
            targets: BTreeSet::new(),
        },
        incoming: None,
        held_writes: Default::default(),
        content_digest: 0,
        stored_tracks: 0,
        kept_tracks: 0,
        kept_digest: 0,
        kept_sweep: None,
        mirror: None,
    });
    tx.push_event(Event::VolumeCreated {
        volume: name.to_string(),
        size,
    });
    Ok(())
}

pub(crate) fn delete<R: TrackReader>(tx: &mut Tx<'_, R>, name: &str) -> Result<(), Failure<R::Error>> {
    let id = tx
        .state()
        .volume_id(name)
        .ok_or_else(|| CommandError::VolumeNotFound { name: name.to_string() })?;
    let record = tx.state().record(id).expect("named volumes have records");
    let holder = match (&record.incoming, record.volume.targets.first()) {
        (Some(rel), _) => Some(tx.state().pair_name(rel)),
        (None, Some(target)) => Some(format!("{name}:{}", tx.state().name(*target))),
        (None, None) => None,
    };
    if let Some(relationship) = holder {
        return Err(CommandError::VolumeInUse {
            name: name.to_string(),
            relationship,
        }
        .into());
    }
    if record.volume.frozen_until.is_some() {
        return Err(CommandError::VolumeFrozen { name: name.to_string() }.into());
    }
    if let Some(m) = &record.mirror {
        return Err(CommandError::VolumeInMirrorPair {
            volume: name.to_string(),
            remote: format!("{}/{}", m.remote_cluster, m.remote_volume),
        }
        .into());
    }
    if let Some(host) = hosts::mapped_to(&tx.state().hosts, id) {
        return Err(CommandError::VolumeMapped {
            name: name.to_string(),
            host: host.to_string(),
        }
        .into());
    }
    // Deleting now would drop writes its freeze held that are still being released.
    if !record.held_writes.is_empty() {
        return Err(CommandError::WritesDraining {
            name: name.to_string(),
            count: record.held_writes.len(),
        }
        .into());
    }
    tx.remove_record(id);
    tx.push_event(Event::VolumeDeleted {
        volume: name.to_string(),
    });
    Ok(())
}
