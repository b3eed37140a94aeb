//! Property test: random command sequences against a deliberately naive reference model that
//! keeps every volume's logical bytes whole, and a full copy of the source at each point in
//! time. After every step, every byte a host would read from every volume must equal the model.
//!
//! The model follows the state machine's verdicts (accepted or refused; the rules have their own
//! unit tests) but computes every byte itself. Where the spec allows more than one answer (the
//! target of a relationship withdrawn before its copy finished is "a mix of old data and copied
//! tracks"), the model accepts any value that track of that volume ever held, then adopts it.

mod common;
use common::Harness;
use proptest::prelude::*;
use statemachine::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

const TS: u64 = 8;
const NAMES: [&str; 4] = ["v0", "v1", "v2", "v3"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        v: usize,
        tracks: u64,
    },
    Delete {
        v: usize,
    },
    Write {
        v: usize,
        offset: u64,
        len: u64,
        byte: u8,
    },
    Zero {
        v: usize,
        offset: u64,
        len: u64,
    },
    /// Group-committed writes: (volume, offset, length, first byte; 0 = zeroes).
    Batch {
        writes: Vec<(usize, u64, u64, u8)>,
    },
    Mk {
        pairs: Vec<(usize, usize)>,
        flags: [bool; 5],
        seq: u32,
        copy_rate: Option<u32>,
    },
    /// `chflash --copy-rate` (`None`: unlimited; 0: background copy off).
    Ch {
        pair: (usize, usize),
        copy_rate: Option<u32>,
    },
    Rm {
        pair: (usize, usize),
        cp: bool,
        seq: Option<u32>,
    },
    Resync {
        pair: (usize, usize),
        nocp: bool,
        inhibit: bool,
    },
    Reverse {
        pair: (usize, usize),
        fast: bool,
    },
    Copy {
        pair: (usize, usize),
        n: u32,
    },
    /// `setflashrevertible` (0), `commitflash` (1) or `revertflash` (2).
    Increment {
        pair: (usize, usize),
        what: u8,
        seq: Option<u32>,
    },
    Unfreeze {
        v: usize,
    },
    Tick {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let v = 0..NAMES.len();
    let pair = (0..NAMES.len(), 0..NAMES.len());
    prop_oneof![
        2 => (v.clone(), 2..4u64).prop_map(|(v, tracks)| Op::Create { v, tracks }),
        1 => v.clone().prop_map(|v| Op::Delete { v }),
        10 => (v.clone(), 0..40u64, 1..20u64, 0..255u8).prop_map(|(v, offset, len, byte)| Op::Write { v, offset, len, byte }),
        2 => (v.clone(), 0..40u64, 1..20u64).prop_map(|(v, offset, len)| Op::Zero { v, offset, len }),
        3 => prop::collection::vec((v.clone(), 0..40u64, 1..20u64, any::<u8>()), 1..5)
            .prop_map(|writes| Op::Batch { writes }),
        4 => (prop::collection::vec(pair.clone(), 1..3), any::<[bool; 5]>(), 0..3u32, prop::option::of(0..3u32))
            .prop_map(|(pairs, flags, seq, copy_rate)| Op::Mk { pairs, flags, seq, copy_rate }),
        2 => (pair.clone(), prop::option::of(0..3u32)).prop_map(|(pair, copy_rate)| Op::Ch { pair, copy_rate }),
        2 => (pair.clone(), any::<bool>(), prop::option::of(0..3u32)).prop_map(|(pair, cp, seq)| Op::Rm { pair, cp, seq }),
        2 => (pair.clone(), any::<bool>(), any::<bool>()).prop_map(|(pair, nocp, inhibit)| Op::Resync { pair, nocp, inhibit }),
        2 => (pair.clone(), any::<bool>()).prop_map(|(pair, fast)| Op::Reverse { pair, fast }),
        3 => (pair.clone(), 1..4u32).prop_map(|(pair, n)| Op::Copy { pair, n }),
        4 => (pair, 0..3u8, prop::option::of(0..3u32)).prop_map(|(pair, what, seq)| Op::Increment { pair, what, seq }),
        1 => v.prop_map(|v| Op::Unfreeze { v }),
        1 => (0..200u64).prop_map(|secs| Op::Tick { secs }),
    ]
}

#[derive(Default)]
struct Model {
    volumes: BTreeMap<String, Vec<u8>>,
    /// Every value each track of each volume has held (as read by a host).
    history: BTreeMap<String, Vec<HashSet<Vec<u8>>>>,
    relationships: BTreeSet<(String, String)>,
    frozen: BTreeMap<String, u64>,
    pending: HashMap<u64, HostWrite>,
    /// Relationships with a revertible increment, and the target's image before it.
    revertible: BTreeMap<(String, String), Vec<u8>>,
}

impl Model {
    fn apply_write(&mut self, write: &HostWrite) {
        let volume = self.volumes.get_mut(&write.volume).expect("written volume exists");
        let range = write.offset as usize..(write.offset + write.data.len()) as usize;
        match &write.data {
            WriteData::Bytes(b) => volume[range].copy_from_slice(b),
            WriteData::Zeroes(_) => volume[range].fill(0),
            WriteData::Summary { .. } => unreachable!("the model is given bytes, never journal forms"),
        }
    }

    fn copy(&mut self, from: &str, to: &str) {
        let image = self.volumes[from].clone();
        self.volumes.insert(to.to_string(), image);
    }

    fn remember(&mut self) {
        for (name, bytes) in &self.volumes {
            let history = self.history.entry(name.clone()).or_default();
            for (t, chunk) in bytes.chunks(TS as usize).enumerate() {
                if history.len() <= t {
                    history.push(HashSet::new());
                }
                history[t].insert(chunk.to_vec());
            }
        }
    }
}

fn name(v: usize) -> String {
    NAMES[v].to_string()
}

fn pair((s, t): (usize, usize)) -> Vec<Pair> {
    vec![Pair::new(name(s), name(t))]
}

fn command(op: &Op, model: &Model, tag: u64) -> Command {
    // Fit host I/O into the volume when it exists, so most writes are valid.
    let fit = |v: usize, offset: u64, len: u64| match model.volumes.get(&name(v)) {
        Some(bytes) => {
            let size = bytes.len() as u64;
            let offset = offset % size;
            (offset, len.min(size - offset))
        }
        None => (offset, len),
    };
    match op.clone() {
        Op::Create { v, tracks } => Command::CreateVolume {
            name: name(v),
            size: tracks * TS,
        },
        Op::Delete { v } => Command::DeleteVolume { name: name(v) },
        Op::Write { v, offset, len, byte } => {
            let (offset, len) = fit(v, offset, len);
            // Byte 0: all-zero data, stored like any data (nodes send it as Zeroes instead).
            let data = if byte == 0 {
                vec![0; len as usize]
            } else {
                (0..len).map(|i| byte.wrapping_add(i as u8)).collect()
            };
            Command::Write(HostWrite {
                volume: name(v),
                opened: None,
                offset,
                data: WriteData::Bytes(data.into()),
                tag,
            })
        }
        Op::Zero { v, offset, len } => {
            let (offset, len) = fit(v, offset, len);
            Command::Write(HostWrite {
                volume: name(v),
                opened: None,
                offset,
                data: WriteData::Zeroes(len),
                tag,
            })
        }
        Op::Batch { writes } => Command::WriteBatch(
            writes
                .iter()
                .enumerate()
                .map(|(i, &(v, offset, len, byte))| {
                    let (offset, len) = fit(v, offset, len);
                    let data = if byte == 0 {
                        WriteData::Zeroes(len)
                    } else {
                        WriteData::Bytes((0..len).map(|i| byte.wrapping_add(i as u8)).collect::<Vec<u8>>().into())
                    };
                    HostWrite {
                        volume: name(v),
                        opened: None,
                        offset,
                        data,
                        tag: tag + 1 + i as u64,
                    }
                })
                .collect(),
        ),
        Op::Mk {
            pairs,
            flags: [nocp, persist, record, tgtinhibit, freeze],
            seq,
            copy_rate,
        } => Command::MkFlash {
            pairs: pairs.iter().map(|&(s, t)| Pair::new(name(s), name(t))).collect(),
            options: EstablishOptions {
                nocp,
                persist: persist || record,
                record,
                tgtinhibit,
                freeze,
                seqnum: seq,
                copy_rate,
                ..Default::default()
            },
        },
        Op::Ch { pair: p, copy_rate } => Command::ChFlash {
            pairs: pair(p),
            copy_rate,
        },
        Op::Rm { pair: p, cp, seq } => Command::RmFlash {
            pairs: pair(p),
            cp,
            seqnum: seq,
        },
        Op::Resync { pair: p, nocp, inhibit } => Command::ResyncFlash {
            pairs: pair(p),
            nocp,
            tgtinhibit: inhibit,
            seqnum: None,
        },
        Op::Reverse { pair: p, fast } => Command::ReverseFlash {
            pairs: pair(p),
            fast,
            seqnum: None,
        },
        Op::Copy { pair: (s, t), n } => Command::CopyStep {
            source: name(s),
            target: name(t),
            max_tracks: n,
        },
        Op::Increment { pair: p, what, seq } => match what {
            0 => Command::SetFlashRevertible {
                pairs: pair(p),
                seqnum: seq,
            },
            1 => Command::CommitFlash {
                pairs: pair(p),
                seqnum: seq,
            },
            _ => Command::RevertFlash {
                pairs: pair(p),
                seqnum: seq,
            },
        },
        Op::Unfreeze { v } => Command::UnfreezeFlash { sources: vec![name(v)] },
        Op::Tick { .. } => Command::Tick,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(TS as u32);
    let mut model = Model::default();
    let mut replay = Replay::with_track_size(TS as u32);
    for (step, op) in ops.iter().enumerate() {
        // Tags are unique across steps, also for the writes of a batch (tag + 1 + i).
        let tag = step as u64 * 100;
        let cmd = command(op, &model, tag);
        let ctx = format!("step {step}: {}", cmd.summary());
        match &cmd {
            Command::Write(w) => {
                model.pending.insert(w.tag, w.clone());
            }
            Command::WriteBatch(writes) => {
                for w in writes {
                    model.pending.insert(w.tag, w.clone());
                }
            }
            _ => {}
        }
        h.now += match op {
            Op::Tick { secs } => secs * 1000,
            _ => 10_000,
        };
        let applied = h.run(cmd.clone());
        let now = h.now;

        // The journal form of the command (no write bytes), replayed in a scratch state machine
        // with no track contents, gives the same outcome, events and metadata.
        let stamp = Stamp {
            time: Timestamp(now),
            term: h.term,
        };
        let replayed = replay.apply(&cmd.journal_form(), stamp);
        prop_assert_eq!(&replayed.result, &applied.result, "{}: replayed outcome", ctx);
        prop_assert_eq!(&replayed.events, &applied.events, "{}: replayed events", ctx);
        prop_assert_eq!(
            replay.state().metadata_digest(),
            h.state.metadata_digest(),
            "{}: replayed metadata",
            ctx
        );
        prop_assert_eq!(
            replay.stored_tracks().collect::<Vec<_>>(),
            h.tracks.stored().collect::<Vec<_>>(),
            "{}: replayed stored tracks",
            ctx
        );

        // Predictions the model makes on its own.
        let revertible = |volume: &str| model.revertible.keys().any(|(s, t)| s == volume || t == volume);
        match &cmd {
            Command::Write(w) if revertible(&w.volume) => {
                prop_assert!(
                    applied.result.is_err(),
                    "{ctx}: write to a revertible relationship's volume accepted"
                );
            }
            Command::Write(w) if !model.volumes.contains_key(&w.volume) => {
                prop_assert!(applied.result.is_err(), "{ctx}: write to a missing volume accepted");
            }
            Command::WriteBatch(writes) => {
                prop_assert!(applied.result.is_ok(), "{ctx}: a small batch was refused as a whole");
                for w in writes.iter().filter(|w| !model.volumes.contains_key(&w.volume)) {
                    let refused = applied
                        .events
                        .iter()
                        .any(|e| matches!(e, Event::WriteRefused { tag, .. } if *tag == w.tag));
                    prop_assert!(refused, "{ctx}: batched write to missing {} not refused", w.volume);
                }
            }
            Command::MkFlash { pairs, .. }
                if pairs
                    .iter()
                    .any(|p| model.relationships.iter().any(|(_, t)| *t == p.target)) =>
            {
                prop_assert!(
                    applied.result.is_err(),
                    "{ctx}: a target that has a source was accepted"
                );
            }
            Command::RmFlash { pairs, .. } | Command::ChFlash { pairs, .. }
                if !model
                    .relationships
                    .contains(&(pairs[0].source.clone(), pairs[0].target.clone())) =>
            {
                prop_assert!(
                    applied.result.is_err(),
                    "{ctx}: withdrawal of a missing relationship accepted"
                );
            }
            _ => {}
        }

        let mut adopt = Vec::new();
        for event in &applied.events {
            match event {
                Event::VolumeCreated { volume, size } => {
                    model.volumes.insert(volume.clone(), vec![0; *size as usize]);
                    model.history.remove(volume);
                }
                Event::VolumeDeleted { volume } => {
                    model.volumes.remove(volume);
                    model.history.remove(volume);
                }
                Event::Written { tag, .. } => {
                    let write = model.pending.remove(tag).expect("written tag was proposed");
                    model.apply_write(&write);
                    // A value held only within one entry (a released write, then a reverse
                    // that restores over it) is still a value the track held.
                    model.remember();
                }
                Event::WriteHeld { volume, .. } => {
                    prop_assert!(
                        model.frozen.contains_key(volume),
                        "{ctx}: write to unfrozen {volume} held"
                    );
                }
                Event::HeldWriteRefused { tag, .. } | Event::WriteRefused { tag, .. } => {
                    model.pending.remove(tag);
                }
                Event::Established { source, target, .. } => {
                    model.copy(source, target);
                    model.relationships.insert((source.clone(), target.clone()));
                }
                Event::Withdrawn {
                    source,
                    target,
                    incomplete,
                    ..
                } => {
                    prop_assert!(
                        model.relationships.remove(&(source.clone(), target.clone())),
                        "{ctx}: unknown withdrawn"
                    );
                    prop_assert!(
                        !model.revertible.contains_key(&(source.clone(), target.clone())),
                        "{ctx}: a revertible relationship withdrawn"
                    );
                    if *incomplete {
                        adopt.push(target.clone());
                    }
                }
                Event::Resynced { source, target, .. } => model.copy(source, target),
                Event::IncrementTaken { source, target, .. } => {
                    let before = model.volumes[target].clone();
                    prop_assert!(model
                        .revertible
                        .insert((source.clone(), target.clone()), before)
                        .is_none());
                    model.copy(source, target);
                }
                Event::IncrementCommitted { source, target, .. } => {
                    prop_assert!(model.revertible.remove(&(source.clone(), target.clone())).is_some());
                }
                Event::IncrementReverted { source, target, .. } => {
                    let before = model.revertible.remove(&(source.clone(), target.clone()));
                    prop_assert!(before.is_some(), "{ctx}: reverted what was not revertible");
                    model.volumes.insert(target.clone(), before.unwrap());
                }
                Event::Reversed {
                    source, target, fast, ..
                } => {
                    prop_assert!(model.relationships.remove(&(target.clone(), source.clone())));
                    model.relationships.insert((source.clone(), target.clone()));
                    model.copy(source, target);
                    if *fast {
                        adopt.push(source.clone());
                    }
                }
                Event::Frozen { volume, until } => {
                    model.frozen.insert(volume.clone(), until.0);
                }
                Event::Thawed { volume, automatic, .. } => {
                    let until = model.frozen.remove(volume).expect("thawed volume was frozen");
                    prop_assert!(!automatic || until <= now, "{ctx}: thawed before its time");
                }
                Event::Refused { .. }
                | Event::WithdrawScheduled { .. }
                | Event::CopyRateChanged { .. }
                | Event::TracksCopied { .. }
                | Event::CopyCompleted { .. }
                | Event::HostCreated { .. }
                | Event::HostDeleted { .. }
                | Event::VolumeMapped { .. }
                | Event::VolumeUnmapped { .. } => {}
                other => unreachable!("the model makes no mirror: {other:?}"),
            }
        }
        prop_assert!(
            model.frozen.values().all(|&until| until > now),
            "{ctx}: a due thaw did not happen"
        );

        for volume in adopt {
            let read = h.read(&volume, 0, model.volumes[&volume].len() as u64);
            let history = &model.history[&volume];
            for (t, (got, expected)) in read
                .chunks(TS as usize)
                .zip(model.volumes[&volume].chunks(TS as usize))
                .enumerate()
            {
                prop_assert!(
                    got == expected || history[t].contains(got),
                    "{ctx}: incomplete {volume} track {t} reads {got:?}, a value it never held"
                );
            }
            model.volumes.insert(volume, read);
        }

        // Every byte of every volume, the relationships, and the digest.
        let sut_volumes: Vec<(String, u64)> = h.state.volumes().into_iter().map(|v| (v.name, v.size)).collect();
        let model_volumes: Vec<(String, u64)> =
            model.volumes.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect();
        prop_assert_eq!(sut_volumes, model_volumes, "{}", ctx);
        for (volume, bytes) in &model.volumes {
            let read = h.read(volume, 0, bytes.len() as u64);
            prop_assert_eq!(&read, bytes, "{}: volume {} differs from the model", ctx, volume);
        }
        let sut_rels: BTreeSet<(String, String)> = h
            .state
            .relationships(&[])
            .into_iter()
            .map(|r| (r.source, r.target))
            .collect();
        prop_assert_eq!(&sut_rels, &model.relationships, "{}", ctx);
        let sut_revertible: BTreeSet<(String, String)> = h
            .state
            .relationships(&[])
            .into_iter()
            .filter(|r| r.revertible)
            .map(|r| (r.source, r.target))
            .collect();
        prop_assert_eq!(
            sut_revertible,
            model.revertible.keys().cloned().collect::<BTreeSet<_>>(),
            "{}",
            ctx
        );
        for r in h.state.relationships(&[]) {
            prop_assert!(r.out_of_sync_tracks <= u64::from(r.total_tracks));
        }
        let sut_frozen: BTreeSet<String> = h
            .state
            .volumes()
            .into_iter()
            .filter(|v| v.state == VolumeState::Frozen)
            .map(|v| v.name)
            .collect();
        prop_assert_eq!(
            sut_frozen,
            model.frozen.keys().cloned().collect::<BTreeSet<_>>(),
            "{}",
            ctx
        );
        prop_assert_eq!(
            h.state.digest(),
            h.state.recompute_digest(&h.tracks).unwrap(),
            "{}: incremental digest drifted",
            ctx
        );
        model.remember();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_read_matches_the_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        // Start from four volumes of one size, so most pairs are valid.
        let start = (0..NAMES.len()).map(|v| Op::Create { v, tracks: 3 });
        run(start.chain(ops).collect())?;
    }
}
