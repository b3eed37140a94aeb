//! mkflash (SPEC §3): pair rules, one point in time, copy-on-write, limits, target options.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn point_in_time_copy_on_write_and_target_reads() {
    let mut h = three_volumes();
    for t in 0..4 {
        h.fill("a", t, 10 + t as u8);
    }
    h.ok(mkflash("a:b", options("--nocp")));
    assert_eq!(h.rel("a", "b").unwrap().state, RelationshipState::Nocopy);
    assert_eq!(h.tracks.stored_tracks(), 4, "establish copies nothing");
    // Source write: the old track moves to the target first.
    h.fill("a", 1, 99);
    assert_eq!(h.byte_at("a", 1), 99);
    assert_eq!(h.byte_at("b", 1), 11);
    // Partial target write keeps the rest of the source's track.
    h.write("b", 2 * 16 + 3, &[55]);
    assert_eq!(h.read("b", 2 * 16 + 2, 3), vec![12, 55, 12]);
    assert_eq!(h.byte_at("a", 2), 12, "the source is not affected");
    // Reads of out-of-sync tracks come from the source.
    let b = h.state.volume_id("b").unwrap();
    let a = h.state.volume_id("a").unwrap();
    assert_eq!(h.state.resolve_read(b, 0), a);
    assert_eq!(h.state.resolve_read(b, 1), b);
    assert_eq!(h.rel("a", "b").unwrap().out_of_sync_tracks, 2);
}

#[test]
fn a_persistent_relationship_stays_and_guards_its_target() {
    let mut h = established_a_b(options("--persist"));
    h.copy_all("a", "b");
    let rel = h.rel("a", "b").unwrap();
    assert_eq!(rel.state, RelationshipState::Copied);
    let e = h.refused(mkflash("c:b", EstablishOptions::default()));
    assert_eq!(e.code(), "target-in-use");
    let msg = e.to_string();
    for part in [
        "persistent relationship a:b",
        "flashcopy rmflash a:b",
        "flashcopy resyncflash a:b",
        &rel.created_at,
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    h.ok(rmflash("a:b"));
    assert_eq!(h.vol("b").state, VolumeState::Normal, "a copied target is complete");
    h.ok(mkflash("c:b", EstablishOptions::default()));
}

#[test]
fn a_nocopy_relationship_ends_when_copy_on_write_moved_every_track() {
    let mut h = Harness::with_volumes(TS, &["a", "b"], 2);
    h.ok(mkflash("a:b", options("--nocp")));
    h.fill("a", 0, 1);
    assert!(h.rel("a", "b").is_some());
    let events = h.write("b", 16, &[5; 16]);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Withdrawn {
            automatic: true,
            incomplete: false,
            ..
        }
    )));
    assert!(h.rel("a", "b").is_none());
}

#[test]
fn mkflash_pair_rules() {
    let mut h = three_volumes();
    h.mkvol("small", 2);
    assert_eq!(h.refused(mkflash("a:a", Default::default())).code(), "invalid-pair");
    assert_eq!(h.refused(mkflash("a:b c:b", Default::default())).code(), "invalid-pair");
    assert_eq!(
        h.refused(mkflash("a:zz", Default::default())).code(),
        "volume-not-found"
    );
    assert_eq!(
        h.refused(mkflash("a:small", Default::default())).code(),
        "size-mismatch"
    );
    assert_eq!(
        h.refused(Command::MkFlash {
            pairs: vec![],
            options: Default::default()
        })
        .code(),
        "no-pairs"
    );
    let e = h.refused(mkflash("a:b", options("--record")));
    assert_eq!(e.code(), "invalid-option");
    assert!("a:b:c".parse::<Pair>().is_err() && "ab".parse::<Pair>().is_err() && ":b".parse::<Pair>().is_err());
}

#[test]
fn mkflash_is_all_or_nothing_and_one_point_in_time() {
    let mut h = three_volumes();
    h.mkvol("d", 2);
    let e = h.refused(mkflash("a:b a:d", Default::default()));
    assert_eq!(e.code(), "size-mismatch");
    assert!(e.to_string().contains("a:d"), "the error names the failing pair: {e}");
    assert!(h.rel("a", "b").is_none(), "the valid pair was not established either");
    h.fill("a", 0, 1);
    h.ok(mkflash("a:b a:c", Default::default()));
    h.fill("a", 0, 2);
    assert_eq!((h.byte_at("b", 0), h.byte_at("c", 0)), (1, 1));
}

#[test]
fn a_cascade_may_grow_but_never_loop_nor_change_an_image_a_copy_still_reads() {
    let mut h = three_volumes();
    h.mkvol("d", 4);
    h.ok(mkflash("a:b", options("--persist")));
    h.ok(mkflash("b:c", options("--persist")));
    assert_eq!(h.rel("b", "c").unwrap().chain, ["a", "b", "c"]);
    let e = h.refused(mkflash("d:a", Default::default()));
    assert_eq!(e.code(), "cascade-copy-running", "a's copy to b still reads a");
    assert!(e.to_string().contains("a:b"), "{e}");
    h.copy_all("a", "b");
    h.copy_all("b", "c");
    let e = h.refused(mkflash("c:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "a cycle");
    assert!(e.to_string().contains("cycle"), "{e}");
    let e = h.refused(mkflash("c:d d:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "d would be both in one command");
    h.ok(mkflash("d:a", Default::default()));
    assert_eq!(h.rel("b", "c").unwrap().chain, ["d", "a", "b", "c"]);
}

#[test]
fn twelve_targets_per_source_and_several_incremental() {
    let mut h = Harness::new(TS);
    h.mkvol("src", 1);
    for i in 0..14 {
        h.mkvol(&format!("t{i}"), 1);
    }
    h.ok(mkflash("src:t0", persist_record()));
    h.ok(mkflash("src:t1", persist_record()));
    assert!(h.rel("src", "t1").unwrap().recording, "a second incremental target");
    h.ok(rmflash("src:t1"));
    let e = h.refused(mkflash("src:t1 src:t2 src:t1", options("--nocp")));
    assert_eq!(e.code(), "invalid-pair", "{e}");
    let many: Vec<String> = (1..13).map(|i| format!("src:t{i}")).collect();
    assert_eq!(
        h.refused(mkflash(&many.join(" "), Default::default())).code(),
        "too-many-targets"
    );
    h.ok(mkflash(&many[..11].join(" "), options("--nocp")));
    let e = h.refused(mkflash("src:t13", options("--nocp")));
    assert_eq!(e.code(), "too-many-targets");
    assert_eq!(h.vol("src").source_of.len(), 12);
}

#[test]
fn two_record_pairs_of_one_source_in_one_command() {
    let mut h = three_volumes();
    h.ok(mkflash("a:b a:c", persist_record()));
    assert!(h.rel("a", "b").unwrap().recording && h.rel("a", "c").unwrap().recording);
}

#[test]
fn target_write_inhibit() {
    let mut h = established_a_b(options("--tgtinhibit --nocp"));
    let c = h.write_cmd("b", 0, &[1]);
    let e = h.refused(c);
    assert_eq!(e.code(), "target-write-inhibited");
    assert!(!h.state.writable(h.state.volume_id("b").unwrap()));
    h.write("a", 0, &[1]);
    h.ok(rmflash("a:b"));
    h.write("b", 0, &[1]);
}
