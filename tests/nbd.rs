//! Host I/O over NBD with the real clients hosts use: qemu-io, qemu-img, nbdcopy, nbdinfo, fio
//! and libnbd (Python), against the real `flashcopy serve`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn json(out: Out) -> serde_json::Value {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn nbdinfo_lists_the_volumes_and_describes_each_export() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "alpha", "--size", "1M"]);
    node.ok(&["mkvol", "beta", "--size", "2M"]);

    let list = json(run("nbdinfo", &["--list", "--json", &format!("nbd://{}", node.nbd)]));
    let mut exports: Vec<(String, u64)> = list["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["export-name"].as_str().unwrap().to_string(),
                e["export-size"].as_u64().unwrap(),
            )
        })
        .collect();
    exports.sort();
    assert_eq!(exports, vec![("alpha".into(), 1 << 20), ("beta".into(), 2 << 20)]);

    let info = json(run("nbdinfo", &["--json", &node.nbd_uri("beta")]));
    let export = &info["exports"][0];
    assert_eq!(export["export-size"], 2 << 20);
    assert_eq!(export["is_read_only"], false);
    for flag in ["can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"] {
        assert_eq!(export[flag], true, "{flag} in {export}");
    }
    assert_eq!(export["block_size_minimum"], 1);
    assert_eq!(export["block_size_preferred"], 65536);
    assert_eq!(export["block_size_maximum"], 32 << 20);

    let missing = run("nbdinfo", &[&node.nbd_uri("nope")]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
}

#[test]
fn qemu_io_reads_the_point_in_time_around_every_relationship_command() {
    let (_dir, node) = single_node(&[]);
    let (src, tgt) = (node.nbd_uri("src"), node.nbd_uri("tgt"));
    node.ok(&["mkvol", "src", "--size", "1M"]);
    node.ok(&["mkvol", "tgt", "--size", "1M"]);
    qemu_io(&src, &["write -P 0xa1 0 1M"]);

    // Establish with copy-on-write only: the target reads the source's image through it.
    node.ok(&["mkflash", "src:tgt", "--persist", "--record", "--nocp"]);
    qemu_io(&tgt, &["read -P 0xa1 0 1M"]);

    // Source writes: the old tracks move to the target first.
    qemu_io(&src, &["write -P 0xb2 0 64k", "write -P 0xb2 300k 10k"]);
    qemu_io(
        &src,
        &["read -P 0xb2 0 64k", "read -P 0xa1 64k 236k", "read -P 0xb2 300k 10k"],
    );
    qemu_io(&tgt, &["read -P 0xa1 0 1M"]);

    // A partial-track write to the target keeps the rest of its track from the source image.
    qemu_io(&tgt, &["write -P 0xc3 100k 4k"]);
    qemu_io(
        &tgt,
        &["read -P 0xa1 0 100k", "read -P 0xc3 100k 4k", "read -P 0xa1 104k 920k"],
    );
    qemu_io(&src, &["read -P 0xb2 0 64k", "read -P 0xa1 64k 236k"]);

    // Refresh: the target becomes the source as it is now (the target's write is gone).
    node.ok(&["resyncflash", "src:tgt", "--wait"]);
    let image_g = [
        "read -P 0xb2 0 64k",
        "read -P 0xa1 64k 236k",
        "read -P 0xb2 300k 10k",
        "read -P 0xa1 310k 714k",
    ];
    qemu_io(&tgt, &image_g);

    // Restore: production is damaged, then reversed from its copy.
    qemu_io(&src, &["write -P 0xd4 0 1M"]);
    qemu_io(&tgt, &image_g);
    node.ok(&["reverseflash", "src:tgt"]);
    qemu_io(&src, &image_g);

    // Fast reverse before the copy finished, without recording.
    node.ok(&["mkvol", "p", "--size", "1M"]);
    node.ok(&["mkvol", "q", "--size", "1M"]);
    qemu_io(&node.nbd_uri("p"), &["write -P 0xe5 0 1M"]);
    node.ok(&["mkflash", "p:q", "--nocp"]);
    qemu_io(&node.nbd_uri("p"), &["write -P 0xf6 0 128k"]);
    node.ok(&["reverseflash", "p:q", "--fast"]);
    qemu_io(&node.nbd_uri("p"), &["read -P 0xe5 0 1M"]);

    // Withdraw after a full copy: the target stands on its own.
    node.ok(&["mkvol", "w1", "--size", "1M"]);
    node.ok(&["mkvol", "w2", "--size", "1M"]);
    qemu_io(&node.nbd_uri("w1"), &["write -P 0x17 0 1M"]);
    node.ok(&["mkflash", "w1:w2", "--persist", "--wait"]);
    node.ok(&["rmflash", "w1:w2"]);
    qemu_io(&node.nbd_uri("w1"), &["write -P 0x28 0 1M"]);
    qemu_io(&node.nbd_uri("w2"), &["read -P 0x17 0 1M"]);
    qemu_io(&node.nbd_uri("w1"), &["read -P 0x28 0 1M"]);
}

/// Writes a freeze holds, as the journal records them (an entry's own outcome, or a write's
/// in a batch).
fn held_writes(node: &Node) -> usize {
    let entries = node.json(&["audit", "--json"]);
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let batched = e["writes"]
                .as_array()
                .map_or(0, |w| w.iter().filter(|w| w["outcome"] == "held").count());
            usize::from(e["outcome"] == "held") + batched
        })
        .sum()
}

#[test]
fn a_freeze_holds_nbd_writes_until_the_thaw_and_reads_go_on() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "f1", "--size", "1M"]);
    node.ok(&["mkvol", "f2", "--size", "1M"]);
    node.ok(&["mkflash", "f1:f2", "--nocp", "--freeze"]);

    let mut writer = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x39 0 64k", &node.nbd_uri("f1")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // qemu-io connected and its write reached the state machine, which held it (the journal
    // says so); qemu-io still waits for the reply.
    eventually("the node to hold qemu-io's write", 60, || {
        assert!(
            writer.try_wait().unwrap().is_none(),
            "qemu-io ended before its write was held"
        );
        held_writes(&node) > 0
    });
    assert!(writer.try_wait().unwrap().is_none(), "the write was not held");
    // Reads are never held.
    qemu_io(&node.nbd_uri("f1"), &["read -P 0 0 64k"]);

    node.ok(&["unfreezeflash", "f1"]);
    let out = writer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "held write failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    qemu_io(&node.nbd_uri("f1"), &["read -P 0x39 0 64k"]);
    qemu_io(&node.nbd_uri("f2"), &["read -P 0 0 64k"]);
}

#[test]
fn an_inhibited_target_is_exported_read_only_and_refuses_writes_with_eperm() {
    let (_dir, node) = single_node(&[]);
    for v in ["i1", "i2", "i3"] {
        node.ok(&["mkvol", v, "--size", "1M"]);
    }
    qemu_io(&node.nbd_uri("i1"), &["write -P 0x44 0 1M"]);
    node.ok(&["mkflash", "i1:i2", "--tgtinhibit", "--nocp"]);
    let info = json(run("nbdinfo", &["--json", &node.nbd_uri("i2")]));
    assert_eq!(info["exports"][0]["is_read_only"], true);
    // qemu refuses to open a read-only export for writing.
    let write = qemu_io_result(&node.nbd_uri("i2"), &["-c", "write -P 0x55 0 64k"]);
    assert!(
        write.code != 0 && write.stderr.contains("Permission denied"),
        "a write to an inhibited target: {}{}",
        write.stdout,
        write.stderr
    );
    qemu_io_with(&["-r"], &node.nbd_uri("i2"), &["read -P 0x44 0 1M"]);

    // A connection opened before the relationship gets EPERM once it exists.
    let script = format!(
        r#"
import errno, nbd, subprocess, sys
h = nbd.NBD()
h.connect_uri("{uri}")
h.pwrite(b"\x66" * 4096, 0)
subprocess.run(sys.argv[1:], check=True)
try:
    h.pwrite(b"\x77" * 4096, 0)
    raise SystemExit("write to an inhibited target succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
assert h.pread(4096, 0) == b"\x44" * 4096
print("ok")
"#,
        uri = node.nbd_uri("i3")
    );
    let out = run(
        PYTHON,
        &[
            "-c",
            &script,
            bin(),
            "mkflash",
            "i1:i3",
            "--tgtinhibit",
            "--nocp",
            "--api",
            &node.api,
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// Writes `len` bytes of reproducible noise to `path`.
fn noise_file(path: &std::path::Path, len: usize) {
    std::fs::write(path, noise(len)).unwrap();
}

fn sha256(path: &str) -> String {
    run("sha256sum", &[path])
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn qemu_img_convert_compare_and_nbdcopy_round_trip_64_mib() {
    let (dir, node) = single_node(&[]);
    let image = dir.path().join("image.raw");
    noise_file(&image, 64 << 20);
    let image = image.to_str().unwrap();
    node.ok(&["mkvol", "disk", "--size", "64M"]);
    let uri = node.nbd_uri("disk");

    let convert = run("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", image, &uri]);
    assert_eq!(convert.code, 0, "{}", convert.stderr);
    let compare = run("qemu-img", &["compare", "-f", "raw", "-F", "raw", image, &uri]);
    assert_eq!(compare.code, 0, "{}{}", compare.stdout, compare.stderr);

    let copy = dir.path().join("copy.raw");
    let nbdcopy = run("nbdcopy", &[&uri, copy.to_str().unwrap()]);
    assert_eq!(nbdcopy.code, 0, "{}", nbdcopy.stderr);
    assert_eq!(sha256(copy.to_str().unwrap()), sha256(image));

    // And piped, as the issue has it: nbdcopy to stdout.
    let piped = std::process::Command::new("sh")
        .args(["-c", &format!("nbdcopy {uri} - | sha256sum")])
        .output()
        .unwrap();
    let piped = String::from_utf8_lossy(&piped.stdout);
    assert_eq!(piped.split_whitespace().next().unwrap(), sha256(image));
}

#[test]
fn concurrent_connections_write_disjoint_ranges_and_fio_verifies_a_pipelined_workload() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "shared", "--size", "8M"]);
    let uri = node.nbd_uri("shared");
    // Four clients at once, each on its own 2 MiB, each with many requests in flight.
    let writers: Vec<_> = (0..4u64)
        .map(|i| {
            let base = i * (2 << 20);
            let mut args = vec!["-f".to_string(), "raw".to_string()];
            for k in 0..16u64 {
                args.push("-c".into());
                args.push(format!(
                    "aio_write -P {} {} 128k",
                    0x10 + i * 16 + k,
                    base + k * (128 << 10)
                ));
            }
            args.push("-c".into());
            args.push("aio_flush".into());
            args.push(uri.clone());
            std::process::Command::new("qemu-io").args(&args).output().unwrap()
        })
        .collect();
    for (i, out) in writers.iter().enumerate() {
        assert!(
            out.status.success(),
            "writer {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..4u64 {
        let base = i * (2 << 20);
        let reads: Vec<String> = (0..16u64)
            .map(|k| format!("read -P {} {} 128k", 0x10 + i * 16 + k, base + k * (128 << 10)))
            .collect();
        let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
        qemu_io(&uri, &reads);
    }

    node.ok(&["mkvol", "fio", "--size", "16M"]);
    let fio = run(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", node.nbd_uri("fio")),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=16M",
            "--io_size=4M",
            "--verify=crc32c",
            "--do_verify=1",
            "--numjobs=1",
            "--verify_state_save=0",
        ],
    );
    assert_eq!(fio.code, 0, "{}{}", fio.stdout, fio.stderr);
    assert!(
        !fio.stdout.contains("verify:") || fio.stdout.contains("err= 0"),
        "{}",
        fio.stdout
    );
}

#[test]
fn malformed_and_out_of_range_requests_get_errors_and_the_connection_stays_usable() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "edge", "--size", "1M"]);
    let script = format!(
        r#"
import errno, nbd
h = nbd.NBD()
h.set_strict_mode(0)  # let libnbd send what a careless client would
h.connect_uri("{uri}")
size = h.get_size()
def refused(what, expected, f):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == expected, (what, e)
        return
    raise SystemExit(what + " succeeded")
refused("read past the end", errno.EINVAL, lambda: h.pread(4096, size - 100))
refused("write past the end", errno.ENOSPC, lambda: h.pwrite(b"x" * 4096, size - 100))
refused("zeroes past the end", errno.ENOSPC, lambda: h.zero(8192, size - 4096))
refused("trim past the end", errno.ENOSPC, lambda: h.trim(8192, size))
refused("offset overflow", errno.EINVAL, lambda: h.pread(512, 2**64 - 256))
refused("zero-length read", errno.EINVAL, lambda: h.pread(0, 0))
refused("unknown flag", errno.EINVAL, lambda: h.pwrite(b"y" * 512, 0, nbd.CMD_FLAG_DF))
refused("block status not negotiated", errno.EINVAL, lambda: h.block_status(4096, 0, lambda *a: 0))
# Still usable after all that.
h.pwrite(b"ok" * 2048, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 4096) == b"ok" * 2048
h.zero(4096, 4096)
assert h.pread(4096, 4096) == bytes(4096)
h.trim(65536, 65536)
assert h.pread(65536, 65536) == bytes(65536)
h.flush()
h.shutdown()
print("ok")
"#,
        uri = node.nbd_uri("edge")
    );
    let out = run(PYTHON, &["-c", &script]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// Raw protocol: the option haggling of a client the server does not fully understand, then a
/// request stream that goes out of step. Only that one connection ends; the node serves on.
#[test]
fn unknown_options_get_err_unsup_and_a_broken_stream_only_ends_its_connection() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "raw", "--size", "1M"]);
    let mut raw = RawNbd::connect(&node.nbd);
    const ERR_UNSUP: u32 = (1 << 31) | 1;
    const ERR_INVALID: u32 = (1 << 31) | 3;
    // The withdrawn OPT_PEEK_EXPORT and an invented one.
    for option in [4u32, 4242] {
        raw.send_option(option, &[]);
        let (o, kind, _) = raw.read_reply();
        assert_eq!((o, kind), (option, ERR_UNSUP));
    }
    // OPT_LIST with data is invalid; without, it lists.
    raw.send_option(3, b"junk");
    assert_eq!(raw.read_reply().1, ERR_INVALID);
    raw.send_option(3, &[]);
    let (_, kind, data) = raw.read_reply();
    assert_eq!(kind, 2);
    assert_eq!(&data[4..], b"raw");
    assert_eq!(raw.read_reply().1, 1);
    // OPT_GO for a missing volume: ERR_UNKNOWN, with a message that says what to do.
    raw.send_option(7, &RawNbd::go_data("nope"));
    let (_, kind, message) = raw.read_reply();
    assert_eq!(kind, (1 << 31) | 6);
    let message = String::from_utf8(message).unwrap();
    assert!(message.contains("there is no volume named \"nope\""), "{message}");
    // OPT_GO with a truncated payload is invalid; a good one starts transmission.
    raw.send_option(7, &[0, 0, 0, 9, b'r']);
    assert_eq!(raw.read_reply().1, ERR_INVALID);
    raw.send_option(7, &RawNbd::go_data("raw"));
    loop {
        let (_, kind, _) = raw.read_reply();
        if kind == 1 {
            break;
        }
        assert_eq!(kind, 3, "an info reply before the ack");
    }
    let mut s = raw.s;
    // An unknown command type is refused; the connection goes on.
    let request = |kind: u16, cookie: u64, offset: u64, len: u32| {
        let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&cookie.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r
    };
    let read_simple = |s: &mut TcpStream| -> (u32, u64) {
        let mut reply = [0u8; 16];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(u32::from_be_bytes(reply[0..4].try_into().unwrap()), 0x6744_6698);
        (
            u32::from_be_bytes(reply[4..8].try_into().unwrap()),
            u64::from_be_bytes(reply[8..16].try_into().unwrap()),
        )
    };
    s.write_all(&request(99, 7, 0, 512)).unwrap();
    assert_eq!(read_simple(&mut s), (22, 7));
    s.write_all(&request(0, 8, 0, 512)).unwrap();
    assert_eq!(read_simple(&mut s), (0, 8));
    let mut data = [0u8; 512];
    s.read_exact(&mut data).unwrap();

    // Garbage where a request header belongs: this connection ends...
    s.write_all(&[0xde; 28]).unwrap();
    let rest = read_until_closed(&mut s, 10);
    assert!(rest.is_empty(), "no reply to garbage");
    // ...and the node serves everyone else.
    qemu_io(&node.nbd_uri("raw"), &["write -P 0x5a 0 4k", "read -P 0x5a 0 4k"]);
}

#[test]
fn a_client_killed_mid_write_leaves_every_request_whole_and_the_node_serving() {
    let (dir, node) = single_node(&[]);
    let image = dir.path().join("image.raw");
    noise_file(&image, 32 << 20);
    node.ok(&["mkvol", "victim", "--size", "32M"]);
    let uri = node.nbd_uri("victim");
    let mut copier = std::process::Command::new("nbdcopy")
        .args(["--request-size=65536", image.to_str().unwrap(), &uri])
        .spawn()
        .unwrap();
    // Let some writes land, then kill the client in the middle of the stream.
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        written = node.metric("flashcopy_nbd_bytes_total{command=\"write\"}").unwrap_or(0);
        if written >= 2 << 20 {
            break;
        }
    }
    copier.kill().unwrap();
    let _ = copier.wait();
    assert!(written > 0, "no write reached the node before the kill");

    // Every 64 KiB request either landed whole or not at all.
    let source = std::fs::read(&image).unwrap();
    let copy = dir.path().join("after.raw");
    let out = run("nbdcopy", &[&uri, copy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = std::fs::read(&copy).unwrap();
    let mut landed = 0;
    for (i, (got, sent)) in after.chunks(65536).zip(source.chunks(65536)).enumerate() {
        assert!(got == sent || got.iter().all(|b| *b == 0), "64 KiB block {i} is torn");
        landed += usize::from(got == sent);
    }
    assert!(landed > 0, "nothing landed");
    qemu_io(&uri, &["write -P 0x61 0 64k", "read -P 0x61 0 64k"]);
}

#[test]
fn nbd_connections_to_followers_are_served_by_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), &[]);
    nodes[0].ok(&["mkvol", "shared", "--size", "4M"]);
    let leader = nodes[0].json(&["cluster", "status", "--json"])["leader"]
        .as_u64()
        .unwrap();
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();

    qemu_io(&followers[0].nbd_uri("shared"), &["write -P 0x71 0 1M"]);
    qemu_io(
        &followers[1].nbd_uri("shared"),
        &["read -P 0x71 0 1M", "write -P 0x72 1M 1M"],
    );
    for node in &nodes {
        qemu_io(&node.nbd_uri("shared"), &["read -P 0x71 0 1M", "read -P 0x72 1M 1M"]);
    }
    let list = json(run(
        "nbdinfo",
        &["--list", "--json", &format!("nbd://{}", followers[0].nbd)],
    ));
    assert_eq!(list["exports"][0]["export-name"], "shared");
    assert_converged(&nodes);
}

/// `nbdinfo --map` as (offset, length, type) rows.
fn map(uri: &str) -> Vec<(u64, u64, u64)> {
    let out = json(run("nbdinfo", &["--map", "--json", uri]));
    out.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["type"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn block_status_maps_a_thin_volume_and_a_targets_shared_tracks_as_the_sources() {
    let (_dir, node) = single_node(&[]);
    let t = 1u64 << 40;
    node.ok(&["mkvol", "thin", "--size", "1T"]);
    node.ok(&["mkvol", "copy", "--size", "1T"]);
    let thin = node.nbd_uri("thin");
    qemu_io(
        &thin,
        &[
            "write -P 0x11 0 64k",
            "write -P 0x22 10M 128k",
            "write -P 0x33 1023G 64k",
        ],
    );
    // Data exactly where it was written, holes (that read as zeros) everywhere else.
    let (hole, data) = (3, 0);
    let expected = vec![
        (0, 64 << 10, data),
        (64 << 10, (10 << 20) - (64 << 10), hole),
        (10 << 20, 128 << 10, data),
        ((10 << 20) + (128 << 10), (1023 << 30) - (10 << 20) - (128 << 10), hole),
        (1023 << 30, 64 << 10, data),
        ((1023 << 30) + (64 << 10), t - (1023 << 30) - (64 << 10), hole),
    ];
    assert_eq!(map(&thin), expected);
    let qemu_map = run("qemu-img", &["map", "-f", "raw", "--output=json", &thin]);
    let rows: serde_json::Value = serde_json::from_str(&qemu_map.stdout).unwrap();
    let data_rows: Vec<(u64, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["data"] == true)
        .map(|r| (r["start"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        data_rows,
        vec![(0, 64 << 10), (10 << 20, 128 << 10), (1023 << 30, 64 << 10)]
    );

    // A no-copy target shares every track with its source: it maps as the source does, and a
    // track written on the target is its own.
    node.ok(&["mkflash", "thin:copy", "--nocp"]);
    assert_eq!(map(&node.nbd_uri("copy")), expected);
    qemu_io(&node.nbd_uri("copy"), &["write -P 0x44 1M 64k"]);
    let copy = map(&node.nbd_uri("copy"));
    assert_eq!(copy[1], (64 << 10, (1 << 20) - (64 << 10), hole));
    assert_eq!(copy[2], (1 << 20, 64 << 10, data));
}

#[test]
fn nbdcopy_and_qemu_img_convert_of_a_thin_1_tib_volume_read_only_what_was_written() {
    let (dir, node) = single_node(&[]);
    node.ok(&["mkvol", "big", "--size", "1T"]);
    let big = node.nbd_uri("big");
    // 64 MiB in four places.
    qemu_io(
        &big,
        &[
            "write -P 0x61 0 16M",
            "write -P 0x62 100G 16M",
            "write -P 0x63 700G 16M",
            "write -P 0x64 1008G 16M",
        ],
    );
    let written = 64u64 << 20;
    let read_bytes = || node.metric("flashcopy_nbd_bytes_total{command=\"read\"}").unwrap();

    let before = read_bytes();
    let copy = run("nbdcopy", &[&big, "null:"]);
    assert_eq!(copy.code, 0, "{}{}", copy.stdout, copy.stderr);
    let read = read_bytes() - before;
    assert!(
        read >= written && read < written + (8 << 20),
        "nbdcopy read {read} bytes of a volume holding {written}"
    );

    let before = read_bytes();
    let target = dir.path().join("big.qcow2");
    let convert = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &big,
            &target.display().to_string(),
        ],
    );
    assert_eq!(convert.code, 0, "{}{}", convert.stdout, convert.stderr);
    let read = read_bytes() - before;
    assert!(
        read >= written && read < written + (8 << 20),
        "qemu-img convert read {read} bytes of {written}"
    );
    let compare = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            &big,
            &target.display().to_string(),
        ],
    );
    assert_eq!(compare.code, 0, "{}{}", compare.stdout, compare.stderr);
}

/// A raw client speaking extended headers (64-bit lengths), for what the stock tools cannot
/// send in one request.
struct ExtendedClient {
    s: TcpStream,
    size: u64,
    cookie: u64,
}

impl ExtendedClient {
    fn connect(addr: &str, volume: &str) -> ExtendedClient {
        let mut raw = RawNbd::connect(addr);
        assert_eq!(raw.option(11, &[]).last().unwrap().0, 1, "extended headers accepted");
        let replies = raw.option(7, &RawNbd::go_data(volume));
        assert_eq!(replies.last().unwrap().0, 1, "GO acknowledged: {replies:?}");
        let info = &replies
            .iter()
            .find(|(kind, d)| *kind == 3 && d[0..2] == [0, 0])
            .unwrap()
            .1;
        let size = u64::from_be_bytes(info[2..10].try_into().unwrap());
        let flags = u16::from_be_bytes(info[10..12].try_into().unwrap());
        assert_ne!(flags & (1 << 11), 0, "SEND_FAST_ZERO is advertised");
        ExtendedClient {
            s: raw.s,
            size,
            cookie: 0,
        }
    }

    /// Sends one request; returns the error of its (single, final) reply chunk, 0 for success.
    fn request(&mut self, kind: u16, flags: u16, offset: u64, length: u64) -> u32 {
        self.cookie += 1;
        let mut r = 0x21e4_1c71u32.to_be_bytes().to_vec();
        r.extend_from_slice(&flags.to_be_bytes());
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&self.cookie.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&length.to_be_bytes());
        self.s.write_all(&r).unwrap();
        let mut header = [0u8; 32];
        self.s.read_exact(&mut header).unwrap();
        assert_eq!(
            u32::from_be_bytes(header[0..4].try_into().unwrap()),
            0x6e8a_278c,
            "extended reply"
        );
        assert_eq!(
            u16::from_be_bytes(header[4..6].try_into().unwrap()) & 1,
            1,
            "final chunk"
        );
        assert_eq!(u64::from_be_bytes(header[8..16].try_into().unwrap()), self.cookie);
        let chunk = u16::from_be_bytes(header[6..8].try_into().unwrap());
        let mut payload = vec![0u8; u64::from_be_bytes(header[24..32].try_into().unwrap()) as usize];
        self.s.read_exact(&mut payload).unwrap();
        match chunk {
            0 => 0,
            0x8001 => u32::from_be_bytes(payload[0..4].try_into().unwrap()),
            other => panic!("unexpected chunk type {other}"),
        }
    }
}

const TRIM: u16 = 4;
const WRITE_ZEROES: u16 = 6;
const FAST_ZERO: u16 = 1 << 4;

#[test]
fn a_whole_volume_trim_of_1_tib_is_one_request_and_one_entry_and_fast_zero_says_when_it_is_not_fast() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "big", "--size", "1T"]);
    node.ok(&["mkvol", "src", "--size", "64M"]);
    node.ok(&["mkvol", "tgt", "--size", "64M"]);
    qemu_io(
        &node.nbd_uri("big"),
        &[
            "write -P 0x71 0 1M",
            "write -P 0x72 512G 1M",
            "write -P 0x73 1099511562240 64k",
        ],
    );

    let mut client = ExtendedClient::connect(&node.nbd, "big");
    assert_eq!(client.size, 1 << 40);
    let trims = || node.metric("flashcopy_nbd_requests_total{command=\"trim\"}").unwrap();
    let (trims_before, (index_before, _)) = (trims(), node.applied());
    assert_eq!(client.request(TRIM, 0, 0, 1 << 40), 0);
    let (index_after, _) = node.applied();
    assert_eq!(trims() - trims_before, 1, "one request");
    assert!(
        index_after - index_before <= 2,
        "one log entry, not one per 32 MiB: {index_before} -> {index_after}"
    );
    assert!(
        map(&node.nbd_uri("big")).iter().all(|&(_, _, kind)| kind == 3),
        "all holes now"
    );
    qemu_io(
        &node.nbd_uri("big"),
        &["read -P 0 0 1M", "read -P 0 512G 1M", "read -P 0 1099511562240 64k"],
    );
    // Zeroing the whole of it, with FAST_ZERO: nothing is stored, so it is fast.
    assert_eq!(client.request(WRITE_ZEROES, FAST_ZERO, 0, 1 << 40), 0);
    // qemu 10 sends a whole-volume zeroing as one request too (extended headers): one entry.
    qemu_io(&node.nbd_uri("big"), &["write -P 0x74 100G 1M"]);
    let zeroes = || {
        node.metric("flashcopy_nbd_requests_total{command=\"write_zeroes\"}")
            .unwrap()
    };
    let (zeroes_before, (index_before, _)) = (zeroes(), node.applied());
    qemu_io(
        &node.nbd_uri("big"),
        &["write -z -n 0 1099511627776", "read -P 0 100G 1M"],
    );
    assert_eq!(zeroes() - zeroes_before, 1, "qemu-io zeroed 1 TiB in one request");
    assert!(node.applied().0 - index_before <= 2, "and one entry");
    // Past the end: ENOSPC, and the connection goes on.
    assert_eq!(client.request(WRITE_ZEROES, 0, 1 << 20, 1 << 40), 28);

    // A source whose target still shares tracks: zeroing would copy them first, so FAST_ZERO is
    // refused with ENOTSUP and nothing changes; without the flag it zeroes, and the target keeps
    // its point in time.
    qemu_io(&node.nbd_uri("src"), &["write -P 0x75 0 64M"]);
    node.ok(&["mkflash", "src:tgt", "--nocp"]);
    let mut src = ExtendedClient::connect(&node.nbd, "src");
    assert_eq!(src.request(WRITE_ZEROES, FAST_ZERO, 0, 64 << 20), 95);
    qemu_io(&node.nbd_uri("src"), &["read -P 0x75 0 64M"]);
    assert_eq!(src.request(WRITE_ZEROES, 0, 0, 64 << 20), 0);
    qemu_io(&node.nbd_uri("src"), &["read -P 0 0 64M"]);
    qemu_io(&node.nbd_uri("tgt"), &["read -P 0x75 0 64M"]);
}

#[test]
fn a_connection_stays_bound_to_its_volume_after_rmvol_and_mkvol_of_the_same_name() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "x", "--size", "1M"]);
    let (host, port) = node.nbd.split_once(':').unwrap();
    let script = format!(
        r#"
import errno, nbd, subprocess
h = nbd.NBD()
h.set_export_name("x")
h.connect_tcp("{host}", "{port}")
h.pwrite(b"\x01" * 4096, 0)
cli = lambda *args: subprocess.run(["{bin}", *args, "--api", "{api}"], check=True, capture_output=True)
cli("rmvol", "x")
cli("mkvol", "x", "--size", "1M")
subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x02 0 4k", "nbd://{host}:{port}/x"], check=True, capture_output=True)
for what, f in [("read", lambda: h.pread(4096, 0)), ("write", lambda: h.pwrite(b"\x03" * 4096, 0))]:
    try:
        f()
        raise SystemExit("the old connection could " + what + " the new volume")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, (what, e)
print("ok")
"#,
        bin = bin(),
        api = node.api
    );
    let out = run(PYTHON, &["-c", &script]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The new volume holds only what was written to it.
    qemu_io(&node.nbd_uri("x"), &["read -P 0x02 0 4k"]);
}

/// A model of volumes in a cascade: every byte as a host must read it.
struct CascadeModel {
    volumes: Vec<Vec<u8>>,
    seed: u64,
}

impl CascadeModel {
    /// A small deterministic generator (xorshift): the same writes every run.
    fn next(&mut self, below: u64) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % below
    }

    /// Random qemu-io writes (byte-granular, any length up to 200 KiB) to `volume`, in the model too.
    fn write(&mut self, n: &Node, volume: usize, count: usize) {
        let size = self.volumes[volume].len() as u64;
        let mut commands = Vec::new();
        for _ in 0..count {
            let length = 1 + self.next(200 << 10);
            let offset = self.next(size - length);
            let pattern = 1 + self.next(255) as u8;
            self.volumes[volume][offset as usize..(offset + length) as usize].fill(pattern);
            commands.push(format!("write -P {pattern} {offset} {length}"));
        }
        let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
        qemu_io(&n.nbd_uri(&format!("v{volume}")), &commands);
    }

    /// Reads the volumes whole with qemu-io, one `read -P` per run of equal bytes of the model.
    fn check(&self, n: &Node, volumes: &[usize], when: &str) {
        for &v in volumes {
            let bytes = &self.volumes[v];
            let mut commands = Vec::new();
            let mut start = 0;
            while start < bytes.len() {
                let end = start + bytes[start..].iter().take_while(|b| **b == bytes[start]).count();
                commands.push(format!("read -P {} {start} {}", bytes[start], end - start));
                start = end;
            }
            let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
            let out = qemu_io_result(
                &n.nbd_uri(&format!("v{v}")),
                &commands.iter().flat_map(|c| ["-c", c]).collect::<Vec<_>>(),
            );
            assert!(
                out.code == 0 && !out.stdout.contains("fail") && !out.stdout.contains("Pattern verification"),
                "{when}: v{v} differs from the model: {}{}",
                out.stdout,
                out.stderr
            );
        }
    }
}

/// Cascading FlashCopy as hosts see it: v0→v1 (nocopy), v1→v2 (no copy, then slowly, then at
/// full speed), v2→v3 (nocopy), random byte-granular writes on every volume of the cascade, and
/// qemu-io reading each volume whole against a model after each round.
#[test]
fn qemu_io_reads_every_volume_of_a_cascade_as_the_model_after_random_writes() {
    let (_dir, n) = single_node(&[]);
    let size = 4 << 20;
    for v in 0..4 {
        n.ok(&["mkvol", &format!("v{v}"), "--size", "4M"]);
    }
    let mut m = CascadeModel {
        volumes: vec![vec![0; size]; 4],
        seed: 0x9e37_79b9_7f4a_7c15,
    };
    m.write(&n, 0, 12);
    n.ok(&["mkflash", "v0:v1", "--nocp"]);
    m.volumes[1] = m.volumes[0].clone();
    m.write(&n, 0, 6);
    m.write(&n, 1, 6);
    // No background copy yet: the refusals below must not race it.
    n.ok(&["mkflash", "v1:v2", "--persist", "--copy-rate", "0"]);
    m.volumes[2] = m.volumes[1].clone();
    m.write(&n, 1, 6);
    n.ok(&["mkflash", "v2:v3", "--nocp"]);
    m.volumes[3] = m.volumes[2].clone();
    let lsflash = n.ok(&["lsflash"]);
    assert!(lsflash.contains("v0>v1>v2>v3"), "{lsflash}");
    n.fails(&["resyncflash", "v0:v1"], 1, "not-recording");
    n.fails(&["rmflash", "v0:v1"], 1, "cascade-copy-running");
    n.fails(&["mkflash", "v3:v0"], 1, "cascade-not-allowed");
    // Nothing copied yet: v3 reads through v2 and v1 to v0.
    m.check(&n, &[0, 1, 2, 3], "established");
    for round in 0..3 {
        if round == 1 {
            n.ok(&["chflash", "v1:v2", "--copy-rate", "1"]);
        }
        for v in [2, 0, 3, 1] {
            m.write(&n, v, 5);
        }
        m.check(&n, &[0, 1, 2, 3], &format!("round {round}"));
    }
    n.ok(&["chflash", "v1:v2", "--copy-rate", "unlimited"]);
    eventually("the copy v1:v2 to finish", 60, || {
        n.json(&["lsflash", "v2", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "v2" && r["state"] == "copied")
    });
    for v in [1, 2, 0, 3] {
        m.write(&n, v, 5);
    }
    m.check(&n, &[0, 1, 2, 3], "after the copy");
    // v1's image no longer matters to v2: its own source may go, leaving it incomplete.
    n.ok(&["rmflash", "v0:v1"]);
    m.write(&n, 2, 3);
    m.check(&n, &[0, 2, 3], "after v0:v1 was withdrawn");
    let volumes = n.json(&["lsvol", "--json"]);
    let v1 = volumes.as_array().unwrap().iter().find(|v| v["name"] == "v1").unwrap();
    assert_eq!(v1["state"], "incomplete");
}
