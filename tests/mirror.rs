//! Metro Mirror between two clusters on this machine: real processes, real NBD clients, real
//! kills. Site A holds the primaries, site B the secondaries; each has its own token.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const TRACK: u64 = 64 << 10;

/// A single-node site with its own token, mirror timeout `timeout_ms`.
fn site(dir: &Path, name: &str, timeout_ms: u64) -> Node {
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, format!("{name}-secret\n")).unwrap();
    let timeout = timeout_ms.to_string();
    let node = Node::start(
        &dir.join(name),
        1,
        &["--token-file", token.to_str().unwrap(), "--mirror-timeout", &timeout],
    );
    node.wait_ready();
    node
}

/// The token file of a site made by `site`.
fn token_of(dir: &Path, name: &str) -> String {
    dir.join(format!("{name}.token")).display().to_string()
}

fn pair_row(node: &Node, volume: &str) -> serde_json::Value {
    let rows = node.json(&["lspprc", volume, "--json"]);
    rows.as_array()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn wait_state(node: &Node, volume: &str, state: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let row = pair_row(node, volume);
        if row["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pair of {volume} never became {state}: {row}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A and B, a path from A to B, and `p` (at A) mirrored to `s` (at B), full duplex; `p` held
/// `initial` bytes of noise before the pair was made.
fn mirrored(dir: &Path, size: u64, initial: usize, timeout_ms: u64) -> (Node, Node) {
    let a = site(dir, "a", timeout_ms);
    let b = site(dir, "b", timeout_ms);
    a.ok(&["mkvol", "p", "--size", &size.to_string()]);
    b.ok(&["mkvol", "s", "--size", &size.to_string()]);
    if initial > 0 {
        a.write("p", 0, noise(initial));
    }
    a.ok(&[
        "mkpprcpath",
        "--remote",
        &b.api,
        "--remote-token-file",
        &token_of(dir, "b"),
    ]);
    let made = a.ok(&["mkpprc", "p:s"]);
    let tracks = (initial as u64).div_ceil(TRACK);
    assert!(made.contains(&format!("{tracks} tracks to copy")), "{made}");
    wait_state(&a, "p", "full-duplex", 60);
    wait_state(&b, "s", "target-full-duplex", 30);
    (a, b)
}

/// The journal replays to the live state (mirror pairs, bitmaps and paths included).
fn audit_verifies(node: &Node) {
    let report = node.json(&["audit", "verify", "--json"]);
    assert_eq!(report["live_digest"], report["replayed_digest"], "{report}");
    assert!(report["differences"].as_array().unwrap().is_empty(), "{report}");
}

#[test]
fn writes_on_a_full_duplex_primary_read_back_identically_at_the_secondary_after_failover() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = mirrored(dir.path(), 32 * MIB, 3 * MIB as usize + 1000, 5000);
    assert_eq!(pair_row(&b, "s")["consistent"], true);

    // Host writes while full duplex: byte-granular, overlapping, a zeroing among them.
    let uri = a.nbd_uri("p");
    qemu_io(
        &uri,
        &[
            "write -P 0x5a 100 7000",
            "write -P 0x33 4096 1048576",
            "write -z 2097152 65536",
            "write -P 0x77 20971520 200000",
        ],
    );
    // The secondary is read-only to hosts while paired.
    let refused = qemu_io_result(&b.nbd_uri("s"), &["-c", "write -P 1 0 512"]);
    assert!(
        refused.code != 0 || refused.stdout.contains("failed") || refused.stderr.contains("failed"),
        "a write to the secondary was accepted: {}{}",
        refused.stdout,
        refused.stderr
    );
    // Every acknowledged write is at the secondary already: read it there after failover.
    let expected = a.read("p", 0, 32 * MIB);
    let out = b.ok(&["failoverpprc", "s"]);
    assert!(out.contains("consistent image"), "{out}");
    assert!(!out.contains("NOT"), "{out}");
    assert_eq!(pair_row(&b, "s")["state"], "suspended");
    assert_eq!(b.read("s", 0, 32 * MIB), expected, "the secondary equals the primary");
    // Failed over, it takes writes; the old primary's stream is refused from now on.
    b.write("s", 0, vec![9; 4096]);
    a.write("p", 8 * MIB, vec![7; 4096]);
    wait_state(&a, "p", "suspended", 30);
    assert_eq!(pair_row(&a, "p")["reason"], "secondary-refused");
    audit_verifies(&a);
    audit_verifies(&b);
}

#[test]
fn killing_the_remote_site_suspends_the_pair_without_failing_a_write_and_resume_copies_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = mirrored(dir.path(), 16 * MIB, MIB as usize, 1500);
    a.write("p", 0, vec![1; 8192]);
    // Idle, the leader records the confirmations: nothing may differ any more.
    eventually("confirmations recorded", 20, || {
        pair_row(&a, "p")["out_of_sync_tracks"] == 0
    });

    b.kill9();
    // Ten tracks written while the secondary is gone: each write completes (after at most the
    // mirror timeout for the first).
    let started = Instant::now();
    for t in 0..10u64 {
        a.write("p", (20 + t * 3) * TRACK + 17, pattern(t as u8, 5000));
    }
    assert!(started.elapsed() < Duration::from_secs(30), "writes were held too long");
    let row = pair_row(&a, "p");
    assert_eq!(row["state"], "suspended", "{row}");
    assert_eq!(row["reason"], "link-failure", "{row}");
    assert_eq!(row["out_of_sync_tracks"], 10, "exactly the tracks written: {row}");

    b.start_again();
    b.wait_ready();
    let out = a.ok(&["resumepprc", "p"]);
    assert!(out.contains("10 tracks to copy"), "{out}");
    wait_state(&a, "p", "full-duplex", 60);
    // What was copied: the ten tracks, no more (the audit shows every copy step).
    let history = a.json(&["audit", "--volume", "p", "--json"]);
    let resumed_at = history
        .as_array()
        .unwrap()
        .iter()
        .rposition(|e| e["command"].as_str().unwrap().starts_with("resumepprc"))
        .unwrap();
    let copied: usize = history.as_array().unwrap()[resumed_at..]
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap().clone())
        .filter_map(|e| e.get("PairTracksSent").cloned())
        .map(|e| e["tracks"].as_array().unwrap().len())
        .sum();
    assert_eq!(copied, 10, "resume copies only the changed tracks");
    let expected = a.read("p", 0, 16 * MIB);
    b.ok(&["failoverpprc", "s"]);
    assert_eq!(b.read("s", 0, 16 * MIB), expected);
    audit_verifies(&a);
    audit_verifies(&b);
}

#[test]
fn failback_copies_back_what_changed_at_the_failed_over_site() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = mirrored(dir.path(), 8 * MIB, MIB as usize, 2000);
    b.ok(&["failoverpprc", "s"]);
    // Failback sends from B: it needs a path to A.
    b.fails(&["failbackpprc", "s"], 1, "path-not-found");
    b.ok(&[
        "mkpprcpath",
        "--remote",
        &a.api,
        "--remote-token-file",
        &token_of(dir.path(), "a"),
    ]);
    b.write("s", 3 * MIB, pattern(5, 70_000));
    let out = b.ok(&["failbackpprc", "s"]);
    assert!(out.contains("tracks to copy"), "{out}");
    wait_state(&b, "s", "full-duplex", 60);
    wait_state(&a, "p", "target-full-duplex", 30);
    // The old primary is the secondary now: read-only to hosts, and equal.
    let expected = b.read("s", 0, 8 * MIB);
    a.ok(&["failoverpprc", "p"]);
    assert_eq!(a.read("p", 0, 8 * MIB), expected);
}

#[test]
fn every_mirror_refusal_has_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let a = site(dir.path(), "a", 2000);
    let b = site(dir.path(), "b", 2000);
    a.ok(&["mkvol", "p", "--size", "4M"]);
    a.ok(&["mkvol", "q", "--size", "4M"]);
    b.ok(&["mkvol", "s", "--size", "4M"]);
    b.ok(&["mkvol", "big", "--size", "8M"]);
    b.ok(&["mkvol", "src", "--size", "4M"]);
    b.ok(&["mkvol", "tgt", "--size", "4M"]);
    b.ok(&["mkflash", "src:tgt", "--nocp"]);

    a.fails(&["mkpprc", "p:s"], 1, "path-not-found");
    a.fails(&["mkpprcpath", "--remote", &b.api], 1, "remote-unauthenticated");
    a.fails(&["mkpprcpath", "--remote", "ftp://x"], 2, "invalid-url");
    a.fails(
        &["mkpprcpath", "--remote", &format!("http://127.0.0.1:{}", free_port())],
        1,
        "remote-unreachable",
    );
    a.fails(
        &[
            "mkpprcpath",
            "--remote",
            &a.api,
            "--remote-token-file",
            &token_of(dir.path(), "a"),
        ],
        2,
        "same-cluster",
    );
    a.ok(&[
        "mkpprcpath",
        "--remote",
        &b.api,
        "--remote-token-file",
        &token_of(dir.path(), "b"),
    ]);
    a.fails(
        &[
            "mkpprcpath",
            "--remote",
            &b.api,
            "--remote-token-file",
            &token_of(dir.path(), "b"),
        ],
        1,
        "path-exists",
    );
    a.fails(&["mkpprc", "p:big"], 1, "remote-size-mismatch");
    a.fails(&["mkpprc", "p:src"], 1, "remote-volume-in-use");
    a.fails(&["mkpprc", "p:nope"], 1, "remote-volume-not-found");
    a.fails(&["mkpprc", "nope:s"], 1, "volume-not-found");
    a.ok(&["mkpprc", "p:s"]);
    a.fails(&["mkpprc", "p:s"], 1, "pair-exists");
    a.fails(&["mkpprc", "q:s"], 1, "remote-pair-exists");
    wait_state(&a, "p", "full-duplex", 60);
    a.fails(&["failoverpprc", "p"], 1, "failover-of-primary");
    a.fails(&["resumepprc", "p"], 1, "pair-state");
    a.fails(&["failbackpprc", "p"], 1, "pair-state");
    a.fails(&["mkflash", "q:p"], 1, "target-is-mirror-primary");
    a.fails(&["rmvol", "p"], 1, "volume-in-mirror-pair");
    b.fails(&["mkflash", "tgt:s"], 1, "target-is-mirror-secondary");
    b.fails(&["resumepprc", "s"], 1, "pair-state");
    let remote = pair_row(&a, "p")["remote_cluster"].as_str().unwrap().to_string();
    a.fails(&["rmpprcpath", &remote], 1, "path-in-use");
    a.fails(&["pausepprc", "q"], 1, "pair-not-found");

    // Removing at the primary removes the secondary's side too.
    a.ok(&["rmpprc", "p"]);
    assert!(b.json(&["lspprc", "--json"]).as_array().unwrap().is_empty());
    a.ok(&["rmpprcpath", &remote]);
    audit_verifies(&a);
    audit_verifies(&b);
}
