//! Host writes: range and size limits, block-granular read-modify-write, zeroing a source,
//! journal summaries.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

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
    let mut h = Harness::with_volumes(TRACK_SIZE, &["v"], 4);
    h.write("v", 0, &vec![1; TRACK_SIZE as usize]);
    let write = |h: &mut Harness, offset: u64, length: usize| {
        let command = Command::Write(host_write("v", offset, WriteData::Bytes(vec![2; length].into()), 1));
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
fn writes_are_bounded() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["big"], 1 << 20);
    let too_big = Command::Write(host_write(
        "big",
        0,
        WriteData::Bytes(vec![1; MAX_WRITE_BYTES as usize + 1].into()),
        1,
    ));
    assert_eq!(h.refused(too_big).code(), "write-too-large");
    h.ok(Command::Write(host_write(
        "big",
        0,
        WriteData::Bytes(vec![1; MAX_WRITE_BYTES as usize].into()),
        2,
    )));
}

#[test]
fn zeroing_a_source_copies_shared_tracks_first_and_is_bounded() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["a", "b"], 2048);
    h.fill_tracks("a", [1, 5, 700], 3);
    h.ok(mkflash("a:b", options("--nocp --persist --record")));
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

/// The journal keeps writes as a length and checksum; only a replay may apply those.
#[test]
fn a_write_without_its_bytes_is_refused_outside_a_replay() {
    let mut h = Harness::with_volumes(TS, &["a"], 2);
    let summary = Command::Write(host_write("a", 0, WriteData::Summary { length: 16, xxh3: 1 }, 1));
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
