//! Metro Mirror rules, with two state machines standing for two sites and this test carrying
//! what the node's driver would: the tap's writes, copy steps' tracks, confirmations.

mod common;

use common::*;
use statemachine::*;

const GEN: u64 = 1000;

struct Sites {
    a: Harness,
    b: Harness,
    /// The tapped writes of `a`'s primary `p` not yet sent.
    queue: Vec<Mirrored>,
}

impl Sites {
    /// `p` at site a mirrored to `s` at site b, four tracks each, `p` holding two stored tracks.
    fn new() -> Sites {
        let mut a = Harness::with_volumes(TS, &["p"], 4);
        let mut b = Harness::with_volumes(TS, &["s"], 4);
        a.fill("p", 0, 1);
        a.fill("p", 2, 2);
        b.fill("s", 3, 9); // the secondary's old content is discarded
        a.ok(Command::NameCluster { id: "site-a".into() });
        b.ok(Command::NameCluster { id: "site-b".into() });
        a.ok(Command::MkPprcPath(PprcPath {
            remote_cluster: "site-b".into(),
            url: "http://b".into(),
            token: Some("secret".into()),
            ca: None,
        }));
        b.ok(Command::AcceptSecondary {
            volume: "s".into(),
            primary_cluster: "site-a".into(),
            primary_volume: "p".into(),
            size: 4 * u64::from(TS),
            generation: GEN,
        });
        let events = a.ok(Command::MkPprc {
            volume: "p".into(),
            remote_cluster: "site-b".into(),
            remote_volume: "s".into(),
            generation: GEN,
        });
        assert!(events.contains(&Event::PairEstablished {
            volume: "p".into(),
            remote: "site-b/s".into(),
            generation: GEN,
            tracks_to_copy: 2,
        }));
        Sites {
            a,
            b,
            queue: Vec::new(),
        }
    }

    fn pair(h: &Harness, volume: &str) -> PairInfo {
        h.state.mirror_pairs(&[volume.to_string()]).remove(0)
    }

    /// A copy step at the primary: its sequence number and tracks, if any were left to copy.
    fn copy_step(&mut self, max_tracks: u32) -> Option<(u64, Vec<u32>)> {
        let events = self.a.ok(Command::PprcCopyStep {
            volume: "p".into(),
            max_tracks,
        });
        events.iter().find_map(|e| match e {
            Event::PairTracksSent { seq, tracks, .. } => Some((*seq, tracks.clone())),
            _ => None,
        })
    }

    /// Copy steps until the pair is full duplex, as the leader's driver runs them.
    fn copy_until_duplex(&mut self) {
        while Self::pair(&self.a, "p").state == "copy-pending" {
            let Some((seq, tracks)) = self.copy_step(1) else {
                // All copied: the driver confirms again until nothing is unconfirmed.
                let sent = Self::pair(&self.a, "p").sent;
                self.confirm(sent);
                continue;
            };
            let writes = tracks
                .iter()
                .map(|t| MirroredWrite {
                    seq,
                    order: 0,
                    offset: u64::from(*t) * u64::from(TS),
                    data: WriteData::Bytes(self.a.read("p", u64::from(*t) * u64::from(TS), u64::from(TS)).into()),
                })
                .collect();
            self.b.ok(Command::MirrorApply(vec![MirrorBatch {
                volume: "s".into(),
                generation: GEN,
                writes,
                mark: SecondaryMark::Copying,
                upto: seq,
            }]));
            assert_eq!(Self::pair(&self.b, "s").state, "target-copy-pending");
            assert_eq!(Self::pair(&self.b, "s").consistent, Some(false));
            self.confirm(seq);
        }
        assert_eq!(Self::pair(&self.a, "p").state, "full-duplex");
        self.send(SecondaryMark::Duplex);
    }

    fn confirm(&mut self, seq: u64) {
        self.a.ok(Command::PprcConfirmed {
            volume: "p".into(),
            generation: GEN,
            seq,
        });
    }

    /// A host write at a: the tap's part is queued for the secondary.
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let command = self.a.write_cmd("p", offset, bytes);
        let applied = self.a.run(command);
        assert!(applied.result.is_ok());
        self.queue.extend(applied.mirrored);
    }

    /// Sends what the tap queued (the secondary applies each sequence number once).
    fn send(&mut self, mark: SecondaryMark) {
        let upto = Self::pair(&self.a, "p").sent;
        let writes = self
            .queue
            .drain(..)
            .map(|m| MirroredWrite {
                seq: m.seq,
                order: m.seq,
                offset: m.offset,
                data: m.data,
            })
            .collect();
        self.b.ok(Command::MirrorApply(vec![MirrorBatch {
            volume: "s".into(),
            generation: GEN,
            writes,
            mark,
            upto,
        }]));
    }

    fn images_equal(&self) -> bool {
        let len = 4 * u64::from(TS);
        self.a.read("p", 0, len) == self.b.read("s", 0, len)
    }
}

#[test]
fn the_first_copy_makes_the_secondary_equal_and_consistent_then_writes_stream_in_order() {
    let mut s = Sites::new();
    assert_eq!(Sites::pair(&s.a, "p").state, "copy-pending");
    assert_eq!(s.b.byte_at("s", 3), 0, "accepting discards the secondary's content");
    s.copy_until_duplex();
    assert!(s.images_equal());
    assert_eq!(Sites::pair(&s.b, "s").state, "target-full-duplex");
    assert_eq!(Sites::pair(&s.b, "s").consistent, Some(true));

    s.write(3, b"abc");
    s.write(20, b"xyz");
    assert_eq!(s.queue.len(), 2, "each write to a full-duplex primary is tapped");
    assert!(s.queue[0].seq < s.queue[1].seq);
    // A repeat of a batch (a retry after a lost answer) changes nothing at the secondary.
    let again = s.queue.clone();
    s.send(SecondaryMark::Duplex);
    assert!(s.images_equal());
    let digest = s.b.state.digest();
    s.queue = again;
    s.send(SecondaryMark::Duplex);
    assert_eq!(s.b.state.digest(), digest, "a sequence number is applied once");
}

#[test]
fn a_suspension_keeps_every_unconfirmed_track_and_resume_copies_only_those() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.write(0, b"1");
    s.send(SecondaryMark::Duplex);
    let confirmed = Sites::pair(&s.b, "s").confirmed;
    s.confirm(confirmed);
    s.confirm(confirmed);
    assert_eq!(Sites::pair(&s.a, "p").out_of_sync_tracks, 0, "everything confirmed");
    // Sent, never confirmed (the link died): track 1.
    s.write(u64::from(TS), b"lost");
    s.queue.clear();
    s.a.ok(Command::PausePprc {
        volume: "p".into(),
        reason: SuspendReason::LinkFailure,
        generation: Some(GEN),
    });
    let pair = Sites::pair(&s.a, "p");
    assert_eq!(
        (pair.state.as_str(), pair.reason.as_deref()),
        ("suspended", Some("link-failure"))
    );
    assert_eq!(pair.out_of_sync_tracks, 1, "the unconfirmed write's track");
    // Writes go on while suspended, and are recorded.
    s.write(3 * u64::from(TS), b"later");
    assert!(s.queue.is_empty(), "a suspended pair streams nothing");
    assert_eq!(Sites::pair(&s.a, "p").out_of_sync_tracks, 2);
    s.a.ok(Command::ResumePprc { volume: "p".into() });
    let events = s.a.ok(Command::PprcCopyStep {
        volume: "p".into(),
        max_tracks: 8,
    });
    let copied = events.iter().find_map(|e| match e {
        Event::PairTracksSent { tracks, .. } => Some(tracks.clone()),
        _ => None,
    });
    assert_eq!(copied, Some(vec![1, 3]), "resume copies exactly the changed tracks");
}

#[test]
fn the_secondary_refuses_host_writes_and_flashcopy_onto_it_and_an_old_generation_after_failover() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    let write = s.b.write_cmd("s", 0, b"no");
    assert_eq!(s.b.refused(write).code(), "secondary-read-only");
    s.b.mkvol("t", 4);
    let flash = Command::MkFlash {
        pairs: vec![Pair::new("t", "s")],
        options: EstablishOptions::default(),
    };
    assert_eq!(s.b.refused(flash).code(), "target-is-mirror-secondary");
    // FlashCopy from the secondary (a DR test copy) is fine.
    s.b.ok(Command::MkFlash {
        pairs: vec![Pair::new("s", "t")],
        options: EstablishOptions::default(),
    });
    let flash = Command::MkFlash {
        pairs: vec![Pair::new("x", "p")],
        options: EstablishOptions::default(),
    };
    s.a.mkvol("x", 4);
    assert_eq!(s.a.refused(flash).code(), "target-is-mirror-primary");
    assert_eq!(
        s.a.refused(Command::DeleteVolume { name: "p".into() }).code(),
        "volume-in-mirror-pair"
    );
    assert_eq!(
        s.a.refused(Command::FailoverPprc { volume: "p".into() }).code(),
        "failover-of-primary"
    );

    let events = s.b.ok(Command::FailoverPprc { volume: "s".into() });
    assert!(events.contains(&Event::PairFailedOver {
        volume: "s".into(),
        generation: GEN + 1,
        consistent: true
    }));
    s.b.write("s", 0, b"B");
    // The old primary's stream is refused from now on (no split brain).
    s.write(5, b"A");
    let stale = Command::MirrorApply(vec![MirrorBatch {
        volume: "s".into(),
        generation: GEN,
        writes: vec![],
        mark: SecondaryMark::Duplex,
        upto: 0,
    }]);
    assert_eq!(s.b.refused(stale).code(), "pair-generation");
}

#[test]
fn failback_copies_the_union_of_both_sides_changes() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    // Idle confirmations empty the epochs: what was sent is known to be there.
    let sent = Sites::pair(&s.a, "p").sent;
    s.confirm(sent);
    s.confirm(sent);
    s.b.ok(Command::FailoverPprc { volume: "s".into() });
    s.b.fill("s", 1, 7); // written at the failed-over site
                         // The old primary wrote on too, before it learned (track 3).
    s.write(3 * u64::from(TS), b"A");
    s.queue.clear();
    let events = s.a.ok(Command::BecomeSecondary {
        volume: "p".into(),
        generation: GEN + 1,
    });
    let tracks = events
        .iter()
        .find_map(|e| match e {
            Event::PairBecameSecondary { tracks, .. } => Some(tracks.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(tracks, vec![3]);
    assert_eq!(Sites::pair(&s.a, "p").state, "target-copy-pending");
    // A retry (its answer was lost) hands over the same tracks.
    let again = s.a.ok(Command::BecomeSecondary {
        volume: "p".into(),
        generation: GEN + 1,
    });
    assert!(again.contains(&Event::PairBecameSecondary {
        volume: "p".into(),
        generation: GEN + 1,
        tracks: vec![3]
    }));
    let events = s.b.ok(Command::FailbackPprc {
        volume: "s".into(),
        remote_changes: tracks,
    });
    assert!(events.contains(&Event::PairResumed {
        volume: "s".into(),
        tracks_to_copy: 2
    }));
}

#[test]
fn a_copy_step_never_passes_one_still_unconfirmed() {
    // Seen with two real clusters: a leader numbered a copy step and died before sending it;
    // the next leader's first step (its look at the state predated that entry) came after it
    // and was confirmed, and so, by the sequence number, was the lost one: 32 tracks never
    // reached the secondary (tests/mirror.rs, leader kills mid-resync).
    let mut s = Sites::new();
    let (lost, tracks) = s.copy_step(1).expect("two tracks to copy");
    assert_eq!(tracks, vec![0]);
    let next = Command::PprcCopyStep {
        volume: "p".into(),
        max_tracks: 1,
    };
    let refused = s.a.refused(next.clone());
    assert_eq!(refused.code(), "pair-copy-unconfirmed");
    assert!(refused.to_string().contains(&format!("copy step {lost}")), "{refused}");
    // The new leader copies the lost step's tracks again.
    s.a.ok(Command::PprcResync {
        volume: "p".into(),
        generation: GEN,
    });
    s.copy_until_duplex();
    assert!(s.images_equal(), "every track reached the secondary");
    // A step confirmed (or voided by a suspension) lets the next one go.
    s.write(0, b"x");
    s.a.ok(Command::PausePprc {
        volume: "p".into(),
        reason: SuspendReason::LinkFailure,
        generation: Some(GEN),
    });
    s.a.ok(Command::ResumePprc { volume: "p".into() });
    assert!(s.copy_step(1).is_some());
    s.a.refused(next);
}

#[test]
fn a_new_leader_without_the_unconfirmed_writes_resyncs_them() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.write(0, b"x");
    s.write(2 * u64::from(TS), b"y");
    s.a.ok(Command::PprcResync {
        volume: "p".into(),
        generation: GEN,
    });
    let pair = Sites::pair(&s.a, "p");
    assert_eq!(pair.state, "copy-pending");
    assert_eq!(pair.out_of_sync_tracks, 2);
}

#[test]
fn the_journal_keeps_no_token_and_a_path_in_use_is_not_removed() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    let command = Command::MkPprcPath(PprcPath {
        remote_cluster: "c".into(),
        url: "http://c".into(),
        token: Some("very-secret".into()),
        ca: None,
    });
    let journal = command.journal_form();
    assert!(!format!("{journal:?}").contains("very-secret"));
    assert_eq!(
        s.a.refused(Command::RmPprcPath {
            remote_cluster: "site-b".into()
        })
        .code(),
        "path-in-use"
    );
}

#[test]
fn the_secondary_refuses_a_hole_in_the_stream_and_ignores_a_stale_mark() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.write(0, b"1");
    s.write(20, b"2");
    let second = s.queue.pop().unwrap();
    // The first write never arrived: the second alone would leave a hole.
    let hole = Command::MirrorApply(vec![MirrorBatch {
        volume: "s".into(),
        generation: GEN,
        writes: vec![MirroredWrite {
            seq: second.seq,
            order: 0,
            offset: second.offset,
            data: second.data.clone(),
        }],
        mark: SecondaryMark::Duplex,
        upto: second.seq,
    }]);
    assert_eq!(s.b.refused(hole).code(), "pair-sequence-gap");
    s.queue.push(second);
    s.send(SecondaryMark::Duplex);
    assert!(s.images_equal());
    // The primary resyncs; a late Duplex mark of the old stream must not make the
    // half-copied secondary consistent again.
    s.a.ok(Command::PprcResync {
        volume: "p".into(),
        generation: GEN,
    });
    s.b.ok(Command::MirrorApply(vec![MirrorBatch {
        volume: "s".into(),
        generation: GEN,
        writes: vec![MirroredWrite {
            seq: 50,
            order: 0,
            offset: 0,
            data: WriteData::Bytes(vec![5; TS as usize].into()),
        }],
        mark: SecondaryMark::Copying,
        upto: 50,
    }]));
    s.b.ok(Command::MirrorApply(vec![MirrorBatch {
        volume: "s".into(),
        generation: GEN,
        writes: vec![],
        mark: SecondaryMark::Duplex,
        upto: 3,
    }]));
    let pair = Sites::pair(&s.b, "s");
    assert_eq!(
        (pair.state.as_str(), pair.consistent),
        ("target-copy-pending", Some(false))
    );
}

#[test]
fn a_flashcopy_that_turns_a_full_duplex_pair_copy_pending_keeps_its_unconfirmed_writes() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.a.mkvol("src", 4);
    // Zeroing track 0 (it stops being stored), sent, not confirmed: then a --tgtpprc
    // FlashCopy onto p stops the stream. Neither volume stores track 0 any more.
    let zero = Command::Write(host_write("p", 0, WriteData::Zeroes(u64::from(TS)), 77));
    let applied = s.a.run(zero);
    assert_eq!(applied.mirrored.len(), 1);
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("src", "p")],
        options: EstablishOptions {
            mirror: MirrorTarget::Copy,
            ..Default::default()
        },
    });
    let pair = Sites::pair(&s.a, "p");
    assert_eq!(pair.state, "copy-pending");
    let events = s.a.ok(Command::PprcCopyStep {
        volume: "p".into(),
        max_tracks: 8,
    });
    let sent = events.iter().find_map(|e| match e {
        Event::PairTracksSent { tracks, .. } => Some(tracks.clone()),
        _ => None,
    });
    assert!(sent.unwrap().contains(&0), "the unconfirmed zeroing's track is copied");
}

#[test]
fn a_write_a_freeze_held_travels_when_it_lands() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.a.mkvol("t", 4);
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("p", "t")],
        options: EstablishOptions {
            freeze: true,
            nocp: true,
            ..Default::default()
        },
    });
    // Held: nothing lands, nothing is tapped.
    s.write(5, b"held");
    assert!(s.queue.is_empty(), "a held write is not mirrored before it lands");
    s.write(40, b"also");
    let applied = s.a.run(Command::UnfreezeFlash {
        sources: vec!["p".into()],
    });
    assert!(applied.result.is_ok());
    s.queue.extend(applied.mirrored);
    // The release may take more entries (bounded batches).
    for _ in 0..4 {
        let applied = s.a.run(Command::Tick);
        s.queue.extend(applied.mirrored);
    }
    assert_eq!(
        s.queue.len(),
        2,
        "both held writes travel, at the entries where they landed"
    );
    assert!(s.queue[0].seq < s.queue[1].seq && s.queue[0].offset == 5);
    s.send(SecondaryMark::Duplex);
    assert!(s.images_equal());
}

#[test]
fn the_pairs_of_one_request_land_together_in_the_primarys_order_or_not_at_all() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.a.mkvol("q", 4);
    s.b.mkvol("r", 4);
    s.b.ok(Command::AcceptSecondary {
        volume: "r".into(),
        primary_cluster: "site-a".into(),
        primary_volume: "q".into(),
        size: 4 * u64::from(TS),
        generation: GEN,
    });
    s.a.ok(Command::MkPprc {
        volume: "q".into(),
        remote_cluster: "site-b".into(),
        remote_volume: "r".into(),
        generation: GEN,
    });
    s.a.ok(Command::PprcConfirmed {
        volume: "q".into(),
        generation: GEN,
        seq: 0,
    });
    assert_eq!(Sites::pair(&s.a, "q").state, "full-duplex");
    s.write(0, b"p-first");
    let q_write = s.a.write_cmd("q", 0, b"q-second");
    let applied = s.a.run(q_write);
    let (p, q) = (s.queue.pop().unwrap(), applied.mirrored[0].clone());
    let batch = |volume: &str, m: &Mirrored, offset: u64| MirrorBatch {
        volume: volume.into(),
        generation: GEN,
        writes: vec![MirroredWrite {
            seq: m.seq,
            order: m.seq * 10 + u64::from(volume == "r"),
            offset,
            data: m.data.clone(),
        }],
        mark: SecondaryMark::Duplex,
        upto: m.seq,
    };
    // r's part is out of range: the whole request is refused, s gets nothing either.
    let bad = Command::MirrorApply(vec![batch("s", &p, p.offset), batch("r", &q, 1 << 20)]);
    let before = s.b.read("s", 0, 7);
    assert_eq!(s.b.refused(bad).code(), "out-of-range");
    assert_eq!(s.b.read("s", 0, 7), before, "nothing of the request landed");
    s.b.ok(Command::MirrorApply(vec![
        batch("s", &p, p.offset),
        batch("r", &q, q.offset),
    ]));
    assert_eq!(s.b.read("s", 0, 7), b"p-first".to_vec());
    assert_eq!(s.b.read("r", 0, 8), b"q-second".to_vec());
}

#[test]
fn a_revertible_increment_never_meets_mirror_writes() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    let record = EstablishOptions {
        persist: true,
        record: true,
        ..Default::default()
    };
    // At the secondary's site: its FlashCopy may be taken, never revertibly (the mirror writes it).
    s.b.mkvol("t", 4);
    s.b.ok(Command::MkFlash {
        pairs: vec![Pair::new("s", "t")],
        options: record.clone(),
    });
    let set = |pair: &str| Command::SetFlashRevertible {
        pairs: vec![pair.parse().unwrap()],
        seqnum: None,
    };
    let e = s.b.refused(set("s:t"));
    assert_eq!(e.code(), "revertible-not-possible");
    assert!(e.to_string().contains("Metro Mirror secondary"), "{e}");
    // At the primary's site: a revertible source does not become a secondary by a failback.
    s.a.mkvol("x", 4);
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("p", "x")],
        options: record,
    });
    s.a.ok(set("p:x"));
    s.b.ok(Command::FailoverPprc { volume: "s".into() });
    let back = Command::BecomeSecondary {
        volume: "p".into(),
        generation: GEN + 1,
    };
    assert_eq!(s.a.refused(back.clone()).code(), "relationship-revertible");
    s.a.ok(Command::CommitFlash {
        pairs: vec![Pair::new("p", "x")],
        seqnum: None,
    });
    s.a.ok(back);
}

#[test]
fn a_tgtpprc_flashcopy_from_a_cascade_sends_what_its_source_reads() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.a.mkvol("a0", 4);
    s.a.mkvol("a1", 4);
    s.a.fill("a0", 1, 7);
    s.a.ok(mkflash("a0:a1", options("--nocp")));
    // a1 stores nothing; it reads a0's track 1, which p's secondary must get.
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("a1", "p")],
        options: EstablishOptions {
            mirror: MirrorTarget::Copy,
            ..Default::default()
        },
    });
    let pair = Sites::pair(&s.a, "p");
    assert_eq!((pair.state.as_str(), pair.out_of_sync_tracks), ("copy-pending", 3));
}

/// As above, with a1's track 1 read from the tracks a0 keeps for a1 and a2 (a0 itself zeroed
/// there, so it is stored nowhere in the cascade): p's secondary must get it too.
#[test]
fn a_tgtpprc_flashcopy_from_a_cascade_sends_what_its_source_reads_from_kept_tracks() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    for v in ["a0", "a1", "a2"] {
        s.a.mkvol(v, 4);
    }
    s.a.fill("a0", 1, 7);
    s.a.ok(mkflash("a0:a1 a0:a2", options("--nocp")));
    let ts = s.a.track_size();
    s.a.ok(zeroes("a0", ts, ts));
    assert_eq!(s.a.byte_at("a1", 1), 7, "a1 reads its kept track 1");
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("a1", "p")],
        options: EstablishOptions {
            mirror: MirrorTarget::Copy,
            ..Default::default()
        },
    });
    let pair = Sites::pair(&s.a, "p");
    assert_eq!((pair.state.as_str(), pair.out_of_sync_tracks), ("copy-pending", 3));
}

#[test]
fn a_target_that_became_a_secondary_by_failback_is_not_refreshed() {
    let mut s = Sites::new();
    s.copy_until_duplex();
    s.a.mkvol("x", 4);
    s.a.ok(Command::MkFlash {
        pairs: vec![Pair::new("x", "p")],
        options: EstablishOptions {
            persist: true,
            record: true,
            mirror: MirrorTarget::Copy,
            ..Default::default()
        },
    });
    s.b.ok(Command::FailoverPprc { volume: "s".into() });
    s.a.ok(Command::BecomeSecondary {
        volume: "p".into(),
        generation: GEN + 1,
    });
    assert_eq!(s.a.refused(resync("x:p")).code(), "target-is-mirror-secondary");
}
