//! A full disk: host writes are refused with ENOSPC before the disk is full (the reserve), while
//! reads, admin commands and deletes go on; writes come back by themselves when space returns;
//! a restart on the nearly full disk works; no acknowledged write is lost. Runs on a small
//! tmpfs the test mounts itself, and says plainly when it cannot (under `FLASHCOPY_REQUIRE_ALL`,
//! as in CI, it fails instead).

mod common;
use common::*;
use std::path::Path;

/// qemu-io writes 4 MiB chunks of a chunk-specific pattern until one fails; returns how many
/// were acknowledged and the failure.
fn fill(uri: &str, limit: usize) -> (usize, String) {
    fill_from(uri, 0, limit)
}

fn pattern_of(chunk: usize) -> u8 {
    (chunk % 200) as u8 + 17
}

fn verify(uri: &str, chunks: usize) {
    for chunk in 0..chunks {
        qemu_io_with(
            &["-r"],
            uri,
            &[&format!("read -P {} {}M 4M", pattern_of(chunk), chunk * 4)],
        );
    }
}

#[test]
fn a_full_disk_refuses_writes_with_enospc_keeps_serving_and_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount(768) else {
        return;
    };
    // Space another tenant holds on the same disk; freeing it later is "space returns". More
    // than the memtables (128 MiB) that may still flush after writes were refused.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![7u8; 256 << 20]).unwrap();
    let mut node = Node::start(&disk.path().join("n1"), 1, &["--disk-reserve", "192"]);
    node.wait_ready();
    node.ok(&["mkvol", "v", "--size", "2G"]);
    node.ok(&["mkvol", "spare", "--size", "1G"]);
    let uri = node.nbd_uri("v");

    let (acked, failure) = fill(&uri, 500);
    assert!(acked > 0 && acked < 500, "the disk never filled ({acked} chunks)");
    assert!(
        failure.contains("No space left on device"),
        "the refusal is ENOSPC: {failure}"
    );
    // Counted, not only shown: the low flag may clear within a sample once the state has
    // flushed and purged what it held.
    assert!(node.metric("flashcopy_disk_refused_writes_total") >= Some(1));

    // Reads, admin commands and deletes go on.
    verify(&uri, acked);
    node.ok(&["lsvol"]);
    node.ok(&["mkvol", "small", "--size", "1M"]);
    node.ok(&["rmvol", "spare"]);
    node.fails(&["mkflash", "v:small"], 1, "size-mismatch");

    // Space returns: writes are accepted again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let resumed = (0..60).any(|_| {
        let out = qemu_io_result(
            &uri,
            &["-c", &format!("write -P {} {}M 4M", pattern_of(acked), acked * 4)],
        );
        if out.code != 0 {
            eprintln!("not yet: {}{}", out.stdout, out.stderr);
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        out.code == 0
    });
    assert!(
        resumed,
        "writes did not resume once space returned (free: {:?}); node log:\n{}",
        node.metric("flashcopy_disk_free_bytes"),
        node.log()
    );
    let acked = acked + 1;

    // A restart on the nearly full disk works, and nothing acknowledged is lost.
    node.restart();
    node.wait_ready();
    verify(&node.nbd_uri("v"), acked);
}

/// A disk too small for the reserve plus what the node keeps free for its memtables (128 MiB)
/// could never take a host write: `serve` says so at once (a usage error), instead of a node
/// that refuses every write.
#[test]
fn a_disk_too_small_for_the_reserve_and_the_memtables_is_a_usage_error() {
    let Some(disk) = SmallDisk::mount(100) else {
        return;
    };
    let data_dir = disk.path().join("n1");
    let args = ["serve", "--data-dir", data_dir.to_str().unwrap(), "--disk-reserve", "0"];
    let out = output_within(std::process::Command::new(bin()).args(args), 30);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("--disk-reserve 0 B plus the 128 MiB") && out.stderr.contains("memtables"),
        "{}",
        out.stderr
    );
}

/// `--disk-reserve 0` keeps no reserve for the administrator, but the node still keeps room
/// for what its state may flush: before, it accepted host writes until the disk was full to
/// the last byte, stopped, and could not start again (RocksDB could not open its database);
/// the only way out was to delete files by hand.
#[test]
fn without_a_reserve_the_node_still_never_fills_its_own_disk_and_starts_again() {
    let Some(disk) = SmallDisk::mount(320) else {
        return;
    };
    let mut node = Node::start(disk.path(), 1, &["--disk-reserve", "0"]);
    node.wait_ready();
    node.ok(&["mkvol", "v", "--size", "1G"]);
    let (acked, said) = fill(&node.nbd_uri("v"), 100);
    assert!(
        acked > 0 && acked < 100,
        "{acked} of 100 chunks of 4 MiB fit on a 320 MiB disk"
    );
    assert!(
        said.contains("No space left on device"),
        "the refusal is ENOSPC: {said}"
    );
    assert_eq!(node.try_exit_code(), None, "the node stopped: {}", node.log());
    node.restart();
    node.wait_ready();
    verify(&node.nbd_uri("v"), acked);
    node.ok(&["rmvol", "v"]);
    node.ok(&["mkvol", "w", "--size", "64M"]);
    let uri = node.nbd_uri("w");
    eventually("a write once the space came back", 60, || {
        qemu_io_result(&uri, &["-c", "write -P 50 0 8M"]).code == 0
    });
}

/// Bytes the files under `dir` take (`du`).
fn dir_bytes(dir: &Path) -> u64 {
    let out = run("du", &["-sb", dir.to_str().unwrap()]);
    out.stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du: {}{}", out.stdout, out.stderr))
}

/// Bytes used on the filesystem holding `dir` (what `df` shows as used).
fn used_bytes(dir: &Path) -> u64 {
    let out = run("df", &["-B1", "--output=used", dir.to_str().unwrap()]);
    out.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df: {}{}", out.stdout, out.stderr))
}

/// The issue's sequence on a 700 MiB disk: fill a volume until writes are refused, delete it,
/// and a new volume takes writes again within seconds, without a restart: the deleted volume's
/// blocks and the log entries that carried them are given back (bounded: 60 s). Then TRIM of a
/// written volume returns its space too.
#[test]
fn space_comes_back_when_a_volume_is_deleted_and_when_it_is_trimmed() {
    let Some(disk) = SmallDisk::mount(700) else {
        return;
    };
    let mut node = Node::start(&disk.path().join("n1"), 1, &[]);
    node.wait_ready();
    node.ok(&["mkvol", "big", "--size", "1G"]);
    let (acked, failure) = fill(&node.nbd_uri("big"), 256);
    assert!(acked > 10 && acked < 256, "the disk never filled ({acked} chunks)");
    assert!(failure.contains("No space left on device"), "{failure}");
    let full = used_bytes(disk.path());
    // Short of space, the log keeps no purged segment files for reuse.
    let log_dir = disk.path().join("n1/raft-log");
    eventually("the spare log segment files deleted", 30, || {
        files_named(&log_dir, ".spare") == 0
    });

    node.ok(&["rmvol", "big"]);
    node.ok(&["mkvol", "again", "--size", "1G"]);
    let uri = node.nbd_uri("again");
    let started = std::time::Instant::now();
    let mut resumed = false;
    while started.elapsed() < std::time::Duration::from_secs(60) {
        let out = qemu_io_result(&uri, &["-c", "write -P 5 0 1M"]);
        if out.code == 0 && !out.stdout.contains("failed") {
            resumed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let after = used_bytes(disk.path());
    assert!(
        resumed,
        "writes to a new volume were still refused 60 s after the delete (used {} MiB, was {} MiB); node log:\n{}",
        after >> 20,
        full >> 20,
        node.log()
    );
    eprintln!(
        "writes resumed {:.1} s after the delete; df used {} MiB -> {} MiB",
        started.elapsed().as_secs_f64(),
        full >> 20,
        after >> 20
    );
    let written = (acked as u64) * (4 << 20);
    eventually("the deleted volume's space back on the disk", 60, || {
        used_bytes(disk.path()) + written / 2 < full
    });

    // The log that carried the deleted volume's data was cut back too. The purged segment
    // files it keeps for reuse stay within an eighth of the disk: five 16 MiB files of 700 MiB.
    eventually("the log cut back", 60, || {
        files_bytes(&log_dir, ".log") < written / 4 && files_named(&log_dir, ".spare") <= 5
    });

    // TRIM: 64 MiB written and on disk (a clean stop flushes the state), then discarded: the
    // state gives its blocks back (the log entries that carried them go with the log's next cut).
    // (Writes come back as the deleted volume's space does, a little at a time: memtables and
    // writes under way count against the reserve too.)
    let mut chunks = 0;
    eventually("64 MiB written", 60, || {
        chunks = fill_from(&uri, chunks, 16).0;
        chunks == 16
    });
    node.stop();
    node.start_again();
    node.wait_ready();
    let db = disk.path().join("n1/db");
    let written_db = dir_bytes(&db);
    qemu_io(&uri, &["discard 0 64M"]);
    eventually("the trimmed blocks given back", 60, || {
        dir_bytes(&db) + (48 << 20) < written_db
    });
    node.stop();
}

/// The disk's state as the node at `n` reports node `id`'s in `cluster status`.
fn disk_state(n: &Node, id: u64) -> Option<String> {
    let status = n.json(&["cluster", "status", "--json"]);
    let node = status["nodes"].as_array()?.iter().find(|m| m["id"] == id)?.clone();
    node["disk"]["status"].as_str().map(str::to_string)
}

/// Past `--disk-warning` the node warns — metric, `cluster status`, its log — while writes
/// still succeed; only under the reserve are they refused.
#[test]
fn the_warning_threshold_fires_before_writes_are_refused() {
    let Some(disk) = SmallDisk::mount(700) else {
        return;
    };
    let node = Node::start(&disk.path().join("n1"), 1, &["--disk-warning", "40"]);
    node.wait_ready();
    node.ok(&["mkvol", "v", "--size", "1G"]);
    let uri = node.nbd_uri("v");
    assert_eq!(disk_state(&node, 1).as_deref(), Some("ok"));
    let mut warned_at = None;
    for chunk in 0..200 {
        write_chunk(&uri, chunk).unwrap_or_else(|e| panic!("chunk {chunk} refused before any warning: {e}"));
        // The disk is sampled twice a second.
        std::thread::sleep(std::time::Duration::from_millis(600));
        if disk_state(&node, 1).as_deref() == Some("warning") {
            warned_at = Some(chunk);
            break;
        }
    }
    let warned_at = warned_at.expect("the warning never came");
    assert_eq!(node.metric("flashcopy_disk_warning"), Some(1));
    assert_eq!(node.metric("flashcopy_disk_low"), Some(0));
    assert!(node.log().contains("past its warning threshold"), "{}", node.log());
    let status = node.ok(&["cluster", "status"]);
    assert!(
        status.contains("warning") && status.contains("past its warning threshold"),
        "{status}"
    );
    // Writes still go on past the warning, until the reserve.
    let (more, failure) = fill_from(&uri, warned_at + 1, 200);
    assert!(more > warned_at + 1, "no write succeeded after the warning: {failure}");
    assert!(failure.contains("No space left on device"), "{failure}");
    assert_eq!(disk_state(&node, 1).as_deref(), Some("full"));
    assert!(
        node.ok(&["cluster", "status"]).contains("under its reserve"),
        "the status says why writes are refused"
    );
}

/// `fill` from chunk `first` on: returns the chunk that failed (or `limit`) and why.
fn fill_from(uri: &str, first: usize, limit: usize) -> (usize, String) {
    for chunk in first..limit {
        if let Err(why) = write_chunk(uri, chunk) {
            return (chunk, why);
        }
    }
    (limit, String::new())
}

/// Writes 4 MiB chunk `chunk` with its pattern; qemu-io's words if it failed.
fn write_chunk(uri: &str, chunk: usize) -> Result<(), String> {
    let pattern = format!("write -P {} {}M 4M", pattern_of(chunk), chunk * 4);
    let out = qemu_io_result(uri, &["-c", &pattern]);
    if out.code != 0 || out.stdout.contains("failed") || out.stderr.contains("failed") {
        return Err(format!("{}{}", out.stdout, out.stderr));
    }
    Ok(())
}

/// Every node's disk counts: a follower short of space is named by the leader's `cluster
/// status`; a follower that cannot append any more cannot acknowledge, and the majority goes
/// on acknowledging writes without it.
#[test]
fn a_follower_short_of_space_is_named_and_the_majority_goes_on() {
    let Some(disk) = SmallDisk::mount(160) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start(&dir.path().join("n1"), 1, &[]);
    n1.wait_ready();
    let join = n1.api.clone();
    let n2 = Node::start(&dir.path().join("n2"), 2, &["--join", &join]);
    let n3 = Node::start(
        &disk.path().join("n3"),
        3,
        &["--join", &join, "--disk-reserve", "16", "--disk-warning", "50"],
    );
    let mut nodes = vec![n1, n2, n3];
    wait_for_voters(&nodes, 3);
    let leader = leader_everywhere(&nodes);
    assert_eq!(leader, 1, "node 1 initialised the cluster and leads");
    nodes[0].ok(&["mkvol", "v", "--size", "1G"]);
    let uri = nodes[0].nbd_uri("v");
    let mut named = false;
    let mut chunk = 0;
    while chunk < 64 {
        write_chunk(&uri, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
        chunk += 1;
        let state = disk_state(&nodes[0], 3);
        if matches!(state.as_deref(), Some("warning" | "full")) {
            named = true;
            let status = nodes[0].ok(&["cluster", "status"]);
            assert!(status.contains("node 3: its disk"), "{status}");
            break;
        }
    }
    assert!(named, "the leader never reported node 3's disk as short");
    // Go on until node 3 runs out altogether (it stops: its storage failed, and its process
    // takes a moment to exit) and after: every write is still acknowledged by nodes 1 and 2.
    let mut exited = false;
    for _ in 0..100 {
        write_chunk(&uri, chunk).unwrap_or_else(|e| panic!("chunk {chunk} after node 3 filled: {e}"));
        chunk += 1;
        if nodes[2].try_exit_code().is_some() {
            exited = true;
        }
        if exited && chunk % 4 == 0 {
            break;
        }
    }
    assert!(exited, "node 3's disk never filled (its log: {})", nodes[2].log());
    let log = nodes[2].log();
    assert!(
        log.contains("error: raft-stopped: node 3 cannot go on:") && log.contains("restart it"),
        "{log}"
    );
    assert_eq!(disk_state(&nodes[0], 3), None, "node 3 is reported unreachable");
    verify(&nodes[1].nbd_uri("v"), chunk);
    nodes.truncate(2);
}

/// A probe's find: one large sequential write onto a disk that fills (the probe's reserve was
/// the default 256 MiB on a faster build; 128 MiB here, which the README says to keep above).
/// Free space was sampled twice a second, and between two samples a fast disk took more than
/// the reserve (the log and the state each take the bytes, and up to 128 MiB of
/// memtables were not on disk yet): RocksDB hit a full disk, the node stopped, and it could not
/// start again. The bytes admitted since the last sample and the memtables now count against
/// the reserve: the write is refused with ENOSPC and the node lives on.
#[test]
fn a_large_write_onto_a_filling_disk_is_refused_before_the_disk_is_full() {
    let Some(disk) = SmallDisk::mount(700) else {
        return;
    };
    let mut node = Node::start(&disk.path().join("n1"), 1, &["--disk-reserve", "128"]);
    node.wait_ready();
    node.ok(&["mkvol", "big", "--size", "1G"]);
    let out = qemu_io_result(&node.nbd_uri("big"), &["-c", "write -P 49 0 1G"]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert_ne!(out.code, 0, "1 GiB fit on a 700 MiB disk: {said}");
    assert_eq!(node.try_exit_code(), None, "the node stopped: {}", node.log());
    assert!(
        said.contains("No space left on device"),
        "the refusal is ENOSPC: {said}"
    );
    node.ok(&["lsvol"]);
    node.restart();
    node.wait_ready();
    node.ok(&["rmvol", "big"]);
    node.ok(&["mkvol", "small", "--size", "64M"]);
    // The deleted volume's space comes back within seconds.
    let uri = node.nbd_uri("small");
    eventually("a write once the space came back", 60, || {
        qemu_io_result(&uri, &["-c", "write -P 50 0 64M"]).code == 0
    });
}
