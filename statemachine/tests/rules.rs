//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code.

mod common;
use common::*;
use statemachine::*;

const TS: u32 = 16;

fn three_volumes() -> Harness {
    let mut h = Harness::new(TS);
    for name in ["a", "b", "c"] {
        h.mkvol(name, 4);
    }
    h
}

#[test]
fn volume_names_and_sizes_are_validated() {
    let mut h = Harness::new(TRACK_SIZE);
    for bad in ["", "has space", "slash/", &"x".repeat(65), ".", "..", "-rf", "-"] {
        let e = h.refused(Command::CreateVolume {
            name: bad.into(),
            size: 65536,
        });
        assert_eq!(e.code(), "invalid-volume-name", "{bad:?}");
    }
    for size in [0, 1000, 65536 + 1, MAX_VOLUME_SIZE + 65536] {
        let e = h.refused(Command::CreateVolume { name: "v".into(), size });
        assert_eq!(e.code(), "invalid-size", "{size}");
    }
    h.ok(Command::CreateVolume {
        name: "Ok.name_-1".into(),
        size: MAX_VOLUME_SIZE,
    });
    let e = h.refused(Command::CreateVolume {
        name: "Ok.name_-1".into(),
        size: 65536,
    });
    assert_eq!(e.code(), "volume-exists");
    assert!(e.to_string().contains("rmvol"));
}

#[test]
fn zeroing_whole_tracks_gives_their_space_back() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("v", 4);
    let ts = u64::from(TRACK_SIZE);
    h.write("v", 0, &vec![7; 3 * ts as usize]);
    assert_eq!(h.tracks.stored_tracks(), 3);
    // Zeroes over one whole track and half of the next (NBD WRITE_ZEROES and TRIM).
    h.ok(Command::Write(HostWrite {
        volume: "v".into(),
        opened: None,
        offset: 0,
        data: WriteData::Zeroes(ts + ts / 2),
        tag: 1,
    }));
    assert_eq!(
        h.tracks.stored_tracks(),
        2,
        "the whole zeroed track is no longer stored"
    );
    assert_eq!(h.read("v", 0, ts + ts / 2), vec![0; (ts + ts / 2) as usize]);
    assert_eq!(h.read("v", ts + ts / 2, ts / 2), vec![7; (ts / 2) as usize]);
}

#[test]
fn volumes_are_thin_and_read_zeros() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("big", 1 << 24); // 1 TiB
    assert_eq!(h.tracks.stored_tracks(), 0);
    assert_eq!(h.read("big", (1 << 40) - 10, 10), vec![0; 10]);
    // Nodes send writes of zeros as Zeroes: zeroing unwritten space stores nothing.
    h.ok(Command::Write(HostWrite {
        volume: "big".into(),
        opened: None,
        offset: 5,
        data: WriteData::Zeroes(3),
        tag: 1,
    }));
    assert_eq!(h.tracks.stored_tracks(), 0, "zeros are not stored");
    h.write("big", 5, &[1, 2, 3]);
    assert_eq!(h.tracks.stored_tracks(), 1);
    assert_eq!(h.read("big", 4, 5), vec![0, 1, 2, 3, 0]);
}

/// Which tracks are stored follows from the commands alone, never from the bytes, so a replay
/// of the journal (which keeps no write payloads) knows it exactly.
/// A `TrackReader` that counts the bytes of track data read through it.
struct Counting<'a> {
    tracks: &'a MemTracks,
    read: std::cell::Cell<usize>,
}

impl TrackReader for Counting<'_> {
    type Error = std::convert::Infallible;
    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
        self.tracks.block_sums(volume, track)
    }
    fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        self.read.set(self.read.get() + out.len());
        self.tracks.read_into(volume, track, within, out)
    }
    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        self.tracks.next_stored(volume, from)
    }
}

#[test]
fn a_small_write_stores_its_blocks_and_reads_no_more_than_the_blocks_it_covers_in_part() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("v", 4);
    h.write("v", 0, &vec![1; TRACK_SIZE as usize]);
    let write = |h: &mut Harness, offset: u64, length: usize| {
        let command = Command::Write(HostWrite {
            volume: "v".into(),
            opened: None,
            offset,
            data: WriteData::Bytes(vec![2; length]),
            tag: 1,
        });
        let counting = Counting {
            tracks: &h.tracks,
            read: Default::default(),
        };
        let applied = apply(&mut h.state, &counting, &command, Timestamp(h.now)).unwrap();
        let read = counting.read.get();
        h.tracks.execute(&applied.ops);
        (applied.ops, read)
    };
    // A 4 KiB write on a block boundary: one block stored, nothing read.
    let (ops, read) = write(&mut h, 8192, 4096);
    assert_eq!(read, 0);
    assert!(
        matches!(ops.as_slice(), [TrackOp::Write { within: 8192, data, .. }] if data.len() == 4096),
        "{ops:?}"
    );
    // 512 bytes inside a block: that one block is read and stored.
    let (ops, read) = write(&mut h, 100, 512);
    assert_eq!(read, 4096);
    assert!(
        matches!(ops.as_slice(), [TrackOp::Write { within: 0, data, .. }] if data.len() == 4096),
        "{ops:?}"
    );
    // 4 KiB across two blocks, both in part: two blocks read, two stored.
    let (ops, read) = write(&mut h, 4096 * 3 + 2048, 4096);
    assert_eq!(read, 8192);
    assert!(
        matches!(ops.as_slice(), [TrackOp::Write { within: 12288, data, .. }] if data.len() == 8192),
        "{ops:?}"
    );
    let mut expected = vec![1u8; TRACK_SIZE as usize];
    expected[8192..12288].fill(2);
    expected[100..612].fill(2);
    expected[14336..18432].fill(2);
    assert_eq!(h.read("v", 0, u64::from(TRACK_SIZE)), expected);
    assert_eq!(h.state.digest(), h.state.recompute_digest(&h.tracks).unwrap());
}

#[test]
fn stored_tracks_follow_the_commands_not_the_bytes() {
    let mut h = Harness::new(16);
    h.mkvol("a", 4);
    h.mkvol("b", 4);
    h.write("a", 0, &[0; 16]);
    assert_eq!(h.tracks.stored_tracks(), 1, "written data is stored, zeros too");
    h.write("a", 16, &[5; 4]);
    let zero_part = |offset, length| {
        Command::Write(HostWrite {
            volume: "a".into(),
            opened: None,
            offset,
            data: WriteData::Zeroes(length),
            tag: 9,
        })
    };
    h.ok(zero_part(16, 4));
    assert_eq!(
        h.tracks.stored_tracks(),
        2,
        "zeroing part of a stored track keeps it stored"
    );
    h.ok(zero_part(40, 4));
    assert_eq!(
        h.tracks.stored_tracks(),
        2,
        "zeroing part of an unstored track stores nothing"
    );
    h.fill("b", 3, 7);
    h.ok(mkflash("a:b", Default::default()));
    h.copy_all("a", "b");
    assert_eq!(h.byte_at("b", 3), 0);
    let (a, b) = (h.state.volume_id("a").unwrap(), h.state.volume_id("b").unwrap());
    assert_eq!(
        h.tracks.stored().collect::<Vec<_>>(),
        vec![(a, 0), (a, 1), (b, 0), (b, 1)],
        "b's tracks 0 and 1 are stored like a's; its track 3 was copied from nothing and dropped"
    );
    assert_eq!(h.state.digest(), h.state.recompute_digest(&h.tracks).unwrap());
}

#[test]
fn writes_must_fit_the_volume() {
    let mut h = three_volumes();
    let c = h.write_cmd("a", 4 * 16 - 1, &[1, 2]);
    assert_eq!(h.refused(c).code(), "out-of-range");
    let c = h.write_cmd("a", u64::MAX, &[1]);
    assert_eq!(h.refused(c).code(), "out-of-range");
    let c = h.write_cmd("nope", 0, &[1]);
    assert_eq!(h.refused(c).code(), "volume-not-found");
    // A write across a track boundary is read-modify-write of both tracks.
    h.write("a", 14, &[7, 7, 7, 7]);
    assert_eq!(h.read("a", 12, 8), vec![0, 0, 7, 7, 7, 7, 0, 0]);
}

#[test]
fn a_volume_in_a_relationship_cannot_be_deleted() {
    let mut h = three_volumes();
    h.ok(mkflash("a:b", EstablishOptions::default()));
    for name in ["a", "b"] {
        let e = h.refused(Command::DeleteVolume { name: name.into() });
        assert_eq!(e.code(), "volume-in-use");
        assert!(e.to_string().contains("a:b"), "{e}");
    }
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "zz".into() }).code(),
        "volume-not-found"
    );
    h.fill("c", 0, 9);
    h.ok(Command::DeleteVolume { name: "c".into() });
    assert_eq!(h.tracks.stored_tracks(), 0, "the deleted volume's tracks are dropped");
    h.mkvol("c", 4);
    assert_eq!(h.byte_at("c", 0), 0, "a new volume with an old name starts empty");
}

#[test]
fn point_in_time_copy_on_write_and_target_reads() {
    let mut h = three_volumes();
    for t in 0..4 {
        h.fill("a", t, 10 + t as u8);
    }
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
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
fn background_copy_completes_and_ends_a_non_persistent_relationship() {
    let mut h = three_volumes();
    h.fill("a", 3, 3);
    for t in 0..3 {
        h.fill("a", t, 1);
    }
    h.ok(mkflash("a:b", EstablishOptions::default()));
    let events = h.ok(Command::CopyStep {
        source: "a".into(),
        target: "b".into(),
        max_tracks: 3,
    });
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
fn a_persistent_relationship_stays_and_guards_its_target() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
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
    let mut h = Harness::new(TS);
    h.mkvol("a", 2);
    h.mkvol("b", 2);
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
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
    let e = h.refused(mkflash(
        "a:b",
        EstablishOptions {
            record: true,
            ..Default::default()
        },
    ));
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
fn no_cascading() {
    let mut h = three_volumes();
    h.mkvol("d", 4);
    h.ok(mkflash("a:b", Default::default()));
    let e = h.refused(mkflash("b:c", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "a target cannot be a source");
    let e = h.refused(mkflash("c:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "a source cannot be a target");
    let e = h.refused(mkflash("c:d d:a", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed");
    let e = h.refused(mkflash("c:d d:b", Default::default()));
    assert_eq!(e.code(), "cascade-not-allowed", "d would be both");
}

#[test]
fn twelve_targets_per_source_and_one_incremental() {
    let mut h = Harness::new(TS);
    h.mkvol("src", 1);
    for i in 0..14 {
        h.mkvol(&format!("t{i}"), 1);
    }
    h.ok(mkflash("src:t0", persist_record()));
    let e = h.refused(mkflash("src:t1", persist_record()));
    assert_eq!(e.code(), "incremental-exists");
    assert!(e.to_string().contains("src:t0"));
    let e = h.refused(mkflash(
        "src:t1 src:t2 src:t1",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    assert_ne!(e.code(), "incremental-exists", "only the --record pairs count: {e}");
    let many: Vec<String> = (1..13).map(|i| format!("src:t{i}")).collect();
    assert_eq!(
        h.refused(mkflash(&many.join(" "), Default::default())).code(),
        "too-many-targets"
    );
    h.ok(mkflash(
        &many[..11].join(" "),
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    let e = h.refused(mkflash(
        "src:t13",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    assert_eq!(e.code(), "too-many-targets");
    assert_eq!(h.vol("src").source_of.len(), 12);
}

#[test]
fn two_record_pairs_of_one_source_in_one_command() {
    let mut h = three_volumes();
    assert_eq!(
        h.refused(mkflash("a:b a:c", persist_record())).code(),
        "incremental-exists"
    );
}

#[test]
fn target_write_inhibit() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            tgtinhibit: true,
            nocp: true,
            ..Default::default()
        },
    ));
    let c = h.write_cmd("b", 0, &[1]);
    let e = h.refused(c);
    assert_eq!(e.code(), "target-write-inhibited");
    assert!(!h.state.writable(h.state.volume_id("b").unwrap()));
    h.write("a", 0, &[1]);
    h.ok(rmflash("a:b"));
    h.write("b", 0, &[1]);
}

#[test]
fn rmflash_rules_and_incomplete_targets() {
    let mut h = three_volumes();
    assert_eq!(h.refused(rmflash("a:b")).code(), "relationship-not-found");
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            seqnum: 7,
            ..Default::default()
        },
    ));
    assert_eq!(h.refused(rmflash("c:b")).code(), "relationship-not-found");
    let e = h.refused(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: false,
        seqnum: Some(8),
    });
    assert_eq!(e.code(), "seqnum-mismatch");
    let events = h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: false,
        seqnum: Some(7),
    });
    assert!(events.contains(&Event::Withdrawn {
        source: "a".into(),
        target: "b".into(),
        incomplete: true,
        automatic: false
    }));
    assert_eq!(h.vol("b").state, VolumeState::Incomplete);
    h.ok(mkflash("c:b", Default::default()));
    assert_eq!(
        h.vol("b").state,
        VolumeState::Normal,
        "incomplete clears with a new relationship"
    );
}

#[test]
fn rmflash_cp_finishes_the_copy_then_withdraws() {
    let mut h = three_volumes();
    h.fill("a", 2, 4);
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            persist: true,
            ..Default::default()
        },
    ));
    h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: true,
        seqnum: None,
    });
    let rel = h.rel("a", "b").unwrap();
    assert_eq!(rel.state, RelationshipState::Completing);
    assert!(rel.background_copy);
    assert_eq!(h.refused(resync("a:b")).code(), "not-recording");
    let events = h.copy_all("a", "b");
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Withdrawn {
            incomplete: false,
            automatic: true,
            ..
        }
    )));
    assert!(h.rel("a", "b").is_none());
    assert_eq!(h.byte_at("b", 2), 4);
    assert_eq!(h.vol("b").state, VolumeState::Normal);
}

#[test]
fn resync_copies_only_what_changed() {
    let mut h = Harness::new(TS);
    h.mkvol("a", 8);
    h.mkvol("b", 8);
    for t in 0..8 {
        h.fill("a", t, t as u8 + 1);
    }
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
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
    let e = h.refused(Command::ResyncFlash {
        pairs: pairs("c:b"),
        nocp: false,
        tgtinhibit: false,
        seqnum: None,
    });
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
    let mut h = Harness::new(TS);
    h.mkvol("prod", 4);
    h.mkvol("backup", 4);
    for t in 0..4 {
        h.fill("prod", t, 1);
    }
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
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
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
    for t in 0..4 {
        h.fill("a", t, 1);
    }
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
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
fn freeze_holds_writes_until_thaw_and_releases_them_in_order() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            nocp: true,
            ..Default::default()
        },
    ));
    assert!(h.rel("a", "b").unwrap().frozen);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    let c = h.write_cmd("a", 0, &[1]);
    let Command::Write(first) = &c else { unreachable!() };
    let tag = first.tag;
    let events = h.ok(c);
    assert!(matches!(events[..], [Event::WriteHeld { .. }]));
    assert!(h.state.is_held("a", tag));
    h.write("a", 0, &[2]);
    assert_eq!(
        h.read("a", 0, 1),
        vec![0],
        "held writes are not visible, reads are not held"
    );
    assert_eq!(h.refused(mkflash("a:c", Default::default())).code(), "source-frozen");
    let events = h.ok(Command::UnfreezeFlash {
        sources: vec!["a".into()],
    });
    assert!(events.contains(&Event::Thawed {
        volume: "a".into(),
        automatic: false,
        released_writes: 2
    }));
    assert_eq!(h.read("a", 0, 1), vec![2], "released in order");
    assert_eq!(h.byte_at("b", 0), 0, "the point in time is before the held writes");
    assert!(!h.state.is_held("a", tag));
    assert_eq!(
        h.refused(Command::UnfreezeFlash {
            sources: vec!["a".into()]
        })
        .code(),
        "not-frozen"
    );
}

#[test]
fn freeze_thaws_automatically_after_120_seconds() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            ..Default::default()
        },
    ));
    let until = h.state.next_thaw().unwrap();
    assert_eq!(until.0, h.now + FREEZE_TIMEOUT_MILLIS);
    h.write("a", 0, &[3]);
    h.ok(Command::Tick);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    h.now = until.0 - 1000; // the next command is stamped exactly at the deadline
    let events = h.ok(Command::Tick);
    assert!(events.contains(&Event::Thawed {
        volume: "a".into(),
        automatic: true,
        released_writes: 1
    }));
    assert_eq!(h.read("a", 0, 1), vec![3]);
    assert_eq!(h.state.next_thaw(), None);
}

#[test]
fn the_state_clock_never_goes_back_and_does_not_drift_with_alternating_leaders() {
    let mut h = three_volumes();
    let start = h.state.globals().last_time.0;
    // Two leaders whose clocks are 10 s apart take turns; the state's clock follows the later
    // one but does not gain 10 s per turn.
    for round in 0..10 {
        h.term += 1;
        h.now += 10_000 * u64::from(round % 2 == 0);
        h.ok(Command::Tick);
        h.now -= 10_000 * u64::from(round % 2 == 0);
    }
    let elapsed = h.state.globals().last_time.0 - start;
    assert!(elapsed <= 10 * 1000 + 10_000, "the clock gained {elapsed} ms in 10 s");
    // Within one term, stamps that reach the log out of order move nothing.
    let (before, latest) = (h.state.globals().last_time, h.now);
    h.now = latest - 5000;
    h.ok(Command::Tick);
    assert_eq!(h.state.globals().last_time, before, "a late stamp moved the clock");
    h.now = latest - 1000;
    h.ok(Command::Tick);
    assert_eq!(
        h.state.globals().last_time,
        before,
        "reaching the latest stamp again moved it"
    );
    h.ok(Command::Tick);
    assert_eq!(h.state.globals().last_time.0, before.0 + 1000);
}

#[test]
fn a_long_freeze_queue_is_released_in_bounded_batches_and_nothing_overtakes_it() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            nocp: true,
            ..Default::default()
        },
    ));
    let held = THAW_BATCH * 2 + 10;
    let writes = (0..held)
        .map(|i| match h.write_cmd("a", 0, &[(i % 250) as u8 + 1]) {
            Command::Write(w) => w,
            _ => unreachable!(),
        })
        .collect();
    h.ok(Command::WriteBatch(writes));
    let events = h.ok(Command::UnfreezeFlash {
        sources: vec!["a".into()],
    });
    let written = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Written { .. })).count();
    assert_eq!(written(&events), THAW_BATCH, "one bounded batch per entry");
    assert!(h.state.releasing_held_writes());
    // A write after the thaw queues behind the ones still held (its entry releases the next
    // batch first).
    let events = h.write("a", 0, &[255]);
    assert_eq!(written(&events), THAW_BATCH);
    assert!(matches!(events.last(), Some(Event::WriteHeld { .. })), "{events:?}");
    let mut ticks = 0;
    while h.state.releasing_held_writes() {
        let events = h.ok(Command::Tick);
        assert!(written(&events) <= THAW_BATCH);
        ticks += 1;
    }
    assert_eq!(ticks, 1);
    assert_eq!(
        h.read("a", 0, 1),
        vec![255],
        "released in arrival order, the late write last"
    );
    // Then writes go straight through again.
    assert!(matches!(h.write("a", 0, &[7])[..], [Event::Written { .. }]));
}

#[test]
fn a_leader_clock_that_ran_ahead_does_not_delay_a_later_automatic_thaw() {
    let mut h = three_volumes();
    // One leader stamps an entry an hour ahead; the next leader's clock is right again.
    let right = h.now;
    h.term += 1;
    h.now = right + 3_600_000;
    h.ok(Command::Tick);
    h.term += 1;
    h.now = right;
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            ..Default::default()
        },
    ));
    // The state's clock never went back, and it moves on with the right clocks.
    assert!(h.state.globals().last_time.0 > right + 3_600_000);
    let frozen_at = h.now;
    h.write("a", 0, &[3]);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    // 120 s of right clocks later the thaw is due on the state's clock, and a tick fires it.
    assert!(h.state.next_thaw().unwrap() <= h.state.clock_at(Timestamp(frozen_at + FREEZE_TIMEOUT_MILLIS)));
    h.now = frozen_at + FREEZE_TIMEOUT_MILLIS - 1000;
    let events = h.ok(Command::Tick);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Thawed { automatic: true, .. })),
        "{events:?}"
    );
    assert_eq!(h.read("a", 0, 1), vec![3]);
}

#[test]
fn a_frozen_volume_cannot_be_deleted() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            ..Default::default()
        },
    ));
    h.ok(rmflash("a:b"));
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "a".into() }).code(),
        "volume-frozen"
    );
}

#[test]
fn copy_steps_need_background_copy() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    let e = h.refused(Command::CopyStep {
        source: "a".into(),
        target: "b".into(),
        max_tracks: 1,
    });
    assert_eq!(e.code(), "background-copy-off");
    let e = h.refused(Command::CopyStep {
        source: "c".into(),
        target: "b".into(),
        max_tracks: 1,
    });
    assert_eq!(e.code(), "relationship-not-found");
}

#[test]
fn establish_and_write_cost_do_not_grow_with_volume_size() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("s", 1 << 28); // 16 TiB
    h.mkvol("t", 1 << 28);
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
    let events = h.ok(Command::CopyStep {
        source: "s".into(),
        target: "t".into(),
        max_tracks: 4,
    });
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
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("s", 1 << 28); // 16 TiB, written in three places
    h.mkvol("t", 1 << 28);
    for track in [7u64, 1 << 24, (1 << 28) - 1] {
        h.fill("s", track, 5);
    }
    h.fill("t", 99, 9); // old data on the target must be replaced by the source's zeros
    h.ok(mkflash(
        "s:t",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
    let mut steps = 0;
    let mut data = 0;
    while h.rel("s", "t").unwrap().out_of_sync_tracks > 0 {
        let applied = h.run(Command::CopyStep {
            source: "s".into(),
            target: "t".into(),
            max_tracks: 64,
        });
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
fn every_error_code_is_distinct_kebab_case() {
    let mut h = three_volumes();
    let mut codes = std::collections::BTreeSet::new();
    for c in [
        h.refused(Command::CreateVolume {
            name: "".into(),
            size: 1,
        }),
        h.refused(Command::DeleteVolume { name: "x".into() }),
        h.refused(rmflash("a:b")),
    ] {
        assert!(c.code().chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'));
        codes.insert(c.code());
    }
    assert_eq!(codes.len(), 3);
}

#[test]
fn a_frozen_volume_cannot_become_a_target_nor_a_frozen_source_be_restored() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            nocp: true,
            persist: true,
            record: true,
            ..Default::default()
        },
    ));
    h.write("a", 0, &[1]);
    assert_eq!(h.refused(reverse("a:b", true)).code(), "source-frozen");
    h.ok(rmflash("a:b"));
    assert_eq!(h.refused(mkflash("c:a", Default::default())).code(), "target-frozen");
    h.ok(Command::UnfreezeFlash {
        sources: vec!["a".into()],
    });
    h.ok(mkflash("c:a", Default::default()));
}

#[test]
fn writes_are_bounded() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("big", 1 << 20);
    let too_big = Command::Write(HostWrite {
        volume: "big".into(),
        opened: None,
        offset: 0,
        data: WriteData::Bytes(vec![1; MAX_WRITE_BYTES as usize + 1]),
        tag: 1,
    });
    assert_eq!(h.refused(too_big).code(), "write-too-large");
    h.ok(Command::Write(HostWrite {
        volume: "big".into(),
        opened: None,
        offset: 0,
        data: WriteData::Bytes(vec![1; MAX_WRITE_BYTES as usize]),
        tag: 2,
    }));
}

fn zeroes(volume: &str, offset: u64, length: u64) -> Command {
    Command::Write(HostWrite {
        volume: volume.into(),
        opened: None,
        offset,
        data: WriteData::Zeroes(length),
        tag: 77,
    })
}

#[test]
fn zeroing_a_whole_thin_volume_is_one_command_costing_what_it_stores() {
    let mut h = Harness::new(TRACK_SIZE);
    let tracks = (1u64 << 40) / h.track_size();
    h.mkvol("big", tracks);
    for track in [0, 12_345, tracks - 1] {
        h.fill("big", track, 7);
    }
    // Part of a track: the zeroing keeps the rest of it.
    h.write("big", 3 * h.track_size() + 100, &[9; 10]);
    let applied = h.run(zeroes("big", 0, 1 << 40));
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert_eq!(
        applied.ops.len(),
        4,
        "one operation per stored track, none per track of the range"
    );
    for track in [0, 3, 12_345, tracks - 1] {
        assert_eq!(
            h.read("big", track * h.track_size(), h.track_size()),
            vec![0; TRACK_SIZE as usize]
        );
    }
    assert_eq!(h.state.recompute_digest(&h.tracks).unwrap(), h.state.digest());
    let extents = h
        .state
        .allocation(&h.tracks, h.state.volume_id("big").unwrap(), 0, 1 << 40, 1000)
        .unwrap();
    assert_eq!(
        extents,
        vec![Extent {
            length: 1 << 40,
            allocated: false
        }]
    );
}

#[test]
fn zeroing_a_source_copies_shared_tracks_first_and_is_bounded() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("a", 2048);
    h.mkvol("b", 2048);
    for track in [1, 5, 700] {
        h.fill("a", track, 3);
    }
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            nocp: true,
            persist: true,
            record: true,
            ..Default::default()
        },
    ));
    let all = 2048 * h.track_size();
    assert_eq!(h.refused(zeroes("a", 0, all)).code(), "zeroing-too-large");
    // Whole tracks 0..511 and most of track 511: tracks 1 and 5 go to the target first.
    h.ok(zeroes("a", 0, MAX_WRITE_BYTES - 1000));
    for track in [1, 5] {
        assert_eq!(h.byte_at("a", track), 0);
        assert_eq!(h.byte_at("b", track), 3, "the target keeps its point in time");
    }
    assert_eq!(h.byte_at("b", 700), 3);
    assert_eq!(h.state.recompute_digest(&h.tracks).unwrap(), h.state.digest());
    // Every zeroed track is a change the next refresh copies.
    let rel = h.rel("a", "b").unwrap();
    assert_eq!(rel.out_of_sync_tracks, 2048 - 512);
}

#[test]
fn a_write_to_a_volume_deleted_and_created_again_is_refused() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("x", 4);
    let old = h.state.volume_id("x").unwrap();
    h.ok(Command::DeleteVolume { name: "x".into() });
    h.mkvol("x", 4);
    let write = Command::Write(HostWrite {
        volume: "x".into(),
        opened: Some(old),
        offset: 0,
        data: WriteData::Bytes(vec![1; 512]),
        tag: 9,
    });
    assert_eq!(h.refused(write).code(), "volume-replaced");
    assert_eq!(
        h.state.check_range("x", Some(old), 0, 512).unwrap_err().code(),
        "volume-replaced"
    );
    let new = h.state.volume_id("x").unwrap();
    assert_eq!(h.state.check_range("x", Some(new), 0, 512), Ok(new));
}

#[test]
fn hosts_see_only_their_mapped_volumes_and_a_mapped_volume_cannot_be_deleted() {
    let mut h = three_volumes();
    let (a, b) = (h.state.volume_id("a").unwrap(), h.state.volume_id("b").unwrap());
    let alice = HostIdentity::Psk("alice".into());
    let bob = HostIdentity::CertCn("bob.example".into());
    // No hosts: the data path is open to everyone.
    assert_eq!(h.state.access(None, a), Some(Access::ReadWrite));
    h.ok(Command::CreateHost {
        name: "h1".into(),
        identity: alice.clone(),
    });
    h.ok(Command::CreateHost {
        name: "h2".into(),
        identity: bob.clone(),
    });
    let same_identity = Command::CreateHost {
        name: "h3".into(),
        identity: alice.clone(),
    };
    assert_eq!(h.refused(same_identity).code(), "identity-in-use");
    let bad = Command::CreateHost {
        name: "h4".into(),
        identity: HostIdentity::Psk("a:b".into()),
    };
    assert_eq!(h.refused(bad).code(), "invalid-option");
    // Hosts exist: nobody sees anything unmapped, and an unknown identity sees nothing.
    assert_eq!(h.state.access(None, a), None);
    assert_eq!(h.state.access(Some(&alice), a), None);
    h.ok(Command::MapVolume {
        volume: "a".into(),
        host: "h1".into(),
        read_only: false,
    });
    h.ok(Command::MapVolume {
        volume: "b".into(),
        host: "h1".into(),
        read_only: true,
    });
    assert_eq!(h.state.access(Some(&alice), a), Some(Access::ReadWrite));
    assert_eq!(h.state.access(Some(&alice), b), Some(Access::ReadOnly));
    assert_eq!(h.state.access(Some(&bob), a), None);
    assert_eq!(h.state.access(Some(&HostIdentity::Psk("mallory".into())), a), None);
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "a".into() }).code(),
        "volume-mapped"
    );
    assert_eq!(
        h.refused(Command::DeleteHost { name: "h1".into() }).code(),
        "host-has-volumes"
    );
    let infos = h.state.host_infos();
    assert_eq!(infos[0].volumes.get("b"), Some(&Access::ReadOnly));
    let unmap_missing = Command::UnmapVolume {
        volume: "c".into(),
        host: "h1".into(),
    };
    assert_eq!(h.refused(unmap_missing).code(), "not-mapped");
    // The digest covers hosts: a replica that missed a mapping differs.
    let before = h.state.digest();
    h.ok(Command::UnmapVolume {
        volume: "a".into(),
        host: "h1".into(),
    });
    assert_ne!(h.state.digest(), before);
    assert_eq!(h.state.recompute_digest(&h.tracks).unwrap(), h.state.digest());
    assert_eq!(h.state.access(Some(&alice), a), None);
    h.ok(Command::UnmapVolume {
        volume: "b".into(),
        host: "h1".into(),
    });
    h.ok(Command::DeleteHost { name: "h1".into() });
    h.ok(Command::DeleteVolume { name: "a".into() });
    // The journal keeps host commands; a replay rebuilds them (metadata digest compares them).
    let summary = Command::MapVolume {
        volume: "b".into(),
        host: "h2".into(),
        read_only: true,
    }
    .summary();
    assert_eq!(summary, "mapvol b h2 --read-only");
}

#[test]
fn allocation_reports_stored_tracks_and_a_targets_shared_tracks_as_the_sources() {
    let mut h = Harness::new(TRACK_SIZE);
    h.mkvol("s", 64);
    h.mkvol("t", 64);
    h.fill("s", 2, 1);
    h.fill("s", 3, 1);
    h.fill("s", 10, 1);
    h.ok(mkflash(
        "s:t",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    h.fill("t", 20, 5);
    let ts = h.track_size();
    let t = h.state.volume_id("t").unwrap();
    let alloc = |h: &Harness, offset, length, budget| h.state.allocation(&h.tracks, t, offset, length, budget).unwrap();
    let e = |length: u64, allocated| Extent { length, allocated };
    assert_eq!(
        alloc(&h, 0, 64 * ts, 100),
        vec![
            e(2 * ts, false),
            e(2 * ts, true),
            e(6 * ts, false),
            e(ts, true),
            e(9 * ts, false),
            e(ts, true),
            e(43 * ts, false)
        ]
    );
    // Clipped to the range asked, inside tracks too.
    assert_eq!(alloc(&h, 2 * ts + 100, ts, 100), vec![e(ts, true)]);
    assert_eq!(alloc(&h, 100, 2 * ts, 100), vec![e(2 * ts - 100, false), e(100, true)]);
    // A small budget answers a prefix, never nothing.
    let prefix = alloc(&h, 0, 64 * ts, 1);
    assert_eq!(prefix, vec![e(2 * ts, false), e(ts, true)]);

    // A target that held data before its establish stores tracks it shares: they are holes
    // here (the source stores nothing), and looking at them counts against the budget.
    h.mkvol("s2", 64);
    h.mkvol("t2", 64);
    for track in 0..10 {
        h.fill("t2", track, 9);
    }
    h.ok(mkflash(
        "s2:t2",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    let t2 = h.state.volume_id("t2").unwrap();
    let whole = h.state.allocation(&h.tracks, t2, 0, 64 * ts, 100).unwrap();
    assert_eq!(whole, vec![e(64 * ts, false)]);
    let partial = h.state.allocation(&h.tracks, t2, 0, 64 * ts, 3).unwrap();
    assert_eq!(partial.len(), 1);
    assert!(
        !partial[0].allocated && partial[0].length >= ts && partial[0].length <= 4 * ts,
        "{partial:?}"
    );
}

#[test]
fn time_never_runs_backwards() {
    let mut h = three_volumes();
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
    let first = h.rel("a", "b").unwrap().created_at;
    h.now -= 3_600_000; // a new leader whose clock is an hour behind
    h.ok(mkflash(
        "a:c",
        EstablishOptions {
            persist: true,
            ..Default::default()
        },
    ));
    assert!(h.rel("a", "c").unwrap().created_at >= first);
}

#[test]
fn a_copy_step_stays_bounded_when_written_and_unwritten_tracks_alternate() {
    let mut h = Harness::new(TS);
    h.mkvol("s", 8192);
    h.mkvol("t", 8192);
    h.ok(mkflash("s:t", EstablishOptions::default()));
    for track in (0..8192u64).step_by(2) {
        h.fill("s", track, 3); // copy-on-write clears the even bits; odd ones stay, one apart
    }
    let events = h.ok(Command::CopyStep {
        source: "s".into(),
        target: "t".into(),
        max_tracks: 64,
    });
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

/// The journal keeps writes as a length and checksum; only a replay may apply those.
#[test]
fn a_write_without_its_bytes_is_refused_outside_a_replay() {
    let mut h = Harness::new(16);
    h.mkvol("a", 2);
    let summary = Command::Write(HostWrite {
        volume: "a".into(),
        opened: None,
        offset: 0,
        data: WriteData::Summary { length: 16, xxh3: 1 },
        tag: 1,
    });
    assert_eq!(h.refused(summary.clone()).code(), "write-without-data");
    let mut replay = Replay::with_track_size(16);
    let created = replay.apply(
        &Command::CreateVolume {
            name: "a".into(),
            size: 32,
        },
        Timestamp(1),
    );
    assert!(created.result.is_ok());
    assert!(replay.apply(&summary, Timestamp(2)).result.is_ok());
    assert_eq!(
        replay.stored_tracks().count(),
        1,
        "the replay knows the track is stored"
    );
}

#[test]
fn a_long_zeroing_held_by_a_freeze_is_refused_at_the_thaw_if_the_volume_became_a_source() {
    let mut h = Harness::new(TRACK_SIZE);
    for v in ["a", "b", "c"] {
        h.mkvol(v, 1024);
    }
    h.fill("a", 20, 5);
    h.ok(mkflash(
        "a:b",
        EstablishOptions {
            freeze: true,
            ..Default::default()
        },
    ));
    // More writes held than the thaw and the next entries release: a stays draining.
    // Each entry after the thaw releases one batch first: enough for four entries and a bit.
    let writes = (0..4 * THAW_BATCH as u64 + 10)
        .map(|i| HostWrite {
            volume: "a".into(),
            opened: None,
            offset: (100 + i) * 512,
            data: WriteData::Bytes(vec![1; 512]),
            tag: 1000 + i,
        })
        .collect();
    h.ok(Command::WriteBatch(writes));
    h.ok(Command::UnfreezeFlash {
        sources: vec!["a".into()],
    });
    // Withdrawn while draining: a is no longer a source, so a long zeroing is taken, and
    // queued behind the held writes.
    h.ok(Command::RmFlash {
        pairs: vec![Pair::new("a", "b")],
        cp: false,
        seqnum: None,
    });
    let events = h.ok(zeroes("a", 0, 1024 * h.track_size()));
    assert!(
        matches!(events.last(), Some(Event::WriteHeld { .. })),
        "the zeroing is held"
    );
    // Still draining, a becomes a source of c: released now, the zeroing would copy every
    // stored track of the range to c in one entry. It is refused instead.
    h.ok(mkflash(
        "a:c",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    let events = [h.ok(Command::Tick), h.ok(Command::Tick)].concat();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::HeldWriteRefused {
                error: CommandError::ZeroingTooLarge { .. },
                ..
            }
        )),
        "the zeroing is refused when released"
    );
    assert_eq!(h.byte_at("a", 20), 5, "the refused zeroing changed nothing");
    assert_eq!(h.byte_at("c", 20), 5);
}
