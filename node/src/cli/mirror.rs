//! `mkpprcpath`, `lspprcpath`, `rmpprcpath`, `mkpprc`, `lspprc`, `pausepprc`, `resumepprc`,
//! `failoverpprc`, `failbackpprc`, `rmpprc`: Metro Mirror between two clusters.

use super::client::{ApiClient, CliError};
use super::report::{pairs_table, paths_table};
use super::{print_events, print_json};
use crate::protocol::{CommandReply, MkPprc, MkPprcPath, PathRow, PprcVolumes};
use statemachine::PairInfo;
use std::path::PathBuf;

pub async fn mkpprcpath(
    api: &ApiClient,
    remote: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> Result<(), CliError> {
    let ca = match ca_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| CliError::usage("remote-ca", format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CliError::usage("remote-token-file", format!("cannot read {}: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(CliError::usage(
                    "remote-token-file",
                    format!("{} is empty", path.display()),
                ));
            }
            Some(token)
        }
        None => None,
    };
    let reply: CommandReply = api.post("/pprcpaths", &MkPprcPath { remote, token, ca }).await?;
    print_events(&reply);
    Ok(())
}

pub async fn lspprcpath(api: &ApiClient, json: bool) -> Result<(), CliError> {
    let paths: Vec<PathRow> = api.get("/pprcpaths").await?;
    if json {
        print_json(&paths);
    } else {
        print!("{}", paths_table(&paths));
    }
    Ok(())
}

pub async fn rmpprcpath(api: &ApiClient, remote: &str) -> Result<(), CliError> {
    let reply: CommandReply = api.delete(&format!("/pprcpaths/{remote}")).await?;
    print_events(&reply);
    Ok(())
}

pub async fn mkpprc(api: &ApiClient, pairs: Vec<String>, remote_cluster: Option<String>) -> Result<(), CliError> {
    let reply: CommandReply = api.post("/mkpprc", &MkPprc { pairs, remote_cluster }).await?;
    print_events(&reply);
    Ok(())
}

pub async fn lspprc(api: &ApiClient, volumes: &[String], json: bool) -> Result<(), CliError> {
    let query: String = volumes
        .iter()
        .map(|v| format!("volume={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = if query.is_empty() {
        "/pprc".to_string()
    } else {
        format!("/pprc?{query}")
    };
    let pairs: Vec<PairInfo> = api.get(&path).await?;
    if json {
        print_json(&pairs);
    } else {
        print!("{}", pairs_table(&pairs));
    }
    Ok(())
}

/// The verbs that name volumes here.
pub async fn on_volumes(
    api: &ApiClient,
    route: &str,
    volumes: Vec<String>,
    unconditional: bool,
) -> Result<(), CliError> {
    let reply: CommandReply = api.post(route, &PprcVolumes { volumes, unconditional }).await?;
    print_events(&reply);
    Ok(())
}
