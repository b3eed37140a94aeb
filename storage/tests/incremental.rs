//! Applies write only what changed (bitmap blocks, held writes). Random workloads on volumes
//! whose bitmaps span several blocks must reopen to exactly the in-memory state, and after every
//! entry (and after every reopen) hosts must read from the store the bytes a model reads: the
//! state machine run on the in-memory reference track store. A track the store loses, copies
//! wrong or stores over a copy still needed (copy-on-write) reads differently from the model.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;
use statemachine::{Command, EstablishOptions, HostWrite, MemTracks, Pair, Stamp, State, Timestamp, WriteData};
use std::collections::BTreeSet;
use storage::{Request, StateQuery, StateRead, StateView, TypeConfig};

/// 2^17 + 5 tracks: three bitmap blocks, thin, 8 GiB.
const BIG: u64 = ((1 << 17) + 5) << 16;
const SMALL: u64 = 3 << 16;
const NAMES: [&str; 4] = ["b0", "b1", "s0", "s1"];

fn size(v: usize) -> u64 {
    if v < 2 {
        BIG
    } else {
        SMALL
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(usize, u32, u8),
    Mk(usize, usize, [bool; 5]),
    Rm(usize, usize, bool),
    Resync(usize, usize),
    Reverse(usize, usize, bool),
    Copy(usize, usize, u32),
    /// `setflashrevertible` (0), `commitflash` (1) or `revertflash` (2).
    Increment(usize, usize, u8),
    Unfreeze(usize),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let v = 0..4usize;
    prop_oneof![
        8 => (v.clone(), any::<u32>(), 1..255u8).prop_map(|(v, t, b)| Op::Write(v, t, b)),
        3 => (v.clone(), v.clone(), any::<[bool; 5]>()).prop_map(|(s, t, f)| Op::Mk(s, t, f)),
        1 => (v.clone(), v.clone(), any::<bool>()).prop_map(|(s, t, cp)| Op::Rm(s, t, cp)),
        1 => (v.clone(), v.clone()).prop_map(|(s, t)| Op::Resync(s, t)),
        1 => (v.clone(), v.clone(), any::<bool>()).prop_map(|(s, t, f)| Op::Reverse(s, t, f)),
        3 => (v.clone(), v.clone(), 1..100u32).prop_map(|(s, t, n)| Op::Copy(s, t, n)),
        2 => (v.clone(), v.clone(), 0..3u8).prop_map(|(s, t, what)| Op::Increment(s, t, what)),
        1 => v.prop_map(Op::Unfreeze),
        1 => (0..200u64).prop_map(Op::Tick),
    ]
}

/// The track of volume `v` a write with `t` lands on. Spread writes over all blocks: the start,
/// the middle, the end.
fn write_track(v: usize, t: u32) -> u32 {
    let tracks = (size(v) >> 16) as u32;
    [t % 3, (t % tracks), tracks - 1 - t % 3][(t % 3) as usize]
}

/// Every write lands in the first bytes of its track (100 bytes at an offset below 256): the
/// part of a track read after each entry. Whole tracks are read at each reopen.
const PREFIX: u64 = 512;
const TRACK: u64 = 1 << 16;

/// For each volume, the tracks to read: every track a write of the workload lands on (a copy
/// moves a track to the same place of another volume, so every volume's), and its middle
/// track, which no write reaches unless by chance (it must read as the model says all the same).
fn tracks_to_read(ops: &[Op]) -> Vec<BTreeSet<u32>> {
    let written: BTreeSet<u32> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Write(v, t, _) => Some(write_track(*v, *t)),
            _ => None,
        })
        .collect();
    (0..NAMES.len())
        .map(|v| {
            let tracks = (size(v) / TRACK) as u32;
            let mut read: BTreeSet<u32> = written.iter().copied().filter(|t| *t < tracks).collect();
            read.insert(tracks / 2);
            read
        })
        .collect()
}

/// The state machine on the in-memory reference track store: what hosts must read.
struct Model {
    state: State,
    tracks: MemTracks,
}

impl Model {
    /// Applies one command as the store applies it (stamped `time`, term 1); whether it succeeded.
    fn apply(&mut self, command: &Command, time: u64) -> bool {
        let stamp = Stamp {
            time: Timestamp(time),
            term: 1,
        };
        let applied = statemachine::apply(&mut self.state, &self.tracks, command, stamp).expect("memory reads");
        self.tracks.execute(&applied.ops);
        applied.result.is_ok()
    }

    /// `length` bytes from the start of `track` of volume `name`, as a host reads them.
    fn read(&self, name: &str, track: u32, length: u64) -> Vec<u8> {
        let offset = u64::from(track) * TRACK;
        let id = self
            .state
            .check_range(name, None, offset, length)
            .expect("the volume exists");
        self.state.read(&self.tracks, id, offset, length).expect("memory reads")
    }
}

/// Reads `length` bytes from the start of every track of `tracks` of every volume through the
/// store, and compares them with the model's.
fn same_bytes(
    view: &StateView,
    model: &Model,
    tracks: &[BTreeSet<u32>],
    length: u64,
    when: &str,
) -> Result<(), TestCaseError> {
    for (v, name) in NAMES.iter().enumerate() {
        if model.state.volume_id(name).is_none() {
            // Not created yet: the store must not have it either.
            prop_assert!(
                view.query(|s| s.volume_id(name).is_none()),
                "{}: {} exists only in the store",
                when,
                name
            );
            continue;
        }
        for &track in &tracks[v] {
            let got = view
                .read(name, None, u64::from(track) * TRACK, length)
                .map_err(|e| TestCaseError::fail(format!("{when}: reading {name} track {track}: {e}")))?;
            let want = model.read(name, track, length);
            if let Some(at) = got.iter().zip(&want).position(|(g, w)| g != w) {
                return Err(TestCaseError::fail(format!(
                    "{when}: {name} track {track} byte {at} reads {:#x} from the store, {:#x} in the model",
                    got[at], want[at]
                )));
            }
            prop_assert_eq!(got.len(), want.len());
        }
    }
    Ok(())
}

fn command(op: &Op, tag: u64) -> Command {
    let pair = |s: usize, t: usize| vec![Pair::new(NAMES[s], NAMES[t])];
    match op.clone() {
        Op::Write(v, t, byte) => {
            let track = write_track(v, t);
            Command::Write(HostWrite {
                volume: NAMES[v].into(),
                opened: None,
                offset: (u64::from(track) << 16) + u64::from(byte),
                data: WriteData::Bytes(vec![byte; 100].into()),
                tag,
            })
        }
        Op::Mk(s, t, [nocp, persist, record, tgtinhibit, freeze]) => Command::MkFlash {
            pairs: pair(s, t),
            options: EstablishOptions {
                nocp,
                persist: persist || record,
                record,
                tgtinhibit,
                freeze,
                seqnum: 0,
                ..Default::default()
            },
        },
        Op::Rm(s, t, cp) => Command::RmFlash {
            pairs: pair(s, t),
            cp,
            seqnum: None,
        },
        Op::Resync(s, t) => Command::ResyncFlash {
            pairs: pair(s, t),
            nocp: false,
            tgtinhibit: false,
            seqnum: None,
        },
        Op::Reverse(s, t, fast) => Command::ReverseFlash {
            pairs: pair(s, t),
            fast,
            seqnum: None,
        },
        Op::Copy(s, t, n) => Command::CopyStep {
            source: NAMES[s].into(),
            target: NAMES[t].into(),
            max_tracks: n,
        },
        Op::Increment(s, t, 0) => Command::SetFlashRevertible {
            pairs: pair(s, t),
            seqnum: None,
        },
        Op::Increment(s, t, 1) => Command::CommitFlash {
            pairs: pair(s, t),
            seqnum: None,
        },
        Op::Increment(s, t, _) => Command::RevertFlash {
            pairs: pair(s, t),
            seqnum: None,
        },
        Op::Unfreeze(v) => Command::UnfreezeFlash {
            sources: vec![NAMES[v].into()],
        },
        Op::Tick(_) => Command::Tick,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut time = 1_795_000_000_000u64;
    let mut commands: Vec<Command> = (0..4)
        .map(|v| Command::CreateVolume {
            name: NAMES[v].into(),
            size: size(v),
        })
        .collect();
    let mut times = vec![time; 4];
    for (i, op) in ops.iter().enumerate() {
        time += if let Op::Tick(s) = op { s * 1000 } else { 5_000 };
        commands.push(command(op, i as u64));
        times.push(time);
    }
    let tracks = tracks_to_read(&ops);
    let entry = |i: usize| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
        payload: EntryPayload::Normal(Request {
            command: commands[i].clone(),
            time: Timestamp(times[i]),
        }),
    };
    let half = commands.len() / 2;
    // Starts where a new store starts.
    let mut model: Option<Model> = None;
    // Each half is applied, then the store is reopened: it must come back as it was.
    for range in [0..half, half..commands.len()] {
        let (log, mut store) = storage::open(dir.path()).unwrap();
        let model = model.get_or_insert_with(|| Model {
            state: store.view().query(|s| s.clone()),
            tracks: MemTracks::new(store.view().query(|s| s.track_size())),
        });
        prop_assert_eq!(&store.view().query(|s| s.clone()), &model.state, "reopened mid-way");
        for i in range {
            rt.block_on(store.apply(vec![entry(i)])).unwrap();
            let succeeded = model.apply(&commands[i], times[i]);
            let when = format!("after entry {} ({:?})", i + 1, commands[i]);
            prop_assert_eq!(&store.view().query(|s| s.clone()), &model.state, "{}", when);
            same_bytes(&store.view(), model, &tracks, PREFIX, &when)?;
            // A point in time, whatever the model says: a new target reads as its source.
            if let (true, Command::MkFlash { pairs, .. }) = (succeeded, &commands[i]) {
                for pair in pairs {
                    for &track in &tracks[NAMES.iter().position(|n| *n == pair.source).unwrap()] {
                        let offset = u64::from(track) * TRACK;
                        let source = store.view().read(&pair.source, None, offset, PREFIX).unwrap();
                        let target = store.view().read(&pair.target, None, offset, PREFIX).unwrap();
                        prop_assert!(source == target, "{}: target track {} is not the source's", when, track);
                    }
                }
            }
        }
        let state = store.view().query(|s| s.clone());
        same_bytes(&store.view(), model, &tracks, TRACK, "before the reopen")?;
        drop((log, store));
        let (_log, store) = storage::open(dir.path()).unwrap();
        let reopened = store.view().query(|s| s.clone());
        prop_assert_eq!(reopened.digest(), state.digest());
        prop_assert_eq!(&reopened, &state, "reopened state differs");
        same_bytes(&store.view(), model, &tracks, TRACK, "after the reopen")?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reopened_state_equals_the_applied_state(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

#[test]
fn held_writes_survive_a_reopen_and_complete_at_the_thaw() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let entry = |i: u64, command: Command| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
        payload: EntryPayload::Normal(Request {
            command,
            time: Timestamp(1_795_000_000_000 + i),
        }),
    };
    let write = |tag: u64, byte: u8| {
        Command::Write(HostWrite {
            volume: "s0".into(),
            opened: None,
            offset: 10,
            data: WriteData::Bytes(vec![byte; 3].into()),
            tag,
        })
    };
    {
        let (_log, mut store) = storage::open(dir.path()).unwrap();
        let commands = vec![
            Command::CreateVolume {
                name: "s0".into(),
                size: SMALL,
            },
            Command::CreateVolume {
                name: "s1".into(),
                size: SMALL,
            },
            Command::MkFlash {
                pairs: vec![Pair::new("s0", "s1")],
                options: EstablishOptions {
                    freeze: true,
                    ..Default::default()
                },
            },
            write(1, 7),
            write(2, 8),
        ];
        let entries = commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| entry(i as u64 + 1, c))
            .collect::<Vec<_>>();
        rt.block_on(store.apply(entries)).unwrap();
        assert!(store.view().query(|s| s.is_held("s0", 2)));
    }
    let (_log, mut store) = storage::open(dir.path()).unwrap();
    assert!(
        store.view().query(|s| s.is_held("s0", 1) && s.is_held("s0", 2)),
        "held writes were persisted"
    );
    let thaw = vec![entry(
        6,
        Command::UnfreezeFlash {
            sources: vec!["s0".into()],
        },
    )];
    rt.block_on(store.apply(thaw)).unwrap();
    assert_eq!(
        store.view().read("s0", None, 10, 3).unwrap(),
        vec![8; 3],
        "released in order"
    );
    assert_eq!(store.view().read("s1", None, 10, 3).unwrap(), vec![0; 3]);
    drop((_log, store));
    let (_log, store) = storage::open(dir.path()).unwrap();
    assert!(
        !store.view().query(|s| s.is_held("s0", 1)),
        "the thaw cleared the persisted queue"
    );
}
