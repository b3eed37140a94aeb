//! Test harness: real `flashcopy` processes on temp dirs and free ports, driven by the real CLI.
#![allow(dead_code)]

use node::cli::client::ApiClient;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flashcopy")
}

/// A port free to listen on, below the kernel's ephemeral range: a port
/// the kernel hands out for port 0 may be taken by any outgoing connection before the node
/// binds it. Each test process starts at its own place in the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    // Up to the start of the ephemeral range, wherever this machine puts it.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOW).max(1000);
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {ephemeral}");
}

/// Runs a future to completion (the data path uses the async API client).
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the CLI with the given API URL and extra environment.
pub fn cli_env(api: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("FLASHCOPY_API", api).env_remove("FLASHCOPY_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run flashcopy");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub struct Node {
    pub id: u64,
    pub dir: PathBuf,
    pub api: String,
    pub raft: String,
    /// NBD address, `127.0.0.1:PORT`.
    pub nbd: String,
    args: Vec<String>,
    /// Runs the binary through this command (e.g. as another user), if set.
    wrapper: Vec<String>,
    child: Option<Child>,
    pub token: Option<String>,
}

impl Node {
    /// Starts a node in `dir`. `extra` are more `serve` arguments.
    pub fn start(dir: &Path, id: u64, extra: &[&str]) -> Node {
        let mut node = Node::configure(dir, id, extra);
        node.spawn();
        node
    }

    /// A node on free ports, not started yet.
    fn configure(dir: &Path, id: u64, extra: &[&str]) -> Node {
        let (api_port, raft_port, nbd_port) = (free_port(), free_port(), free_port());
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--node-id".into(),
            id.to_string(),
            "--api".into(),
            format!("127.0.0.1:{api_port}"),
            "--raft".into(),
            format!("127.0.0.1:{raft_port}"),
            "--nbd".into(),
            format!("127.0.0.1:{nbd_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let token = extra
            .iter()
            .position(|a| *a == "--token-file")
            .map(|i| std::fs::read_to_string(extra[i + 1]).unwrap().trim().to_string());
        Node {
            id,
            dir: dir.to_path_buf(),
            api: format!("http://127.0.0.1:{api_port}"),
            raft: format!("127.0.0.1:{raft_port}"),
            nbd: format!("127.0.0.1:{nbd_port}"),
            args,
            wrapper: Vec::new(),
            child: None,
            token,
        }
    }

    /// Like `start`, but the process runs as user `nobody` (so firewall rules can tell its
    /// packets apart). `dir`'s parent must be reachable by others.
    pub fn start_as_nobody(dir: &Path, id: u64, extra: &[&str]) -> Node {
        use std::os::unix::fs::PermissionsExt;
        let program = dir.with_extension("bin");
        std::fs::copy(bin(), &program).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let chown = run("chown", &["-R", "65534:65534", dir.to_str().unwrap()]);
        assert_eq!(chown.code, 0, "chown: {}", chown.stderr);
        let mut node = Node::configure(dir, id, extra);
        node.wrapper = vec![
            "setpriv".into(),
            "--reuid=65534".into(),
            "--regid=65534".into(),
            "--clear-groups".into(),
            program.display().to_string(),
        ];
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args);
                c
            }
            None => Command::new(bin()),
        };
        let child = command
            .args(&self.args)
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or("warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn flashcopy serve");
        self.child = Some(child);
    }

    /// The node's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Out {
        match &self.token {
            Some(t) => cli_env(&self.api, args, &[("FLASHCOPY_TOKEN", t)]),
            None => cli_env(&self.api, args, &[]),
        }
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert_eq!(out.code, 0, "flashcopy {args:?} failed: {}{}", out.stderr, out.stdout);
        out.stdout
    }

    /// Runs a CLI command that must fail with this exit status and error code.
    pub fn fails(&self, args: &[&str], exit: i32, code: &str) -> String {
        let out = self.cli(args);
        assert_eq!(
            out.code, exit,
            "flashcopy {args:?}: expected exit {exit}, got {}: {}",
            out.code, out.stderr
        );
        let prefix = format!("error: {code}: ");
        assert!(
            out.stderr.starts_with(&prefix),
            "flashcopy {args:?}: expected '{prefix}…', got: {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "one error line: {}",
            out.stderr
        );
        out.stderr
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("valid JSON")
    }

    /// Waits until this node sees a leader and answers through it.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(&["cluster", "status", "--json"]);
            if out.code == 0 {
                let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                if !status["leader"].is_null() && self.cli(&["lsvol"]).code == 0 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {} not ready: {}", self.id, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The NBD URI of a volume on this node.
    pub fn nbd_uri(&self, volume: &str) -> String {
        format!("nbd://{}/{volume}", self.nbd)
    }

    /// One series of this node's `/metrics`, exactly as named (labels included), if it is there.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let url = format!("{}/metrics", self.api);
        let token = self.token.clone();
        let text = block(async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.ok()?.text().await.ok()
        })?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the process now, in bytes (Linux `/proc`; 0 once it is gone).
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// The exit status, once the process has ended by itself (`None` while it runs).
    pub fn try_exit_code(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    /// SIGSTOP / SIGCONT: the process stays, but answers nothing.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.api, self.token.clone())
    }

    /// Writes through NBD, as a host does (the admin API's data route needs a token).
    pub fn write(&self, volume: &str, offset: u64, data: Vec<u8>) {
        let mut nbd = RawNbd::open(&self.nbd, volume);
        for (i, piece) in data.chunks(NBD_PIECE).enumerate() {
            let at = offset + (i * NBD_PIECE) as u64;
            let (error, _) = nbd.request(NBD_WRITE, at, piece.len() as u32, piece);
            assert_eq!(error, 0, "NBD write of {} bytes at {at} to {volume}", piece.len());
        }
    }

    /// Reads through NBD, as a host does.
    pub fn read(&self, volume: &str, offset: u64, length: u64) -> Vec<u8> {
        let mut nbd = RawNbd::open(&self.nbd, volume);
        let mut out = Vec::with_capacity(length as usize);
        while (out.len() as u64) < length {
            let at = offset + out.len() as u64;
            let take = (length - out.len() as u64).min(NBD_PIECE as u64) as u32;
            let (error, data) = nbd.request(NBD_READ, at, take, &[]);
            assert_eq!(error, 0, "NBD read of {take} bytes at {at} from {volume}");
            out.extend_from_slice(&data);
        }
        out
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, and waits for the node to exit: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let term = run("kill", &["-TERM", &child.id().to_string()]);
            assert_eq!(term.code, 0, "{}", term.stderr);
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "node {} stopped with {status}: {}",
                self.id,
                self.log()
            );
        }
    }

    /// Starts the node again after `stop` (same directory, ports and arguments).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "node {} is still running", self.id);
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// (applied index, digest) as this node reports them.
    pub fn applied(&self) -> (u64, String) {
        self.try_applied()
            .unwrap_or_else(|| panic!("node {} does not answer: {}", self.id, self.log()))
    }

    /// Like `applied`, but `None` while the node does not answer (it may be starting).
    pub fn try_applied(&self) -> Option<(u64, String)> {
        let out = self.cli(&["cluster", "status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        Some((
            status["applied_index"].as_u64()?,
            status["digest"].as_str()?.to_string(),
        ))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Python with the libnbd bindings (Debian's python3-libnbd; not a pyenv interpreter, and not
/// `nbdsh`, which runs whatever `python3` is first on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

/// Reproducible noise: no zero runs, so nothing of it is thin.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Three voters, node 1 first. `extra` are more `serve` arguments for every node.
pub fn cluster(dir: &Path, extra: &[&str]) -> Vec<Node> {
    let n1 = Node::start(&dir.join("n1"), 1, extra);
    n1.wait_ready();
    let mut nodes = vec![n1];
    for id in [2, 3] {
        let join = nodes[0].api.clone();
        let mut args = extra.to_vec();
        args.extend(["--join", &join]);
        nodes.push(Node::start(&dir.join(format!("n{id}")), id, &args));
    }
    wait_for_voters(&nodes, 3);
    nodes
}

pub fn wait_for_voters(nodes: &[Node], count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let formed = nodes.iter().any(|n| {
            let out = n.cli(&["cluster", "status", "--json"]);
            last = format!("node {}: {}{}", n.id, out.stdout, out.stderr);
            out.code == 0 && {
                let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                let members = s["nodes"].as_array().unwrap();
                members.len() == count
                    && members
                        .iter()
                        .all(|m| m["role"] != "learner" && !m["applied_index"].is_null())
            }
        });
        if formed {
            return;
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- node {}:\n{}", n.id, n.log()))
                .collect();
            panic!("{count} voters not formed; last status {last}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn leader_id(nodes: &[Node]) -> u64 {
    let mut found = None;
    eventually("a leader", 90, || {
        found = nodes.iter().find_map(|n| {
            let out = n.cli(&["cluster", "status", "--json"]);
            let s: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            s["leader"].as_u64().filter(|id| nodes.iter().any(|n| n.id == *id))
        });
        found.is_some()
    });
    found.unwrap()
}

/// All live nodes report the same (applied index, digest).
pub fn assert_converged(nodes: &[Node]) {
    let mut last = Vec::new();
    let converged = (0..600).any(|_| {
        last = nodes.iter().map(|n| n.try_applied()).collect::<Vec<_>>();
        let same = last[0].is_some() && last.iter().all(|s| *s == last[0]);
        if !same {
            std::thread::sleep(Duration::from_millis(100));
        }
        same
    });
    assert!(converged, "nodes did not converge: {last:?}");
}

/// Runs `command` to its end and captures what it printed, but for at most `seconds`: one still
/// running then is killed and the test fails (a `serve` that should refuse its configuration,
/// say, and serves instead: without a bound the test would hang).
pub fn output_within(command: &mut Command, seconds: u64) -> Out {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    // Read both pipes meanwhile, so a chatty process cannot block on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} was still running after {seconds} s (killed): {}{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A process a test started itself, killed (and reaped) when dropped: a test that fails
/// midway leaves nothing running. Derefs to the `Child`.
pub struct Guarded(pub Child);

impl Guarded {
    pub fn spawn(command: &mut Command) -> Guarded {
        Guarded(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}")),
        )
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a test cannot run here (no root, no tmpfs, no iptables): it says so and passes, unless
/// `FLASHCOPY_REQUIRE_ALL` is set (to anything but `0`; `.ci/run` sets it), where every skip is
/// a failure. The reason is also added to the file `FLASHCOPY_SKIP_LOG` names, if set
/// (`scripts/test` reports the skips from it: cargo shows a passing test's output to no one).
pub fn skip_or_fail(reason: &str) {
    if std::env::var("FLASHCOPY_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("cannot run here, and FLASHCOPY_REQUIRE_ALL forbids skipping: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    if let Some(log) = std::env::var_os("FLASHCOPY_SKIP_LOG").filter(|l| !l.is_empty()) {
        use std::io::Write;
        let test = std::thread::current().name().unwrap_or("a test").to_string();
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{test}: {reason}\n").as_bytes()));
        if let Err(e) = appended {
            eprintln!("cannot note the skip in {}: {e}", Path::new(&log).display());
        }
    }
}

/// Reads what is left on `s` until the peer closes it, and returns it; fails unless it is
/// closed (end of stream, or reset) within `seconds`.
pub fn read_until_closed(s: &mut std::net::TcpStream, seconds: u64) -> Vec<u8> {
    use std::io::{ErrorKind, Read};
    s.set_read_timeout(Some(Duration::from_secs(seconds))).unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {}
        Err(e) => panic!(
            "the connection is not closed after {seconds} s ({e}; {} bytes read)",
            rest.len()
        ),
    }
    rest
}

/// Waits until every node of `nodes` reports the same leader, one of them, and returns it: after
/// joins, a node may not have heard of the leader yet.
pub fn leader_everywhere(nodes: &[Node]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| {
                let out = n.cli(&["cluster", "status", "--json"]);
                serde_json::from_str::<serde_json::Value>(&out.stdout)
                    .ok()
                    .and_then(|s| s["leader"].as_u64())
            })
            .collect();
        let agreed = seen[0].filter(|l| seen.iter().all(|s| *s == Some(*l)) && nodes.iter().any(|n| n.id == *l));
        if let Some(leader) = agreed {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on a leader: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident memory of process `pid` now, in bytes (Linux `/proc`; 0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs an external program (an NBD client, say) and captures what it printed.
pub fn run(program: &str, args: &[&str]) -> Out {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/prerequisites installs it)"));
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs qemu-io commands against an NBD URI; panics unless every command succeeds.
pub fn qemu_io(uri: &str, commands: &[&str]) -> String {
    qemu_io_with(&[], uri, commands)
}

/// `qemu_io` with more qemu-io options (`-r`: open read-only).
pub fn qemu_io_with(options: &[&str], uri: &str, commands: &[&str]) -> String {
    let mut all = options.to_vec();
    for c in commands {
        all.extend(["-c", c]);
    }
    let out = qemu_io_result(uri, &all);
    assert!(
        out.code == 0 && !out.stdout.contains("failed") && !out.stderr.contains("failed"),
        "qemu-io {commands:?} on {uri}: exit {}: {}{}",
        out.code,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs qemu-io (`args`: options and `-c` commands) and returns what happened, success or not.
pub fn qemu_io_result(uri: &str, args: &[&str]) -> Out {
    let mut all = vec!["-f", "raw"];
    all.extend(args);
    all.push(uri);
    run("qemu-io", &all)
}

/// A single ready node in a fresh temp dir.
pub fn single_node(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n1"), 1, extra);
    node.wait_ready();
    (dir, node)
}

/// A single ready node whose cluster has a token (which the admin API's data route needs).
pub fn single_node_with_token(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "test-cluster-secret\n").unwrap();
    let mut args = vec!["--token-file", token.to_str().unwrap()];
    args.extend_from_slice(extra);
    let node = Node::start(&dir.path().join("n1"), 1, &args);
    node.wait_ready();
    (dir, node)
}

/// Bytes of a recognisable pattern.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251) as u8) | 1)
        .collect()
}

/// Polls until `check` holds or the deadline passes.
pub fn eventually(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub const NBD_READ: u16 = 0;
pub const NBD_WRITE: u16 = 1;
/// The largest request the harness sends (under the server's maximum block size).
const NBD_PIECE: usize = 16 << 20;

/// A raw NBD client for what the stock clients never send: the fixed-newstyle greeting read
/// and answered (fixed newstyle, no zeroes), then options one at a time. `s` is the socket,
/// for the transmission phase.
pub struct RawNbd {
    pub s: std::net::TcpStream,
}

impl RawNbd {
    pub fn connect(addr: &str) -> RawNbd {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting[0..8], b"NBDMAGIC");
        assert_eq!(&greeting[8..16], b"IHAVEOPT");
        s.write_all(&3u32.to_be_bytes()).unwrap();
        RawNbd { s }
    }

    /// Sends an option without waiting for its reply.
    pub fn send_option(&mut self, option: u32, data: &[u8]) {
        use std::io::Write;
        let mut m = b"IHAVEOPT".to_vec();
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).unwrap();
    }

    /// Reads one option reply: (option, reply type, payload).
    pub fn read_reply(&mut self) -> (u32, u32, Vec<u8>) {
        use std::io::Read;
        let mut header = [0u8; 20];
        self.s.read_exact(&mut header).unwrap();
        assert_eq!(
            u64::from_be_bytes(header[0..8].try_into().unwrap()),
            0x0003_e889_0455_65a9
        );
        let option = u32::from_be_bytes(header[8..12].try_into().unwrap());
        let kind = u32::from_be_bytes(header[12..16].try_into().unwrap());
        let mut data = vec![0u8; u32::from_be_bytes(header[16..20].try_into().unwrap()) as usize];
        self.s.read_exact(&mut data).unwrap();
        (option, kind, data)
    }

    /// Sends an option and reads its replies through the final one (an ack or an error):
    /// their types and payloads.
    pub fn option(&mut self, option: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        self.send_option(option, data);
        let mut replies = Vec::new();
        loop {
            let (_, kind, data) = self.read_reply();
            replies.push((kind, data));
            if kind == 1 || kind >= 1 << 31 {
                return replies;
            }
        }
    }

    /// Connects and opens `volume` with OPT_GO (simple replies: no structured replies asked).
    pub fn open(addr: &str, volume: &str) -> RawNbd {
        let mut nbd = RawNbd::connect(addr);
        let replies = nbd.option(7, &RawNbd::go_data(volume));
        let last = replies.last().map(|(kind, _)| *kind);
        assert_eq!(last, Some(1), "OPT_GO for {volume} was not acknowledged: {replies:?}");
        nbd
    }

    /// One transmission request with a simple reply: `(error, data)`; data only for a
    /// successful read. `payload` goes with a write.
    pub fn request(&mut self, kind: u16, offset: u64, length: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        use std::io::{Read, Write};
        let cookie = u64::from(kind) << 48 | offset;
        let mut m = 0x2560_9513u32.to_be_bytes().to_vec();
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(payload);
        self.s.write_all(&m).unwrap();
        let mut reply = [0u8; 16];
        self.s.read_exact(&mut reply).unwrap();
        assert_eq!(u32::from_be_bytes(reply[0..4].try_into().unwrap()), 0x6744_6698);
        assert_eq!(u64::from_be_bytes(reply[8..16].try_into().unwrap()), cookie);
        let error = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        let mut data = Vec::new();
        if error == 0 && kind == NBD_READ {
            data = vec![0u8; length as usize];
            self.s.read_exact(&mut data).unwrap();
        }
        (error, data)
    }

    /// The data of OPT_GO / OPT_INFO for `volume`, asking for no extra information.
    pub fn go_data(volume: &str) -> Vec<u8> {
        let mut go = (volume.len() as u32).to_be_bytes().to_vec();
        go.extend_from_slice(volume.as_bytes());
        go.extend_from_slice(&0u16.to_be_bytes());
        go
    }
}

/// A tmpfs of `mib` MiB at a fresh directory, unmounted when dropped. `None` where none can be
/// mounted (the test skips, or fails under `FLASHCOPY_REQUIRE_ALL`: see `skip_or_fail`).
pub struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let out = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m"),
                "tmpfs",
                mount.to_str().unwrap(),
            ],
        );
        if out.code != 0 {
            skip_or_fail(&format!(
                "cannot mount a tmpfs here ({}): the full-disk test needs root",
                out.stderr.trim()
            ));
            return None;
        }
        Some(SmallDisk { _dir: dir, mount })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.mount
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.mount.to_str().unwrap()]);
    }
}

/// Bytes of the files in `dir` whose names end with `suffix`.
pub fn files_bytes(dir: &Path, suffix: &str) -> u64 {
    named(dir, suffix).map(|e| e.metadata().unwrap().len()).sum()
}

/// How many files in `dir` have names ending with `suffix`.
pub fn files_named(dir: &Path, suffix: &str) -> usize {
    named(dir, suffix).count()
}

pub fn named(dir: &Path, suffix: &str) -> impl Iterator<Item = std::fs::DirEntry> {
    let suffix = suffix.to_string();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(move |e| e.file_name().to_string_lossy().ends_with(&suffix))
}
