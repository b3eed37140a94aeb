//! Three nodes on one machine: joining, serving through a follower, equal digests, and a new
//! leader after the old one is killed. The cluster runs with a token, so peers authenticate.

mod common;
use common::*;
use serde_json::Value;

#[test]
fn three_nodes_serve_through_any_node_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "cluster-secret").unwrap();
    let token = token_file.to_str().unwrap();
    let mut nodes = cluster(dir.path(), &["--token-file", token]);

    // Commands through followers are served by the leader.
    nodes[2].ok(&["mkvol", "a", "--size", "1M"]);
    nodes[1].ok(&["mkvol", "b", "--size", "1M"]);
    nodes[1].write("a", 0, pattern(1, 200_000));
    nodes[2].ok(&["mkflash", "a:b", "--persist", "--wait"]);
    assert_eq!(nodes[1].read("b", 0, 200_000), pattern(1, 200_000));
    nodes[1].fails(&["mkflash", "a:b"], 1, "target-in-use");

    // Every node reaches the same digest at the same index.
    assert_converged(&nodes);

    // Kill the leader: the others elect a new one and keep serving.
    let leader = nodes[0].json(&["cluster", "status", "--json"])["leader"]
        .as_u64()
        .unwrap();
    let index = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut old = nodes.remove(index);
    old.kill9();
    eventually("a new leader", 90, || {
        let out = nodes[0].cli(&["cluster", "status", "--json"]);
        out.code == 0 && {
            let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            !s["leader"].is_null() && s["leader"].as_u64() != Some(leader)
        }
    });
    nodes[0].ok(&["mkvol", "c", "--size", "1M"]);
    assert_eq!(nodes[1].read("b", 0, 200_000), pattern(1, 200_000));
    // The old leader comes back and catches up.
    old.restart();
    nodes.push(old);
    // The restarted node catches up.
    assert_converged(&nodes);
    assert_eq!(nodes[2].json(&["lsvol", "--json"]).as_array().unwrap().len(), 3);
    // Every replica's journal replays to its own state, and they agree (compared at one index:
    // the leader may apply an entry between two reports).
    eventually("every replica to verify at one index", 30, || {
        let reports: Vec<(Value, Value)> = nodes
            .iter()
            .map(|n| {
                let report = n.json(&["audit", "verify", "--json"]);
                assert!(
                    report["differences"].as_array().unwrap().is_empty(),
                    "node {}: {report}",
                    n.id
                );
                (report["index"].clone(), report["live_digest"].clone())
            })
            .collect();
        reports.iter().all(|r| *r == reports[0])
    });

    // Remove a follower: two members remain and keep serving.
    let leader = nodes[0].json(&["cluster", "status", "--json"])["leader"]
        .as_u64()
        .unwrap();
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().id;
    // Ask a node that stays: a removed node never hears of the final membership.
    let remaining = nodes.iter().find(|n| n.id != follower).unwrap();
    let out = remaining.ok(&["cluster", "remove", &follower.to_string()]);
    assert!(out.contains(&format!("removed node {follower}")), "{out}");
    eventually("two members", 60, || {
        let status = remaining.json(&["cluster", "status", "--json"]);
        status["nodes"].as_array().unwrap().len() == 2
    });
    remaining.ok(&["mkvol", "d", "--size", "1M"]);
}

#[test]
fn a_node_that_joins_after_the_log_was_purged_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start(&dir.path().join("n1"), 1, &["--snapshot-every", "40"]);
    n1.wait_ready();
    n1.ok(&["mkvol", "a", "--size", "4M"]);
    n1.ok(&["mkvol", "b", "--size", "4M"]);
    for i in 0..60u64 {
        n1.write("a", i * 65536, pattern(i as u8, 1000));
    }
    n1.ok(&["mkflash", "a:b", "--persist", "--record", "--wait"]);
    n1.write("a", 0, vec![0xCC; 500]);
    // Node 1 purges the start of its log: a node joining now can only catch up from a snapshot.
    eventually("node 1 to purge its log", 60, || {
        metric(&n1, "flashcopy_log_purged_index") > 0
    });
    let n2 = Node::start(
        &dir.path().join("n2"),
        2,
        &["--snapshot-every", "40", "--join", &n1.api],
    );
    eventually("node 2 to catch up", 90, || {
        let (a, b) = (n1.try_applied(), n2.try_applied());
        a.is_some() && a == b
    });
    assert!(metric(&n2, "flashcopy_snapshot_index") > 0, "node 2 has a snapshot");
    assert!(
        std::fs::read_dir(dir.path().join("n2/snapshots")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".ckpt")),
        "node 2 keeps the snapshot it installed (as a checkpoint, not a second copy of the state)"
    );
    // Equal digests at equal index: node 2 holds the same bytes, received as a snapshot.
    let (index, digest) = n2.applied();
    assert_eq!((index, digest), n1.applied());
}

fn metric(node: &Node, name: &str) -> u64 {
    node.metric(name)
        .unwrap_or_else(|| panic!("{name} missing from node {}'s metrics", node.id))
}

#[test]
fn a_node_bound_to_every_interface_advertises_a_reachable_address() {
    let dir = tempfile::tempdir().unwrap();
    let (api, raft, nbd) = (free_port(), free_port(), free_port());
    // Bound to every interface, as the test is about: killed when the test ends, however it ends.
    let mut child = Guarded::spawn(
        std::process::Command::new(bin())
            .args(["serve", "--data-dir", dir.path().join("n1").to_str().unwrap()])
            .args(["--api", &format!("0.0.0.0:{api}"), "--raft", &format!("0.0.0.0:{raft}")])
            .args(["--nbd", &format!("127.0.0.1:{nbd}"), "--insecure"])
            .args(["--advertise-api", &format!("http://127.0.0.1:{api}/")])
            .stderr(std::process::Stdio::null()),
    );
    let url = format!("http://127.0.0.1:{api}");
    eventually("the node to lead", 60, || {
        let out = cli_env(&url, &["cluster", "status", "--json"], &[]);
        out.code == 0 && serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["leader"] == 1
    });
    let status: serde_json::Value =
        serde_json::from_str(&cli_env(&url, &["cluster", "status", "--json"], &[]).stdout).unwrap();
    assert_eq!(
        status["nodes"][0]["url"],
        url.as_str(),
        "the advertised URL, not 0.0.0.0"
    );
    child.stop();
}
