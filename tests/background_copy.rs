//! The leader's background copy: bounded steps, a copy-rate limit, and resumption after a
//! restart from the replicated bitmaps.

mod common;
use common::*;

#[test]
fn copy_resumes_after_a_restart_and_the_target_holds_the_point_in_time() {
    // 2 MiB/s: slow enough to kill the node in the middle of the copy.
    let (_dir, mut n) = single_node(&["--copy-rate", "2"]);
    n.ok(&["mkvol", "a", "--size", "64M"]);
    n.ok(&["mkvol", "b", "--size", "64M"]);
    let offsets: Vec<u64> = (0..16).map(|i| i * (4 << 20) + 12_345).collect();
    // 16 MiB of data: about 8 s of copying at 2 MiB/s (unwritten tracks cost nothing).
    for (i, &offset) in offsets.iter().enumerate() {
        n.write("a", offset, pattern(i as u8, 1 << 20));
    }
    n.ok(&["mkflash", "a:b"]);
    // Overwrite the source after the point in time: b must not see it.
    n.write("a", offsets[15], vec![0xAB; 1 << 20]);
    eventually("the copy to start", 60, || {
        let r = n.json(&["lsflash", "--json"]);
        let left = r[0]["out_of_sync_tracks"].as_u64().unwrap();
        left < r[0]["total_tracks"].as_u64().unwrap() - 1
    });
    let before = n.json(&["lsflash", "--json"])[0]["out_of_sync_tracks"]
        .as_u64()
        .unwrap();
    assert!(before > 0, "the copy is still running when the node is killed");
    n.kill9();
    n.restart();
    n.wait_ready();
    let after = n.json(&["lsflash", "--json"]);
    if let Some(r) = after.as_array().unwrap().first() {
        assert!(
            r["out_of_sync_tracks"].as_u64().unwrap() <= before,
            "copied tracks stay copied"
        );
    }
    eventually("the copy to complete and the relationship to end", 120, || {
        n.json(&["lsflash", "--json"]).as_array().unwrap().is_empty()
    });
    for (i, &offset) in offsets.iter().enumerate() {
        assert_eq!(
            n.read("b", offset, 1 << 20),
            pattern(i as u8, 1 << 20),
            "region {i} of b"
        );
    }
    assert_eq!(
        n.json(&["lsvol", "--json"])[1]["state"],
        "normal",
        "a completed copy is not incomplete"
    );
}

#[test]
fn wait_reports_progress_and_returns_when_copied() {
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "32M"]);
    n.ok(&["mkvol", "b", "--size", "32M"]);
    n.write("a", 31 << 20, pattern(9, 1 << 20));
    let out = n.cli(&["mkflash", "a:b", "--persist", "--wait"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.lines().last().unwrap().contains("100%"), "{}", out.stderr);
    assert_eq!(n.json(&["lsflash", "--json"])[0]["state"], "copied");
    assert_eq!(n.read("b", 31 << 20, 1 << 20), pattern(9, 1 << 20));
}

/// Out-of-sync tracks of `pair` as `lsflash --json` on `node` says (`None`: no such relationship).
fn left(node: &Node, pair: &str) -> Option<u64> {
    let (source, target) = pair.split_once(':').unwrap();
    let rels = node.json(&["lsflash", "--json"]);
    rels.as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == source && r["target"] == target)
        .map(|r| r["out_of_sync_tracks"].as_u64().unwrap())
}

#[test]
fn a_relationships_copy_rate_paces_it_alone_and_holds_through_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), &[]);
    for volume in ["a", "b", "c", "d"] {
        nodes[0].ok(&["mkvol", volume, "--size", "64M"]);
    }
    // 32 MiB of data on each source: 32 s at 1 MiB/s; unlimited, a second or two.
    for (i, source) in ["a", "c"].into_iter().enumerate() {
        for region in 0..8u64 {
            nodes[0].write(source, region * (8 << 20), pattern(i as u8 + region as u8, 4 << 20));
        }
    }
    // Persistent: a copied relationship stays, to be looked at.
    nodes[0].ok(&["mkflash", "a:b", "--persist", "--copy-rate", "1"]);
    nodes[0].ok(&["mkflash", "c:d", "--persist"]);
    let rel = |node: &Node, pair: &str| {
        let (s, t) = pair.split_once(':').unwrap();
        node.json(&["lsflash", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"] == s && r["target"] == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(rel(&nodes[0], "a:b")["copy_rate"], 1);
    assert!(nodes[0].ok(&["lsflash"]).contains("1MiB/s"));
    eventually("the unlimited copy to finish", 120, || {
        left(&nodes[0], "c:d") == Some(0)
    });
    let total = rel(&nodes[0], "a:b")["total_tracks"].as_u64().unwrap();
    let slow = left(&nodes[0], "a:b").unwrap();
    assert!(
        slow > 0 && slow < total,
        "the paced copy runs, and is not done when the other is: {slow} of {total} tracks left"
    );

    // The rate is Raft state: a new leader paces as the old one did.
    let leader = leader_id(&nodes);
    let idx = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut dead = nodes.remove(idx);
    dead.kill9();
    let new_leader = leader_id(&nodes);
    assert_ne!(new_leader, leader);
    assert_eq!(rel(&nodes[0], "a:b")["copy_rate"], 1);
    assert!(left(&nodes[0], "a:b").unwrap() > 0, "still pacing after the failover");

    // Bad input is a usage error; an unknown pair is refused with its code.
    let out = nodes[0].cli(&["chflash", "a:b", "--copy-rate", "fast"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    nodes[0].fails(&["chflash", "x:b", "--copy-rate", "1"], 1, "volume-not-found");
    nodes[0].ok(&["chflash", "a:b", "--copy-rate", "unlimited"]);
    eventually("the copy to finish once unlimited", 120, || {
        left(&nodes[0], "a:b") == Some(0)
    });
    assert_eq!(rel(&nodes[0], "a:b")["copy_rate"], serde_json::Value::Null);
    for region in 0..8u64 {
        assert_eq!(
            nodes[0].read("b", region * (8 << 20), 4 << 20),
            pattern(region as u8, 4 << 20),
            "region {region} of b"
        );
    }
}
