//! `flashcopy demo`: the scenario that motivates persistent FlashCopy, on an embedded
//! single-node controller in a temporary directory. Exit status 0 only if every step behaved.

use super::client::{ApiClient, CliError};
use super::progress::wait_for_copy;
use super::report::{describe, relationships_table};
use crate::logs::{self, LogFormat};
use crate::protocol::{CommandReply, CreateVolume, MkFlash, RmFlash};
use crate::server::{self, ServeConfig};
use statemachine::RelationshipInfo;
use std::time::{Duration, Instant};

const SIZE: u64 = 8 << 20;
const DATA: u64 = 1 << 20;

fn step(title: &str) {
    println!("\n==> {title}");
}

fn show(command: &str) {
    println!("$ flashcopy {command}");
}

fn print_reply(reply: &CommandReply) {
    for e in &reply.events {
        println!("  {}", describe(e));
    }
}

fn fail(why: impl Into<String>) -> CliError {
    CliError::refused("demo-failed", why.into())
}

fn day(n: u8) -> Vec<u8> {
    let text = format!("day {n} production data. ");
    text.bytes().cycle().take(DATA as usize).collect()
}

async fn mkflash(api: &ApiClient, pair: &str) -> Result<(), CliError> {
    show(&format!("mkflash {pair} --persist --wait"));
    let body = MkFlash {
        pairs: vec![pair.into()],
        persist: true,
        ..Default::default()
    };
    print_reply(&api.post("/mkflash", &body).await?);
    let (s, t) = pair.split_once(':').expect("demo pairs are well formed");
    wait_for_copy(api, &[(s.to_string(), t.to_string())]).await
}

async fn expect_content(api: &ApiClient, volume: &str, expected: &[u8], what: &str) -> Result<(), CliError> {
    let got = api.read(volume, 0, DATA).await?;
    if got == expected {
        println!("  ✓ {volume} holds {what}");
        Ok(())
    } else {
        Err(fail(format!("{volume} does not hold {what}")))
    }
}

async fn scenario(api: &ApiClient) -> Result<(), CliError> {
    step("Create the production volume a and three backup volumes b, c, d (8 MiB each, thin)");
    for name in ["a", "b", "c", "d"] {
        show(&format!("mkvol {name} --size 8M"));
        print_reply(
            &api.post(
                "/volumes",
                &CreateVolume {
                    name: name.into(),
                    size: SIZE,
                },
            )
            .await?,
        );
    }

    for (n, target) in [(1, "b"), (2, "c"), (3, "d")] {
        step(&format!(
            "Day {n}: the host writes to a, then a is copied to {target} (persistent)"
        ));
        api.write("a", 0, day(n)).await?;
        println!("  host wrote 1 MiB of day-{n} data to a");
        mkflash(api, &format!("a:{target}")).await?;
        expect_content(api, target, &day(n), &format!("day {n}'s point-in-time copy")).await?;
    }

    step("Day 4: the host writes again; the operator means to refresh d but types a:b");
    api.write("a", 0, day(4)).await?;
    show("mkflash a:b --persist");
    let mistake = api
        .post::<_, CommandReply>(
            "/mkflash",
            &MkFlash {
                pairs: vec!["a:b".into()],
                persist: true,
                ..Default::default()
            },
        )
        .await;
    match mistake {
        Err(e) if e.code() == "target-in-use" => {
            println!("  {e}");
            println!(
                "  (exit status {}) — the persistent relationship protects day 1's copy on b",
                e.exit_code()
            );
        }
        Err(e) => return Err(fail(format!("expected target-in-use, got: {e}"))),
        Ok(_) => return Err(fail("the mistaken mkflash a:b was accepted")),
    }
    expect_content(api, "b", &day(1), "day 1's copy, untouched").await?;

    step("To reuse b on purpose, withdraw its relationship first");
    show("rmflash a:b");
    print_reply(
        &api.post(
            "/rmflash",
            &RmFlash {
                pairs: vec!["a:b".into()],
                ..Default::default()
            },
        )
        .await?,
    );
    mkflash(api, "a:b").await?;
    expect_content(api, "b", &day(4), "day 4's copy").await?;

    step("The relationships now");
    show("lsflash");
    let rels: Vec<RelationshipInfo> = api.get("/relationships").await?;
    print!("{}", relationships_table(&rels));
    if rels.len() != 3 || rels.iter().any(|r| r.state.as_str() != "copied") {
        return Err(fail("expected three copied persistent relationships"));
    }
    Ok(())
}

pub async fn run() -> Result<(), CliError> {
    logs::init("warn", LogFormat::Text);
    let dir = tempfile::tempdir().map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?;
    // The demo writes and reads volume data through the admin API, which needs a token.
    let token = demo_token().map_err(|e| fail(format!("cannot make a token for the demo: {e}")))?;
    let config = ServeConfig {
        data_dir: dir.path().join("data"),
        node_id: None,
        api: "127.0.0.1:0".into(),
        raft: "127.0.0.1:0".into(),
        nbd: "127.0.0.1:0".into(),
        advertise_api: None,
        advertise_raft: None,
        join: None,
        token: token.clone(),
        copy_rate: None,
        snapshot_every: 20_000,
        max_log_size: 1 << 30,
        nbd_max_connections: 16,
        nbd_handshake_limit: Duration::from_secs(10),
        nbd_memory: 256 << 20,
        open_metrics: false,
        disk_reserve: server::config::Reserve::Bytes(0),
        disk_warning: 100,
        nbd_tls: Default::default(),
        mirror_timeout: Duration::from_secs(5),
        api_tls: None,
        api_ca: None,
    };
    println!(
        "flashcopy demo: an embedded single-node controller in {}",
        dir.path().display()
    );
    let running = server::start(config)
        .await
        .map_err(|e| fail(format!("cannot start the embedded controller: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.consensus.is_leader() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = ApiClient::new(&running.api_url, Some(token));
    let outcome = scenario(&api).await;
    running.consensus.shutdown().await;
    outcome?;
    println!("\ndemo complete: every step behaved as a storage administrator would expect");
    Ok(())
}

/// A token nobody else knows, for the demo's own node.
fn demo_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
