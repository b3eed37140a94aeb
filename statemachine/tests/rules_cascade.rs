//! Cascading FlashCopy: reads resolve down the cascade, every write keeps every point in time
//! that still depends on the old data, and what cannot be kept so is refused.

mod common;
use common::*;
use statemachine::*;

/// The image of a volume, one byte per track (the first byte of each).
fn image(h: &Harness, volume: &str, tracks: u64) -> Vec<u8> {
    (0..tracks).map(|t| h.byte_at(volume, t)).collect()
}

#[test]
fn reads_resolve_down_the_cascade_and_every_write_keeps_every_point_in_time() {
    let mut h = Harness::with_volumes(TS, &["a", "b", "c", "d"], 4);
    h.fill_tracks("a", 0..4, 1);
    h.ok(mkflash("a:b", options("--nocp")));
    h.ok(mkflash("b:c", options("--nocp")));
    assert_eq!(image(&h, "c", 4), [1, 1, 1, 1], "c reads a through b");

    h.fill("a", 0, 2); // b gets a's old track 0; c finds it there
    h.fill("b", 1, 3); // c gets b's image of track 1, which was a's
    let ts = h.track_size();
    h.write("b", 2 * ts + 1, &[5]); // b's track 2 comes home from a whole, 5 on top
    h.fill("c", 3, 7);
    assert_eq!(image(&h, "a", 4), [2, 1, 1, 1]);
    assert_eq!(image(&h, "b", 4), [1, 3, 1, 1]);
    assert_eq!(h.read("b", 2 * ts, 3), [1, 5, 1]);
    assert_eq!(image(&h, "c", 4), [1, 1, 1, 7]);
    assert_eq!(h.read("c", 2 * ts, 3), [1, 1, 1]);

    // Depth three; zeroing the whole first volume keeps every later point in time.
    h.ok(mkflash("c:d", options("--nocp")));
    assert_eq!(h.rel("c", "d").unwrap().chain, ["a", "b", "c", "d"]);
    h.fill("a", 3, 9);
    h.ok(zeroes("a", 0, 4 * ts));
    assert_eq!(image(&h, "a", 4), [0, 0, 0, 0]);
    assert_eq!(image(&h, "b", 4), [1, 3, 1, 1]);
    assert_eq!(image(&h, "c", 4), [1, 1, 1, 7]);
    assert_eq!(image(&h, "d", 4), [1, 1, 1, 7]);
    h.ok(zeroes("b", 0, 4 * ts));
    assert_eq!(image(&h, "c", 4), [1, 1, 1, 7]);
    assert_eq!(image(&h, "d", 4), [1, 1, 1, 7]);
    // Zeroing whole volumes brought every track in sync: those nocopy relationships ended.
    assert_eq!(h.rel("c", "d").unwrap().chain, ["c", "d"]);
    assert_eq!(h.state.digest(), h.state.recompute_digest(&h.tracks).unwrap());
}

#[test]
fn a_background_copy_in_a_cascade_copies_what_its_source_reads() {
    let mut h = Harness::with_volumes(TS, &["a", "b", "c"], 8);
    h.fill_tracks("a", [1, 5, 6], 4);
    h.ok(mkflash("a:b", options("--nocp --persist")));
    // b stores nothing: its image is a's, which the copy must not take for zeros.
    h.ok(mkflash("b:c", Default::default()));
    h.copy_all("b", "c");
    assert!(h.rel("b", "c").is_none(), "copied, and ended");
    h.fill_tracks("a", 0..8, 8);
    assert_eq!(image(&h, "c", 8), [0, 4, 0, 0, 0, 4, 4, 0]);
    assert_eq!(image(&h, "b", 8), [0, 4, 0, 0, 0, 4, 4, 0]);
}

#[test]
fn an_image_a_copy_still_reads_does_not_change_and_a_volume_has_one_source() {
    let mut h = Harness::with_volumes(TS, &["x", "a", "b", "c", "d"], 4);
    h.fill_tracks("a", 0..4, 1);
    h.ok(mkflash("a:b", persist_record()));
    h.ok(mkflash("b:c", options("--persist")));
    h.fill("a", 0, 2);
    for command in [
        resync("a:b"),
        reverse("a:b", true),
        rmflash("a:b"),
        Command::SetFlashRevertible {
            pairs: pairs("a:b"),
            seqnum: None,
        },
    ] {
        let summary = command.summary();
        let e = h.refused(command);
        assert_eq!(e.code(), "cascade-copy-running", "{summary}");
        assert!(e.to_string().contains("b:c"), "{e}");
    }
    let e = h.refused(mkflash("d:a", Default::default()));
    assert_eq!(e.code(), "cascade-copy-running", "{e}");
    assert!(e.to_string().contains("a:b"), "{e}");
    // Withdrawing after the copy, or letting the copy finish first, is fine.
    h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: true,
        seqnum: None,
    });
    h.ok(chflash("a:b", None));
    h.copy_all("b", "c");
    h.copy_all("a", "b");
    assert!(h.rel("a", "b").is_none(), "withdrawn once copied");
    assert_eq!(image(&h, "c", 4), [1, 1, 1, 1]);

    // Reversed, a source that is itself a target would have two sources.
    h.ok(mkflash("x:a", options("--nocp")));
    h.ok(mkflash("a:d", persist_record()));
    h.copy_all("a", "d");
    let e = h.refused(reverse("a:d", false));
    assert_eq!(e.code(), "cascade-not-allowed");
    assert!(e.to_string().contains("x:a"), "{e}");

    // A target of a revertible increment is no source: a revert would change it underneath.
    h.ok(rmflash("x:a"));
    h.ok(Command::SetFlashRevertible {
        pairs: pairs("a:d"),
        seqnum: None,
    });
    assert_eq!(
        h.refused(mkflash("d:x", Default::default())).code(),
        "relationship-revertible"
    );
}

#[test]
fn block_status_reports_what_each_volume_of_a_cascade_reads() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["a", "b", "c"], 64);
    h.fill_tracks("a", [1, 2, 3, 10, 40], 1);
    h.ok(mkflash("a:b", options("--nocp")));
    h.fill_tracks("b", [3, 20], 2);
    h.fill_tracks("a", [2], 3); // copy-on-write: b stores a's old track 2
    h.ok(mkflash("b:c", options("--nocp")));
    h.fill_tracks("c", [30], 4);
    h.fill_tracks("b", [10], 5); // copy-on-write: c stores b's image of 10 (a's)
    h.ok(zeroes("b", 40 * h.track_size(), h.track_size())); // c keeps a's track 40
    let ts = h.track_size();
    for volume in ["a", "b", "c"] {
        let id = h.state.volume_id(volume).unwrap();
        let expected: Vec<bool> = (0..64)
            .map(|t| {
                let from = h.state.resolve_read(id, t);
                h.tracks.block_sums(from, t).unwrap().is_some()
            })
            .collect();
        for budget in [1, 2, 3, 100] {
            let extents = h.state.allocation(&h.tracks, id, 0, 64 * ts, budget).unwrap();
            let mut at = 0u64;
            for e in &extents {
                for t in at / ts..(at + e.length) / ts {
                    assert_eq!(e.allocated, expected[t as usize], "{volume} track {t}, budget {budget}");
                }
                at += e.length;
            }
            assert!(at > 0, "never nothing");
            if budget == 100 {
                assert_eq!(at, 64 * ts, "{volume}: the whole volume");
            }
        }
    }
    let c = h.state.volume_id("c").unwrap();
    let allocated: Vec<u32> = (0..64)
        .filter(|t| h.tracks.block_sums(h.state.resolve_read(c, *t), *t).unwrap().is_some())
        .collect();
    assert_eq!(allocated, [1, 2, 3, 10, 20, 30, 40]);
}

/// y→a→b, both recording and copied.
fn recorded_cascade() -> Harness {
    let mut h = Harness::with_volumes(TS, &["y", "a", "b", "x"], 4);
    h.fill_tracks("y", 0..4, 1);
    h.ok(mkflash("y:a", persist_record()));
    h.copy_all("y", "a");
    h.ok(mkflash("a:b", persist_record()));
    h.copy_all("a", "b");
    h
}

#[test]
fn a_change_to_a_middle_volumes_image_is_recorded_for_its_own_refresh() {
    let mut h = recorded_cascade();
    h.fill("y", 0, 2);
    h.ok(resync("y:a"));
    assert_eq!(image(&h, "a", 4), [2, 1, 1, 1]);
    // a's refresh changed its track 0: b's refresh copies it.
    assert!(h.ok(resync("a:b")).contains(&Event::Resynced {
        source: "a".into(),
        target: "b".into(),
        tracks_to_copy: 1
    }));
    assert_eq!(image(&h, "b", 4), [2, 1, 1, 1]);

    // So does an increment, committed; a reverted one changes a back.
    h.copy_all("a", "b");
    h.fill("y", 1, 3);
    let set = Command::SetFlashRevertible {
        pairs: pairs("y:a"),
        seqnum: None,
    };
    h.ok(set.clone());
    h.ok(Command::RevertFlash {
        pairs: pairs("y:a"),
        seqnum: None,
    });
    h.ok(set);
    h.ok(Command::CommitFlash {
        pairs: pairs("y:a"),
        seqnum: None,
    });
    h.copy_all("y", "a");
    h.ok(resync("a:b"));
    assert_eq!(image(&h, "b", 4), [2, 3, 1, 1]);
    // A whole new image cannot be recorded as changes: establishing onto a is refused.
    h.copy_all("a", "b");
    h.ok(rmflash("y:a"));
    let e = h.refused(mkflash("x:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed");
    assert!(e.to_string().contains("a:b"), "{e}");
}

#[test]
fn pairs_of_one_command_never_chain() {
    let mut h = recorded_cascade();
    for command in [
        Command::SetFlashRevertible {
            pairs: pairs("y:a a:b"),
            seqnum: None,
        },
        Command::SetFlashRevertible {
            pairs: pairs("a:b y:a"),
            seqnum: None,
        },
        Command::ResyncFlash {
            pairs: pairs("a:b y:a"),
            nocp: false,
            tgtinhibit: false,
            seqnum: None,
        },
        Command::ReverseFlash {
            pairs: pairs("y:a a:b"),
            fast: true,
            seqnum: None,
        },
    ] {
        let summary = command.summary();
        assert_eq!(h.refused(command).code(), "cascade-not-allowed", "{summary}");
    }
    // New relationships that link through existing ones: a cycle b→c→d→a→b, seen only together.
    let mut h = Harness::with_volumes(TS, &["a", "b", "c", "d"], 4);
    h.ok(mkflash("a:b", options("--persist")));
    h.ok(mkflash("c:d", options("--persist")));
    h.copy_all("a", "b");
    h.copy_all("c", "d");
    let e = h.refused(mkflash("b:c d:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "{e}");
    h.ok(mkflash("b:c", Default::default()));
    assert_eq!(
        h.refused(mkflash("d:a", Default::default())).code(),
        "cascade-not-allowed"
    );
}

#[test]
fn a_middle_volume_left_incomplete_is_recorded_as_changed_unless_its_increment_is_revertible() {
    let mut h = Harness::with_volumes(TS, &["y", "a", "b"], 4);
    h.fill_tracks("y", 0..4, 1);
    h.ok(mkflash("y:a", options("--nocp")));
    h.ok(mkflash("a:b", persist_record()));
    h.copy_all("a", "b");
    // An empty increment holds a's image: the withdrawal that would change it waits.
    let set = Command::SetFlashRevertible {
        pairs: pairs("a:b"),
        seqnum: None,
    };
    h.ok(set);
    assert_eq!(h.refused(rmflash("y:a")).code(), "relationship-revertible");
    h.ok(Command::RevertFlash {
        pairs: pairs("a:b"),
        seqnum: None,
    });
    // a is left incomplete on all four tracks: b's refresh takes them again.
    h.ok(rmflash("y:a"));
    assert!(h.ok(resync("a:b")).contains(&Event::Resynced {
        source: "a".into(),
        target: "b".into(),
        tracks_to_copy: 4
    }));
}

#[test]
fn a_frozen_middle_volume_takes_no_new_point_in_time_and_a_cascade_has_a_depth() {
    let mut h = recorded_cascade();
    h.ok(rmflash("a:b"));
    h.ok(mkflash("a:b", options("--persist --record --freeze")));
    h.copy_all("a", "b"); // nothing reads a's image any more: only the freeze refuses
    assert_eq!(h.refused(resync("y:a")).code(), "target-frozen");
    let set = Command::SetFlashRevertible {
        pairs: pairs("y:a"),
        seqnum: None,
    };
    assert_eq!(h.refused(set).code(), "target-frozen");
    h.ok(unfreeze("a"));

    // Sixteen relationships in a row, not seventeen.
    let names: Vec<String> = (0..18).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    h.mkvols(&refs, 4);
    for i in 0..MAX_CASCADE_DEPTH {
        h.ok(mkflash(&format!("c{i}:c{}", i + 1), options("--nocp")));
    }
    let e = h.refused(mkflash("c16:c17", options("--nocp")));
    assert_eq!(e.code(), "cascade-not-allowed");
    assert!(e.to_string().contains("17 relationships deep"), "{e}");
}

#[test]
fn a_reverse_gives_no_volume_more_than_twelve_targets() {
    let mut h = Harness::with_volumes(TS, &["s", "t"], 1);
    h.ok(mkflash("s:t", persist_record()));
    h.copy_all("s", "t");
    for i in 0..12 {
        h.mkvol(&format!("u{i}"), 1);
        h.ok(mkflash(&format!("t:u{i}"), options("--persist")));
        h.copy_all("t", &format!("u{i}"));
    }
    assert_eq!(h.refused(reverse("s:t", false)).code(), "too-many-targets");
}
