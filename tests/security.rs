//! What does not come from the cluster is refused: the peer port authenticates first (with a
//! small frame) and serves only members, a node reachable from other machines needs a token,
//! and `/metrics` follows the token.

mod common;
use common::*;
use node::server::transport::wire::{read_frame, write_frame, Hello, Reply, Rpc, Welcome, MAX_FRAME};
use openraft::raft::VoteRequest;
use openraft::Vote;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn term(node: &Node) -> u64 {
    node.metric("flashcopy_term").expect("the term is reported")
}

#[test]
fn a_forged_vote_from_a_non_member_does_not_depose_the_leader() {
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "v", "--size", "1M"]);
    let before = term(&node);
    let raft = node.raft.clone();
    let reply = block(async move {
        let mut s = TcpStream::connect(&raft).await.unwrap();
        let hello = Hello {
            token: String::new(),
            from: 99,
        };
        write_frame(&mut s, &hello).await.unwrap();
        assert_eq!(read_frame::<_, Welcome>(&mut s, 1024).await.unwrap(), Welcome::Accepted);
        let forged = Rpc::Vote(VoteRequest::new(Vote::new(1_000_000, 99), None));
        write_frame(&mut s, &forged).await.unwrap();
        let reply: Reply = read_frame(&mut s, MAX_FRAME).await.unwrap();
        // The connection is closed after the refusal.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the connection is not closed after the refusal: {closed:?}"
        );
        reply
    });
    assert!(matches!(reply, Reply::NotMember), "a vote from node 99 was served");
    assert_eq!(term(&node), before, "the forged vote moved the term");
    node.ok(&["mkvol", "w", "--size", "1M"]);
}

#[test]
fn a_wrong_token_or_an_oversized_first_frame_is_refused_before_anything_large_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let node = Node::start(
        &dir.path().join("n1"),
        1,
        &["--token-file", token_file.to_str().unwrap()],
    );
    node.wait_ready();
    // Eight clients announce 250 MiB frames and send 4 MiB each: 32 MiB the node must not keep.
    const GREEDY: usize = 8;
    const SENT: usize = 4 << 20;
    let before = node.rss();
    // The node's memory, sampled all along (a node that buffered what it was sent and let it go
    // when the connection closed would be back to its size at the end).
    let pid = node.pid();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let raft = node.raft.clone();
    block(async move {
        // A wrong token: told so, and the connection is closed.
        let mut s = TcpStream::connect(&raft).await.unwrap();
        let hello = Hello {
            token: "guess".into(),
            from: 1,
        };
        write_frame(&mut s, &hello).await.unwrap();
        assert_eq!(
            read_frame::<_, Welcome>(&mut s, 1024).await.unwrap(),
            Welcome::Unauthorized
        );
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the connection stays open after a wrong token"
        );

        // The greedy clients: each is closed unread.
        let mut greedy = Vec::new();
        for _ in 0..GREEDY {
            let mut s = TcpStream::connect(&raft).await.unwrap();
            s.write_all(&(250u32 << 20).to_le_bytes()).await.unwrap();
            let _ = s.write_all(&vec![0xAB; SENT]).await;
            greedy.push(s);
        }
        for mut s in greedy {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "an oversized first frame did not close the connection");
        }
    });
    done.store(true, Ordering::SeqCst);
    let peak = sampler.join().unwrap().max(node.rss());
    // Refused unread, they cost the node next to nothing; kept, they would cost all they sent.
    // Half of that is the bound: far above what the node's own work moves its memory by.
    let sent = (GREEDY * SENT) as u64;
    let grown = peak.saturating_sub(before);
    assert!(
        grown < sent / 2,
        "{} MiB of unauthenticated frames made the node grow by {} MiB (bound: {} MiB)",
        sent >> 20,
        grown >> 20,
        (sent / 2) >> 20
    );
    node.ok(&["mkvol", "v", "--size", "1M"]);
}

#[test]
fn a_node_reachable_from_other_machines_needs_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |name: &str, api_port: u16, extra: &[&str]| {
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            dir.path().join(name).display().to_string(),
            "--api".into(),
            format!("0.0.0.0:{api_port}"),
            "--raft".into(),
            format!("127.0.0.1:{}", free_port()),
            "--nbd".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = std::process::Command::new(bin());
        command.args(&args);
        command
    };
    let refused = output_within(&mut serve("open", free_port(), &[]), 30);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let stderr = &refused.stderr;
    assert!(
        stderr.contains("error: insecure: --api 0.0.0.0:") && stderr.contains("--token-file"),
        "{stderr}"
    );
    // Said explicitly, it runs open: its admin API answers (on every interface, the loopback too).
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let log = dir.path().join("insecure.log");
    let mut insecure = Guarded::spawn(
        serve("insecure", api_port, &["--insecure"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    eventually("the --insecure node to serve its admin API", 60, || {
        if let Some(status) = insecure.try_wait().unwrap() {
            panic!(
                "--insecure did not start: it exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        cli_env(&api, &["lsvol"], &[]).code == 0
    });
    insecure.stop();
}

#[test]
fn metrics_follow_the_token_unless_opened() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let token = token_file.to_str().unwrap();
    let closed = Node::start(&dir.path().join("n1"), 1, &["--token-file", token]);
    let open = Node::start(&dir.path().join("n2"), 2, &["--token-file", token, "--open-metrics"]);
    closed.wait_ready();
    open.wait_ready();
    let status = |api: String, bearer: Option<&'static str>| {
        block(async move {
            let mut request = reqwest::Client::new().get(format!("{api}/metrics"));
            if let Some(t) = bearer {
                request = request.bearer_auth(t);
            }
            request.send().await.unwrap().status().as_u16()
        })
    };
    assert_eq!(status(closed.api.clone(), None), 401);
    assert_eq!(status(closed.api.clone(), Some("s3cret")), 200);
    assert_eq!(status(open.api.clone(), None), 200);
}
