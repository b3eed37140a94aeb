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
