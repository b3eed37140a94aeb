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

/// A path from `from` to the site `to`, made by `site` as `name` (its token is `name`'s).
fn path_to(from: &Node, to: &Node, name: &str, dir: &Path) {
    from.ok(&[
        "mkpprcpath",
        "--remote",
        &to.api,
        "--remote-token-file",
        &token_of(dir, name),
    ]);
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
    path_to(&a, &b, "b", dir);
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
    // A second pair on the same path, never written after the link fails.
    a.ok(&["mkvol", "q", "--size", "1M"]);
    b.ok(&["mkvol", "t", "--size", "1M"]);
    a.ok(&["mkpprc", "q:t"]);
    wait_state(&a, "q", "full-duplex", 30);
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
    assert_eq!(a.metric("flashcopy_mirror_out_of_sync_tracks{volume=\"p\"}"), Some(10));
    assert_eq!(
        a.metric("flashcopy_mirror_pair_state{volume=\"p\",role=\"primary\",state=\"suspended\"}"),
        Some(1)
    );
    assert!(a.metric("flashcopy_mirror_wait_seconds_count").unwrap() > 0);
    // The path's pairs are one consistency group: q suspended with p, nothing out of sync.
    let q = pair_row(&a, "q");
    assert_eq!(
        (q["state"].as_str(), q["reason"].as_str()),
        (Some("suspended"), Some("link-failure")),
        "{q}"
    );
    assert_eq!(q["out_of_sync_tracks"], 0, "{q}");

    b.start_again();
    b.wait_ready();
    a.ok(&["resumepprc", "q"]);
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
    path_to(&b, &a, "a", dir.path());
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
    path_to(&a, &b, "b", dir.path());
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
    let out = a.fails(&["mkpprc", "p"], 2, "invalid-pair");
    assert!(out.contains("LOCAL:REMOTE"), "{out}");
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

/// A three-node site with a token and the default mirror timeout (which outlasts a leader
/// election at the other site: a leader kill there must not suspend the pair).
fn three_node_site(dir: &Path, name: &str) -> Vec<Node> {
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, format!("{name}-secret\n")).unwrap();
    cluster(&dir.join(name), &["--token-file", token.to_str().unwrap()])
}

/// The node of `nodes` that leads (still running).
fn leader_of(nodes: &[Node]) -> usize {
    let id = leader_everywhere(nodes);
    nodes.iter().position(|n| n.id == id).unwrap()
}

#[test]
fn a_leader_kill_on_either_side_mid_resync_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = three_node_site(dir.path(), "a");
    let mut b = three_node_site(dir.path(), "b");
    let size = 48 * MIB;
    a[0].ok(&["mkvol", "p", "--size", &size.to_string()]);
    b[0].ok(&["mkvol", "s", "--size", &size.to_string()]);
    // The path names every node of B, so it outlives B's leader.
    let b_urls = b.iter().map(|n| n.api.clone()).collect::<Vec<_>>().join(",");
    a[0].ok(&[
        "mkpprcpath",
        "--remote",
        &b_urls,
        "--remote-token-file",
        &token_of(dir.path(), "b"),
    ]);
    a[0].ok(&["mkpprc", "p:s"]);
    wait_state(&a[0], "p", "full-duplex", 60);

    // A's leader dies while a resync copies.
    a[0].ok(&["pausepprc", "p"]);
    a[0].write("p", 0, noise(24 * MIB as usize));
    a[0].ok(&["resumepprc", "p"]);
    let victim = leader_of(&a);
    let left = pair_row(&a[victim], "p")["out_of_sync_tracks"].clone();
    a[victim].kill9();
    eprintln!("A's leader killed with {left} tracks still to copy");
    let alive: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    wait_state(&a[alive[0]], "p", "full-duplex", 120);
    // Written through the new leader while full duplex: streamed.
    a[alive[0]].write("p", 30 * MIB, pattern(3, 300_000));

    // B's leader dies while a resync copies.
    a[alive[0]].ok(&["pausepprc", "p"]);
    a[alive[0]].write("p", 8 * MIB, pattern(4, 12 * MIB as usize));
    a[alive[0]].ok(&["resumepprc", "p"]);
    let victim_b = leader_of(&b);
    let left = pair_row(&a[alive[0]], "p")["out_of_sync_tracks"].clone();
    b[victim_b].kill9();
    eprintln!("B's leader killed with {left} tracks still to copy");
    wait_state(&a[alive[0]], "p", "full-duplex", 120);
    a[alive[0]].write("p", 40 * MIB, pattern(5, 100_000));

    let b_alive = (0..3).find(|i| *i != victim_b).unwrap();
    wait_state(&b[b_alive], "s", "target-full-duplex", 60);
    let expected = a[alive[0]].read("p", 0, size);
    let before_failover = (pair_row(&a[alive[0]], "p"), pair_row(&b[b_alive], "s"));
    b[b_alive].ok(&["failoverpprc", "s"]);
    let got = b[b_alive].read("s", 0, size);
    assert!(
        got == expected,
        "the secondary differs from the primary after leader kills on both sides: tracks {:?} differ; \
         pairs before the failover: {} / {}\n{}",
        differing_tracks(&expected, &got),
        before_failover.0,
        before_failover.1,
        tail(&a[alive[0]].log(), 60)
    );
    audit_verifies(&a[alive[0]]);
    audit_verifies(&b[b_alive]);
}

/// The last `lines` lines of a node's log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The 64 KiB tracks where two images differ, as ranges.
fn differing_tracks(a: &[u8], b: &[u8]) -> Vec<std::ops::RangeInclusive<usize>> {
    let mut ranges: Vec<std::ops::RangeInclusive<usize>> = Vec::new();
    for (track, (x, y)) in a.chunks(64 << 10).zip(b.chunks(64 << 10)).enumerate() {
        if x == y {
            continue;
        }
        match ranges.last_mut() {
            Some(r) if *r.end() + 1 == track => *r = *r.start()..=track,
            _ => ranges.push(track..=track),
        }
    }
    ranges
}

/// Bytes site A sent to B so far, as `lspprcpath` counts them.
fn bytes_sent(a: &Node) -> u64 {
    a.json(&["lspprcpath", "--json"])[0]["bytes_sent"].as_u64().unwrap()
}

#[test]
fn flashcopy_onto_a_mirror_primary_reaches_its_secondary_by_copy_or_by_the_same_flashcopy_there() {
    let dir = tempfile::tempdir().unwrap();
    let a = site(dir.path(), "a", 5000);
    let b = site(dir.path(), "b", 5000);
    for v in ["prod", "bkp", "db", "snap", "plain"] {
        a.ok(&["mkvol", v, "--size", "8M"]);
    }
    for v in ["prod_r", "bkp_r", "db_r", "snap_r"] {
        b.ok(&["mkvol", v, "--size", "8M"]);
    }
    a.write("prod", 0, noise(3 * MIB as usize));
    a.write("db", MIB, noise(2 * MIB as usize));
    path_to(&a, &b, "b", dir.path());
    a.ok(&["mkpprc", "prod:prod_r", "bkp:bkp_r", "db:db_r", "snap:snap_r"]);
    for v in ["prod", "bkp", "db", "snap"] {
        wait_state(&a, v, "full-duplex", 60);
    }

    // --tgtpprc: the point in time is copied to the target's secondary.
    a.fails(&["mkflash", "prod:bkp"], 1, "target-is-mirror-primary");
    let out = a.ok(&["mkflash", "prod:bkp", "--tgtpprc", "--persist", "--record"]);
    assert!(out.contains("mirror pair of bkp is copy-pending"), "{out}");
    wait_state(&a, "bkp", "full-duplex", 60);
    a.write("prod", 0, vec![0xee; 100_000]); // copy-on-write: bkp keeps the point in time
    wait_state(&b, "bkp_r", "target-full-duplex", 30);
    assert_eq!(
        b.read("bkp_r", 0, 8 * MIB),
        a.read("bkp", 0, 8 * MIB),
        "bkp' equals bkp"
    );

    // --pmir: the same FlashCopy between the secondaries; the pairs never leave full duplex and
    // no FlashCopy data crosses the link.
    a.fails(&["mkflash", "db:plain", "--pmir", "required"], 1, "pmir-not-possible");
    let before = bytes_sent(&a);
    let out = a.ok(&[
        "mkflash",
        "db:snap",
        "--pmir",
        "required",
        "--persist",
        "--record",
        "--wait",
    ]);
    assert!(!out.contains("copy-pending"), "{out}");
    let relationships = b.json(&["lsflash", "--json"]);
    assert!(
        relationships
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "db_r" && r["target"] == "snap_r"),
        "{relationships}"
    );
    assert_eq!(pair_row(&a, "snap")["state"], "full-duplex");
    let sent = bytes_sent(&a) - before;
    assert!(
        sent < 64 << 10,
        "{sent} bytes crossed the link for a 2 MiB Remote Pair FlashCopy"
    );
    // Writes after the point in time: streamed, copied on write at both sites alike.
    a.write("db", MIB + 10, pattern(8, 300_000));
    a.write("snap", 5 * MIB, pattern(9, 4096));
    let resync = a.ok(&["resyncflash", "db:snap"]);
    assert!(resync.contains("refreshed"), "{resync}");
    a.write("db", 0, pattern(10, 70_000));
    for (v, r) in [("db", "db_r"), ("snap", "snap_r")] {
        assert_eq!(pair_row(&a, v)["state"], "full-duplex", "{v}");
        assert_eq!(b.read(r, 0, 8 * MIB), a.read(v, 0, 8 * MIB), "{r} equals {v}");
    }
    // The pairs never left full duplex: no state change of snap's pair in A's journal.
    let history = a.json(&["audit", "--volume", "snap", "--json"]);
    let changes: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap())
        .filter(|e| e.get("PairState").is_some())
        .collect();
    assert_eq!(changes.len(), 1, "only the first full duplex: {changes:?}");
    a.ok(&["rmflash", "db:snap"]);
    assert!(b.json(&["lsflash", "db_r", "--json"]).as_array().unwrap().is_empty());

    // --pmir preferred falls back to --tgtpprc when the source is not mirrored.
    let out = a.ok(&["mkflash", "plain:snap", "--pmir", "preferred"]);
    assert!(out.contains("mirror pair of snap is copy-pending"), "{out}");
    wait_state(&a, "snap", "full-duplex", 60);
    wait_state(&b, "snap_r", "target-full-duplex", 30);
    let expected = a.read("snap", 0, 8 * MIB);
    b.ok(&["failoverpprc", "snap_r"]);
    assert_eq!(b.read("snap_r", 0, 8 * MIB), expected, "T' equals T after failover");
    audit_verifies(&a);
    audit_verifies(&b);
}

#[test]
fn the_link_runs_over_https_checked_against_the_ca_the_path_names() {
    let dir = tempfile::tempdir().unwrap();
    // A self-signed certificate for 127.0.0.1: site B's admin API serves it; it is its own CA.
    let (cert, key) = (dir.path().join("b-cert.pem"), dir.path().join("b-key.pem"));
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let a = site(dir.path(), "a", 5000);
    let token = dir.path().join("b.token");
    std::fs::write(&token, "b-secret\n").unwrap();
    let b = Node::start(
        &dir.path().join("b"),
        1,
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--api-tls-cert",
            cert.to_str().unwrap(),
            "--api-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let b_api = b.api.replace("http://", "https://");
    let ca = cert.to_str().unwrap();
    let b_cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--api", b_api.as_str(), "--ca-file", ca]);
        let out = cli_env(&b_api, &all, &[("FLASHCOPY_TOKEN", "b-secret")]);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        out.stdout
    };
    eventually("site B serves HTTPS", 60, || {
        let out = cli_env(&b_api, &["lsvol", "--ca-file", ca], &[("FLASHCOPY_TOKEN", "b-secret")]);
        out.code == 0
    });
    // Plain HTTP to an HTTPS API, and HTTPS without the CA, do not get through.
    let plain = cli_env(&b.api, &["lsvol"], &[("FLASHCOPY_TOKEN", "b-secret")]);
    assert_ne!(plain.code, 0);
    a.ok(&["mkvol", "p", "--size", "4M"]);
    b_cli(&["mkvol", "s", "--size", "4M"]);
    let b_token = token.to_str().unwrap();
    a.fails(
        &["mkpprcpath", "--remote", &b_api, "--remote-token-file", b_token],
        1,
        "remote-unreachable",
    );
    a.ok(&[
        "mkpprcpath",
        "--remote",
        &b_api,
        "--remote-token-file",
        b_token,
        "--remote-ca",
        ca,
    ]);
    a.ok(&["mkpprc", "p:s"]);
    wait_state(&a, "p", "full-duplex", 60);
    a.write("p", 4096, pattern(2, 100_000));
    let expected = a.read("p", 0, 4 * MIB);
    b_cli(&["failoverpprc", "s"]);
    let read = cli_env(
        &b_api,
        &["lsvol", "--json", "--ca-file", ca],
        &[("FLASHCOPY_TOKEN", "b-secret")],
    );
    assert_eq!(read.code, 0);
    assert_eq!(b.read("s", 0, 4 * MIB), expected, "mirrored over HTTPS");
    let paths = a.json(&["lspprcpath", "--json"]);
    assert!(paths[0]["bytes_sent"].as_u64().unwrap() > 100_000, "{paths}");
    assert!(paths[0]["average_rtt_ms"].as_f64().is_some(), "{paths}");
}

#[test]
fn a_secondary_short_of_space_refuses_mirrored_data_and_the_pair_suspends_while_the_primary_goes_on() {
    let Some(disk) = SmallDisk::mount(640) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = site(dir.path(), "a", 2000);
    let token = dir.path().join("b.token");
    std::fs::write(&token, "b-secret\n").unwrap();
    // Site B's disk: 640 MiB, of which a tenant holds 256 and the node keeps 192 free.
    std::fs::write(disk.path().join("filler"), vec![7u8; 256 << 20]).unwrap();
    let b = Node::start(
        &disk.path().join("b"),
        1,
        &["--token-file", token.to_str().unwrap(), "--disk-reserve", "192"],
    );
    b.wait_ready();
    a.ok(&["mkvol", "p", "--size", "1G"]);
    b.ok(&["mkvol", "s", "--size", "1G"]);
    a.ok(&[
        "mkpprcpath",
        "--remote",
        &b.api,
        "--remote-token-file",
        token.to_str().unwrap(),
    ]);
    a.ok(&["mkpprc", "p:s"]);
    wait_state(&a, "p", "full-duplex", 60);
    // Writes at A go on past what B can keep: every one is acknowledged.
    let uri = a.nbd_uri("p");
    for chunk in 0..100 {
        qemu_io(&uri, &[&format!("write -P {} {}M 4M", chunk % 200 + 1, chunk * 4)]);
        if pair_row(&a, "p")["state"] == "suspended" {
            break;
        }
    }
    let row = pair_row(&a, "p");
    assert_eq!(row["state"], "suspended", "B never ran short: {row}");
    assert_eq!(row["reason"], "link-failure", "{row}");
    assert!(row["out_of_sync_tracks"].as_u64().unwrap() > 0, "{row}");
    assert!(
        b.log().contains("disk") || a.log().contains("disk-full") || a.log().contains("reserve"),
        "the reason is logged"
    );
    // B keeps serving, under its reserve but not full.
    b.ok(&["lsvol"]);
    assert!(b.metric("flashcopy_disk_refused_writes_total") >= Some(1));
    a.write("p", 500 * MIB, vec![3; 4096]);
    audit_verifies(&b);
}
