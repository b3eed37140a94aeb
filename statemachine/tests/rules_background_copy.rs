//! Background copy: copy steps, their bounds, and the end of a copied relationship.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn background_copy_completes_and_ends_a_non_persistent_relationship() {
    let mut h = three_volumes();
    h.fill("a", 3, 3);
    h.fill_tracks("a", 0..3, 1);
    h.ok(mkflash("a:b", EstablishOptions::default()));
    let events = h.ok(copy_step("a", "b", 3));
    assert!(events.contains(&Event::TracksCopied {
        source: "a".into(),
        target: "b".into(),
        tracks: 3,
        data_tracks: 3,
        remaining: 1
    }));
    assert_eq!(h.rel("a", "b").unwrap().state, RelationshipState::Copying);
    let events = h.copy_all("a", "b");
    assert!(events.contains(&Event::Withdrawn {
        source: "a".into(),
        target: "b".into(),
        incomplete: false,
        automatic: true
    }));
    assert!(h.rel("a", "b").is_none(), "withdrawn in the same step");
    assert_eq!(h.byte_at("b", 3), 3);
    assert_eq!(h.vol("b").state, VolumeState::Normal);
    h.ok(mkflash("a:b", EstablishOptions::default()));
}

#[test]
fn copy_steps_need_background_copy() {
    let mut h = established_a_b(options("--nocp"));
    let e = h.refused(copy_step("a", "b", 1));
    assert_eq!(e.code(), "background-copy-off");
    let e = h.refused(copy_step("c", "b", 1));
    assert_eq!(e.code(), "relationship-not-found");
}

#[test]
fn establish_and_write_cost_do_not_grow_with_volume_size() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["s", "t"], 1 << 28); // 16 TiB
    h.ok(mkflash("s:t", persist_record()));
    let bytes = bincode::serde::encode_to_vec(&h.state, bincode::config::standard()).unwrap();
    assert!(
        bytes.len() < 1024,
        "establishing 2^28 tracks takes {} bytes of state",
        bytes.len()
    );
    let c = h.write_cmd("s", (1 << 44) - 65536, &[7; 65536]);
    let applied = h.run(c);
    assert_eq!(
        applied.ops.len(),
        1,
        "a full-track write of a zero source copies nothing: {:?}",
        applied.ops.len()
    );
    assert_eq!(h.rel("s", "t").unwrap().out_of_sync_tracks, (1 << 28) - 1);
    let events = h.ok(copy_step("s", "t", 4));
    assert!(events.contains(&Event::TracksCopied {
        source: "s".into(),
        target: "t".into(),
        tracks: 1 << 20,
        data_tracks: 0,
        remaining: (1 << 28) - 1 - (1 << 20)
    }));
}

#[test]
fn a_thin_copy_skips_what_was_never_written() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["s", "t"], 1 << 28); // 16 TiB, written in three places
    h.fill_tracks("s", [7u64, 1 << 24, (1 << 28) - 1], 5);
    h.fill("t", 99, 9); // old data on the target must be replaced by the source's zeros
    h.ok(mkflash("s:t", options("--persist")));
    let mut steps = 0;
    let mut data = 0;
    while h.rel("s", "t").unwrap().out_of_sync_tracks > 0 {
        let applied = h.run(copy_step("s", "t", 64));
        assert!(applied.ops.len() <= 64, "a step stays bounded");
        data += applied
            .events
            .iter()
            .map(|e| {
                if let Event::TracksCopied { data_tracks, .. } = e {
                    *data_tracks
                } else {
                    0
                }
            })
            .sum::<u32>();
        steps += 1;
        assert!(steps <= 260, "16 TiB of unwritten space takes 256 steps, not millions");
    }
    assert_eq!(data, 4, "three source tracks and the target's stale one");
    assert_eq!(h.byte_at("t", 1 << 24), 5);
    assert_eq!(h.byte_at("t", 99), 0);
    assert_eq!(h.tracks.stored_tracks(), 6);
}

#[test]
fn a_copy_step_stays_bounded_when_written_and_unwritten_tracks_alternate() {
    let mut h = Harness::with_volumes(TS, &["s", "t"], 8192);
    h.ok(mkflash("s:t", EstablishOptions::default()));
    // Copy-on-write clears the even bits; odd ones stay, one apart.
    h.fill_tracks("s", (0..8192u64).step_by(2), 3);
    let events = h.ok(copy_step("s", "t", 64));
    let Some(Event::TracksCopied {
        tracks, data_tracks, ..
    }) = events.iter().find(|e| matches!(e, Event::TracksCopied { .. }))
    else {
        panic!("no copy event: {events:?}");
    };
    assert_eq!(*data_tracks, 0);
    assert_eq!(*tracks, 1024, "at most 1024 skipped ranges per step");
    let mut steps = 1;
    while h.rel("s", "t").is_some() {
        h.copy_all("s", "t");
        steps += 1;
    }
    assert_eq!(steps, 4, "4096 one-track ranges take four steps");
    assert_eq!(h.byte_at("t", 2), 0, "the point in time was before the writes");
}
