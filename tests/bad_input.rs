//! Bad input gets a clear error, loses nothing, and the node keeps serving.

mod common;
use common::*;

/// A client that sends the token of `single_node_with_token` (a node without a token ignores it).
fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        "Bearer test-cluster-secret".parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("errors are JSON");
    (status, body["error"]["code"].as_str().unwrap().to_string())
}

#[test]
fn malformed_requests_get_json_errors() {
    let (_dir, n) = single_node_with_token(&[]);
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
            (416, "out-of-range".into())
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
        assert_eq!(status_and_code(r).await, (416, "out-of-range".into()));
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
                (400, "invalid-volume-name".into()),
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
    // Each `serve` must refuse and exit: bounded, so one that serves instead fails the test.
    let out = output_within(
        std::process::Command::new(bin()).args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--node-id",
            "2",
            "--api",
            "127.0.0.1:0",
            "--raft",
            "127.0.0.1:0",
        ]),
        30,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let stderr = &out.stderr;
    assert!(stderr.contains("belongs to node 1"), "{stderr}");
    let out = output_within(
        std::process::Command::new(bin()).args([
            "serve",
            "--data-dir",
            dir.path().join("n2").to_str().unwrap(),
            "--copy-rate",
            "-3",
        ]),
        30,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let out = output_within(
        std::process::Command::new(bin()).args([
            "serve",
            "--data-dir",
            dir.path().join("n3").to_str().unwrap(),
            "--token-file",
            empty.to_str().unwrap(),
        ]),
        30,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);

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
        let out = output_within(
            std::process::Command::new(bin())
                .args(["serve", "--data-dir", dir.path().join("n4").to_str().unwrap()])
                .args(&args),
            30,
        );
        let stderr = &out.stderr;
        assert_eq!(out.code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// Raw protocol: a FLUSH's offset and length are reserved and must be zero. One that sets
/// either is refused with EINVAL, and the connection goes on serving.
#[test]
fn a_flush_with_an_offset_or_a_length_gets_einval_and_the_connection_goes_on() {
    const FLUSH: u16 = 3;
    const EINVAL: u32 = 22;
    let (_dir, node) = single_node(&[]);
    node.ok(&["mkvol", "fl", "--size", "1M"]);
    // OPT_GO, simple replies (nothing else negotiated).
    let mut nbd = RawNbd::open(&node.nbd, "fl");
    assert_eq!(nbd.request(FLUSH, 4096, 0, &[]).0, EINVAL, "flush with an offset");
    assert_eq!(nbd.request(FLUSH, 0, 1, &[]).0, EINVAL, "flush with a length");
    // The same connection still serves: a proper flush, a write and a read of it.
    assert_eq!(nbd.request(FLUSH, 0, 0, &[]).0, 0, "flush of offset 0, length 0");
    let data = pattern(7, 512);
    assert_eq!(nbd.request(NBD_WRITE, 4096, 512, &data).0, 0, "write");
    assert_eq!(nbd.request(NBD_READ, 4096, 512, &[]), (0, data));
}

/// `(status, code, message)` of an error answer, which must be the JSON error shape.
async fn status_code_message(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("errors are JSON");
    let field = |name: &str| {
        body["error"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no error.{name} in {body}"))
            .to_string()
    };
    (status, field("code"), field("message"))
}

/// Malformed input is a 400 with its code, a range past the end of a volume a 416, a method a
/// path does not take a 405 — each a JSON error — and an error repeats a rejected input only
/// cut and escaped.
#[test]
fn malformed_input_is_a_bad_request_and_comes_back_cut_and_escaped() {
    use reqwest::Method;
    use serde_json::json;
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
    // Through the CLI, malformed input is a usage error (exit 2); a conflict stays a refusal (1).
    n.fails(&["mkvol", "bad/name", "--size", "1M"], 2, "invalid-volume-name");
    n.fails(&["mkvol", "a", "--size", "1M"], 1, "volume-exists");
    let api = n.api.clone();
    block(async move {
        let call = |method: Method, path: &str| http().request(method, format!("{api}/v1{path}")).bearer_auth("s3cret");
        let post = |path: &str, body: serde_json::Value| call(Method::POST, path).json(&body).send();

        // Malformed input: 400, with the code saying what is wrong.
        for (body, code) in [
            (json!({"name": "bad/name", "size": 1 << 20}), "invalid-volume-name"),
            (json!({"name": "-rf", "size": 1 << 20}), "invalid-volume-name"),
            (json!({"name": "c", "size": 1000}), "invalid-size"),
        ] {
            let (status, got, message) = status_code_message(post("/volumes", body.clone()).await.unwrap()).await;
            assert_eq!((status, got.as_str()), (400, code), "{body}: {message}");
        }
        let (status, code, message) = status_code_message(
            post("/hosts", json!({"name": "h1", "psk_identity": "\u{202e}\u{200b}evil"}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "invalid-option"), "{message}");
        assert!(
            !message.contains(['\u{202e}', '\u{200b}']) && message.contains(r"\u{202e}\u{200b}evil"),
            "the identity shows escaped: {message:?}"
        );
        for (body, code) in [
            (json!({"name": "h2", "cert_cn": "evil "}), "invalid-option"),
            (json!({"name": "h3", "psk_identity": "ev\u{a0}il"}), "invalid-option"),
            (json!({"name": "h4 ", "psk_identity": "alice"}), "invalid-host-name"),
        ] {
            let (status, got, message) = status_code_message(post("/hosts", body.clone()).await.unwrap()).await;
            assert_eq!((status, got.as_str()), (400, code), "{body}: {message}");
        }
        let hosts: serde_json::Value = call(Method::GET, "/hosts").send().await.unwrap().json().await.unwrap();
        assert_eq!(hosts, json!([]), "no misleading host was created");
        // Real conflicts stay 409, and what does not exist 404.
        let (status, code, _) =
            status_code_message(post("/volumes", json!({"name": "a", "size": 1 << 20})).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (409, "volume-exists"));
        let (status, code, _) = status_code_message(call(Method::DELETE, "/volumes/zz").send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "volume-not-found"));

        // A 5,000-character name comes back cut, its newline escaped.
        let long = format!("{}\n{}", "x".repeat(2500), "y".repeat(2499));
        let (status, code, message) =
            status_code_message(post("/volumes", json!({"name": long, "size": 1 << 20})).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (400, "invalid-volume-name"));
        assert!(
            message.chars().count() < 300,
            "{} characters: {message}",
            message.chars().count()
        );
        assert!(
            !message.contains('\n') && message.contains("5000 characters"),
            "{message}"
        );
        let (status, code, message) = status_code_message(
            call(Method::DELETE, &format!("/volumes/{}", "v".repeat(5000)))
                .send()
                .await
                .unwrap(),
        )
        .await;
        // Longer than any volume's name: invalid input, refused before it is proposed.
        assert_eq!((status, code.as_str()), (400, "invalid-volume-name"));
        assert!(message.chars().count() < 300, "{message}");
        // axum's own rejections, which repeat the input, are cut too.
        let field = "f".repeat(5000);
        let (status, code, message) = status_code_message(
            post("/volumes", json!({"name": "z", "size": 1 << 20, field: 1}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "bad-request"));
        assert!(message.chars().count() < 300, "{message}");

        // A range past the end of the volume: 416, reading or writing.
        let (status, code, _) = status_code_message(
            call(Method::GET, "/volumes/a/data?offset=1048570&length=100")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, code.as_str()), (416, "out-of-range"));
        let (status, code, _) = status_code_message(
            call(Method::PUT, "/volumes/a/data?offset=1048575")
                .body(vec![1, 2])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, code.as_str()), (416, "out-of-range"));

        // A method a path does not take: 405, a JSON error naming the method and the path.
        for (method, path) in [
            (Method::PUT, "/volumes"),
            (Method::DELETE, "/mkflash"),
            (Method::POST, "/volumes/a"),
        ] {
            let (status, code, message) = status_code_message(call(method.clone(), path).send().await.unwrap()).await;
            assert_eq!((status, code.as_str()), (405, "method-not-allowed"), "{method} {path}");
            assert!(
                message.contains(method.as_str()) && message.contains(&format!("/v1{path}")),
                "{message}"
            );
        }
        let metrics = http()
            .post(format!("{api}/metrics"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_code_message(metrics).await.0,
            405,
            "/metrics answers a wrong method with the JSON error too"
        );
        // Without the token, the token check answers first.
        let r = http().put(format!("{api}/v1/volumes")).send().await.unwrap();
        assert_eq!(status_and_code(r).await, (401, "unauthorized".into()));
    });
    // Nothing was created by any of it, and the node still serves.
    assert_eq!(n.json(&["lsvol", "--json"]).as_array().unwrap().len(), 1);
    assert_eq!(n.read("a", 1_048_574, 2), vec![0, 0]);
}

/// A probe's find: a refused volume name megabytes long went into the log and the journal
/// (kept for good, on every node), and then `audit` panicked drawing it. What no state would
/// accept is refused before it is proposed: the journal does not grow.
#[test]
fn a_refused_long_name_stays_out_of_the_journal() {
    use serde_json::json;
    let (_dir, n) = single_node_with_token(&[]);
    n.ok(&["mkvol", "a", "--size", "1M"]);
    let before = n.json(&["audit", "--json"]).as_array().unwrap().len();
    let api = n.api.clone();
    let long = "x".repeat(1 << 20);
    block(async move {
        for (path, body) in [
            ("/volumes", json!({"name": long, "size": 1 << 20})),
            ("/mkflash", json!({"pairs": [format!("a:{long}")]})),
            ("/unfreezeflash", json!({"sources": [long]})),
        ] {
            let response = http().post(format!("{api}/v1{path}")).json(&body).send().await.unwrap();
            let (status, code, message) = status_code_message(response).await;
            assert_eq!(status, 400, "{path}: {code}: {message}");
            assert!(
                message.len() < 1000,
                "{path}: the error is readable: {} bytes",
                message.len()
            );
        }
    });
    assert_eq!(n.json(&["audit", "--json"]).as_array().unwrap().len(), before);
    assert!(n.ok(&["audit"]).contains("mkvol a"));
}
