//! Thin provisioning: which tracks are stored, zeroing gives space back, what allocation
//! reports.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn zeroing_whole_tracks_gives_their_space_back() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["v"], 4);
    let ts = u64::from(TRACK_SIZE);
    h.write("v", 0, &vec![7; 3 * ts as usize]);
    assert_eq!(h.tracks.stored_tracks(), 3);
    // Zeroes over one whole track and half of the next (NBD WRITE_ZEROES and TRIM).
    h.ok(zeroes_tagged("v", 0, ts + ts / 2, 1));
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
    let mut h = Harness::with_volumes(TRACK_SIZE, &["big"], 1 << 24); // 1 TiB
    assert_eq!(h.tracks.stored_tracks(), 0);
    assert_eq!(h.read("big", (1 << 40) - 10, 10), vec![0; 10]);
    // Nodes send writes of zeros as Zeroes: zeroing unwritten space stores nothing.
    h.ok(zeroes_tagged("big", 5, 3, 1));
    assert_eq!(h.tracks.stored_tracks(), 0, "zeros are not stored");
    h.write("big", 5, &[1, 2, 3]);
    assert_eq!(h.tracks.stored_tracks(), 1);
    assert_eq!(h.read("big", 4, 5), vec![0, 1, 2, 3, 0]);
}

/// Which tracks are stored follows from the commands alone, never from the bytes, so a replay
/// of the journal (which keeps no write payloads) knows it exactly.
#[test]
fn stored_tracks_follow_the_commands_not_the_bytes() {
    let mut h = Harness::with_volumes(TS, &["a", "b"], 4);
    h.write("a", 0, &[0; 16]);
    assert_eq!(h.tracks.stored_tracks(), 1, "written data is stored, zeros too");
    h.write("a", 16, &[5; 4]);
    h.ok(zeroes_tagged("a", 16, 4, 9));
    assert_eq!(
        h.tracks.stored_tracks(),
        2,
        "zeroing part of a stored track keeps it stored"
    );
    h.ok(zeroes_tagged("a", 40, 4, 9));
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
fn zeroing_a_whole_thin_volume_is_one_command_costing_what_it_stores() {
    let mut h = Harness::new(TRACK_SIZE);
    let tracks = (1u64 << 40) / h.track_size();
    h.mkvol("big", tracks);
    h.fill_tracks("big", [0, 12_345, tracks - 1], 7);
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
fn allocation_reports_stored_tracks_and_a_targets_shared_tracks_as_the_sources() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["s", "t"], 64);
    h.fill_tracks("s", [2, 3, 10], 1);
    h.ok(mkflash("s:t", options("--nocp")));
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
    h.mkvols(&["s2", "t2"], 64);
    h.fill_tracks("t2", 0..10, 9);
    h.ok(mkflash("s2:t2", options("--nocp")));
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
