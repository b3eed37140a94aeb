//! What does not come from the cluster is refused: the peer port authenticates first (with a
//! small frame) and serves only members, a node reachable from other machines needs a token,
//! and `/metrics` follows the token.

mod common;
use common::*;
use node::server::transport::wire::{read_frame, write_frame, Hello, Reply, Rpc, Welcome, MAX_FRAME};
use openraft::raft::VoteRequest;
use openraft::Vote;
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
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
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
    let before = node.rss();
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

        // Eight clients announce 250 MiB frames and send a few MiB: each is closed unread.
        let mut greedy = Vec::new();
        for _ in 0..8 {
            let mut s = TcpStream::connect(&raft).await.unwrap();
            s.write_all(&(250u32 << 20).to_le_bytes()).await.unwrap();
            let _ = s.write_all(&vec![0xAB; 4 << 20]).await;
            greedy.push(s);
        }
        for mut s in greedy {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "an oversized first frame did not close the connection");
        }
    });
    let grown = node.rss().saturating_sub(before);
    assert!(grown < 128 << 20, "unauthenticated frames took {} MiB", grown >> 20);
    node.ok(&["mkvol", "v", "--size", "1M"]);
}

#[test]
fn a_node_reachable_from_other_machines_needs_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            dir.path().join(name).display().to_string(),
            "--api".into(),
            format!("0.0.0.0:{}", free_port()),
            "--raft".into(),
            format!("127.0.0.1:{}", free_port()),
            "--nbd".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        std::process::Command::new(bin())
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = serve("open", &[]).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("error: insecure: --api 0.0.0.0:") && stderr.contains("--token-file"),
        "{stderr}"
    );
    // Said explicitly, it runs open.
    let mut insecure = serve("insecure", &["--insecure"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(insecure.try_wait().unwrap().is_none(), "--insecure did not start");
    insecure.kill().unwrap();
    let _ = insecure.wait();
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
