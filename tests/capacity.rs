//! Capacity an administrator can see: `lsvol` says what each volume uses (and what a target
//! still shares with its source), `lspool` the pool's totals and each node's disk, in the units
//! people read, in bytes for scripts, and the same as Prometheus gauges.

mod common;
use common::*;

const MIB: u64 = 1 << 20;

fn volume<'a>(volumes: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name} in {volumes:#}"))
}

/// SIGKILL, restart: the node comes back with the digest it had.
fn killed_and_restarted_with_the_same_digest(n: &mut Node) {
    let (_, digest) = n.applied();
    n.kill9();
    std::thread::sleep(std::time::Duration::from_millis(200));
    n.restart();
    n.wait_ready();
    assert_eq!(n.applied().1, digest, "same digest after kill -9 and restart");
}

#[test]
fn lsvol_and_lspool_agree_with_what_was_written() {
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "1G"]);
    n.ok(&["mkvol", "b", "--size", "1G"]);
    qemu_io(&n.nbd_uri("a"), &["write -P 3 0 4M"]);

    // Thin: a uses what was written, b nothing.
    let volumes = n.json(&["lsvol", "--json"]);
    assert_eq!(volume(&volumes, "a")["used"], 4 * MIB);
    assert_eq!(volume(&volumes, "b")["used"], 0);
    assert_eq!(volume(&volumes, "a")["shared"], 0);

    // A nocopy target shares everything with its source; a write to the source copies the
    // old tracks it covers to the target first (16 tracks of 64 KiB).
    n.ok(&["mkflash", "a:b", "--nocp"]);
    let volumes = n.json(&["lsvol", "--json"]);
    assert_eq!(volume(&volumes, "b")["shared"], 1024 * MIB);
    qemu_io(&n.nbd_uri("a"), &["write -P 4 0 1M"]);
    let volumes = n.json(&["lsvol", "--json"]);
    assert_eq!(volume(&volumes, "b")["used"], MIB);
    assert_eq!(volume(&volumes, "b")["shared"], 1023 * MIB);
    assert_eq!(volume(&volumes, "a")["used"], 4 * MIB);

    // The table in the units people read; --bytes for scripts.
    let table = n.ok(&["lsvol"]);
    assert!(table.lines().next().unwrap().contains("USED"), "{table}");
    let row_a = table.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(row_a.contains("1 GiB") && row_a.contains("4 MiB"), "{table}");
    let row_b = table.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(row_b.contains("1023 MiB"), "{table}");
    let bytes = n.ok(&["lsvol", "--bytes"]);
    let row_a = bytes.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(row_a.contains("1073741824") && row_a.contains("4194304"), "{bytes}");

    // The pool: virtual capacity, what the volumes use, the node's disk, the log holding the
    // entries that carried the 5 MiB written.
    let pool = n.json(&["lspool", "--json"]);
    assert_eq!(pool["volumes"], 2);
    assert_eq!(pool["virtual_capacity"], 2048 * MIB);
    assert_eq!(pool["used_by_volumes"], 5 * MIB);
    let disk = &pool["nodes"][0]["disk"];
    let capacity = disk["capacity"].as_u64().unwrap();
    assert!(capacity > 0 && pool["capacity"] == capacity, "{pool:#}");
    assert_eq!(
        pool["overallocation_percent"].as_u64().unwrap(),
        2048 * MIB * 100 / capacity
    );
    assert!(disk["used_by_log"].as_u64().unwrap() > 5 * MIB, "{pool:#}");
    assert!(disk["free"].as_u64().unwrap() <= capacity);
    assert_eq!(disk["reserve"], 256 * MIB);
    assert_eq!(disk["warning_percent"], 80);
    assert!(
        ["ok", "warning"].contains(&disk["status"].as_str().unwrap()),
        "{pool:#}"
    );
    let report = n.ok(&["lspool"]);
    assert!(report.contains("virtual capacity 2 GiB, used 5 MiB"), "{report}");
    assert!(report.contains("USED_BY_LOG"), "{report}");

    // The same as gauges.
    assert_eq!(n.metric("flashcopy_volumes_virtual_bytes"), Some(2048 * MIB));
    assert_eq!(n.metric("flashcopy_volumes_used_bytes"), Some(5 * MIB));
    assert_eq!(n.metric("flashcopy_disk_capacity_bytes"), Some(capacity));
    assert!(n.metric("flashcopy_state_bytes").is_some());

    // cluster status names the disk's state per node.
    let status = n.json(&["cluster", "status", "--json"]);
    assert_eq!(status["nodes"][0]["disk"]["capacity"], capacity);
}

#[test]
fn the_reserve_may_be_a_percentage_and_a_bad_one_is_a_usage_error() {
    let (_dir, n) = single_node(&["--disk-reserve", "10%", "--disk-warning", "95"]);
    let disk = n.json(&["lspool", "--json"])["nodes"][0]["disk"].clone();
    let capacity = disk["capacity"].as_u64().unwrap();
    assert_eq!(disk["reserve"].as_u64().unwrap(), capacity / 100 * 10);
    assert_eq!(disk["warning_percent"], 95);

    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["--disk-reserve", "95%"][..],
        &["--disk-reserve", "lots"],
        // More MiB than any disk here: no write could ever be accepted.
        &["--disk-reserve", "1000000000"],
        &["--disk-warning", "0"],
    ] {
        let mut args = vec!["serve", "--data-dir", dir.path().to_str().unwrap()];
        args.extend_from_slice(bad);
        let out = output_within(std::process::Command::new(bin()).args(&args), 30);
        assert_eq!(out.code, 2, "{bad:?}: {}", out.stderr);
        assert!(out.stderr.contains(bad[0]), "{bad:?}: {}", out.stderr);
    }
}

/// Withdrawing relationships that let go of more kept tracks than one apply looks at leaves
/// them to the leader's sweep: the withdrawal is instant, the space comes back by bounded
/// steps, the targets that remain read their point in time, and the digests stay exact.
#[test]
fn space_kept_for_withdrawn_targets_comes_back_by_sweep_steps() {
    let (_dir, mut n) = single_node(&[]);
    for v in ["a", "t1", "t2", "t3", "t4"] {
        n.ok(&["mkvol", v, "--size", "64M"]);
    }
    qemu_io(&n.nbd_uri("a"), &["write -P 3 0 21M"]);
    n.ok(&["mkflash", "a:t1", "a:t2", "--nocp"]);
    // 320 tracks kept for t1 and t2 (more than one apply drops: 256).
    qemu_io(&n.nbd_uri("a"), &["write -P 4 0 20M"]);
    n.ok(&["mkflash", "a:t3", "a:t4", "--nocp"]);
    // 16 more, kept for all four.
    qemu_io(&n.nbd_uri("a"), &["write -P 5 20M 1M"]);
    let used = |n: &Node| volume(&n.json(&["lsvol", "--json"]), "a")["used"].as_u64().unwrap();
    assert_eq!(used(&n), 42 * MIB, "21 MiB of its own, 21 MiB kept once");

    n.ok(&["rmflash", "a:t1", "a:t2"]);
    eventually("the kept tracks only t1 and t2 read are swept", 60, || {
        used(&n) == 22 * MIB
    });
    for t in ["t3", "t4"] {
        let out = qemu_io(&n.nbd_uri(t), &["read -P 4 0 20M", "read -P 3 20M 1M"]);
        assert!(!out.contains("Pattern verification failed"), "{t}: {out}");
    }
    let out = qemu_io(&n.nbd_uri("a"), &["read -P 4 0 20M", "read -P 5 20M 1M"]);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let audit = n.ok(&["audit", "--volume", "a"]);
    assert!(
        audit.contains("sweep-kept a"),
        "the sweep steps are in the journal: {audit}"
    );
    // t3 zeroed over part of what it still reads kept: it lets go of those tracks (t4 still
    // reads them), and that survives a restart.
    qemu_io(&n.nbd_uri("t3"), &["write -z 0 1M"]);
    let report = n.json(&["audit", "verify", "--json"]);
    assert!(report["differences"].as_array().unwrap().is_empty(), "{report:#}");
    killed_and_restarted_with_the_same_digest(&mut n);
    let report = n.json(&["audit", "verify", "--json"]);
    assert!(report["differences"].as_array().unwrap().is_empty(), "{report:#}");
    let out = qemu_io(&n.nbd_uri("t3"), &["read -P 0 0 1M", "read -P 4 1M 19M"]);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    n.ok(&["rmflash", "a:t3", "a:t4"]);
    assert_eq!(used(&n), 21 * MIB, "the last relationship takes the rest at once");
}

/// Copy-on-write to twelve nocopy targets stores each overwritten track once, not twelve
/// times: the source's `used` grows by what was overwritten, the targets' by nothing, every
/// target still reads its point in time (after a SIGKILL too), the audit replays it, and the
/// space comes back when the last relationship goes.
#[test]
fn twelve_nocopy_targets_share_one_kept_copy_of_each_overwritten_track() {
    let (_dir, mut n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "64M"]);
    qemu_io(&n.nbd_uri("a"), &["write -P 3 0 4M"]);
    let pairs: Vec<String> = (1..=12).map(|t| format!("a:t{t}")).collect();
    for t in 1..=12 {
        n.ok(&["mkvol", &format!("t{t}"), "--size", "64M"]);
    }
    let mut mkflash = vec!["mkflash"];
    mkflash.extend(pairs.iter().map(String::as_str));
    mkflash.push("--nocp");
    n.ok(&mkflash);
    qemu_io(&n.nbd_uri("a"), &["write -P 4 0 2M"]);

    let volumes = n.json(&["lsvol", "--json"]);
    assert_eq!(
        volume(&volumes, "a")["used"],
        6 * MIB,
        "4 MiB of its own and 2 MiB kept once"
    );
    for t in 1..=12 {
        assert_eq!(volume(&volumes, &format!("t{t}"))["used"], 0);
    }
    let pool = n.json(&["lspool", "--json"]);
    assert_eq!(pool["used_by_volumes"], 6 * MIB, "not 4 + 12 x 2 MiB");

    killed_and_restarted_with_the_same_digest(&mut n);
    for t in [1, 7, 12] {
        let out = qemu_io(&n.nbd_uri(&format!("t{t}")), &["read -P 3 0 4M"]);
        assert!(!out.contains("Pattern verification failed"), "t{t}: {out}");
    }
    let out = qemu_io(&n.nbd_uri("a"), &["read -P 4 0 2M", "read -P 3 2M 2M"]);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let report = n.json(&["audit", "verify", "--json"]);
    assert!(report["differences"].as_array().unwrap().is_empty(), "{report:#}");

    // One target written over part of a kept track takes it as its own; the rest still share.
    qemu_io(&n.nbd_uri("t1"), &["write -P 5 0 4k"]);
    let out = qemu_io(&n.nbd_uri("t1"), &["read -P 5 0 4k", "read -P 3 4k 60k"]);
    assert!(!out.contains("Pattern verification failed"), "{out}");

    let mut rmflash = vec!["rmflash"];
    rmflash.extend(pairs.iter().map(String::as_str));
    n.ok(&rmflash);
    let volumes = n.json(&["lsvol", "--json"]);
    assert_eq!(
        volume(&volumes, "a")["used"],
        4 * MIB,
        "the kept tracks went with the last relationship"
    );
    let report = n.json(&["audit", "verify", "--json"]);
    assert!(report["differences"].as_array().unwrap().is_empty(), "{report:#}");
}
