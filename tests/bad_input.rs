//! Bad input gets a clear error, loses nothing, and the node keeps serving.

mod common;
use common::*;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("errors are JSON");
    (status, body["error"]["code"].as_str().unwrap().to_string())
}

#[test]
fn malformed_requests_get_json_errors() {
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    let api = n.api.clone();
    block(async move {
        let post = |path: &str, body: &'static str| {
            http()
                .post(format!("{api}/v1{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        assert_eq!(
            status_and_code(post("/mkflash", "{not json").await.unwrap()).await,
            (400, "bad-request".into())
        );
        assert_eq!(
            status_and_code(post("/mkflash", r#"{"pairs":["a:b"],"bogus":1}"#).await.unwrap()).await,
            (400, "bad-request".into())
        );
        assert_eq!(
            status_and_code(post("/volumes", r#"{"name":"x","size":-5}"#).await.unwrap()).await,
            (400, "bad-request".into())
        );
        assert_eq!(
            status_and_code(post("/mkflash", r#"{"pairs":["a-b"]}"#).await.unwrap()).await,
            (400, "invalid-pair".into())
        );
        assert_eq!(
            status_and_code(post("/nothing", "{}").await.unwrap()).await,
            (404, "not-found".into())
        );
        let get = |path: String| http().get(format!("{api}/v1{path}")).send();
        assert_eq!(
            status_and_code(get("/volumes/zz/data?offset=0&length=1".into()).await.unwrap()).await,
            (404, "volume-not-found".into())
        );
        assert_eq!(
            status_and_code(get("/volumes/a/data?offset=1048570&length=100".into()).await.unwrap()).await,
            (409, "out-of-range".into())
        );
        assert_eq!(
            status_and_code(get("/volumes/a/data?offset=0".into()).await.unwrap()).await,
            (400, "bad-request".into())
        );
        let huge = vec![1u8; 33 << 20];
        let r = http()
            .put(format!("{api}/v1/volumes/a/data?offset=0"))
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (413, "body-too-large".into()));
        let r = http()
            .put(format!("{api}/v1/volumes/a/data?offset=1048575"))
            .body(vec![1, 2])
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (409, "out-of-range".into()));
        // Bad path and query values are JSON errors too, not plain text.
        assert_eq!(
            status_and_code(get("/volumes/a/data?offset=x&length=1".into()).await.unwrap()).await,
            (400, "bad-request".into())
        );
        let r = http()
            .put(format!("{api}/v1/volumes/a/data?offset=-1"))
            .body(vec![1])
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (400, "bad-request".into()));
        let r = http()
            .delete(format!("{api}/v1/cluster/nodes/abc"))
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (400, "bad-request".into()));
        let long = "a".repeat(9000);
        let r = http()
            .get(format!("{api}/v1/volumes/{long}/data?offset=0&length=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (414, "uri-too-long".into()));
        // Names a shell or a path would misread are refused.
        for name in [".", "..", "-rf"] {
            let body: &'static str = Box::leak(format!(r#"{{"name":"{name}","size":65536}}"#).into_boxed_str());
            assert_eq!(
                status_and_code(post("/volumes", body).await.unwrap()).await,
                (409, "invalid-volume-name".into()),
                "{name}"
            );
        }
    });
    let api = n.api.clone();
    let metrics = block(async move {
        http()
            .get(format!("{api}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for line in [
        "flashcopy_is_leader 1",
        "flashcopy_volumes 1",
        "flashcopy_relationships 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Nothing was lost and the node still serves.
    assert_eq!(n.read("a", 0, 4), vec![0; 4]);
    n.ok(&["mkvol", "b", "--size", "1M"]);
    assert_eq!(n.json(&["lsvol", "--json"]).as_array().unwrap().len(), 2);
}

#[test]
fn a_token_protects_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let n = Node::start(
        &dir.path().join("n1"),
        1,
        &["--token-file", token_file.to_str().unwrap()],
    );
    n.wait_ready();
    n.ok(&["mkvol", "a", "--size", "1M"]);
    let no_token = cli_env(&n.api, &["mkvol", "b", "--size", "1M"], &[]);
    assert_eq!(no_token.code, 1);
    assert!(
        no_token.stderr.starts_with("error: unauthorized: "),
        "{}",
        no_token.stderr
    );
    let wrong = cli_env(&n.api, &["lsvol"], &[("FLASHCOPY_TOKEN", "nope")]);
    assert_eq!(wrong.code, 1);
    let with_file = cli_env(&n.api, &["lsvol", "--token-file", token_file.to_str().unwrap()], &[]);
    assert_eq!(with_file.code, 0, "{}", with_file.stderr);
    assert!(with_file.stdout.contains('a'));
    let missing = cli_env(&n.api, &["lsvol", "--token-file", "/nonexistent/token"], &[]);
    assert_eq!(missing.code, 2);
    let api = n.api.clone();
    block(async move {
        let r = http()
            .get(format!("{api}/v1/volumes"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(r).await, (401, "unauthorized".into()));
    });
    assert_eq!(
        n.json(&["lsvol", "--json"]).as_array().unwrap().len(),
        1,
        "the refused mkvol changed nothing"
    );
}

#[test]
fn a_bad_serve_configuration_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    {
        let n = Node::start(&data, 1, &[]);
        n.wait_ready();
    }
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--node-id",
            "2",
            "--api",
            "127.0.0.1:0",
            "--raft",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to node 1"), "{stderr}");
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--data-dir",
            dir.path().join("n2").to_str().unwrap(),
            "--copy-rate",
            "-3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--data-dir",
            dir.path().join("n3").to_str().unwrap(),
            "--token-file",
            empty.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // NBD TLS options that cannot work: each a usage error naming the option (and the line).
    let bad_psk = dir.path().join("bad.psk");
    std::fs::write(&bad_psk, "alice:00ff\nbob:zz\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    for (args, message) in [
        (vec!["--nbd-tls", "require"], "--nbd-tls require needs credentials"),
        (vec!["--nbd-tls-cert", missing], "go together"),
        (
            vec!["--nbd-tls-cert", missing, "--nbd-tls-key", missing],
            "--nbd-tls-cert",
        ),
        (vec!["--nbd-tls-psk", bad_psk.to_str().unwrap()], "line 2"),
        (vec!["--nbd-tls", "sometimes"], "invalid value 'sometimes'"),
    ] {
        let out = std::process::Command::new(bin())
            .args(["serve", "--data-dir", dir.path().join("n4").to_str().unwrap()])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
