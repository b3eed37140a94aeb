//! The audit history with the real binary: a scripted session is listed step by step with each
//! outcome, `audit --at` shows the past, `audit verify` replays the journal and passes — and
//! fails on a copy of the data directory whose journal was tampered with. `/metrics` parses as
//! Prometheus text and its copy counters move during a copy; `--log-format json` logs spans.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// The journal entries as `audit --json` lists them.
fn audit(n: &Node, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend(args);
    n.json(&all).as_array().unwrap().clone()
}

/// The one entry whose command is exactly `command`.
fn entry<'a>(entries: &'a [Value], command: &str) -> &'a Value {
    let found: Vec<&Value> = entries.iter().filter(|e| e["command"] == command).collect();
    assert_eq!(found.len(), 1, "one entry {command:?} in {entries:#?}");
    found[0]
}

fn index_of(entries: &[Value], command: &str) -> u64 {
    entry(entries, command)["index"].as_u64().unwrap()
}

/// Relationships of `audit --at` as pair → out-of-sync tracks.
fn relationships_at(n: &Node, at: &str) -> (Value, BTreeMap<String, u64>) {
    let then = n.json(&["audit", "--at", at, "--json"]);
    let rels = then["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!("{}:{}", r["source"].as_str().unwrap(), r["target"].as_str().unwrap()),
                r["out_of_sync_tracks"].as_u64().unwrap(),
            )
        })
        .collect();
    (then, rels)
}

#[test]
fn a_scripted_session_is_audited_replayed_and_verified() {
    let (dir, mut n) = single_node_with_token(&[]);
    for v in ["alpha", "bravo", "gamma", "delta"] {
        n.ok(&["mkvol", v, "--size", "8M"]);
    }
    n.fails(&["mkvol", "alpha", "--size", "1M"], 1, "volume-exists");
    qemu_io(&n.nbd_uri("alpha"), &["write -P 7 0 1M"]);
    n.ok(&["mkflash", "alpha:bravo", "--persist", "--record", "--wait"]);
    n.fails(&["mkflash", "alpha:bravo"], 1, "target-in-use");
    n.fails(&["rmvol", "alpha"], 1, "volume-in-use");
    n.fails(&["rmflash", "gamma:delta"], 1, "relationship-not-found");
    // 16 tracks change after the point in time; a refresh without copy leaves them out of sync.
    n.write("alpha", 2 << 20, vec![9; 1 << 20]);
    n.ok(&["resyncflash", "alpha:bravo", "--nocp"]);
    // Zeros a host writes go to the journal (and the state machine) as zeroing: thin.
    n.write("gamma", 0, vec![0; 65536]);
    n.ok(&["mkflash", "gamma:delta", "--nocp", "--tgtinhibit", "--freeze"]);
    // Refused by the state machine, one write of a group-committed entry.
    let refused = block(n.client().write("delta", 0, vec![1; 512])).unwrap_err();
    assert_eq!(refused.code(), "target-write-inhibited");
    n.ok(&["unfreezeflash", "gamma"]);
    n.ok(&["rmflash", "gamma:delta"]);
    n.ok(&["resyncflash", "alpha:bravo", "--wait"]);
    n.ok(&["reverseflash", "alpha:bravo", "--wait"]);
    n.ok(&["rmflash", "bravo:alpha"]);
    n.ok(&["rmvol", "gamma"]);

    // Every step is there, in order, with its outcome.
    let entries = audit(&n, &[]);
    let indexes: Vec<u64> = entries.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "oldest first: {indexes:?}");
    let steps = [
        ("mkvol alpha --size 8388608", None),
        ("mkvol alpha --size 1048576", Some("volume-exists")),
        ("mkflash alpha:bravo --persist --record", None),
        ("mkflash alpha:bravo", Some("target-in-use")),
        ("rmvol alpha", Some("volume-in-use")),
        ("rmflash gamma:delta", Some("relationship-not-found")),
        ("resyncflash alpha:bravo --nocp", None),
        ("mkflash gamma:delta --nocp --tgtinhibit --freeze", None),
        ("unfreezeflash gamma", None),
        ("resyncflash alpha:bravo", None),
        ("reverseflash alpha:bravo", None),
        ("rmflash bravo:alpha", None),
        ("rmvol gamma", None),
    ];
    let mut last = 0;
    for (command, refusal) in steps {
        let found: Vec<&Value> = entries.iter().filter(|e| e["command"] == command).collect();
        // `rmflash gamma:delta` is there twice: refused first, accepted later.
        let e = match refusal {
            Some(_) => found.iter().find(|e| e["outcome"] == "refused"),
            None => found.iter().find(|e| e["outcome"] == "ok"),
        }
        .unwrap_or_else(|| panic!("{command} ({refusal:?}) in {entries:#?}"));
        assert_eq!(e["refused"]["code"].as_str(), refusal, "{command}");
        let index = e["index"].as_u64().unwrap();
        assert!(index > last, "{command} comes after the step before it");
        last = index;
    }
    // Host writes are summarised: volume, range and checksum, never the bytes.
    let nbd_write = entries
        .iter()
        .find(|e| {
            e["command"]
                .as_str()
                .unwrap()
                .starts_with("write alpha offset=0 length=1048576 xxh3=")
        })
        .expect("the NBD write is journaled");
    assert_eq!(nbd_write["outcome"], "ok");
    let refused_write = entries
        .iter()
        .find(|e| {
            e["command"]
                .as_str()
                .unwrap()
                .starts_with("write delta offset=0 length=512 xxh3=")
        })
        .expect("the refused write is journaled");
    assert_eq!(refused_write["outcome"], "refused");
    assert_eq!(refused_write["refused"]["code"], "target-write-inhibited");
    assert_eq!(
        entry(&entries, "write-zeroes gamma offset=0 length=65536")["outcome"],
        "ok"
    );
    // Background copy steps are journaled too, and filters select by volume, pair and time.
    assert!(entries
        .iter()
        .any(|e| e["command"].as_str().unwrap().starts_with("copy-step alpha:bravo")));
    let about_delta = audit(&n, &["--volume", "delta"]);
    assert!(about_delta
        .iter()
        .all(|e| e["volumes"].as_array().unwrap().iter().any(|v| v == "delta")));
    assert!(about_delta.iter().any(|e| e["command"] == "mkvol delta --size 8388608"));
    let pair = audit(&n, &["--relationship", "gamma:delta"]);
    assert!(pair.iter().all(|e| {
        let v = e["volumes"].as_array().unwrap();
        v.iter().any(|x| x == "gamma") && v.iter().any(|x| x == "delta")
    }));
    assert_eq!(pair.len(), 3, "refused rmflash, mkflash, rmflash: {pair:#?}");
    let since = entry(&entries, "rmvol gamma")["time"].as_str().unwrap().to_string();
    let recent = audit(&n, &["--since", &since]);
    assert!(recent.iter().any(|e| e["command"] == "rmvol gamma"));
    assert!(recent.iter().all(|e| e["time"].as_str().unwrap() >= since.as_str()));
    let table = n.ok(&["audit", "--volume", "alpha"]);
    assert!(table.contains("refused volume-in-use"), "{table}");
    n.fails(&["audit", "--since", "yesterday"], 2, "invalid-time");
    n.fails(&["audit", "--relationship", "alpha"], 2, "invalid-pair");

    // Time travel: three points of the history.
    let p1 = index_of(&entries, "mkflash alpha:bravo --persist --record");
    let (then, rels) = relationships_at(&n, &p1.to_string());
    assert_eq!(then["index"].as_u64(), Some(p1));
    assert_eq!(
        rels,
        BTreeMap::from([("alpha:bravo".to_string(), 128)]),
        "all 128 tracks at establish"
    );
    assert_eq!(then["volumes"].as_array().unwrap().len(), 4);
    let p2 = index_of(&entries, "resyncflash alpha:bravo --nocp");
    let (_, rels) = relationships_at(&n, &p2.to_string());
    assert_eq!(
        rels,
        BTreeMap::from([("alpha:bravo".to_string(), 16)]),
        "the 16 changed tracks"
    );
    let p3 = index_of(&entries, "mkflash gamma:delta --nocp --tgtinhibit --freeze");
    let (then, rels) = relationships_at(&n, &p3.to_string());
    assert_eq!(
        rels,
        BTreeMap::from([("alpha:bravo".to_string(), 16), ("gamma:delta".to_string(), 128)])
    );
    let frozen: Vec<&Value> = then["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "frozen")
        .collect();
    assert_eq!(frozen.len(), 1, "gamma was frozen then");
    // By time: the last entry applied at or before that moment.
    let t = entry(&entries, "mkflash gamma:delta --nocp --tgtinhibit --freeze")["time"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = entries
        .iter()
        .filter(|e| e["time"].as_str().unwrap() <= t.as_str())
        .map(|e| e["index"].as_u64().unwrap())
        .max()
        .unwrap();
    let (then, rels) = relationships_at(&n, &t);
    assert_eq!(then["index"].as_u64(), Some(expected));
    assert!(rels.contains_key("gamma:delta"));
    let now = n.json(&["audit", "--at", &last.to_string(), "--json"]);
    assert!(now["relationships"].as_array().unwrap().is_empty());
    assert_eq!(now["volumes"].as_array().unwrap().len(), 3, "gamma is gone");
    let text = n.ok(&["audit", "--at", &p1.to_string()]);
    assert!(text.contains("alpha:bravo") && text.contains("128"), "{text}");
    n.fails(&["audit", "--at", "1999-01-01"], 1, "no-history");
    n.fails(&["audit", "--at", "noon"], 2, "invalid-time");
    // An index past the journal's end is a typo, not "the state now".
    let e = n.fails(&["audit", "--at", "99999999"], 1, "index-not-reached");
    assert!(e.contains("the journal ends at index"), "{e}");

    n.fails(&["audit", "--volume", "alpha", "verify"], 2, "usage");

    // The replay rebuilds the live state.
    let out = n.ok(&["audit", "verify"]);
    assert!(out.contains("consistent"), "{out}");
    let report = n.json(&["audit", "verify", "--json"]);
    assert_eq!(report["live_digest"], report["replayed_digest"]);
    assert!(report["differences"].as_array().unwrap().is_empty());
    assert!(report["entries"].as_u64().unwrap() >= entries.len() as u64);

    // Offline, on the stopped node's directory and on a copy of it.
    n.stop();
    let data = dir.path().join("n1");
    let offline = cli_env(&n.api, &["audit", "verify", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(offline.code, 0, "{}{}", offline.stdout, offline.stderr);
    let copy = dir.path().join("copy");
    let cp = run("cp", &["-a", data.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(cp.code, 0, "{}", cp.stderr);
    let clean = cli_env(&n.api, &["audit", "verify", "--data-dir", copy.to_str().unwrap()], &[]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);

    // Tamper with one journal entry of the copy: the mkflash of gamma:delta now names bravo.
    tamper(&copy.join("db"), p3, b"delta", b"bravo");
    let tampered = cli_env(&n.api, &["audit", "verify", "--data-dir", copy.to_str().unwrap()], &[]);
    assert_eq!(tampered.code, 1, "{}{}", tampered.stdout, tampered.stderr);
    assert!(tampered.stderr.contains("audit-mismatch"), "{}", tampered.stderr);
    assert!(
        tampered
            .stdout
            .contains(&format!("difference: entry {p3} (mkflash gamma:bravo")),
        "{}",
        tampered.stdout
    );
    let digests: Vec<&str> = tampered
        .stdout
        .lines()
        .filter(|l| l.contains("metadata digest:"))
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "{}", tampered.stdout);
    assert_ne!(digests[0], digests[1], "both digests are printed, and they differ");
    // The original is untouched and the node comes back with the same verdict.
    n.restart();
    n.wait_ready();
    assert!(n.ok(&["audit", "verify"]).contains("consistent"));
    let bad = cli_env(&n.api, &["audit", "verify", "--data-dir", "/nonexistent"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// Replaces the first occurrence of `from` in the journal record of entry `index`, directly in
/// RocksDB, as someone editing the data directory would.
fn tamper(db_path: &std::path::Path, index: u64, from: &[u8], to: &[u8]) {
    let cfs = ["raft", "meta", "sums", "blocks", "audit"];
    let mut options = rocksdb::Options::default();
    options.create_if_missing(false);
    let db = rocksdb::DB::open_cf(&options, db_path, cfs).unwrap();
    let cf = db.cf_handle("audit").unwrap();
    let mut value = db.get_cf(cf, index.to_be_bytes()).unwrap().expect("the entry exists");
    let at = value
        .windows(from.len())
        .position(|w| w == from)
        .expect("the entry names the volume");
    value[at..at + to.len()].copy_from_slice(to);
    db.put_cf(cf, index.to_be_bytes(), value).unwrap();
}

/// Every non-comment line is `name{labels} value`, and every series has a `# TYPE` before it.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type line: {line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line: {line}"));
        let name = key.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = key.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line}");
                for label in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = label.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "bad label: {line}"
                    );
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE line before it");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        assert!(
            series.insert(key.to_string(), value).is_none(),
            "duplicate series: {line}"
        );
    }
    series
}

fn scrape(n: &Node) -> BTreeMap<String, f64> {
    let url = format!("{}/metrics", n.api);
    let text = block(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    parse_prometheus(&text)
}

#[test]
fn metrics_parse_as_prometheus_text_and_copy_counters_move() {
    // 4 MiB/s: the copy of 16 MiB of data takes seconds, long enough to watch.
    let (_dir, n) = single_node(&["--copy-rate", "4"]);
    n.ok(&["mkvol", "src", "--size", "64M"]);
    n.ok(&["mkvol", "tgt", "--size", "64M"]);
    qemu_io(&n.nbd_uri("src"), &["write -P 3 0 16M", "read -P 3 0 1M"]);
    n.ok(&["mkflash", "src:tgt"]);
    let copied = "flashcopy_copied_tracks_total{source=\"src\",target=\"tgt\"}";
    let out_of_sync = "flashcopy_relationship_out_of_sync_tracks{source=\"src\",target=\"tgt\"}";
    let first = scrape(&n);
    for name in [
        "flashcopy_term",
        "flashcopy_leader_id",
        "flashcopy_is_leader",
        "flashcopy_commit_index",
        "flashcopy_applied_index",
        "flashcopy_last_log_index",
        "flashcopy_apply_seconds_count",
        "flashcopy_commit_seconds_count",
        "flashcopy_applied_entries_total",
        "flashcopy_nbd_requests_total{command=\"write\"}",
        "flashcopy_nbd_request_seconds_bucket{command=\"read\",le=\"+Inf\"}",
        "flashcopy_relationship_tracks{source=\"src\",target=\"tgt\"}",
        out_of_sync,
    ] {
        assert!(first.contains_key(name), "{name} missing from {first:#?}");
    }
    assert_eq!(first["flashcopy_leader_id"], 1.0);
    assert!(first["flashcopy_commit_index"] >= first["flashcopy_applied_index"] - 1.0);
    assert!(first["flashcopy_apply_seconds_count"] > 0.0);
    assert!(first["flashcopy_nbd_requests_total{command=\"write\"}"] > 0.0);
    assert_eq!(
        first["flashcopy_relationship_tracks{source=\"src\",target=\"tgt\"}"],
        1024.0
    );
    // The counters move while the copy runs, and the out-of-sync gauge falls.
    let start = first.get(copied).copied().unwrap_or(0.0);
    eventually("the copy counter to move", 60, || {
        scrape(&n).get(copied).copied().unwrap_or(0.0) > start
    });
    // The gauge and the counter are read at different instants of one scrape, so a step may
    // land between them: wait for the gauge to fall rather than compare one scrape.
    eventually("out of sync to fall as tracks are copied", 60, || {
        scrape(&n)
            .get(out_of_sync)
            .is_none_or(|left| *left < first[out_of_sync])
    });
    eventually("the copy to finish", 120, || {
        n.json(&["lsflash", "--json"]).as_array().unwrap().is_empty()
    });
    let end = scrape(&n);
    assert_eq!(end[copied], 1024.0, "every track of the relationship was counted once");
    assert!(!end.contains_key(out_of_sync), "the relationship ended");
}

#[test]
fn json_logs_carry_admin_request_and_apply_spans() {
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let log = dir.path().join("n.log");
    let mut node = Guarded::spawn(
        Command::new(bin())
            .args([
                "serve",
                "--data-dir",
                dir.path().join("n").to_str().unwrap(),
                "--api",
                &format!("127.0.0.1:{api_port}"),
                "--raft",
                &format!("127.0.0.1:{}", free_port()),
                "--nbd",
                &format!("127.0.0.1:{}", free_port()),
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "warn,flashcopy=info,node::server::api=debug,storage=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    eventually("the node to answer", 60, || cli_env(&api, &["lsvol"], &[]).code == 0);
    assert_eq!(cli_env(&api, &["mkvol", "logged", "--size", "1M"], &[]).code, 0);
    // The log lines written so far (a line still being written is left for the next look).
    let logged = || {
        let text = std::fs::read_to_string(&log).unwrap();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<Value> = whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (lines, whole.to_string())
    };
    let is_request = |l: &Value| {
        l["span"]["name"] == "admin_request" && l["span"]["path"] == "/v1/volumes" && l["span"]["method"] == "POST"
    };
    // The request's answer and its apply are logged once the command has answered: waited for,
    // not assumed after a pause.
    eventually("the request and apply spans in the log", 30, || {
        let (lines, _) = logged();
        lines
            .iter()
            .any(|l| is_request(l) && l["fields"]["message"] == "answered")
            && lines.iter().any(|l| l["span"]["name"] == "apply")
    });
    node.stop();
    let (lines, stderr) = logged();
    let request = lines
        .iter()
        .find(|l| is_request(l))
        .unwrap_or_else(|| panic!("an admin_request span for POST /v1/volumes in {stderr}"));
    assert_eq!(request["fields"]["message"], "answered");
    assert_eq!(request["fields"]["status"], 200);
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["name"] == "apply" && l["span"]["entries"].as_u64().is_some()),
        "an apply span in {stderr}"
    );
    assert!(lines.iter().any(|l| l["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("serving the admin API"))));

    // Refused and exited (bounded: a `serve` that took it would run on).
    let bad = output_within(Command::new(bin()).args(["serve", "--log-format", "xml"]), 30);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
