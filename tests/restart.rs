//! `kill -9` loses nothing that was acknowledged, and a restart ends with the same digest.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHUNK: usize = 65536;

#[test]
fn acknowledged_writes_survive_sigkill_mid_workload() {
    let (_dir, mut n) = single_node(&[]);
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
                        Ok(()) => acked.lock().unwrap().push(i),
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
