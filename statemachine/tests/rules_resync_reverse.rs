//! Incremental refresh (resyncflash) and restore (reverseflash, fast or not).
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn resync_copies_only_what_changed() {
    let mut h = Harness::with_volumes(TS, &["a", "b"], 8);
    for t in 0..8 {
        h.fill("a", t, t as u8 + 1);
    }
    h.ok(mkflash("a:b", options("--persist")));
    assert_eq!(h.refused(resync("a:b")).code(), "not-recording");
    h.ok(rmflash("a:b"));
    h.ok(mkflash("a:b", persist_record()));
    h.copy_all("a", "b");
    h.fill("a", 1, 100);
    h.fill("b", 5, 200);
    let events = h.ok(resync("a:b"));
    assert!(events.contains(&Event::Resynced {
        source: "a".into(),
        target: "b".into(),
        tracks_to_copy: 2
    }));
    assert_eq!(h.byte_at("b", 1), 100);
    assert_eq!(h.byte_at("b", 5), 6, "the target write is undone by the refresh");
    let rel = h.rel("a", "b").unwrap();
    assert_eq!((rel.out_of_sync_tracks, rel.state), (2, RelationshipState::Copying));
    h.copy_all("a", "b");
    assert_eq!(h.rel("a", "b").unwrap().state, RelationshipState::Copied);
    let e = h.refused(resync("c:b"));
    assert_eq!(e.code(), "volume-not-found");
    h.ok(Command::ResyncFlash {
        pairs: pairs("a:b"),
        nocp: true,
        tgtinhibit: true,
        seqnum: Some(9),
    });
    let rel = h.rel("a", "b").unwrap();
    assert!(!rel.background_copy && rel.target_write_inhibit && rel.persistent && rel.recording);
    assert_eq!(rel.seqnum, 9);
}

#[test]
fn reverse_restores_the_source() {
    let mut h = Harness::with_volumes(TS, &["prod", "backup"], 4);
    h.fill_tracks("prod", 0..4, 1);
    h.ok(mkflash("prod:backup", persist_record()));
    assert_eq!(h.refused(reverse("prod:backup", false)).code(), "copy-not-finished");
    h.copy_all("prod", "backup");
    h.fill("prod", 2, 66); // the mistake to undo
    let events = h.ok(reverse("prod:backup", false));
    assert!(events.contains(&Event::Reversed {
        source: "backup".into(),
        target: "prod".into(),
        fast: false,
        tracks_to_copy: 1
    }));
    assert_eq!(h.byte_at("prod", 2), 1, "restored at once");
    let rel = h.rel("backup", "prod").unwrap();
    assert!(rel.persistent && rel.recording);
    h.copy_all("backup", "prod");
    assert_eq!(h.rel("backup", "prod").unwrap().state, RelationshipState::Copied);
}

#[test]
fn reverse_refusals() {
    let mut h = established_a_b(options("--persist"));
    h.copy_all("a", "b");
    assert_eq!(h.refused(reverse("a:b", false)).code(), "not-recording");
    assert_eq!(h.refused(reverse("b:a", false)).code(), "relationship-not-found");
    h.ok(mkflash("a:c", Default::default()));
    let e = h.refused(reverse("a:b", true));
    assert_eq!(e.code(), "cascade-not-allowed");
    assert!(e.to_string().contains("a:c"), "{e}");
}

#[test]
fn fast_reverse_before_the_copy_finished() {
    let mut h = three_volumes();
    h.fill_tracks("a", 0..4, 1);
    h.ok(mkflash("a:b", options("--nocp")));
    h.fill("a", 0, 2);
    h.fill("a", 1, 2);
    let events = h.ok(reverse("a:b", true));
    assert!(events.contains(&Event::Reversed {
        source: "b".into(),
        target: "a".into(),
        fast: true,
        tracks_to_copy: 2
    }));
    for t in 0..4 {
        assert_eq!(h.byte_at("a", t), 1, "track {t} restored");
    }
    let rel = h.rel("b", "a").unwrap();
    assert!(!rel.persistent && !rel.recording && rel.background_copy);
    assert_eq!(h.vol("b").state, VolumeState::Incomplete);
    h.copy_all("b", "a");
    assert!(
        h.rel("b", "a").is_none(),
        "the fast-reversed relationship ends when copied"
    );
    for t in 0..4 {
        assert_eq!(h.byte_at("a", t), 1);
    }
}

#[test]
fn each_incremental_target_of_a_source_refreshes_what_changed_since_its_own_refresh() {
    let mut h = Harness::with_volumes(TS, &["a", "b", "c"], 8);
    for t in 0..8 {
        h.fill("a", t, t as u8 + 1);
    }
    h.ok(mkflash("a:b a:c", persist_record()));
    h.copy_all("a", "b");
    h.copy_all("a", "c");
    let resynced = |events: &[Event], target: &str| {
        events.iter().find_map(|e| match e {
            Event::Resynced {
                target: t,
                tracks_to_copy,
                ..
            } if t == target => Some(*tracks_to_copy),
            _ => None,
        })
    };
    h.fill("a", 1, 100);
    let events = h.ok(resync("a:b"));
    assert_eq!(resynced(&events, "b"), Some(1));
    h.copy_all("a", "b");
    h.fill("a", 2, 101);
    h.fill("c", 6, 201);
    // b: only what changed since its own refresh; c: everything since its establish, its
    // own write included.
    let events = h.ok(resync("a:b"));
    assert_eq!(resynced(&events, "b"), Some(1));
    let events = h.ok(resync("a:c"));
    assert_eq!(resynced(&events, "c"), Some(3));
    h.copy_all("a", "b");
    h.copy_all("a", "c");
    for (volume, track, byte) in [("b", 1, 100), ("b", 2, 101), ("c", 1, 100), ("c", 2, 101), ("c", 6, 7)] {
        assert_eq!(h.byte_at(volume, track), byte, "{volume} track {track}");
    }
}
