//! `mkvol`, `lsvol`, `rmvol`, `lspool`.

use super::client::{ApiClient, CliError};
use super::report::{pool_report, volumes_table, Sizes};
use super::{print_events, print_json};
use crate::protocol::{CommandReply, CreateVolume, Pool};
use statemachine::VolumeInfo;

pub async fn mkvol(api: &ApiClient, name: String, size: &str) -> Result<(), CliError> {
    let size = crate::units::parse_size(size).map_err(|e| CliError::usage("invalid-size", e))?;
    let reply: CommandReply = api.post("/volumes", &CreateVolume { name, size }).await?;
    print_events(&reply);
    Ok(())
}

pub async fn lsvol(api: &ApiClient, json: bool, bytes: bool) -> Result<(), CliError> {
    let volumes: Vec<VolumeInfo> = api.get("/volumes").await?;
    if json {
        print_json(&volumes);
    } else {
        print!("{}", volumes_table(&volumes, Sizes::new(bytes)));
    }
    Ok(())
}

pub async fn lspool(api: &ApiClient, json: bool, bytes: bool) -> Result<(), CliError> {
    let pool: Pool = api.get("/pool").await?;
    if json {
        print_json(&pool);
    } else {
        print!("{}", pool_report(&pool, Sizes::new(bytes)));
    }
    Ok(())
}

pub async fn rmvol(api: &ApiClient, name: &str) -> Result<(), CliError> {
    let reply: CommandReply = api.delete(&format!("/volumes/{name}")).await?;
    print_events(&reply);
    Ok(())
}
