//! Every verb of SPEC §5 and every refusal of SPEC §4 through the real binary: exit statuses,
//! `error: <code>:` lines, and the `--json` shapes.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn volumes_create_list_delete() {
    let (_dir, n) = single_node(&[]);
    assert!(n.ok(&["mkvol", "a", "--size", "1M"]).contains("created volume a"));
    n.ok(&["mkvol", "b", "--size", "1048576"]);
    let vols = n.json(&["lsvol", "--json"]);
    let a = &vols[0];
    assert_eq!(
        keys(a),
        ["name", "shared", "size", "source_of", "state", "target_of", "used"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        (a["name"].as_str(), a["size"].as_u64(), a["state"].as_str()),
        (Some("a"), Some(1 << 20), Some("normal"))
    );
    assert!(a["target_of"].is_null() && a["source_of"].as_array().unwrap().is_empty());
    assert!(n.ok(&["lsvol"]).lines().next().unwrap().starts_with("NAME"));

    n.fails(&["mkvol", "a", "--size", "1M"], 1, "volume-exists");
    n.fails(&["mkvol", "c", "--size", "1000"], 2, "invalid-size");
    n.fails(&["mkvol", "c", "--size", "10X"], 2, "invalid-size");
    let e = n.fails(&["mkvol", "c", "--size", "-1"], 2, "invalid-size");
    assert!(e.contains("\"-1\" is not a size"), "{e}");
    let e = n.fails(&["mkvol", "c", "--size", "99999999T"], 2, "invalid-size");
    assert!(e.contains("is too large"), "{e}");
    // The parser's own refusals carry a code too (and its usage lines after it).
    let out = n.cli(&["mkvol", "c", "--sise", "1M"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: usage: unexpected argument '--sise'"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Usage: flashcopy mkvol"), "{}", out.stderr);
    n.fails(&["mkvol", "bad/name", "--size", "1M"], 2, "invalid-volume-name");
    n.fails(&["rmvol", "zz"], 1, "volume-not-found");
    n.ok(&["mkflash", "a:b", "--nocp"]);
    let e = n.fails(&["rmvol", "a"], 1, "volume-in-use");
    assert!(e.contains("a:b"), "{e}");
    n.ok(&["rmflash", "a:b"]);
    n.ok(&["rmvol", "a"]);
    assert_eq!(n.json(&["lsvol", "--json"]).as_array().unwrap().len(), 1);
    // A terabyte volume is instant and thin.
    n.ok(&["mkvol", "huge", "--size", "1T"]);
    assert_eq!(n.read("huge", (1 << 40) - 4, 4), vec![0; 4]);
}

#[test]
fn mkflash_refusals() {
    let (_dir, n) = single_node(&[]);
    for v in ["a", "b", "c", "x", "y", "z"] {
        n.ok(&["mkvol", v, "--size", "256K"]);
    }
    n.ok(&["mkvol", "small", "--size", "64K"]);
    n.fails(&["mkflash", "a:small"], 1, "size-mismatch");
    n.fails(&["mkflash", "a:a"], 2, "invalid-pair");
    n.fails(&["mkflash", "ab"], 2, "invalid-pair");
    n.fails(&["mkflash", "a:zz"], 1, "volume-not-found");
    n.fails(&["mkflash", "a:b", "--record"], 2, "invalid-option");
    n.fails(&["mkflash", "a:b", "--nocp", "--wait"], 2, "usage");
    assert!(n.ok(&["mkflash", "a:b", "--persist"]).contains("established a:b"));
    let e = n.fails(&["mkflash", "c:b"], 1, "target-in-use");
    assert!(
        e.contains("flashcopy rmflash a:b") && e.contains("flashcopy resyncflash a:b"),
        "{e}"
    );
    n.fails(&["mkflash", "b:a"], 1, "cascade-not-allowed");
    // All or nothing: the second pair fails, the first is not established either.
    let e = n.fails(&["mkflash", "x:y", "x:small"], 1, "size-mismatch");
    assert!(e.contains("x:small"), "{e}");
    assert!(n.json(&["lsflash", "x", "--json"]).as_array().unwrap().is_empty());
    n.ok(&["mkflash", "x:y", "--persist", "--record", "--nocp"]);
    // More than one incremental target per source (DS8000's multiple incremental FlashCopy).
    n.ok(&["mkvol", "v", "--size", "256K"]);
    n.ok(&["mkflash", "x:v", "--persist", "--record", "--nocp"]);
    let rels = n.json(&["lsflash", "x", "--json"]);
    let recording = rels
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["recording"] == true)
        .count();
    assert_eq!(recording, 2, "{rels}");

    // Twelve targets per source, not thirteen.
    let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for name in &names {
        n.ok(&["mkvol", name, "--size", "256K"]);
    }
    let pairs: Vec<String> = names[..11].iter().map(|t| format!("a:{t}")).collect();
    let mut args = vec!["mkflash"];
    args.extend(pairs.iter().map(String::as_str));
    args.push("--nocp");
    n.ok(&args);
    n.fails(&["mkflash", "a:t11", "--nocp"], 1, "too-many-targets");

    // Frozen sources take no new relationship.
    n.ok(&["mkflash", "z:c", "--freeze", "--nocp"]);
    n.ok(&["mkvol", "w", "--size", "256K"]);
    n.fails(&["mkflash", "z:w"], 1, "source-frozen");
    n.ok(&["unfreezeflash", "z"]);
    n.fails(&["unfreezeflash", "z"], 1, "not-frozen");
    n.ok(&["mkflash", "z:w", "--nocp"]);
}

#[test]
fn lsflash_json_and_watch() {
    let (dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    n.ok(&["mkvol", "b", "--size", "1M"]);
    n.ok(&[
        "mkflash",
        "a:b",
        "--nocp",
        "--persist",
        "--record",
        "--tgtinhibit",
        "--seqnum",
        "7",
    ]);
    let rels = n.json(&["lsflash", "--json"]);
    let r = &rels[0];
    let expected: BTreeSet<String> = [
        "source",
        "target",
        "seqnum",
        "state",
        "persistent",
        "recording",
        "background_copy",
        "target_write_inhibit",
        "frozen",
        "out_of_sync_tracks",
        "total_tracks",
        "created_at",
        "synced_at",
    ]
    .map(String::from)
    .into();
    assert!(expected.is_subset(&keys(r)), "{r}");
    assert_eq!(r["state"], "nocopy");
    assert_eq!(
        (
            r["seqnum"].as_u64(),
            r["out_of_sync_tracks"].as_u64(),
            r["total_tracks"].as_u64()
        ),
        (Some(7), Some(16), Some(16))
    );
    assert_eq!(
        (
            r["persistent"].as_bool(),
            r["recording"].as_bool(),
            r["background_copy"].as_bool()
        ),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(r["target_write_inhibit"].as_bool(), Some(true));
    humantime::parse_rfc3339(r["created_at"].as_str().unwrap()).expect("RFC 3339");
    assert_eq!(n.json(&["lsflash", "b", "--json"]).as_array().unwrap().len(), 1);
    assert!(n.json(&["lsflash", "zz", "--json"]).as_array().unwrap().is_empty());
    let vols = n.json(&["lsvol", "--json"]);
    assert_eq!(vols[0]["source_of"], serde_json::json!(["b"]));
    assert_eq!(vols[1]["target_of"], "a");

    // --watch redisplays until interrupted: it is interrupted once it has shown two displays.
    let shown = dir.path().join("watch.out");
    let mut child = Guarded::spawn(
        std::process::Command::new(bin())
            .args(["lsflash", "--watch", "--api", &n.api])
            .stdout(std::fs::File::create(&shown).unwrap()),
    );
    let read = || String::from_utf8_lossy(&std::fs::read(&shown).unwrap()).into_owned();
    eventually("two or more refreshes", 60, || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "--watch ended by itself: {}",
            read()
        );
        read().matches("PAIR").count() >= 2
    });
    child.stop();
    let text = read();
    assert!(text.matches("PAIR").count() >= 2, "two or more refreshes: {text}");
    assert!(text.contains("a:b") && text.contains("COPIED"), "{text}");
    assert!(
        text.contains("nocopy  0%"),
        "plain progress when not a terminal: {text}"
    );
}

#[test]
fn withdraw_refresh_reverse_with_data() {
    let (_dir, n) = single_node(&[]);
    for v in ["a", "b", "c"] {
        n.ok(&["mkvol", v, "--size", "1M"]);
    }
    let day1 = pattern(1, 1 << 20);
    n.write("a", 0, day1.clone());
    let out = n.cli(&["mkflash", "a:b", "--persist", "--record", "--wait"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("100%"),
        "plain progress lines when not a terminal: {}",
        out.stderr
    );
    assert_eq!(n.read("b", 0, 1 << 20), day1);
    assert_eq!(n.json(&["lsflash", "--json"])[0]["state"], "copied");

    // Incremental refresh.
    let day2 = pattern(2, 4096);
    n.write("a", 70_000, day2.clone());
    n.fails(
        &[
            "reverseflash",
            "a:b",
            "--seqnum",
            "1",
            "--fast",
            "--api",
            "http://127.0.0.1:1",
        ],
        3,
        "unreachable",
    );
    let out = n.ok(&["resyncflash", "a:b", "--wait"]);
    assert!(out.contains("refreshed a:b: 1 tracks to copy"), "{out}");
    assert_eq!(n.read("b", 70_000, 4096), day2);
    n.fails(&["rmflash", "a:b", "--seqnum", "5"], 1, "seqnum-mismatch");

    // Restore a from b after a mistake on a.
    n.write("a", 0, vec![0xEE; 8192]);
    n.ok(&["reverseflash", "a:b", "--wait"]);
    let mut expected = day1.clone();
    expected[70_000..74_096].copy_from_slice(&day2);
    assert_eq!(n.read("a", 0, 1 << 20), expected);
    let rels = n.json(&["lsflash", "--json"]);
    assert_eq!(
        (rels[0]["source"].as_str(), rels[0]["target"].as_str()),
        (Some("b"), Some("a"))
    );
    n.ok(&["rmflash", "b:a"]);
    n.fails(&["rmflash", "b:a"], 1, "relationship-not-found");

    // Refusals of resync and reverse.
    n.ok(&["mkflash", "a:c", "--nocp", "--persist"]);
    n.fails(&["resyncflash", "a:c"], 1, "not-recording");
    n.fails(&["reverseflash", "a:c"], 1, "not-recording");
    n.fails(&["resyncflash", "a:c", "--nocp", "--wait"], 2, "usage");
    n.fails(&["rmflash", "a:c", "--wait"], 2, "usage");

    // rmflash --cp: finish the copy, then withdraw; c is a complete copy.
    let out = n.ok(&["rmflash", "a:c", "--cp", "--wait"]);
    assert!(out.contains("completing"), "{out}");
    assert!(n.json(&["lsflash", "--json"]).as_array().unwrap().is_empty());
    assert_eq!(n.read("c", 0, 1 << 20), expected);
    assert_eq!(n.json(&["lsvol", "--json"])[2]["state"], "normal");

    // Withdrawn early: the target is incomplete.
    n.ok(&["mkflash", "a:c", "--nocp"]);
    assert!(n.ok(&["rmflash", "a:c"]).contains("c is incomplete"));
    assert_eq!(n.json(&["lsvol", "--json"])[2]["state"], "incomplete");

    // Fast reverse before the copy finished.
    n.ok(&["mkflash", "a:b", "--nocp"]);
    n.write("a", 0, vec![0x11; 4096]);
    n.fails(&["reverseflash", "a:b"], 1, "not-recording");
    let out = n.ok(&["reverseflash", "a:b", "--fast", "--wait"]);
    assert!(out.contains("(fast)"), "{out}");
    assert_eq!(n.read("a", 0, 1 << 20), expected, "a is back to the point in time");
    assert_eq!(n.json(&["lsvol", "--json"])[1]["state"], "incomplete");
}

/// `--wait` follows the background copy; turned off meanwhile (`chflash --copy-rate 0`), the
/// copy would never end: the wait ends with an error that says how to start it again, instead
/// of hanging.
#[test]
fn wait_ends_with_an_error_when_the_copy_is_turned_off() {
    let (dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "8M"]);
    n.ok(&["mkvol", "b", "--size", "8M"]);
    n.write("a", 0, pattern(3, 8 << 20));
    n.fails(&["mkflash", "a:b", "--copy-rate", "0", "--wait"], 2, "usage");
    // 8 MiB at 1 MiB/s: the copy takes about eight seconds.
    let errors = dir.path().join("wait.err");
    let mut child = Guarded::spawn(
        std::process::Command::new(bin())
            .args(["mkflash", "a:b", "--copy-rate", "1", "--wait", "--api", &n.api])
            .stderr(std::fs::File::create(&errors).unwrap()),
    );
    eventually("the relationship", 30, || {
        n.json(&["lsflash", "--json"]).as_array().is_some_and(|r| !r.is_empty())
    });
    n.ok(&["chflash", "a:b", "--copy-rate", "0"]);
    eventually("the wait to end", 30, || child.try_wait().unwrap().is_some());
    let status = child.wait().unwrap();
    let stderr = String::from_utf8_lossy(&std::fs::read(&errors).unwrap()).into_owned();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: copy-off: "), "{stderr}");
    assert!(stderr.contains("chflash a:b --copy-rate"), "{stderr}");
    assert_eq!(n.json(&["lsflash", "--json"])[0]["background_copy"], false);
}

#[test]
fn freeze_holds_writes_until_unfreeze() {
    let (_dir, n) = single_node_with_token(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    n.ok(&["mkvol", "b", "--size", "1M"]);
    assert!(n.ok(&["mkflash", "a:b", "--freeze", "--nocp"]).contains("froze a"));
    assert_eq!(n.json(&["lsflash", "--json"])[0]["frozen"], true);
    assert_eq!(n.json(&["lsvol", "--json"])[0]["state"], "frozen");
    let client = n.client();
    let writer = std::thread::spawn(move || block(client.write("a", 0, vec![7; 100])));
    std::thread::sleep(Duration::from_millis(700));
    assert!(!writer.is_finished(), "the write waits while a is frozen");
    assert_eq!(n.read("a", 0, 1), vec![0], "reads are not held");
    let out = n.ok(&["unfreezeflash", "a"]);
    assert!(out.contains("1 held writes completed"), "{out}");
    writer.join().unwrap().expect("the held write completes after the thaw");
    assert_eq!(n.read("a", 0, 1), vec![7]);
    assert_eq!(n.read("b", 0, 1), vec![0], "b keeps the point in time");
}

#[test]
fn audit_lists_every_command() {
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    n.ok(&["mkvol", "b", "--size", "1M"]);
    n.write("a", 4096, vec![1; 10]);
    n.ok(&["mkflash", "a:b", "--persist"]);
    n.fails(&["mkflash", "a:b"], 1, "target-in-use");
    let audit = n.json(&["audit", "--json"]);
    let commands: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert!(commands.contains(&"mkvol a --size 1048576"));
    // Host writes are summarised: volume, range and a checksum of the data, never the data.
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("write a offset=4096 length=10 xxh3=")),
        "{commands:?}"
    );
    let refused: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["refused"].is_null())
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["refused"]["code"], "target-in-use");
    let text = n.ok(&["audit", "--volume", "b"]);
    assert!(
        text.contains("mkflash a:b --persist") && text.contains("refused target-in-use"),
        "{text}"
    );
    assert!(!text.contains("write a"), "filtered by volume: {text}");
}

#[test]
fn cluster_status_and_errors_of_the_cli() {
    let (_dir, n) = single_node(&[]);
    let status = n.json(&["cluster", "status", "--json"]);
    assert_eq!(status["leader"], 1);
    let node = &status["nodes"][0];
    assert_eq!((node["id"].as_u64(), node["role"].as_str()), (Some(1), Some("leader")));
    assert_eq!(node["url"].as_str(), Some(n.api.as_str()));
    assert!(node["applied_index"].as_u64().unwrap() >= 1);
    assert_eq!(status["digest"].as_str().unwrap().len(), 16);
    assert!(n.ok(&["cluster", "status"]).contains("leader"));
    // The client options may also follow the subcommand.
    let after = cli_env("http://127.0.0.1:1", &["cluster", "status", "--api", &n.api], &[]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    n.fails(&["cluster", "remove", "9"], 1, "node-not-found");
    n.fails(&["cluster", "add", "9", "http://127.0.0.1:1"], 1, "node-unreachable");

    assert_eq!(n.cli(&["nosuchverb"]).code, 2);
    assert_eq!(n.cli(&["mkvol", "a"]).code, 2, "--size is required");
    let out = cli_env("http://127.0.0.1:1", &["lsvol"], &[]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.starts_with("error: unreachable: "), "{}", out.stderr);
    assert!(n.ok(&["--version"]).starts_with("flashcopy"));
}

/// The two-phase refresh Global Mirror forms consistency groups with, as a host sees it over
/// NBD: a revertible increment refuses host writes on both volumes (EPERM), survives a SIGKILL,
/// and is thrown away by revertflash (the target reads its previous point in time, the target's
/// own write of then included) or kept by commitflash (the copy then goes on).
#[test]
fn revertible_increments_as_hosts_see_them_through_a_kill() {
    let (_dir, mut n) = single_node(&[]);
    for v in ["src", "tgt"] {
        n.ok(&["mkvol", v, "--size", "8M"]);
    }
    let (src, tgt) = (n.nbd_uri("src"), n.nbd_uri("tgt"));
    qemu_io(&src, &["write -P 1 0 8M"]);
    n.ok(&["mkflash", "src:tgt", "--persist", "--record", "--seqnum", "3", "--wait"]);
    qemu_io(&src, &["write -P 2 1M 1M"]);
    qemu_io(&tgt, &["write -P 9 5M 64k"]);
    n.fails(&["commitflash", "src:tgt"], 1, "not-revertible");

    let out = n.ok(&["setflashrevertible", "src:tgt", "--seqnum", "5"]);
    assert!(
        out.contains("took a revertible increment (seqnum 5): 17 tracks"),
        "{out}"
    );
    let rel = &n.json(&["lsflash", "--json"])[0];
    assert_eq!(
        (rel["revertible"].as_bool(), rel["seqnum"].as_u64()),
        (Some(true), Some(5))
    );
    assert!(n.ok(&["lsflash"]).contains("REVERTIBLE"));
    qemu_io(&tgt, &["read -P 2 1M 1M", "read -P 1 5M 64k", "read -P 1 0 1M"]);
    for uri in [&src, &tgt] {
        let write = qemu_io_result(uri, &["-c", "write -P 7 0 4k"]);
        assert!(
            write.stdout.contains("Operation not permitted") || write.stderr.contains("Operation not permitted"),
            "a write to a volume of a revertible relationship: {}{}",
            write.stdout,
            write.stderr
        );
    }
    for verb in ["rmflash", "resyncflash", "reverseflash", "setflashrevertible"] {
        n.fails(&[verb, "src:tgt"], 1, "relationship-revertible");
    }
    n.fails(&["revertflash", "src:tgt", "--seqnum", "3"], 1, "seqnum-mismatch");

    // Raft state in RocksDB: the increment outlives a SIGKILL.
    n.restart();
    n.wait_ready();
    assert_eq!(n.json(&["lsflash", "--json"])[0]["revertible"], true);
    let out = n.ok(&["revertflash", "src:tgt", "--seqnum", "5"]);
    assert!(out.contains("(seqnum 3): 17 tracks restored"), "{out}");
    qemu_io(&tgt, &["read -P 1 0 5M", "read -P 9 5M 64k", "read -P 1 5184k 3008k"]);
    qemu_io(&src, &["read -P 2 1M 1M", "write -P 4 6M 64k"]);

    // Taken again and committed: the copy-on-write and the background copy keep it.
    n.ok(&["setflashrevertible", "src:tgt"]);
    n.ok(&["commitflash", "src:tgt", "--seqnum", "3"]);
    qemu_io(&src, &["write -P 8 1M 64k"]);
    eventually("the copy to finish", 60, || {
        n.json(&["lsflash", "--json"])[0]["state"] == "copied"
    });
    qemu_io(&tgt, &["read -P 2 1M 1M", "read -P 1 5M 64k", "read -P 4 6M 64k"]);
    n.fails(&["revertflash", "src:tgt"], 1, "not-revertible");
}

/// Output piped into a reader that has gone (`flashcopy audit --json | head`) ends the command
/// quietly by SIGPIPE, as it ends `cat`: no panic on the closed pipe.
#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    let mut child = std::process::Command::new(bin())
        .args(["lsvol", "--json"])
        .env("FLASHCOPY_API", &n.api)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before the command has its answer from the node to print.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13;
    assert_eq!(out.status.signal(), Some(SIGPIPE), "{:?}: {stderr}", out.status);
}
