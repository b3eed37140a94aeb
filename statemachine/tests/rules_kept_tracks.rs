//! Copy-on-write to many targets: a host write to a source track that several targets still
//! read stores the old track once (the source's kept tracks), not once per target; each target
//! reads it there until it copies it, is written over or lets go, and the last one to let go
//! drops it. Digests, replay and reads stay exact.

mod common;
use common::*;
use statemachine::*;

/// Volumes a, t1, t2, t3 of four tracks; a's tracks hold 1, 2, 3, 4; a:t1 a:t2 a:t3 nocopy.
fn three_targets(flags: &str) -> Harness {
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3"], 4);
    for track in 0..4 {
        h.fill("a", track, track as u8 + 1);
    }
    h.ok(mkflash("a:t1 a:t2 a:t3", options(flags)));
    h
}

fn id(h: &Harness, name: &str) -> VolumeId {
    h.state.volume_id(name).unwrap()
}

/// How many old tracks `a` keeps, as its record counts them and as the store holds them.
fn kept(h: &Harness, name: &str) -> (u64, usize) {
    let owner = id(h, name);
    let stored = h.tracks.stored().filter(|(v, _)| *v == owner.kept()).count();
    (h.state.record(owner).unwrap().kept_tracks, stored)
}

fn exact(h: &Harness) {
    assert_eq!(h.state.digest(), h.state.recompute_digest(&h.tracks).unwrap());
}

#[test]
fn a_source_write_stores_the_old_track_once_for_all_targets() {
    let mut h = three_targets("--nocp");
    let command = h.write_cmd("a", 0, &[9; TS as usize]);
    let applied = h.run(command);
    let writes: Vec<VolumeId> = applied
        .ops
        .iter()
        .filter_map(|op| match op {
            TrackOp::Write { volume, .. } => Some(*volume),
            _ => None,
        })
        .collect();
    let a = id(&h, "a");
    assert_eq!(writes, vec![a.kept(), a], "the old track once, then the new one");
    assert_eq!(kept(&h, "a"), (1, 1));
    for t in ["t1", "t2", "t3"] {
        assert_eq!(h.byte_at(t, 0), 1, "{t} still reads its point in time");
        assert_eq!(h.vol(t).used, 0, "{t} stores nothing of its own");
    }
    assert_eq!(h.byte_at("a", 0), 9);
    exact(&h);
}

#[test]
fn a_kept_track_lives_until_the_last_target_lets_go() {
    let mut h = three_targets("--nocp");
    h.fill("a", 0, 9);
    h.fill("a", 1, 9);
    assert_eq!(kept(&h, "a"), (2, 2));
    // t1 written in part: it takes the kept track as its own first.
    h.write("t1", 1, &[7]);
    assert_eq!(h.read("t1", 0, 3), vec![1, 7, 1]);
    assert_eq!(kept(&h, "a"), (2, 2), "t2 and t3 still read both");
    // t2 withdrawn: incomplete, it reads nothing any more.
    h.ok(rmflash("a:t2"));
    assert_eq!(kept(&h, "a"), (2, 2), "t3 still reads both");
    // t3 written over whole at track 0: track 0 is nobody's any more.
    h.fill("t3", 0, 5);
    assert_eq!(kept(&h, "a"), (1, 1));
    assert_eq!(h.byte_at("t3", 1), 2);
    // The source written again at track 1: the old track is already kept, nobody needs more.
    h.fill("a", 1, 8);
    assert_eq!(kept(&h, "a"), (1, 1));
    assert_eq!(h.byte_at("t3", 1), 2);
    exact(&h);
    h.ok(rmflash("a:t1 a:t3"));
    assert_eq!(kept(&h, "a"), (0, 0), "the last to let go dropped the store");
    exact(&h);
}

#[test]
fn a_background_copy_takes_kept_tracks_and_drops_them() {
    let mut h = three_targets("--nocp");
    h.fill("a", 2, 9);
    h.ok(chflash("a:t1", None));
    h.ok(chflash("a:t2", None));
    h.ok(chflash("a:t3", None));
    h.copy_all("a", "t1");
    h.copy_all("a", "t2");
    assert_eq!(kept(&h, "a"), (1, 1), "t3 still reads it");
    h.copy_all("a", "t3");
    assert_eq!(kept(&h, "a"), (0, 0));
    for t in ["t1", "t2", "t3"] {
        assert_eq!(
            h.read(t, 0, 4 * u64::from(TS))
                .iter()
                .step_by(TS as usize)
                .copied()
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }
    exact(&h);
}

#[test]
fn a_target_with_change_recording_holds_its_old_tracks_itself() {
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3"], 4);
    h.fill("a", 0, 1);
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.ok(mkflash("a:t3", options("--nocp --persist --record")));
    h.fill("a", 0, 9);
    assert_eq!(kept(&h, "a"), (1, 1), "t1 and t2 share");
    assert_eq!(h.vol("t3").used, u64::from(TS), "t3 has its own copy");
    h.ok(resync("a:t3"));
    assert_eq!(h.byte_at("t3", 0), 9);
    assert_eq!(h.byte_at("t1", 0), 1);
    exact(&h);
}

#[test]
fn one_target_in_need_gets_a_copy_and_a_second_version_is_copied_too() {
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3", "t4"], 4);
    h.fill("a", 0, 1);
    h.ok(mkflash("a:t1", options("--nocp")));
    h.fill("a", 0, 2);
    assert_eq!(kept(&h, "a"), (0, 0), "a single target gets its own copy");
    assert_eq!(h.vol("t1").used, u64::from(TS));
    h.ok(mkflash("a:t2 a:t3", options("--nocp")));
    h.fill("a", 0, 3);
    assert_eq!(kept(&h, "a"), (1, 1));
    // t4's point in time holds 3; the kept track 0 (2) still serves t2 and t3.
    h.ok(mkflash("a:t4", options("--nocp")));
    h.fill("a", 0, 4);
    assert_eq!(kept(&h, "a"), (1, 1));
    let firsts: Vec<u8> = ["t1", "t2", "t3", "t4", "a"].iter().map(|v| h.byte_at(v, 0)).collect();
    assert_eq!(firsts, vec![1, 2, 2, 3, 4]);
    exact(&h);
}

#[test]
fn a_fast_reverse_restores_the_kept_tracks() {
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2"], 4);
    h.fill_tracks("a", 0..4, 1);
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.fill_tracks("a", [0, 2], 9);
    assert_eq!(kept(&h, "a"), (2, 2));
    h.ok(rmflash("a:t2"));
    h.ok(reverse("a:t1", true));
    h.copy_all("t1", "a");
    assert_eq!(
        h.read("a", 0, 4 * u64::from(TS)),
        vec![1; 4 * TS as usize],
        "a is back at its point in time"
    );
    assert_eq!(kept(&h, "a"), (0, 0));
    exact(&h);
}

#[test]
fn zeroing_the_source_leaves_kept_tracks_kept_and_allocated() {
    let mut h = three_targets("--nocp");
    h.fill("a", 1, 9);
    // Zero the whole source (one WRITE_ZEROES): the targets keep their point in time.
    h.ok(zeroes("a", 0, 4 * u64::from(TS)));
    assert_eq!(h.read("a", 0, 4 * u64::from(TS)), vec![0; 4 * TS as usize]);
    assert_eq!(
        kept(&h, "a"),
        (4, 4),
        "tracks 0, 2, 3 kept as the zeroing copied them; 1 already"
    );
    let t1 = id(&h, "t1");
    let extents = h.state.allocation(&h.tracks, t1, 0, 4 * u64::from(TS), 100).unwrap();
    assert_eq!(
        extents,
        vec![Extent {
            length: 4 * u64::from(TS),
            allocated: true
        }]
    );
    for track in 0..4 {
        assert_eq!(h.byte_at("t2", track), track as u8 + 1);
    }
    exact(&h);
}

#[test]
fn a_journal_replay_rebuilds_the_kept_tracks() {
    let mut h = Harness::new(TS);
    let mut journal = Vec::new();
    let mut run = |h: &mut Harness, command: Command| {
        let stamp = Stamp {
            time: Timestamp(h.now + 1000),
            term: h.term,
        };
        journal.push((command.journal_form(), stamp));
        h.ok(command);
    };
    let write = |h: &mut Harness, track: u64, byte: u8| h.write_cmd("a", track * u64::from(TS), &[byte; TS as usize]);
    for name in ["a", "t1", "t2"] {
        let size = 4 * u64::from(TS);
        run(
            &mut h,
            Command::CreateVolume {
                name: name.into(),
                size,
            },
        );
    }
    let c = write(&mut h, 0, 1);
    run(&mut h, c);
    run(&mut h, mkflash("a:t1 a:t2", options("--nocp")));
    let c = write(&mut h, 0, 2);
    run(&mut h, c);
    let c = write(&mut h, 1, 3);
    run(&mut h, c);
    let mut replay = Replay::with_track_size(TS);
    for (command, stamp) in &journal {
        replay.apply(command, *stamp);
    }
    assert_eq!(replay.state().metadata_digest(), h.state.metadata_digest());
    let a = id(&h, "a");
    let mut replayed: Vec<(VolumeId, u32)> = replay.stored_tracks().collect();
    let mut live: Vec<(VolumeId, u32)> = h.tracks.stored().collect();
    replayed.sort();
    live.sort();
    assert_eq!(replayed, live);
    // Track 1 held nothing at the point in time: nothing to keep (the targets read zeros).
    assert!(
        live.contains(&(a.kept(), 0)) && !live.contains(&(a.kept(), 1)),
        "{live:?}"
    );
    assert_eq!(
        h.read("t2", 0, 2 * u64::from(TS)),
        [[1; TS as usize], [0; TS as usize]].concat()
    );
}

fn sweep(volume: &str) -> Command {
    Command::SweepKept {
        volume: volume.into(),
        max_tracks: SWEEP_TRACKS,
    }
}

fn kept_drops(h: &Harness, applied: &Applied) -> usize {
    let kept = id(h, "a").kept();
    applied
        .ops
        .iter()
        .filter(|op| matches!(op, TrackOp::Zero { volume, .. } if *volume == kept))
        .count()
}

/// A withdrawal that leaves more kept tracks unread than one apply may drop drops none itself
/// and sets the source's sweep bookmark; sweep steps, each bounded, drop exactly those no one
/// reads. Reads, digests and a journal replay stay exact throughout.
#[test]
fn a_large_withdrawal_leaves_its_kept_tracks_to_bounded_sweep_steps() {
    let n = u64::from(SWEEP_TRACKS) * 2 + 10;
    let mut h = Harness::new(TS);
    let mut journal = Vec::new();
    let mut run = |h: &mut Harness, command: Command| -> Applied {
        journal.push((
            command.journal_form(),
            Stamp {
                time: Timestamp(h.now + 1000),
                term: h.term,
            },
        ));
        let applied = h.run(command);
        assert!(applied.result.is_ok(), "{:?}", applied.result);
        applied
    };
    let fill = |h: &mut Harness, track: u64, byte: u8| h.write_cmd("a", track * u64::from(TS), &[byte; TS as usize]);
    for name in ["a", "t1", "t2", "t3", "t4"] {
        let size = n * u64::from(TS);
        run(
            &mut h,
            Command::CreateVolume {
                name: name.into(),
                size,
            },
        );
    }
    for track in 0..n {
        let c = fill(&mut h, track, 1);
        run(&mut h, c);
    }
    run(&mut h, mkflash("a:t1 a:t2", options("--nocp")));
    // Every track but the last overwritten: t1 and t2 share one kept copy of each.
    for track in 0..n - 1 {
        let c = fill(&mut h, track, 2);
        run(&mut h, c);
    }
    run(&mut h, mkflash("a:t3 a:t4", options("--nocp")));
    let c = fill(&mut h, n - 1, 2);
    run(&mut h, c);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    // t1 lets go of n tracks t2 still reads: nothing to drop, nothing to sweep.
    let applied = run(&mut h, rmflash("a:t1"));
    assert_eq!(kept_drops(&h, &applied), 0);
    assert!(h.state.kept_sweeps().is_empty());
    // t2 too: now only the last track is read by anyone (t3 and t4); n - 1 are left.
    let applied = run(&mut h, rmflash("a:t2"));
    assert_eq!(kept_drops(&h, &applied), 0);
    assert_eq!(h.state.kept_sweeps(), vec!["a".to_string()]);
    assert_eq!(kept(&h, "a"), (n, n as usize), "left for the sweep");
    assert_eq!(h.vol("a").used, 2 * n * u64::from(TS), "kept tracks are still counted");
    exact(&h);
    let mut steps = 0;
    while !h.state.kept_sweeps().is_empty() {
        let applied = run(&mut h, sweep("a"));
        assert!(kept_drops(&h, &applied) <= SWEEP_TRACKS as usize, "a step is bounded");
        exact(&h);
        steps += 1;
        assert!(steps <= 4, "the sweep ends");
    }
    assert_eq!(steps, 3, "n - 1 tracks, SWEEP_TRACKS at a time");
    assert_eq!(kept(&h, "a"), (1, 1), "the one t3 and t4 read is kept");
    for t in ["t3", "t4"] {
        assert_eq!(h.byte_at(t, n - 1), 1, "{t} still reads its point in time");
        assert_eq!(h.byte_at(t, 0), 2);
    }
    // A step after the sweep ended changes nothing.
    let applied = run(&mut h, sweep("a"));
    assert!(applied.ops.is_empty());
    // The journal, sweeps included, replays to the same state and stored tracks.
    let mut replay = Replay::with_track_size(TS);
    for (command, stamp) in &journal {
        replay.apply(command, *stamp);
    }
    assert_eq!(replay.state().metadata_digest(), h.state.metadata_digest());
    let mut replayed: Vec<(VolumeId, u32)> = replay.stored_tracks().collect();
    let mut live: Vec<(VolumeId, u32)> = h.tracks.stored().collect();
    replayed.sort();
    live.sort();
    assert_eq!(replayed, live);
}

/// The bound is per apply, not per relationship: one rmflash of two relationships, each the
/// only reader of fewer than SWEEP_TRACKS kept tracks but more together, drops what fits and
/// leaves the rest to the sweep.
#[test]
fn one_apply_drops_at_most_sweep_tracks_however_many_pairs_it_withdraws() {
    let (first, second) = (150u64, 149u64);
    let n = first + second + 1;
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3"], n);
    h.fill_tracks("a", 0..n, 1);
    h.ok(mkflash("a:t1 a:t2 a:t3", options("--nocp")));
    h.fill_tracks("a", 0..n, 2);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    // t1 alone reads the first 150, t2 alone the next 149, all three the last one.
    h.fill_tracks("t2", 0..first, 9);
    h.fill_tracks("t3", 0..first, 9);
    h.fill_tracks("t1", first..n - 1, 9);
    h.fill_tracks("t3", first..n - 1, 9);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    let applied = h.run(rmflash("a:t1 a:t2"));
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert_eq!(
        kept_drops(&h, &applied),
        first as usize,
        "t1's, then the budget ran out"
    );
    assert_eq!(h.state.kept_sweeps(), vec!["a".to_string()]);
    exact(&h);
    h.ok(sweep("a"));
    assert!(h.state.kept_sweeps().is_empty());
    assert_eq!(kept(&h, "a"), (1, 1));
    assert_eq!(h.byte_at("t3", n - 1), 1);
    exact(&h);
}

/// Zeroing a range of a target lets go of its kept tracks there in bulk, within the same
/// budget: beyond it, they are left to the sweep too.
#[test]
fn zeroing_a_target_lets_go_of_its_kept_tracks_within_the_budget() {
    let n = u64::from(SWEEP_TRACKS) + 20;
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2"], n);
    h.fill_tracks("a", 0..n, 1);
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.fill_tracks("a", 0..n, 2);
    // t2 takes every track as its own (written over), so t1 alone reads them.
    h.fill_tracks("t2", 0..n, 9);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    let applied = h.run(zeroes("t1", 0, (n - 1) * u64::from(TS)));
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert_eq!(
        kept_drops(&h, &applied),
        0,
        "more than the budget: all left to the sweep"
    );
    assert_eq!(h.state.kept_sweeps(), vec!["a".to_string()]);
    assert_eq!(h.byte_at("t1", 0), 0, "zeroed");
    assert_eq!(h.byte_at("t1", n - 1), 1, "still its point in time");
    exact(&h);
    h.ok(sweep("a"));
    h.ok(sweep("a"));
    assert!(h.state.kept_sweeps().is_empty(), "n - 1 tracks in two steps");
    assert_eq!(kept(&h, "a"), (1, 1));
    exact(&h);
}

/// A track left to the sweep and needed again (new targets, the source written again) is kept
/// anew over the old one, counted once; the sweep then leaves it and the tracks still read.
#[test]
fn a_track_left_to_the_sweep_can_be_kept_again() {
    let n = u64::from(SWEEP_TRACKS) + 2;
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3", "t4", "t5"], n);
    h.fill_tracks("a", 0..n, 1);
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.fill_tracks("a", 0..n, 2);
    h.ok(mkflash("a:t3", options("--nocp")));
    h.ok(rmflash("a:t1"));
    h.ok(rmflash("a:t2"));
    // t3 reads no kept track: the whole store went in one op, nothing left to sweep.
    assert_eq!(kept(&h, "a"), (0, 0));
    assert!(h.state.kept_sweeps().is_empty());
    // t1, t2 and t3 keep tracks 1 on, and with t4 track 0.
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.fill_tracks("a", 1..n, 3);
    h.ok(mkflash("a:t4", options("--nocp")));
    h.fill("a", 0, 3);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    h.ok(rmflash("a:t1 a:t2"));
    assert!(h.state.kept_sweeps().is_empty(), "t3 still reads every one");
    // t3 goes: tracks 1 on are read by no one, more than one apply drops.
    h.ok(rmflash("a:t3"));
    assert_eq!(h.state.kept_sweeps(), vec!["a".to_string()]);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    // t3 again and t5: with t4 they need track 1 when the source is written, and keep it anew
    // over the one left to the sweep (counted once).
    h.ok(mkflash("a:t3 a:t5", options("--nocp")));
    h.fill("a", 1, 4);
    assert_eq!(kept(&h, "a"), (n, n as usize));
    for t in ["t3", "t4", "t5"] {
        assert_eq!(h.byte_at(t, 1), 3, "{t}");
    }
    exact(&h);
    h.ok(sweep("a"));
    assert!(h.state.kept_sweeps().is_empty());
    assert_eq!(kept(&h, "a"), (2, 2), "track 0 (t4) and track 1 (t3, t4, t5)");
    for t in ["t3", "t4", "t5"] {
        assert_eq!(h.byte_at(t, 1), 3, "{t}: the track kept again survives the sweep");
    }
    assert_eq!(h.byte_at("t4", 0), 2);
    exact(&h);
    h.ok(rmflash("a:t3 a:t4 a:t5"));
    assert_eq!(kept(&h, "a"), (0, 0));
    exact(&h);
}

/// Tracks left to the sweep when the last reader lets go one by one (written over) are
/// dropped by the next step, all at once.
#[test]
fn a_sweep_with_no_reader_left_drops_the_whole_store() {
    let n = u64::from(SWEEP_TRACKS) + 2;
    let mut h = Harness::with_volumes(TS, &["a", "t1", "t2", "t3"], n);
    h.fill_tracks("a", 0..n, 1);
    h.ok(mkflash("a:t1 a:t2", options("--nocp")));
    h.fill_tracks("a", 0..n - 1, 2);
    h.ok(mkflash("a:t3", options("--nocp")));
    h.fill("a", n - 1, 2);
    h.ok(rmflash("a:t1 a:t2"));
    assert_eq!(h.state.kept_sweeps(), vec!["a".to_string()]);
    // t3 written over its one kept track: nobody reads any; the rest wait for the sweep.
    h.fill("t3", n - 1, 9);
    assert_eq!(kept(&h, "a"), (n - 1, n as usize - 1));
    let applied = h.run(sweep("a"));
    assert!(applied
        .ops
        .iter()
        .any(|op| matches!(op, TrackOp::DropVolume { volume } if *volume == id(&h, "a").kept())));
    assert_eq!(kept(&h, "a"), (0, 0));
    assert!(h.state.kept_sweeps().is_empty());
    exact(&h);
}
