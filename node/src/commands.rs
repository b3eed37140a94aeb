//! The client verbs of the `flashcopy` CLI.

use crate::cli::{AuditAction, ClientArgs, ClusterAction, Verb};
use crate::client::{load_token, ApiClient, CliError};
use crate::progress::{relationships_query, wait_for_copy, watch};
use crate::protocol::*;
use crate::report::{audit_table, describe, relationships_table, table, volumes_table};
use crate::size::parse_size;
use statemachine::{Pair, RelationshipInfo, Timestamp, VolumeInfo};
use std::path::PathBuf;
use storage::Verification;

fn client(args: &ClientArgs) -> Result<ApiClient, CliError> {
    Ok(ApiClient::new(&args.api, load_token(args.token_file.as_deref())?))
}

/// Checks `SRC:TGT` syntax locally: a typo is a usage error (exit 2), not a refusal.
fn parse_pairs(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|p| {
            p.parse::<Pair>()
                .map(|p| (p.source, p.target))
                .map_err(|e| CliError::usage(e.code(), e.to_string()))
        })
        .collect()
}

/// `--wait` follows the background copy, which `--nocp` turns off.
fn check_wait(wait: bool, nocp: bool) -> Result<(), CliError> {
    if wait && nocp {
        return Err(CliError::usage(
            "usage",
            "--wait waits for the background copy, which --nocp turns off",
        ));
    }
    Ok(())
}

/// Sends a relationship command, prints what it did and, with `--wait`, follows the copy of `pairs`.
async fn flash_command<B: serde::Serialize>(
    api: &ApiClient,
    path: &str,
    body: &B,
    wait: Option<&[(String, String)]>,
) -> Result<(), CliError> {
    let reply: CommandReply = api.post(path, body).await?;
    print_reply(&reply);
    if let Some(pairs) = wait {
        wait_for_copy(api, pairs).await?;
    }
    Ok(())
}

fn print_reply(reply: &CommandReply) {
    for event in &reply.events {
        println!("{}", describe(event));
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("API values serialise"));
}

/// Runs a client verb. `serve` and `demo` are handled by `main`.
pub async fn run(verb: Verb) -> Result<(), CliError> {
    match verb {
        Verb::Serve(_) | Verb::Demo => unreachable!("handled by main"),
        Verb::Mkvol { name, size, client: c } => {
            let size = parse_size(&size)?;
            let reply: CommandReply = client(&c)?.post("/volumes", &CreateVolume { name, size }).await?;
            print_reply(&reply);
        }
        Verb::Lsvol { json, client: c } => {
            let volumes: Vec<VolumeInfo> = client(&c)?.get("/volumes").await?;
            if json {
                print_json(&volumes);
            } else {
                print!("{}", volumes_table(&volumes));
            }
        }
        Verb::Rmvol { name, client: c } => {
            let reply: CommandReply = client(&c)?.delete(&format!("/volumes/{name}")).await?;
            print_reply(&reply);
        }
        Verb::Mkflash {
            pairs,
            nocp,
            persist,
            record,
            tgtinhibit,
            freeze,
            seqnum,
            wait,
            client: c,
        } => {
            let parsed = parse_pairs(&pairs)?;
            check_wait(wait, nocp)?;
            if record && !persist {
                return Err(CliError::usage("invalid-option", "--record needs --persist"));
            }
            let api = client(&c)?;
            let body = MkFlash {
                pairs,
                nocp,
                persist,
                record,
                tgtinhibit,
                freeze,
                seqnum,
            };
            flash_command(&api, "/mkflash", &body, wait.then_some(&parsed[..])).await?;
        }
        Verb::Lsflash {
            volumes,
            json,
            watch: follow,
            client: c,
        } => {
            let api = client(&c)?;
            if follow {
                return watch(&api, &volumes).await;
            }
            let rels: Vec<RelationshipInfo> = api.get(&relationships_query(&volumes)).await?;
            if json {
                print_json(&rels);
            } else {
                print!("{}", relationships_table(&rels));
            }
        }
        Verb::Rmflash {
            pairs,
            cp,
            seqnum,
            wait,
            client: c,
        } => {
            let parsed = parse_pairs(&pairs)?;
            if wait && !cp {
                return Err(CliError::usage(
                    "usage",
                    "--wait goes with --cp (a plain rmflash withdraws at once)",
                ));
            }
            let api = client(&c)?;
            flash_command(
                &api,
                "/rmflash",
                &RmFlash { pairs, cp, seqnum },
                wait.then_some(&parsed[..]),
            )
            .await?;
        }
        Verb::Resyncflash {
            pairs,
            nocp,
            tgtinhibit,
            seqnum,
            wait,
            client: c,
        } => {
            let parsed = parse_pairs(&pairs)?;
            check_wait(wait, nocp)?;
            let api = client(&c)?;
            flash_command(
                &api,
                "/resyncflash",
                &ResyncFlash {
                    pairs,
                    nocp,
                    tgtinhibit,
                    seqnum,
                },
                wait.then_some(&parsed[..]),
            )
            .await?;
        }
        Verb::Reverseflash {
            pairs,
            fast,
            seqnum,
            wait,
            client: c,
        } => {
            let parsed = parse_pairs(&pairs)?;
            let api = client(&c)?;
            // The copy back runs on the reversed pair.
            let reversed: Vec<(String, String)> = parsed.into_iter().map(|(s, t)| (t, s)).collect();
            let body = ReverseFlash { pairs, fast, seqnum };
            flash_command(&api, "/reverseflash", &body, wait.then_some(&reversed[..])).await?;
        }
        Verb::Unfreezeflash { sources, client: c } => {
            let reply: CommandReply = client(&c)?.post("/unfreezeflash", &UnfreezeFlash { sources }).await?;
            print_reply(&reply);
        }
        Verb::Cluster {
            action,
            json,
            client: c,
        } => {
            let api = client(&c)?;
            match action {
                ClusterAction::Status => {
                    let status: ClusterStatus = api.get("/cluster").await?;
                    if json {
                        print_json(&status);
                    } else {
                        let rows: Vec<Vec<String>> = status
                            .nodes
                            .iter()
                            .map(|n| {
                                let applied = n.applied_index.map_or("unreachable".into(), |i| i.to_string());
                                vec![n.id.to_string(), n.role.clone(), n.url.clone(), applied]
                            })
                            .collect();
                        print!("{}", table(&["ID", "ROLE", "URL", "APPLIED_INDEX"], &rows));
                        println!(
                            "node {}: applied index {}, digest {}",
                            status.node_id, status.applied_index, status.digest
                        );
                    }
                }
                ClusterAction::Add { node_id, url } => {
                    let status: NodeStatus = api.post("/cluster/nodes", &AddNode { id: node_id, url }).await?;
                    if json {
                        print_json(&status);
                    } else {
                        println!("added node {node_id}");
                    }
                }
                ClusterAction::Remove { node_id } => {
                    let status: NodeStatus = api.delete(&format!("/cluster/nodes/{node_id}")).await?;
                    if json {
                        print_json(&status);
                    } else {
                        println!("removed node {node_id}");
                    }
                }
            }
        }
        Verb::Audit {
            action,
            volume,
            relationship,
            since,
            at,
            json,
            client: c,
        } => match (action, at) {
            (Some(AuditAction::Verify { .. }), at)
                if volume.is_some() || relationship.is_some() || since.is_some() || at.is_some() =>
            {
                return Err(CliError::usage(
                    "usage",
                    "audit verify replays the whole journal: --volume, --relationship, --since and --at do not apply",
                ));
            }
            (Some(AuditAction::Verify { data_dir }), _) => audit_verify(&c, data_dir, json).await?,
            (None, Some(at)) => audit_at(&client(&c)?, &at, volume, json).await?,
            (None, None) => audit_list(&client(&c)?, volume, relationship, since, json).await?,
        },
    }
    Ok(())
}

/// `audit`: the history, paged through the API, printed as a table (or JSON) at the end.
async fn audit_list(
    api: &ApiClient,
    volume: Option<String>,
    relationship: Option<String>,
    since: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let mut filters = String::new();
    if let Some(v) = volume {
        filters.push_str(&format!("&volume={}", url_escape(&v)));
    }
    if let Some(p) = relationship {
        parse_pairs(std::slice::from_ref(&p))?;
        filters.push_str(&format!("&relationship={}", url_escape(&p)));
    }
    if let Some(t) = since {
        parse_time(&t)?;
        filters.push_str(&format!("&since={}", url_escape(&t)));
    }
    let mut after = 0;
    let mut all: Vec<AuditEntry> = Vec::new();
    loop {
        let page: Vec<AuditEntry> = api.get(&format!("/audit?after={after}&limit=10000{filters}")).await?;
        let Some(last) = page.last() else { break };
        after = last.index;
        all.extend(page);
    }
    if json {
        print_json(&all);
    } else {
        print!("{}", audit_table(&all));
    }
    Ok(())
}

/// `audit --at INDEX|TIME`: the volumes and relationships as they were then.
async fn audit_at(api: &ApiClient, at: &str, volume: Option<String>, json: bool) -> Result<(), CliError> {
    let query = if !at.is_empty() && at.bytes().all(|b| b.is_ascii_digit()) {
        let index: u64 = at
            .parse()
            .map_err(|_| CliError::usage("usage", format!("--at {at}: not a log index")))?;
        format!("index={index}")
    } else {
        parse_time(at)?;
        format!("time={}", url_escape(at))
    };
    let mut then: AuditAt = api.get(&format!("/audit/at?{query}")).await?;
    if let Some(v) = volume {
        then.volumes.retain(|info| info.name == v);
        then.relationships.retain(|r| r.source == v || r.target == v);
    }
    if json {
        print_json(&then);
    } else {
        println!(
            "As of log index {} ({}), rebuilt from {} journal entries:\n",
            then.index, then.time, then.entries
        );
        print!("{}", volumes_table(&then.volumes));
        if then.relationships.is_empty() {
            println!("\nno relationships");
        } else {
            println!();
            print!("{}", relationships_table(&then.relationships));
        }
    }
    Ok(())
}

/// `audit verify`: through the cluster, or offline on a data directory.
async fn audit_verify(c: &ClientArgs, data_dir: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    let report: Verification = match data_dir {
        Some(dir) => tokio::task::spawn_blocking(move || {
            let view = storage::open_read_only(&dir).map_err(|e| CliError::usage("data-dir", e.to_string()))?;
            view.verify()
                .map_err(|e| CliError::refused("storage-error", e.to_string()))
        })
        .await
        .expect("the audit task does not panic")?,
        None => client(c)?.get("/audit/verify").await?,
    };
    if json {
        print_json(&report);
    } else {
        println!(
            "journal entries replayed: {} (up to log index {})",
            report.entries, report.index
        );
        println!("live metadata digest:     {}", report.live_digest);
        println!("replayed metadata digest: {}", report.replayed_digest);
        for difference in &report.differences {
            println!("difference: {difference}");
        }
        if report.consistent() {
            println!("consistent: replaying the journal rebuilds the live state");
        }
    }
    if report.consistent() {
        Ok(())
    } else {
        Err(CliError::refused(
            "audit-mismatch",
            format!(
                "replaying the journal does not rebuild the live state ({} differences)",
                report.differences.len()
            ),
        ))
    }
}

fn parse_time(raw: &str) -> Result<Timestamp, CliError> {
    raw.parse::<Timestamp>()
        .map_err(|e| CliError::usage("invalid-time", e.to_string()))
}

/// Escapes a query-string value (volume names and times are plain, but `:` and `+` are not).
fn url_escape(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
