//! Applies write only what changed (bitmap blocks, held writes). Random workloads on volumes
//! whose bitmaps span several blocks must reopen to exactly the in-memory state.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;
use statemachine::{Command, EstablishOptions, HostWrite, Pair, State, Timestamp, WriteData};
use storage::{Request, TypeConfig};

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
        1 => v.prop_map(Op::Unfreeze),
        1 => (0..200u64).prop_map(Op::Tick),
    ]
}

fn command(op: &Op, tag: u64) -> Command {
    let pair = |s: usize, t: usize| vec![Pair::new(NAMES[s], NAMES[t])];
    match op.clone() {
        Op::Write(v, t, byte) => {
            // Spread writes over all blocks: the start, the middle, the end.
            let tracks = (size(v) >> 16) as u32;
            let track = [t % 3, (t % tracks), tracks - 1 - t % 3][(t % 3) as usize];
            Command::Write(HostWrite {
                volume: NAMES[v].into(),
                opened: None,
                offset: (u64::from(track) << 16) + u64::from(byte),
                data: WriteData::Bytes(vec![byte; 100]),
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
    let half = commands.len() / 2;
    let mut expected: Option<State> = None;
    for (range, reopen_check) in [(0..half, true), (half..commands.len(), true)] {
        let (log, mut store) = storage::open(dir.path()).unwrap();
        if let Some(expected) = &expected {
            prop_assert_eq!(&store.view().query(|s| s.clone()), expected, "reopened mid-way");
        }
        let entries: Vec<Entry<TypeConfig>> = range
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Request {
                    command: commands[i].clone(),
                    time: Timestamp(times[i]),
                }),
            })
            .collect();
        rt.block_on(store.apply(entries)).unwrap();
        let state = store.view().query(|s| s.clone());
        drop((log, store));
        if reopen_check {
            let (_log, store) = storage::open(dir.path()).unwrap();
            let reopened = store.view().query(|s| s.clone());
            prop_assert_eq!(reopened.digest(), state.digest());
            prop_assert_eq!(&reopened, &state, "reopened state differs");
        }
        expected = Some(state);
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
            data: WriteData::Bytes(vec![byte; 3]),
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
