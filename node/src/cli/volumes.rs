//! `mkvol`, `lsvol`, `rmvol`.

use super::client::{ApiClient, CliError};
use super::report::volumes_table;
use super::size::parse_size;
use super::{print_events, print_json};
use crate::protocol::{CommandReply, CreateVolume};
use statemachine::VolumeInfo;

pub async fn mkvol(api: &ApiClient, name: String, size: &str) -> Result<(), CliError> {
    let size = parse_size(size)?;
    let reply: CommandReply = api.post("/volumes", &CreateVolume { name, size }).await?;
    print_events(&reply);
    Ok(())
}

pub async fn lsvol(api: &ApiClient, json: bool) -> Result<(), CliError> {
    let volumes: Vec<VolumeInfo> = api.get("/volumes").await?;
    if json {
        print_json(&volumes);
    } else {
        print!("{}", volumes_table(&volumes));
    }
    Ok(())
}

pub async fn rmvol(api: &ApiClient, name: &str) -> Result<(), CliError> {
    let reply: CommandReply = api.delete(&format!("/volumes/{name}")).await?;
    print_events(&reply);
    Ok(())
}
