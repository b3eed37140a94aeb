//! `--wait` and `lsflash --watch`: follow background copies. A progress bar on a terminal,
//! plain lines otherwise.

use super::client::{ApiClient, CliError};
use super::report::progress_table;
use statemachine::{RelationshipInfo, RelationshipState};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Waits until every pair's relationship is copied or gone (withdrawn when its copy completed);
/// refuses to wait on one whose background copy is off.
pub async fn wait_for_copy(client: &ApiClient, pairs: &[(String, String)]) -> Result<(), CliError> {
    let tty = std::io::stderr().is_terminal();
    let mut last_reported: Option<u64> = None;
    // Quick looks first (a small refresh is done in milliseconds), then every 250 ms.
    let mut pause = Duration::from_millis(10);
    loop {
        let rels: Vec<RelationshipInfo> = client.get("/relationships").await?;
        let (mut total, mut left) = (0u64, 0u64);
        for (source, target) in pairs {
            if let Some(r) = rels.iter().find(|r| &r.source == source && &r.target == target) {
                if r.state != RelationshipState::Copied && r.out_of_sync_tracks > 0 && !r.background_copy {
                    // Turned off meanwhile (chflash --copy-rate 0): nothing would ever finish.
                    if tty {
                        eprintln!();
                    }
                    return Err(CliError::refused(
                        "copy-off",
                        format!(
                            "the background copy of {source}:{target} is off (copy rate 0), so --wait would never \
                             end ({} tracks to go; the command itself was applied): start the copy with \
                             `flashcopy chflash {source}:{target} --copy-rate unlimited` (or a rate in MiB/s)",
                            r.out_of_sync_tracks
                        ),
                    ));
                }
                if r.state != RelationshipState::Copied {
                    total += u64::from(r.total_tracks);
                    left += r.out_of_sync_tracks;
                }
            }
        }
        let done = left == 0;
        let percent = ((total - left) * 100).checked_div(total).unwrap_or(100);
        let names = pairs
            .iter()
            .map(|(s, t)| format!("{s}:{t}"))
            .collect::<Vec<_>>()
            .join(" ");
        if tty {
            let filled = (percent / 5) as usize;
            eprint!(
                "\r[{}{}] {percent:>3}% {names}",
                "#".repeat(filled),
                "-".repeat(20 - filled)
            );
            let _ = std::io::stderr().flush();
        } else if last_reported.is_none_or(|p| percent >= p + 10 || (done && p != 100)) {
            eprintln!("copying {names}: {percent}% ({left} tracks to go)");
            last_reported = Some(percent);
        }
        if done {
            if tty {
                eprintln!();
            }
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Redisplays the relationships and their copy progress every second until interrupted.
pub async fn watch(client: &ApiClient, volumes: &[String]) -> Result<(), CliError> {
    let tty = std::io::stdout().is_terminal();
    let query = relationships_query(volumes);
    loop {
        let rels: Vec<RelationshipInfo> = client.get(&query).await?;
        let table = progress_table(&rels, tty);
        if tty {
            print!("\x1b[2J\x1b[H{table}");
        } else {
            println!(
                "{}\n{table}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            );
        }
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub fn relationships_query(volumes: &[String]) -> String {
    if volumes.is_empty() {
        "/relationships".to_string()
    } else {
        let q: Vec<String> = volumes.iter().map(|v| format!("volume={v}")).collect();
        format!("/relationships?{}", q.join("&"))
    }
}
