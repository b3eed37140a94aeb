//! `kill -9` loses nothing that was acknowledged, and a restart ends with the same digest.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHUNK: usize = 65536;

#[test]
fn acknowledged_writes_survive_sigkill_mid_workload() {
    let (_dir, mut n) = single_node_with_token(&[]);
    n.ok(&["mkvol", "v", "--size", "64M"]);
    n.ok(&["mkvol", "snap", "--size", "64M"]);
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (n.client(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            block(async move {
                for i in 0..1024 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match client.write("v", (i * CHUNK) as u64, pattern(i as u8, CHUNK)).await {
                        Ok(_index) => acked.lock().unwrap().push(i),
                        Err(_) => break,
                    }
                }
            })
        })
    };
    eventually("some acknowledged writes", 60, || acked.lock().unwrap().len() >= 30);
    // A relationship established mid-workload must survive too.
    n.ok(&["mkflash", "v:snap", "--nocp", "--persist"]);
    eventually("more acknowledged writes", 60, || acked.lock().unwrap().len() >= 60);
    n.kill9();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();

    n.restart();
    n.wait_ready();
    for &i in &acked {
        assert_eq!(
            n.read("v", (i * CHUNK) as u64, CHUNK as u64),
            pattern(i as u8, CHUNK),
            "acknowledged chunk {i}"
        );
    }
    let rels = n.json(&["lsflash", "--json"]);
    assert_eq!(
        (rels[0]["source"].as_str(), rels[0]["target"].as_str()),
        (Some("v"), Some("snap"))
    );
}

#[test]
fn restart_keeps_the_digest() {
    let (_dir, mut n) = single_node(&[]);
    for v in ["a", "b", "c"] {
        n.ok(&["mkvol", v, "--size", "2M"]);
    }
    n.write("a", 0, pattern(3, 300_000));
    n.ok(&["mkflash", "a:b", "--persist", "--record", "--wait"]);
    n.ok(&["mkflash", "a:c", "--nocp"]);
    n.write("a", 100_000, pattern(4, 70_000));
    n.write("b", 1_000_000, pattern(5, 10));
    let (_, digest) = n.applied();
    let lsflash = n.json(&["lsflash", "--json"]);
    let data: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|v| n.read(v, 0, 2 << 20)).collect();

    n.kill9();
    std::thread::sleep(Duration::from_millis(200));
    n.restart();
    n.wait_ready();
    assert_eq!(n.applied().1, digest, "same digest after kill -9 and restart");
    assert_eq!(n.json(&["lsflash", "--json"]), lsflash);
    for (v, bytes) in ["a", "b", "c"].iter().zip(&data) {
        assert_eq!(&n.read(v, 0, 2 << 20), bytes, "volume {v}");
    }
    assert_eq!(
        n.json(&["audit", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["command"] == "mkflash a:c --nocp")
            .count(),
        1
    );
}

/// Bytes acknowledged so far in a log of `tests/nbd_sustained.py`.
fn acked_bytes(log: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut pending = std::collections::HashMap::new();
    let mut total = 0;
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["W", k, _, size, _] => {
                pending.insert(k.to_string(), size.parse::<u64>().unwrap());
            }
            ["A", k] => total += pending.remove(*k).unwrap_or(0),
            _ => {}
        }
    }
    total
}

/// `tests/nbd_sustained.py` on one volume: `writers` connections, each writing its own
/// `region` bytes, logging to `dir/VOLUME.log` until `dir/VOLUME.stop` exists.
struct Sustained {
    log: std::path::PathBuf,
    stop: std::path::PathBuf,
    uri: String,
    writers: String,
    region: String,
}

const SUSTAINED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/nbd_sustained.py");

impl Sustained {
    fn new(dir: &std::path::Path, n: &Node, volume: &str, writers: u64, region: u64) -> Self {
        Sustained {
            log: dir.join(format!("{volume}.log")),
            stop: dir.join(format!("{volume}.stop")),
            uri: format!("nbd://{}/{volume}", n.nbd),
            writers: writers.to_string(),
            region: region.to_string(),
        }
    }

    fn start(&self) -> std::process::Child {
        let (log, stop) = (self.log.to_str().unwrap(), self.stop.to_str().unwrap());
        std::process::Command::new(PYTHON)
            .args([SUSTAINED, "write", log, stop, &self.uri, &self.writers, &self.region])
            .spawn()
            .unwrap()
    }

    fn acked(&self) -> u64 {
        acked_bytes(&self.log)
    }

    /// Stops the writers (they also stop by themselves when their node dies).
    fn stop(&self, writer: &mut std::process::Child) {
        std::fs::write(&self.stop, b"").unwrap();
        writer.wait().unwrap();
    }

    /// Every acknowledged write is on the volume (the one in flight per writer may be too).
    fn verify(&self) {
        let log = self.log.to_str().unwrap();
        let out = run(
            PYTHON,
            &[SUSTAINED, "verify", log, &self.uri, &self.writers, &self.region],
        );
        assert_eq!(out.code, 0, "{}: {}{}", self.uri, out.stdout, out.stderr);
    }
}

/// Sustained overwrites of a small volume: the log is cut back (snapshot, then purge) instead
/// of growing until `--snapshot-every` entries, and a crash after a purge loses nothing
/// (entries are purged only up to a snapshot, whose state is already on disk).
#[test]
fn the_log_is_cut_back_under_sustained_writes_and_a_crash_after_a_purge_loses_nothing() {
    // 32 MiB: the cut-back point is the state's size (64 MiB) either way, and one spare segment
    // file (a segment passes 16 MiB by up to an append) fits in what the log may hold.
    let (dir, mut n) = single_node(&["--max-log-size", "32"]);
    n.ok(&["mkvol", "v", "--size", "64M"]);
    let load = Sustained::new(dir.path(), &n, "v", 4, 16 << 20);
    let mut writer = load.start();
    // Six times the volume: without the keeper the log would hold all of it.
    eventually("384 MiB acknowledged", 600, || load.acked() >= 384 << 20);
    eventually("the log purged", 120, || {
        n.metric("flashcopy_log_purged_index").unwrap_or(0) > 0
    });
    // A crash after a purge, under load.
    n.kill9();
    load.stop(&mut writer);
    n.restart();
    n.wait_ready();
    load.verify();
    // Once the writes stop, the log's files come down to about the state's size (a 64 MiB
    // volume) plus a segment (16 MiB) of purged entries and the spare segment files kept for
    // reuse (`--max-log-size` worth: one), not the 384 MiB written.
    let log_dir = dir.path().join("n1/raft-log");
    let log_files = || files_bytes(&log_dir, "");
    let cut_back = (0..240).any(|_| {
        let small = log_files() < 224 << 20;
        if !small {
            std::thread::sleep(Duration::from_millis(500));
        }
        small
    });
    let node_log = n.log();
    let tail: Vec<&str> = node_log.lines().rev().take(40).collect();
    assert!(
        cut_back,
        "the log's files hold {} bytes (gauge: {:?}); the node log ends:\n{}",
        log_files(),
        n.metric("flashcopy_log_bytes"),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    // The gauge is the entries those files hold (`LogStore::log_bytes`, spares not counted),
    // sampled once a second: the same bound (it was 160 MiB against the files' 224, and failed
    // under load in CI runs).
    eventually("the log size gauge to follow", 30, || {
        n.metric("flashcopy_log_bytes").is_some_and(|bytes| bytes < 224 << 20)
    });
    // Purged segment files are kept for reuse, and `lspool` counts them as the log's disk
    // (the gauge does not: it is the entries the log holds).
    let mut seen = (0, None, 0);
    let counted = (0..300).any(|_| {
        let pool = n.json(&["lspool", "--json"]);
        let used_by_log = pool["nodes"][0]["disk"]["used_by_log"].as_u64().unwrap();
        seen = (
            used_by_log,
            n.metric("flashcopy_log_bytes"),
            files_bytes(&log_dir, ".spare"),
        );
        let counted = seen.2 > 0 && Some(used_by_log) == seen.1.map(|entries| entries + seen.2);
        if !counted {
            std::thread::sleep(Duration::from_millis(100));
        }
        counted
    });
    assert!(
        counted,
        "lspool's log use, the entries' gauge and the spare files' bytes: {seen:?}"
    );
}

/// After the storage change (the state written without its own WAL, re-applied from the Raft
/// log after a crash): kill -9 in the middle of sustained NBD writes of 512 B to 1 MiB, twice,
/// and every acknowledged write is there, the relationship established between the crashes
/// kept its point in time, and the journal still replays to the live state.
#[test]
fn acknowledged_writes_survive_sigkill_under_sustained_mixed_writes() {
    let (dir, mut n) = single_node(&[]);
    for v in ["a", "b", "snap"] {
        n.ok(&["mkvol", v, "--size", "256M"]);
    }
    let loads = ["a", "b"].map(|v| Sustained::new(dir.path(), &n, v, 4, 64 << 20));
    // The target, read in parts: it shows the source as it was at the establish, whenever read.
    let image = |n: &Node| -> Vec<u8> {
        (0..8u64)
            .flat_map(|i| n.read("snap", i * (32 << 20), 32 << 20))
            .collect()
    };
    let mut snap_image = None;
    for (round, load) in loads.iter().enumerate() {
        let mut writer = load.start();
        if round == 0 {
            eventually("64 MiB acknowledged", 300, || load.acked() >= 64 << 20);
            // A point-in-time copy taken under load: copy-on-write runs through the crash.
            n.ok(&["mkflash", "a:snap", "--nocp", "--persist"]);
            snap_image = Some(image(&n));
        }
        // More than the memtables hold: flushes happen, and the crash loses unflushed state.
        eventually("192 MiB acknowledged", 600, || load.acked() >= 192 << 20);
        n.kill9();
        load.stop(&mut writer);
        n.restart();
        n.wait_ready();
        // Volume a after each crash, b after the second.
        for done in &loads[..=round] {
            done.verify();
        }
        assert!(
            image(&n) == *snap_image.as_ref().unwrap(),
            "the target still shows the source as it was at the establish"
        );
    }
    let audit = n.cli(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}{}", audit.stdout, audit.stderr);
}
