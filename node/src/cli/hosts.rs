//! `mkhost`, `lshost`, `rmhost`, `mapvol`, `unmapvol`: which hosts see which volumes over NBD.

use super::client::{ApiClient, CliError};
use super::report::hosts_table;
use super::{print_events, print_json};
use crate::protocol::{CommandReply, CreateHost, MapVolume};
use statemachine::HostInfo;

pub async fn mkhost(
    api: &ApiClient,
    name: String,
    psk_identity: Option<String>,
    cert_cn: Option<String>,
) -> Result<(), CliError> {
    let host = CreateHost {
        name,
        psk_identity,
        cert_cn,
    };
    let reply: CommandReply = api.post("/hosts", &host).await?;
    print_events(&reply);
    Ok(())
}

pub async fn lshost(api: &ApiClient, json: bool) -> Result<(), CliError> {
    let hosts: Vec<HostInfo> = api.get("/hosts").await?;
    if json {
        print_json(&hosts);
    } else {
        print!("{}", hosts_table(&hosts));
    }
    Ok(())
}

pub async fn rmhost(api: &ApiClient, name: &str) -> Result<(), CliError> {
    let reply: CommandReply = api.delete(&format!("/hosts/{name}")).await?;
    print_events(&reply);
    Ok(())
}

pub async fn mapvol(api: &ApiClient, volume: String, host: &str, read_only: bool) -> Result<(), CliError> {
    let reply: CommandReply = api
        .post(&format!("/hosts/{host}/volumes"), &MapVolume { volume, read_only })
        .await?;
    print_events(&reply);
    Ok(())
}

pub async fn unmapvol(api: &ApiClient, volume: &str, host: &str) -> Result<(), CliError> {
    let reply: CommandReply = api.delete(&format!("/hosts/{host}/volumes/{volume}")).await?;
    print_events(&reply);
    Ok(())
}
