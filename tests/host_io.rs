//! One host-I/O path: NBD and the admin API's data route read and write through the same
//! service, so the same request gives the same result through either, and a write reports the
//! entry that applied it.

mod common;

use common::*;
use std::time::Duration;

const READ: u16 = NBD_READ;
const WRITE: u16 = NBD_WRITE;
const EINVAL: u32 = 22;

/// `(status, code)` of the admin API's answer to one data-route request.
fn data_route(n: &Node, method: reqwest::Method, query: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let url = format!("{}/v1/volumes/v/data?{query}", n.api);
    block(async move {
        let mut request = reqwest::Client::new()
            .request(method, url)
            .body(body)
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16();
        let body: serde_json::Value = reply.json().await.unwrap_or_default();
        (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
    })
}

#[test]
fn the_same_reads_and_writes_through_nbd_and_the_admin_api_give_the_same_results() {
    let (_dir, n) = single_node_with_token(&[]);
    n.ok(&["mkvol", "v", "--size", "1M"]);

    // A write through the admin API reports its own entry: the audit shows that entry is it.
    let a = pattern(1, 65536);
    let index = block(n.client().write("v", 4096, a.clone())).expect("admin write");
    let audit = n.json(&["audit", "--json"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["index"] == index)
        .unwrap_or_else(|| panic!("no audit entry {index}: {audit:#}"));
    let command = entry["command"].as_str().unwrap();
    assert!(
        command.contains("write v offset=4096 length=65536"),
        "entry {index} is {command:?}, not the write"
    );
    // ...and NBD reads what it wrote.
    let mut nbd = RawNbd::open(&n.nbd, "v");
    assert_eq!(nbd.request(READ, 4096, 65536, &[]), (0, a.clone()));

    // A write through NBD reads back the same through the admin API.
    let b = pattern(2, 10_000);
    assert_eq!(nbd.request(WRITE, 300_000, b.len() as u32, &b).0, 0);
    assert_eq!(n.read("v", 300_000, b.len() as u64), b);
    assert_eq!(nbd.request(READ, 300_000, b.len() as u32, &[]), (0, b));

    // The same bad requests are refused through both: past the end, and zero bytes.
    let api =
        |method: reqwest::Method, query: &str, body: Vec<u8>| data_route(&n, method, query, n.token.as_deref(), body);
    assert_eq!(nbd.request(READ, 1 << 20, 512, &[]).0, EINVAL);
    let (status, code) = api(reqwest::Method::GET, "offset=1048576&length=512", vec![]);
    assert_eq!(code, "out-of-range", "{status}");
    assert_eq!(nbd.request(WRITE, 0, 0, &[]).0, EINVAL);
    assert_eq!(
        api(reqwest::Method::PUT, "offset=0", vec![]),
        (400, "empty-request".to_string())
    );
    // The empty write used no entry: the applied index did not move for it.
    let before = n.applied().0;
    api(reqwest::Method::PUT, "offset=0", vec![]);
    assert_eq!(n.applied().0, before);
    // The connection is still usable after every refusal.
    assert_eq!(nbd.request(READ, 4096, 16, &[]), (0, a[..16].to_vec()));
}

#[test]
fn the_admin_data_route_needs_the_cluster_token() {
    // Without a token, any local process could read around the NBD host mappings.
    let (_dir, n) = single_node(&[]);
    n.ok(&["mkvol", "v", "--size", "1M"]);
    let read = data_route(&n, reqwest::Method::GET, "offset=0&length=512", None, vec![]);
    assert_eq!(read, (403, "data-needs-token".to_string()));
    let write = data_route(&n, reqwest::Method::PUT, "offset=0", None, vec![1u8; 512]);
    assert_eq!(write, (403, "data-needs-token".to_string()));

    // With a token, a request without it is refused before anything is read.
    let (_dir, n) = single_node_with_token(&[]);
    n.ok(&["mkvol", "v", "--size", "1M"]);
    let read = data_route(&n, reqwest::Method::GET, "offset=0&length=512", None, vec![]);
    assert_eq!(read.0, 401);
}
