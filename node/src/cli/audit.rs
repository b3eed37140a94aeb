//! `audit`: the journal listed (`audit`), the state rebuilt at a point of it (`--at`), and the
//! replay check (`audit verify`, through a node or offline on a data directory).

use super::args::ClientArgs;
use super::client::{ApiClient, CliError};
use super::flash::parse_pairs;
use super::report::{audit_table, relationships_table, volumes_table, Sizes};
use super::{api, print_json};
use crate::protocol::{AuditAt, AuditEntry};
use statemachine::Timestamp;
use std::path::PathBuf;
use storage::{StateRead, Verification};

/// `audit`: the history, paged through the API, printed as a table (or JSON) at the end.
pub async fn list(
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
pub async fn at(api: &ApiClient, at: &str, volume: Option<String>, json: bool) -> Result<(), CliError> {
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
        print!("{}", volumes_table(&then.volumes, Sizes::new(false)));
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
pub async fn verify(c: &ClientArgs, data_dir: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    let report: Verification = match data_dir {
        Some(dir) => storage::runtime::offload(move || {
            let view = storage::open_read_only(&dir).map_err(|e| CliError::usage("data-dir", e.to_string()))?;
            view.verify()
                .map_err(|e| CliError::refused("storage-error", e.to_string()))
        })
        .await
        .expect("the audit task does not panic")?,
        None => api(c)?.get("/audit/verify").await?,
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
