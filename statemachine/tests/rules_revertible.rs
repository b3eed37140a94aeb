//! Revertible increments: setflashrevertible, commitflash, revertflash.
//!
//! One test per rule and per refusal, each checking the stable error code.

mod common;
use common::*;
use statemachine::*;

fn set(spec: &str, seqnum: Option<u32>) -> Command {
    Command::SetFlashRevertible {
        pairs: pairs(spec),
        seqnum,
    }
}

fn commit(spec: &str, seqnum: Option<u32>) -> Command {
    Command::CommitFlash {
        pairs: pairs(spec),
        seqnum,
    }
}

fn revert(spec: &str, seqnum: Option<u32>) -> Command {
    Command::RevertFlash {
        pairs: pairs(spec),
        seqnum,
    }
}

/// a:b persistent and recording, copied; then a's track 1 and b's track 3 changed.
fn changed_since_the_point_in_time() -> Harness {
    let mut h = Harness::with_volumes(TS, &["a", "b", "c"], 4);
    h.fill_tracks("a", 0..4, 1);
    h.ok(mkflash("a:b", options("--persist --record --seqnum 3")));
    h.copy_all("a", "b");
    h.fill("a", 1, 2);
    h.fill("b", 3, 9);
    h
}

#[test]
fn a_reverted_increment_gives_the_target_its_previous_point_in_time_and_change_recording_back() {
    let mut h = changed_since_the_point_in_time();
    let before = h.rel("a", "b").unwrap();
    let events = h.ok(set("a:b", Some(5)));
    assert!(events.contains(&Event::IncrementTaken {
        source: "a".into(),
        target: "b".into(),
        seqnum: 5,
        tracks: 2
    }));
    // The target is the source as of now.
    assert_eq!((h.byte_at("b", 1), h.byte_at("b", 3)), (2, 1));
    let rel = h.rel("a", "b").unwrap();
    assert!(rel.revertible);
    assert_eq!((rel.seqnum, rel.out_of_sync_tracks), (5, 2));

    let events = h.ok(revert("a:b", Some(5)));
    assert!(events.contains(&Event::IncrementReverted {
        source: "a".into(),
        target: "b".into(),
        seqnum: 3,
        tracks: 2
    }));
    // The previous point in time, with the target's own write of then.
    assert_eq!((h.byte_at("b", 1), h.byte_at("b", 3)), (1, 9));
    let rel = h.rel("a", "b").unwrap();
    assert_eq!(rel, before, "the relationship is as it was");
    // The change recording is back: a refresh copies exactly those two tracks.
    h.fill("a", 0, 4);
    assert_eq!((h.byte_at("a", 0), h.byte_at("b", 0)), (4, 1), "hosts write again");
    assert!(h.ok(resync("a:b")).contains(&Event::Resynced {
        source: "a".into(),
        target: "b".into(),
        tracks_to_copy: 3
    }));
}

#[test]
fn a_committed_increment_is_the_point_in_time_for_good_and_the_copy_goes_on() {
    let mut h = changed_since_the_point_in_time();
    h.ok(set("a:b", None));
    assert!(h.state.copy_work().is_empty(), "no background copy while revertible");
    assert_eq!(h.refused(copy_step("a", "b", 4)).code(), "relationship-revertible");
    assert_eq!(h.refused(commit("a:b", Some(4))).code(), "seqnum-mismatch");
    let events = h.ok(commit("a:b", Some(3)));
    assert!(events.contains(&Event::IncrementCommitted {
        source: "a".into(),
        target: "b".into(),
        seqnum: 3
    }));
    assert!(!h.rel("a", "b").unwrap().revertible);
    assert_eq!(h.refused(revert("a:b", None)).code(), "not-revertible");
    assert_eq!(h.state.copy_work().len(), 1, "the copy goes on");
    // Copy-on-write keeps the committed point in time.
    h.fill("a", 1, 7);
    assert_eq!(h.byte_at("b", 1), 2);
    h.copy_all("a", "b");
    assert_eq!((h.byte_at("b", 1), h.byte_at("b", 3)), (2, 1));
    assert_eq!(h.rel("a", "b").unwrap().state, RelationshipState::Copied);
}

#[test]
fn while_revertible_hosts_write_neither_volume_and_the_relationship_is_only_committed_or_reverted() {
    let mut h = changed_since_the_point_in_time();
    h.ok(mkflash("a:c", Default::default()));
    h.ok(set("a:b", None));
    for volume in ["a", "b"] {
        let write = h.write_cmd(volume, 0, &[5]);
        let e = h.refused(write);
        assert_eq!(e.code(), "revertible-write-inhibited", "{volume}");
        assert!(e.to_string().contains("a:b"), "{e}");
        let e = h.refused(zeroes(volume, 0, TS as u64));
        assert_eq!(e.code(), "revertible-write-inhibited", "{volume}");
    }
    h.write("c", 0, &[5]);
    for command in [rmflash("a:b"), resync("a:b"), reverse("a:b", true), set("a:b", None)] {
        assert_eq!(h.refused(command).code(), "relationship-revertible");
    }
    // The copy rate may change; another relationship of the source is untouched.
    h.ok(chflash("a:b", Some(1)));
    h.ok(rmflash("a:c"));
    h.ok(revert("a:b", None));
    h.write("a", 0, &[5]);
}

#[test]
fn setflashrevertible_refusals_and_all_or_nothing() {
    let mut h = changed_since_the_point_in_time();
    h.ok(mkflash("a:c", options("--persist")));
    assert_eq!(h.refused(set("a:c", None)).code(), "not-recording");
    // a:b would be fine; a:c spoils the command, and nothing changes.
    assert_eq!(h.refused(set("a:b a:c", None)).code(), "not-recording");
    assert!(!h.rel("a", "b").unwrap().revertible);
    assert_eq!(h.refused(set("b:a", None)).code(), "relationship-not-found");
    assert_eq!(h.refused(commit("a:b", None)).code(), "not-revertible");
    assert_eq!(h.refused(revert("a:b", None)).code(), "not-revertible");
    h.ok(rmflash("a:c"));
    h.ok(mkflash("a:c", options("--persist --record --freeze")));
    assert_eq!(h.refused(set("a:b", None)).code(), "source-frozen");
    h.ok(unfreeze("a"));
    h.ok(resync("a:b")); // two tracks to copy
    h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: true,
        seqnum: None,
    });
    assert_eq!(h.refused(set("a:b", None)).code(), "withdraw-in-progress");
    // Both at once, one point in time.
    h.ok(rmflash("a:b"));
    h.ok(mkflash("a:b", persist_record()));
    h.copy_all("a", "b");
    h.copy_all("a", "c");
    h.fill("a", 2, 8);
    h.ok(set("a:b a:c", Some(1)));
    assert_eq!((h.byte_at("b", 2), h.byte_at("c", 2)), (8, 8));
    h.ok(revert("a:b a:c", Some(1)));
    assert_eq!((h.byte_at("b", 2), h.byte_at("c", 2)), (1, 1));
}

#[test]
fn an_increment_taken_mid_copy_reverts_to_exactly_the_tracks_still_to_copy() {
    let mut h = Harness::with_volumes(TS, &["a", "b"], 8);
    h.fill_tracks("a", 0..8, 1);
    h.ok(mkflash("a:b", persist_record()));
    h.ok(copy_step("a", "b", 3));
    h.fill("a", 6, 2); // copy-on-write of track 6, then a change
    h.fill("b", 1, 9);
    let before = h.rel("a", "b").unwrap();
    assert_eq!(before.out_of_sync_tracks, 4);
    h.ok(set("a:b", None));
    assert_eq!(
        h.rel("a", "b").unwrap().out_of_sync_tracks,
        6,
        "tracks 1 and 6 went out of sync again"
    );
    assert_eq!((h.byte_at("b", 1), h.byte_at("b", 6)), (1, 2));
    h.ok(revert("a:b", None));
    assert_eq!(h.rel("a", "b").unwrap(), before);
    assert_eq!((h.byte_at("b", 1), h.byte_at("b", 6)), (9, 1));
    h.copy_all("a", "b");
    let image: Vec<u8> = (0..8).map(|t| h.byte_at("b", t)).collect();
    assert_eq!(image, [1, 9, 1, 1, 1, 1, 1, 1]);
}
