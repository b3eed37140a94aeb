//! Applying real commands to RocksDB: the state survives a reopen, a snapshot rebuilds it
//! byte-for-byte on a fresh node, and an interrupted snapshot install redoes itself.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use statemachine::{Command, EstablishOptions, HostWrite, Pair, Timestamp, WriteData};
use storage::{AuditFilter, Request, StateMachineStore, StateQuery, StateRead, TypeConfig, Until};

fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            command,
            time: Timestamp(1_795_000_000_000 + index * 1000),
        }),
    }
}

fn workload() -> Vec<Command> {
    let mut commands = vec![
        Command::CreateVolume {
            name: "a".into(),
            size: 4 << 16,
        },
        Command::CreateVolume {
            name: "b".into(),
            size: 4 << 16,
        },
    ];
    for track in 0..4u64 {
        commands.push(Command::Write(HostWrite {
            volume: "a".into(),
            opened: None,
            offset: track << 16,
            data: WriteData::Bytes(vec![track as u8 + 1; 65536].into()),
            tag: track,
        }));
    }
    commands.push(Command::MkFlash {
        pairs: vec![Pair::new("a", "b")],
        options: EstablishOptions {
            persist: true,
            record: true,
            ..Default::default()
        },
    });
    commands.push(Command::Write(HostWrite {
        volume: "a".into(),
        opened: None,
        offset: 10,
        data: WriteData::Bytes(vec![9; 100].into()),
        tag: 9,
    }));
    commands.push(Command::CopyStep {
        source: "a".into(),
        target: "b".into(),
        max_tracks: 2,
    });
    commands.push(Command::MkFlash {
        pairs: vec![Pair::new("a", "a")],
        options: Default::default(),
    });
    commands
}

async fn apply_all(store: &mut StateMachineStore, commands: Vec<Command>) {
    let entries: Vec<_> = commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(i as u64 + 1, c))
        .collect();
    let responses = store.apply(entries).await.unwrap();
    assert_eq!(
        responses
            .last()
            .unwrap()
            .result
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .code(),
        "invalid-pair"
    );
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (index, digest, b) = {
        let (_log, mut store) = storage::open(dir.path()).unwrap();
        apply_all(&mut store, workload()).await;
        let view = store.view();
        let (index, digest) = view.applied();
        assert_eq!(index, 10);
        assert_eq!(view.read("a", None, 0, 12).unwrap()[10..], [9, 9]);
        assert_eq!(
            view.read("b", None, 0, 12).unwrap()[10..],
            [1, 1],
            "b holds the point in time"
        );
        (index, digest, view.read("b", None, 0, 4 << 16).unwrap())
    };
    let (_log, mut store) = storage::open(dir.path()).unwrap();
    let view = store.view();
    assert_eq!(view.applied(), (index, digest));
    assert_eq!(view.read("b", None, 0, 4 << 16).unwrap(), b);
    let digest_now = view.query(|s| s.digest());
    assert_eq!(digest_now, digest);
    let (applied, _) = store.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, 10);
    let audit = view.audit(&AuditFilter::default(), 0, 100).unwrap();
    assert_eq!(audit.len(), 10);
    assert_eq!(audit[9].result.as_ref().unwrap_err().code(), "invalid-pair");
    assert!(
        audit[2].command.summary().starts_with("write a offset=0 length=65536"),
        "{}",
        audit[2].command.summary()
    );
    let about_b = AuditFilter {
        volume: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(view.audit(&about_b, 0, 100).unwrap().len(), 3);
}

#[tokio::test]
async fn the_journal_keeps_no_bytes_and_replays_to_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut store) = storage::open(dir.path()).unwrap();
        apply_all(&mut store, workload()).await;
        let view = store.view();
        let audit = view.audit(&AuditFilter::default(), 0, 100).unwrap();
        assert!(
            matches!(
                &audit[2].command,
                Command::Write(HostWrite {
                    data: WriteData::Summary { length: 65536, .. },
                    ..
                })
            ),
            "a write is journaled as its length and checksum: {:?}",
            audit[2].command.summary()
        );
        let check = view.verify().unwrap();
        assert!(check.consistent(), "{:?}", check.differences);
        assert_eq!((check.index, check.entries), (10, 10));
        assert_eq!(check.live_digest, check.replayed_digest);

        // Time travel: right after the mkflash (entry 7) the relationship has all 4 tracks
        // out of sync; the write (entry 8) copied one on write, the copy step (entry 9) two.
        let at = |until| view.state_at(until).unwrap();
        let rels = |r: &storage::Rebuilt| r.state.relationships(&[]);
        assert!(rels(&at(Until::Index(6))).is_empty());
        assert_eq!(rels(&at(Until::Index(7)))[0].out_of_sync_tracks, 4);
        assert_eq!(rels(&at(Until::Index(8)))[0].out_of_sync_tracks, 3);
        assert_eq!(rels(&at(Until::Index(9)))[0].out_of_sync_tracks, 1);
        let by_time = at(Until::Time(Timestamp(1_795_000_000_000 + 7 * 1000 + 500)));
        assert_eq!(by_time.index, 7, "the last entry applied at or before that time");
        assert!(
            view.state_at(Until::Time(Timestamp(5))).is_err(),
            "nothing happened before"
        );

        // A new leader whose clock is behind: the entry is applied, and journaled, at the time
        // of the one before it, and the replay agrees.
        let mut late = entry(
            11,
            Command::CreateVolume {
                name: "c".into(),
                size: 1 << 16,
            },
        );
        if let EntryPayload::Normal(request) = &mut late.payload {
            request.time = Timestamp(1_795_000_000_000);
        }
        store.apply(vec![late]).await.unwrap();
        let audit = view.audit(&AuditFilter::default(), 9, 100).unwrap();
        assert_eq!(audit[1].time, audit[0].time, "time never runs backwards");
        let check = view.verify().unwrap();
        assert!(check.consistent(), "{:?}", check.differences);
        assert_eq!(check.entries, 11);
    }
    // Offline, on the stopped node's directory: the same verdict.
    let offline = storage::open_read_only(dir.path()).unwrap();
    let check = offline.verify().unwrap();
    assert!(check.consistent(), "{:?}", check.differences);
    assert_eq!(check.entries, 11);
}

#[tokio::test]
async fn snapshot_rebuilds_a_fresh_node() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = storage::open(leader_dir.path()).unwrap();
    apply_all(&mut leader, workload()).await;
    let mut builder = leader.get_snapshot_builder().await;
    let built = builder.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id.unwrap().index, 10);
    // Building keeps a checkpoint; the stream a follower receives is written when asked for,
    // as openraft asks for it (only the meta of a built snapshot is used).
    let snapshot = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snapshot.meta, built.meta);

    let follower_dir = tempfile::tempdir().unwrap();
    let (follower_log, mut follower) = storage::open(follower_dir.path()).unwrap();
    // Stream the snapshot file into the follower as openraft would.
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    let mut source = snapshot.snapshot;
    tokio::io::copy(&mut source, &mut *receiving).await.unwrap();
    follower.install_snapshot(&snapshot.meta, receiving).await.unwrap();

    let (lv, fv) = (leader.view(), follower.view());
    assert_eq!(fv.applied(), lv.applied(), "same index, same digest");
    for v in ["a", "b"] {
        assert_eq!(
            fv.read(v, None, 0, 4 << 16).unwrap(),
            lv.read(v, None, 0, 4 << 16).unwrap()
        );
    }
    assert_eq!(
        fv.audit(&AuditFilter::default(), 0, 100).unwrap(),
        lv.audit(&AuditFilter::default(), 0, 100).unwrap(),
        "history travels with snapshots"
    );
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);

    // The follower keeps applying after the snapshot.
    let more = vec![entry(
        11,
        Command::Write(HostWrite {
            volume: "a".into(),
            opened: None,
            offset: 0,
            data: WriteData::Zeroes(65536),
            tag: 11,
        }),
    )];
    follower.apply(more.clone()).await.unwrap();
    leader.apply(more).await.unwrap();
    assert_eq!(follower.view().applied(), leader.view().applied());
    drop((follower_log, follower, fv));
    let (_flog, follower) = storage::open(follower_dir.path()).unwrap();
    assert_eq!(
        follower.view().applied(),
        leader.view().applied(),
        "and survives a reopen"
    );
}

#[tokio::test]
async fn an_interrupted_install_is_redone_at_open() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = storage::open(leader_dir.path()).unwrap();
    apply_all(&mut leader, workload()).await;
    leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let snapshot = leader.get_current_snapshot().await.unwrap().unwrap();
    let expected = leader.view().applied();

    let follower_dir = tempfile::tempdir().unwrap();
    {
        let (_flog, mut follower) = storage::open(follower_dir.path()).unwrap();
        let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
        let mut source = snapshot.snapshot;
        tokio::io::copy(&mut source, &mut *receiving).await.unwrap();
        follower.install_snapshot(&snapshot.meta, receiving).await.unwrap();
    }
    // Simulate a crash in the middle of an install: the marker is set, the data half gone.
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            follower_dir.path().join("db"),
            ["raft", "meta", "sums", "blocks", "audit"],
        )
        .unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"installing", b"1").unwrap();
        for cf in ["sums", "blocks"] {
            let cf = db.cf_handle(cf).unwrap();
            db.delete_range_cf(cf, &[][..], &[0xFF; 16][..]).unwrap();
        }
    }
    let (_flog, follower) = storage::open(follower_dir.path()).unwrap();
    assert_eq!(follower.view().applied(), expected);
    assert_eq!(follower.view().read("b", None, 0, 12).unwrap()[10..], [1, 1]);
}

#[tokio::test]
async fn a_truncated_snapshot_is_refused_and_changes_nothing() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = storage::open(leader_dir.path()).unwrap();
    apply_all(&mut leader, workload()).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let follower_dir = tempfile::tempdir().unwrap();
    let (_flog, mut follower) = storage::open(follower_dir.path()).unwrap();
    let prefix: Vec<_> = workload()[..3]
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, c)| entry(i as u64 + 1, c))
        .collect();
    follower.apply(prefix).await.unwrap();
    let before = follower.view().applied();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut source = snapshot.snapshot;
    tokio::io::AsyncReadExt::read_to_end(&mut source, &mut bytes)
        .await
        .unwrap();
    bytes.truncate(bytes.len() / 2);
    tokio::io::AsyncWriteExt::write_all(&mut *receiving, &bytes)
        .await
        .unwrap();
    assert!(follower.install_snapshot(&snapshot.meta, receiving).await.is_err());
    assert_eq!(follower.view().applied(), before);
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
}

/// A data directory an older build wrote (format 4: whole tracks in `tracks`, the log in `log`)
/// is refused with the version message, not RocksDB's complaint about column families, and left
/// as it was.
#[test]
fn a_data_directory_of_an_older_format_is_refused_with_the_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        rocksdb::DB::open_cf(
            &options,
            dir.path().join("db"),
            ["log", "raft", "meta", "tracks", "audit"],
        )
        .unwrap();
    }
    let error = storage::open(dir.path())
        .err()
        .expect("an old directory is refused")
        .to_string();
    assert!(
        error.contains("format version 4, this build reads version 14"),
        "{error}"
    );
    let error = storage::open_read_only(dir.path())
        .err()
        .expect("also offline")
        .to_string();
    assert!(error.contains("format version 4"), "{error}");
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path().join("db")).unwrap();
    assert!(cfs.contains(&"tracks".to_string()), "nothing was changed: {cfs:?}");
}

/// Formats 5 (before hosts), 6 (before volume records counted their stored tracks), 7 (before
/// Metro Mirror), 8 (before relationships had a copy rate), 9 (the vote still in RocksDB), 10
/// (before revertible increments), 11 (before kept tracks) 12 (before kept-track sweeps) and 13 (log segments not reused) have today's column families: their values carry the version,
/// and the first one read refuses the directory (before Raft starts: a node must never start
/// without its vote), before the log is touched.
#[tokio::test]
async fn a_data_directory_of_format_5_to_13_is_refused_with_the_version() {
    for version in [5u8, 6, 7, 8, 9, 10, 11, 12, 13] {
        refused_with_version(version).await;
    }
}

async fn refused_with_version(version: u8) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = storage::open(dir.path()).unwrap();
        sm.apply(vec![entry(
            1,
            Command::CreateVolume {
                name: "a".into(),
                size: 1 << 16,
            },
        )])
        .await
        .unwrap();
        sm.view().flush().unwrap();
    }
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            dir.path().join("db"),
            ["raft", "meta", "sums", "blocks", "audit"],
        )
        .unwrap();
        let meta = db.cf_handle("meta").unwrap();
        let mut globals = db.get_cf(meta, b"globals").unwrap().unwrap();
        globals[0] = version;
        db.put_cf(meta, b"globals", globals).unwrap();
    }
    // What this build would take for a torn record and cut off, in another format's log.
    let segment = dir.path().join("raft-log").join(format!("{:020}-{:016x}.log", 1, 7));
    std::fs::write(&segment, [9u8; 30]).unwrap();
    let error = storage::open(dir.path()).err().expect("refused").to_string();
    assert!(
        error.contains(&format!("format version {version}, this build reads version 14")),
        "{error}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), [9u8; 30], "the log is left as it was");
}

/// Hosts and their mappings are kept (one value, rewritten when they change) and reloaded.
#[tokio::test]
async fn hosts_and_mappings_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut commands = workload();
    // Before the workload's last command, which `apply_all` expects to be refused.
    let at = commands.len() - 1;
    commands.splice(
        at..at,
        [
            Command::CreateHost {
                name: "app".into(),
                identity: statemachine::HostIdentity::Psk("alice".into()),
            },
            Command::MapVolume {
                volume: "a".into(),
                host: "app".into(),
                read_only: true,
            },
        ],
    );
    let (hosts, applied) = {
        let (_log, mut store) = storage::open(dir.path()).unwrap();
        apply_all(&mut store, commands).await;
        let view = store.view();
        (view.query(|s| s.host_infos()), view.applied())
    };
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].volumes.get("a"), Some(&statemachine::Access::ReadOnly));
    let (_log, store) = storage::open(dir.path()).unwrap();
    let view = store.view();
    assert_eq!(view.query(|s| s.host_infos()), hosts);
    assert_eq!(view.applied(), applied, "the digest covers the hosts and matches");
}
