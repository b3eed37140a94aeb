//! `apply`: (state, command, leader timestamp) → new state, track operations, events.
//!
//! One apply is: release what thaws are due, dispatch the command to its handler, end the
//! relationships whose copy completed, and let the transaction (`tx.rs`) put the digest back
//! together. Handlers validate everything before they change anything, so a refused command
//! changes nothing (multi-pair commands are all-or-nothing).

use crate::command::Command;
use crate::event::Event;
use crate::state::State;
use crate::timestamp::Stamp;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};
use crate::{
    background_copy, establish, freeze, host_mapping, host_write, kept_sweep, pprc, provision, resync, reverse,
    revertible, withdraw,
};

pub use crate::tx::Applied;

/// Applies one command. `Err` only if reading a stored track failed; then the in-memory state
/// may be half-changed and must be discarded (reload it from storage).
pub fn apply<R: TrackReader>(
    state: &mut State,
    tracks: &R,
    command: &Command,
    stamp: impl Into<Stamp>,
) -> Result<Applied, R::Error> {
    apply_as(state, tracks, command, stamp.into(), false)
}

/// `apply`, or with `replaying` a journal replay's apply: only a replay accepts writes whose
/// data is a `WriteData::Summary`.
pub(crate) fn apply_as<R: TrackReader>(
    state: &mut State,
    tracks: &R,
    command: &Command,
    stamp: Stamp,
    replaying: bool,
) -> Result<Applied, R::Error> {
    // Leaders' clocks differ: the state keeps its own clock, moved by the stamps.
    let now = state.globals.tick_clock(stamp);
    let mut tx = Tx::new(state, tracks, now, replaying);
    let outcome = match thaw_due(&mut tx) {
        Ok(()) => dispatch(&mut tx, command),
        Err(failure) => Err(failure),
    };
    let result = match outcome {
        Ok(()) => Ok(()),
        Err(Failure::Refused(error)) => {
            tx.push_event(Event::Refused { error: error.clone() });
            Err(error)
        }
        Err(Failure::Storage(error)) => return Err(error),
    };
    match end_copied(&mut tx) {
        Ok(()) => {}
        Err(Failure::Storage(error)) => return Err(error),
        Err(Failure::Refused(error)) => unreachable!("ending a copied relationship refuses nothing: {error}"),
    }
    Ok(tx.finish(result))
}

fn dispatch<R: TrackReader>(tx: &mut Tx<'_, R>, command: &Command) -> Result<(), Failure<R::Error>> {
    match command {
        Command::CreateVolume { name, size } => provision::create(tx, name, *size),
        Command::DeleteVolume { name } => provision::delete(tx, name),
        Command::Write(write) => host_write::write(tx, write),
        Command::WriteBatch(writes) => host_write::write_batch(tx, writes),
        Command::MkFlash { pairs, options } => establish::mkflash(tx, pairs, options),
        Command::RmFlash { pairs, cp, seqnum } => withdraw::rmflash(tx, pairs, *cp, *seqnum),
        Command::ResyncFlash {
            pairs,
            nocp,
            tgtinhibit,
            seqnum,
        } => resync::resyncflash(tx, pairs, *nocp, *tgtinhibit, *seqnum),
        Command::ReverseFlash { pairs, fast, seqnum } => reverse::reverseflash(tx, pairs, *fast, *seqnum),
        Command::SetFlashRevertible { pairs, seqnum } => revertible::set_revertible(tx, pairs, *seqnum),
        Command::CommitFlash { pairs, seqnum } => revertible::commit(tx, pairs, *seqnum),
        Command::RevertFlash { pairs, seqnum } => revertible::revert(tx, pairs, *seqnum),
        Command::UnfreezeFlash { sources } => freeze::unfreezeflash(tx, sources),
        Command::ChFlash { pairs, copy_rate } => crate::copy_rate::chflash(tx, pairs, *copy_rate),
        Command::CopyStep {
            source,
            target,
            max_tracks,
        } => background_copy::copy_step(tx, source, target, *max_tracks),
        Command::SweepKept { volume, max_tracks } => kept_sweep::sweep(tx, volume, *max_tracks),
        Command::CreateHost { name, identity } => host_mapping::create(tx, name, identity),
        Command::DeleteHost { name } => host_mapping::delete(tx, name),
        Command::MapVolume {
            volume,
            host,
            read_only,
        } => host_mapping::map(tx, volume, host, *read_only),
        Command::UnmapVolume { volume, host } => host_mapping::unmap(tx, volume, host),
        Command::Tick => Ok(()),
        Command::NameCluster { id } => pprc::name_cluster(tx, id),
        Command::MkPprcPath(path) => pprc::mkpath(tx, path),
        Command::RmPprcPath { remote_cluster } => pprc::rmpath(tx, remote_cluster),
        Command::MkPprc {
            volume,
            remote_cluster,
            remote_volume,
            generation,
        } => pprc::mkpprc(tx, volume, remote_cluster, remote_volume, *generation),
        Command::AcceptSecondary {
            volume,
            primary_cluster,
            primary_volume,
            size,
            generation,
        } => pprc::accept_secondary(tx, volume, primary_cluster, primary_volume, *size, *generation),
        Command::MirrorApply(batches) => pprc::apply_batches(tx, batches),
        Command::PprcCopyStep { volume, max_tracks } => pprc::copy_step(tx, volume, *max_tracks),
        Command::PprcConfirmed {
            volume,
            generation,
            seq,
        } => pprc::confirmed(tx, volume, *generation, *seq),
        Command::PausePprc {
            volume,
            reason,
            generation,
        } => pprc::suspend(tx, volume, *reason, *generation),
        Command::ResumePprc { volume } => pprc::resume(tx, volume),
        Command::PprcResync { volume, generation } => pprc::resync(tx, volume, *generation),
        Command::RmPprc { volume } => pprc::rmpprc(tx, volume),
        Command::PprcCopyAll { volume } => pprc::copy_all(tx, volume),
        Command::FailoverPprc { volume } => pprc::failover(tx, volume),
        Command::BecomeSecondary { volume, generation } => pprc::become_secondary(tx, volume, *generation),
        Command::FailbackPprc { volume, remote_changes } => pprc::failback(tx, volume, remote_changes),
    }
}

/// Releases the next batch of held writes of volumes thawed earlier, then thaws every volume
/// whose automatic thaw is due at this entry's time.
fn thaw_due<R: TrackReader>(tx: &mut Tx<'_, R>) -> Result<(), Failure<R::Error>> {
    let draining: Vec<VolumeId> = tx.state().draining.iter().copied().collect();
    for id in draining {
        freeze::release(tx, id)?;
    }
    while let Some(&(until, id)) = tx.state().thaw_queue.first() {
        if until > tx.now() {
            break;
        }
        freeze::thaw(tx, id, true)?;
    }
    Ok(())
}

/// Ends the relationships whose copy completed in this apply (non-persistent or completing).
fn end_copied<R: TrackReader>(tx: &mut Tx<'_, R>) -> Result<(), Failure<R::Error>> {
    for target in tx.take_copied_out() {
        let Some(rel) = tx.state().incoming(target) else {
            continue;
        };
        if !rel.out_of_sync.is_empty() {
            continue;
        }
        let ends = rel.ends_when_copied();
        let (source, target_name) = (tx.name(rel.source), tx.name(target));
        tx.push_event(Event::CopyCompleted {
            source,
            target: target_name,
        });
        if ends {
            withdraw::withdraw(tx, target, true)?;
        }
    }
    Ok(())
}
