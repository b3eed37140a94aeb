//! Who may use the data path: TLS on NBD (PSK and x509) and per-host volume mappings, driven
//! with the real clients (qemu-io with `--object tls-creds-*`, libnbd's nbdinfo and Python
//! bindings with `nbds://`), against the real `flashcopy serve`.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Key and certificate files, made fresh for each test with psktool and openssl.
struct Credentials {
    _dir: tempfile::TempDir,
    /// psktool key file with alice and bob (the server's); qemu and libnbd read their line.
    psk: PathBuf,
    /// Like `psk`, but alice's key is another one.
    wrong_psk: PathBuf,
    /// ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem (CN=client1), client-key.pem.
    x509: PathBuf,
    /// The same CA to check the server, but a client certificate another CA signed.
    rogue_x509: PathBuf,
}

fn tool(program: &str, args: &[&str]) {
    let out = run(program, args);
    assert_eq!(out.code, 0, "{program} {args:?}: {}{}", out.stdout, out.stderr);
}

/// A CA in `dir` (ca-cert.pem, ca-key.pem), and a certificate it signs as `name`-cert.pem.
fn sign(dir: &Path, ca: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, cert, ext) = (
        dir.join(format!("{name}-key.pem")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}.ext")),
    );
    std::fs::write(&ext, extensions).unwrap();
    let s = |p: &Path| p.display().to_string();
    tool(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            subject,
        ],
    );
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca.join("ca-cert.pem")),
            "-CAkey",
            &s(&ca.join("ca-key.pem")),
            "-CAcreateserial",
            "-out",
            &s(&cert),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ],
    );
}

fn make_ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let s = |f: &str| dir.join(f).display().to_string();
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &s("ca-key.pem"),
            "-out",
            &s("ca-cert.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn credentials() -> Credentials {
    let dir = tempfile::tempdir().unwrap();
    let psk_dir = dir.path().join("psk");
    let wrong_dir = dir.path().join("wrong");
    std::fs::create_dir_all(&psk_dir).unwrap();
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let psk = psk_dir.join("keys.psk");
    let wrong_psk = wrong_dir.join("keys.psk");
    for user in ["alice", "bob"] {
        tool("psktool", &["-u", user, "-p", &psk.display().to_string()]);
    }
    tool("psktool", &["-u", "alice", "-p", &wrong_psk.display().to_string()]);

    let x509 = dir.path().join("x509");
    make_ca(&x509, "flashcopy test CA");
    sign(
        &x509,
        &x509,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    sign(
        &x509,
        &x509,
        "client",
        "/O=Example/CN=client1",
        "extendedKeyUsage=clientAuth\n",
    );

    let rogue_ca = dir.path().join("rogue-ca");
    make_ca(&rogue_ca, "rogue CA");
    let rogue_x509 = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue_x509).unwrap();
    std::fs::copy(x509.join("ca-cert.pem"), rogue_x509.join("ca-cert.pem")).unwrap();
    sign(
        &rogue_x509,
        &rogue_ca,
        "client",
        "/CN=client1",
        "extendedKeyUsage=clientAuth\n",
    );
    Credentials {
        _dir: dir,
        psk,
        wrong_psk,
        x509,
        rogue_x509,
    }
}

impl Credentials {
    /// `serve` options: TLS required, PSK and x509 with client certificates.
    fn serve_args(&self) -> Vec<String> {
        let x = |f: &str| self.x509.join(f).display().to_string();
        vec![
            "--nbd-tls".into(),
            "require".into(),
            "--nbd-tls-psk".into(),
            self.psk.display().to_string(),
            "--nbd-tls-cert".into(),
            x("server-cert.pem"),
            "--nbd-tls-key".into(),
            x("server-key.pem"),
            "--nbd-tls-ca".into(),
            x("ca-cert.pem"),
        ]
    }
}

fn start(creds: &Credentials) -> (tempfile::TempDir, Node) {
    let args = creds.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    single_node(&args)
}

/// The `--object` qemu takes for PSK as `user` with the key file in `psk`'s directory.
fn psk_object(psk: &Path, user: &str) -> String {
    format!(
        "tls-creds-psk,id=tls0,endpoint=client,dir={},username={user}",
        psk.parent().unwrap().display()
    )
}

fn x509_object(dir: &Path) -> String {
    format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", dir.display())
}

/// qemu-io over TLS with the credentials `object` names.
fn qemu_tls(node: &Node, object: &str, volume: &str, commands: &[&str]) -> Out {
    let (host, port) = node.nbd.split_once(':').unwrap();
    let image = format!("driver=nbd,host={host},port={port},export={volume},tls-creds=tls0");
    let mut args = vec!["--object", object, "--image-opts", &image];
    for c in commands {
        args.extend(["-c", c]);
    }
    run("qemu-io", &args)
}

fn succeeded(out: &Out) -> bool {
    out.code == 0 && !out.stdout.contains("failed") && !out.stderr.contains("failed")
}

/// The export names nbdinfo lists at `uri` (an `nbds://` URI with its credentials).
fn listed(uri: &str) -> Vec<String> {
    let out = run("nbdinfo", &["--list", "--json", uri]);
    assert_eq!(out.code, 0, "{uri}: {}{}", out.stdout, out.stderr);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut names: Vec<String> = list["exports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["export-name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn psk_uri(node: &Node, psk: &Path, user: &str, volume: &str) -> String {
    format!("nbds://{user}@{}/{volume}?tls-psk-file={}", node.nbd, psk.display())
}

fn x509_uri(node: &Node, dir: &Path, volume: &str) -> String {
    format!("nbds://{}/{volume}?tls-certificates={}", node.nbd, dir.display())
}

/// Runs a libnbd (Python) script; `CONNECT` in it is replaced by a connection to `volume` with
/// PSK user alice.
fn libnbd(node: &Node, creds: &Credentials, volume: &str, body: &str) -> Out {
    let (host, port) = node.nbd.split_once(':').unwrap();
    let script = format!(
        r#"
import errno, nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_psk_file("{psk}")
h.set_tls_username("alice")
h.set_export_name("{volume}")
h.connect_tcp("{host}", "{port}")
{body}
print("ok")
"#,
        psk = creds.psk.display()
    );
    run(PYTHON, &["-c", &script])
}

#[test]
fn tls_psk_and_x509_clients_connect_and_plain_or_wrong_credentials_are_refused() {
    let creds = credentials();
    let (_dir, node) = start(&creds);
    node.ok(&["mkvol", "v1", "--size", "1M"]);

    // PSK (qemu-io, then libnbd) and x509 (qemu-io, nbdinfo) all read what the others wrote.
    let out = qemu_tls(&node, &psk_object(&creds.psk, "alice"), "v1", &["write -P 0x11 0 64k"]);
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
    let out = qemu_tls(
        &node,
        &x509_object(&creds.x509),
        "v1",
        &["read -P 0x11 0 64k", "write -P 0x22 64k 64k"],
    );
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
    let out = libnbd(
        &node,
        &creds,
        "v1",
        r#"
assert h.pread(65536, 65536) == b"\x22" * 65536
h.pwrite(b"\x33" * 4096, 131072)
assert h.get_tls_negotiated() == 1
"#,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let info = run("nbdinfo", &[&x509_uri(&node, &creds.x509, "v1")]);
    assert!(info.stdout.contains("with TLS"), "{}{}", info.stdout, info.stderr);
    // nbdsh and qemu-img, the other two clients administrators reach for.
    // (`nbdsh` is `python3 -m nbd`; the interpreter with libnbd's module, whatever PATH says.)
    let nbdsh = run(
        PYTHON,
        &[
            "-m",
            "nbd",
            "-c",
            "h.set_uri_allow_local_file(True)",
            "-c",
            &format!("h.connect_uri('{}')", psk_uri(&node, &creds.psk, "bob", "v1")),
            "-c",
            "assert h.pread(4096, 131072) == b'\\x33' * 4096; print(h.get_size())",
        ],
    );
    assert_eq!(nbdsh.code, 0, "{}{}", nbdsh.stdout, nbdsh.stderr);
    assert_eq!(nbdsh.stdout.trim(), (1u64 << 20).to_string());
    let (host, port) = node.nbd.split_once(':').unwrap();
    let image = format!("driver=nbd,host={host},port={port},export=v1,tls-creds=tls0");
    let qemu_img = run(
        "qemu-img",
        &["info", "--object", &x509_object(&creds.x509), "--image-opts", &image],
    );
    assert_eq!(qemu_img.code, 0, "{}{}", qemu_img.stdout, qemu_img.stderr);
    assert!(qemu_img.stdout.contains("1 MiB"), "{}", qemu_img.stdout);
    assert_eq!(listed(&psk_uri(&node, &creds.psk, "alice", "")), vec!["v1"]);

    // Plain: refused with the TLS error, and the message says what to do.
    let plain = qemu_io_result(&node.nbd_uri("v1"), &["-c", "read 0 4k"]);
    assert_ne!(plain.code, 0);
    assert!(plain.stderr.contains("requires TLS"), "{}", plain.stderr);
    // A wrong key and a certificate another CA signed: the handshake fails.
    let wrong = qemu_tls(&node, &psk_object(&creds.wrong_psk, "alice"), "v1", &["read 0 4k"]);
    assert_ne!(wrong.code, 0, "{}{}", wrong.stdout, wrong.stderr);
    let unknown = qemu_tls(&node, &psk_object(&creds.psk, "carol"), "v1", &["read 0 4k"]);
    assert_ne!(unknown.code, 0, "an identity without a key");
    let rogue = qemu_tls(&node, &x509_object(&creds.rogue_x509), "v1", &["read 0 4k"]);
    assert_ne!(rogue.code, 0, "{}{}", rogue.stdout, rogue.stderr);
    let wrong_nbdinfo = run("nbdinfo", &[&psk_uri(&node, &creds.wrong_psk, "alice", "v1")]);
    assert_ne!(wrong_nbdinfo.code, 0);

    // Raw protocol: every option but STARTTLS gets NBD_REP_ERR_TLS_REQD before TLS, and
    // EXPORT_NAME (which cannot be refused) ends the connection.
    let mut raw = RawNbd::connect(&node.nbd);
    const ERR_TLS_REQD: u32 = (1 << 31) | 5;
    for option in [3u32, 8, 11, 4242] {
        let replies = raw.option(option, &[]);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].0, ERR_TLS_REQD, "option {option}");
    }
    raw.send_option(1, b"v1");
    let rest = read_until_closed(&mut raw.s, 10);
    assert!(rest.is_empty(), "no export without TLS");
    // The node serves on.
    let out = qemu_tls(&node, &psk_object(&creds.psk, "bob"), "v1", &["read -P 0x33 128k 4k"]);
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
}

#[test]
fn hosts_see_read_and_write_only_their_mapped_volumes() {
    let creds = credentials();
    let (_dir, node) = start(&creds);
    for v in ["v1", "v2", "v3"] {
        node.ok(&["mkvol", v, "--size", "1M"]);
    }
    let alice_list = psk_uri(&node, &creds.psk, "alice", "");
    let client1_list = x509_uri(&node, &creds.x509, "");
    // No host defined: the data path is open to every client, as before hosts existed.
    assert_eq!(listed(&alice_list), vec!["v1", "v2", "v3"]);

    node.ok(&["mkhost", "app", "--psk-identity", "alice"]);
    node.ok(&["mkhost", "backup", "--cert-cn", "client1"]);
    node.ok(&["mapvol", "v1", "app"]);
    node.ok(&["mapvol", "v2", "app", "--read-only"]);
    node.ok(&["mapvol", "v3", "backup"]);
    node.fails(&["mkhost", "again", "--psk-identity", "alice"], 1, "identity-in-use");
    node.fails(&["rmvol", "v1"], 1, "volume-mapped");
    let hosts = node.json(&["lshost", "--json"]);
    assert_eq!(hosts[0]["name"], "app");
    assert_eq!(hosts[0]["volumes"]["v2"], "read-only");

    assert_eq!(listed(&alice_list), vec!["v1", "v2"]);
    assert_eq!(listed(&client1_list), vec!["v3"]);
    // bob proves a key, but no host names him: he sees nothing.
    assert!(listed(&psk_uri(&node, &creds.psk, "bob", "")).is_empty());
    let bob = qemu_tls(&node, &psk_object(&creds.psk, "bob"), "v1", &["read 0 4k"]);
    assert_ne!(bob.code, 0, "an unmapped volume does not open");
    let not_theirs = run("nbdinfo", &[&psk_uri(&node, &creds.psk, "alice", "v3")]);
    assert_ne!(not_theirs.code, 0, "alice opens no volume of another host");

    // Each host writes its read-write volumes.
    let out = qemu_tls(
        &node,
        &psk_object(&creds.psk, "alice"),
        "v1",
        &["write -P 0x41 0 64k", "read -P 0x41 0 64k"],
    );
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
    let out = qemu_tls(&node, &x509_object(&creds.x509), "v3", &["write -P 0x43 0 64k"]);
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
    // A read-only mapping: exported read-only, and a write sent anyway gets EPERM.
    let out = libnbd(
        &node,
        &creds,
        "v2",
        r#"
assert h.is_read_only() == 1
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 4096, 0)
    raise SystemExit("a write to a read-only mapping succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
assert h.pread(4096, 0) == bytes(4096)
"#,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Unmapping takes effect on open connections: the next request gets EPERM.
    let script = format!(
        r#"
assert h.pread(4096, 0) == b"\x41" * 4096
import subprocess
subprocess.run(["{bin}", "unmapvol", "v1", "app", "--api", "{api}"], check=True, capture_output=True)
try:
    h.pread(4096, 0)
    raise SystemExit("an unmapped volume still reads")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
"#,
        bin = bin(),
        api = node.api
    );
    let out = libnbd(&node, &creds, "v1", &script);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(listed(&alice_list), vec!["v2"]);
    // Journaled like every command.
    let audit = node.ok(&["audit"]);
    assert!(audit.contains("mapvol v2 app --read-only"), "{audit}");
    assert!(audit.contains("unmapvol v1 app"), "{audit}");
}

#[test]
fn a_follower_forwards_tls_connections_and_the_clients_identity_holds_at_the_leader() {
    let creds = credentials();
    let dir = tempfile::tempdir().unwrap();
    let args = creds.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nodes = cluster(dir.path(), &args);
    for v in ["mine", "theirs"] {
        nodes[0].ok(&["mkvol", v, "--size", "1M"]);
    }
    nodes[0].ok(&["mkhost", "app", "--psk-identity", "alice"]);
    nodes[0].ok(&["mapvol", "mine", "app"]);
    // The follower forwards to the leader: it must know it (one that just joined may not yet).
    let leader = leader_everywhere(&nodes);
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    assert_eq!(listed(&psk_uri(follower, &creds.psk, "alice", "")), vec!["mine"]);
    let out = qemu_tls(
        follower,
        &psk_object(&creds.psk, "alice"),
        "mine",
        &["write -P 0x51 0 64k"],
    );
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
    let out = qemu_tls(follower, &psk_object(&creds.psk, "alice"), "theirs", &["read 0 4k"]);
    assert_ne!(out.code, 0, "the identity travels with the forwarded connection");
    for node in &nodes {
        let out = qemu_tls(node, &psk_object(&creds.psk, "alice"), "mine", &["read -P 0x51 0 64k"]);
        assert!(succeeded(&out), "node {}: {}{}", node.id, out.stdout, out.stderr);
    }
    assert_converged(&nodes);
}

/// With TLS offered but not required, a plain client is a client without an identity: once
/// hosts exist it is listed nothing and opens nothing (raw protocol, no client library in
/// between), while a PSK client that starts TLS gets its host's volumes.
#[test]
fn without_tls_required_a_plain_client_sees_nothing_once_hosts_exist() {
    let creds = credentials();
    let psk = creds.psk.display().to_string();
    let (_dir, node) = single_node(&["--nbd-tls", "off", "--nbd-tls-psk", &psk]);
    node.ok(&["mkvol", "v1", "--size", "1M"]);
    // No hosts: plain NBD works as ever.
    qemu_io(&node.nbd_uri("v1"), &["write -P 0x61 0 4k"]);
    node.ok(&["mkhost", "app", "--psk-identity", "alice"]);
    node.ok(&["mapvol", "v1", "app"]);

    let mut raw = RawNbd::connect(&node.nbd);
    let kinds = |replies: Vec<(u32, Vec<u8>)>| replies.into_iter().map(|r| r.0).collect::<Vec<u32>>();
    assert_eq!(
        kinds(raw.option(3, &[])),
        vec![1],
        "OPT_LIST: no server entries, just the ack"
    );
    assert_eq!(
        kinds(raw.option(7, &RawNbd::go_data("v1"))),
        vec![(1 << 31) | 6],
        "OPT_GO: unknown to this client"
    );
    let plain = qemu_io_result(&node.nbd_uri("v1"), &["-c", "read 0 4k"]);
    assert_ne!(plain.code, 0);
    // The PSK client starts TLS and is app.
    let out = qemu_tls(&node, &psk_object(&creds.psk, "alice"), "v1", &["read -P 0x61 0 4k"]);
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
}

/// `--nbd-tls require` on a follower holds even when the leader, which serves the forwarded
/// connection, is configured `off`: the tunnel carries the follower's policy.
#[test]
fn a_followers_tls_requirement_holds_through_a_leader_that_does_not_require_it() {
    let creds = credentials();
    let dir = tempfile::tempdir().unwrap();
    let mut strict = creds.serve_args();
    let mut lax = strict.clone();
    lax[1] = "off".into();
    let n1 = Node::start(
        &dir.path().join("n1"),
        1,
        &lax.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    n1.wait_ready();
    strict.extend(["--join".into(), n1.api.clone()]);
    let strict: Vec<&str> = strict.iter().map(String::as_str).collect();
    let mut nodes = vec![n1];
    for id in [2, 3] {
        nodes.push(Node::start(&dir.path().join(format!("n{id}")), id, &strict));
    }
    wait_for_voters(&nodes, 3);
    // The followers forward to the leader: every node must know it (one that just joined may not).
    assert_eq!(
        leader_everywhere(&nodes),
        1,
        "node 1, which started the cluster, leads it"
    );
    nodes[0].ok(&["mkvol", "v", "--size", "1M"]);

    // The lax leader serves plain clients itself...
    qemu_io(&nodes[0].nbd_uri("v"), &["write -P 0x71 0 4k"]);
    // ...but a strict follower's connections, which it serves too, must start TLS.
    let plain = qemu_io_result(&nodes[1].nbd_uri("v"), &["-c", "read 0 4k"]);
    assert_ne!(plain.code, 0, "{}{}", plain.stdout, plain.stderr);
    assert!(plain.stderr.contains("requires TLS"), "{}", plain.stderr);
    let out = qemu_tls(&nodes[1], &psk_object(&creds.psk, "alice"), "v", &["read -P 0x71 0 4k"]);
    assert!(succeeded(&out), "{}{}", out.stdout, out.stderr);
}
