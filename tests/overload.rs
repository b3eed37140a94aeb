//! No NBD client — slow, idle or greedy — can take a node's memory or file handles from the
//! others: replies count against a budget until they are on the socket, connections are
//! limited and must pick an export in time, and the admin API keeps answering meanwhile.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw NBD connection in transmission, opened with OPT_EXPORT_NAME.
fn open_export(addr: &str, volume: &str) -> TcpStream {
    let mut raw = RawNbd::connect(addr);
    raw.send_option(1, volume.as_bytes()); // OPT_EXPORT_NAME
    let mut export = [0u8; 10]; // size, transmission flags
    raw.s.read_exact(&mut export).unwrap();
    raw.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.s
}

fn read_request(cookie: u64, offset: u64, length: u32) -> Vec<u8> {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&0u16.to_be_bytes()); // flags
    r.extend_from_slice(&0u16.to_be_bytes()); // NBD_CMD_READ
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&length.to_be_bytes());
    r
}

#[test]
fn clients_that_never_read_their_replies_hold_a_bounded_amount_of_memory() {
    let (_dir, node) = single_node(&["--nbd-memory", "128"]);
    node.ok(&["mkvol", "v", "--size", "1G"]);
    qemu_io(&node.nbd_uri("v"), &["write -P 0x5a 0 32M"]);
    let before = node.rss();

    // Two clients each ask for 96 reads of 32 MiB (3 GiB each) and read nothing back.
    let greedy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = open_export(&node.nbd, "v");
            for cookie in 0..96u64 {
                s.write_all(&read_request(cookie, 0, 32 << 20)).unwrap();
            }
            s
        })
        .collect();
    let mut peak = 0;
    for _ in 0..50 {
        peak = peak.max(node.rss());
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 400 << 20,
        "two clients that read nothing made the node grow by {} MiB (budget: 128 MiB for all)",
        grown >> 20
    );
    // The node goes on serving the admin API, and the memory comes back when they leave.
    node.ok(&["lsvol"]);
    drop(greedy);
    qemu_io(&node.nbd_uri("v"), &["read -P 0x5a 0 1M"]);
}

#[test]
fn idle_connections_are_limited_and_timed_out_and_the_admin_api_keeps_answering() {
    let (_dir, node) = single_node(&["--nbd-max-connections", "64", "--nbd-handshake-limit", "2"]);
    node.ok(&["mkvol", "v", "--size", "1M"]);
    // The node may open 512 files: 600 idle NBD clients would take them all.
    let limited = run("prlimit", &["--pid", &node.pid().to_string(), "--nofile=512:512"]);
    assert_eq!(limited.code, 0, "prlimit: {}", limited.stderr);

    let idle: Vec<TcpStream> = (0..600).filter_map(|_| TcpStream::connect(&node.nbd).ok()).collect();
    assert!(idle.len() >= 512, "only {} connections opened", idle.len());
    // The admin API answers while NBD is saturated.
    node.ok(&["mkvol", "w", "--size", "1M"]);
    // The accept loop works through the backlog (slower while other tests load the machine):
    // each connection is served (at most 64 at once) or closed at once. On a loaded machine
    // the first 64 may time out before the loop reaches the last ones, which are then served
    // in their place: most are refused either way.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let refused = node.metric("flashcopy_nbd_connections_refused_total").unwrap_or(0);
        let served = node.metric("flashcopy_nbd_connections_total").unwrap_or(0);
        if refused + served >= idle.len() as u64 {
            break refused;
        }
        if std::time::Instant::now() > deadline {
            let fds = std::fs::read_dir(format!("/proc/{}/fd", node.pid())).map(|d| d.count());
            let log = node.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "refused {refused}, served {served} of {}; node fds: {fds:?}; log tail:\n{}",
                idle.len(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        refused >= idle.len() as u64 / 2,
        "only {refused} of {} refused",
        idle.len()
    );

    // Connections past the limit were closed at once; the others when the handshake limit ran
    // out. Every one that was opened (not necessarily 600) is closed by now.
    let opened = idle.len();
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        if s.read_to_end(&mut rest).is_ok() {
            closed += 1;
        }
    }
    assert_eq!(
        closed, opened,
        "every idle connection is closed by the node: {closed} of {opened}"
    );
    // Then hosts are served again.
    qemu_io(&node.nbd_uri("v"), &["write -P 0x11 0 64k", "read -P 0x11 0 64k"]);
}

#[test]
fn a_client_that_leaves_its_replies_unread_is_disconnected() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "v", "--size", "1G"]);
    let mut s = open_export(&node.nbd, "v");
    for cookie in 0..4u64 {
        s.write_all(&read_request(cookie, 0, 32 << 20)).unwrap();
    }
    // Nothing read for longer than the node waits on a reply (30 s): it hangs up. Had it not,
    // reading now would get all 128 MiB and then wait for more.
    std::thread::sleep(Duration::from_secs(36));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let closed = s.read_to_end(&mut got);
    assert!(closed.is_ok(), "the connection is still open: {closed:?}");
    assert!(got.len() < 4 * ((32 << 20) + 16), "every reply was sent");
    qemu_io(&node.nbd_uri("v"), &["read -P 0 0 64k"]);
}
