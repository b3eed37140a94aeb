//! `cluster status|add|remove`.

use super::client::{ApiClient, CliError};
use super::print_json;
use super::report::table;
use crate::protocol::{AddNode, ClusterStatus, NodeStatus};

pub async fn status(api: &ApiClient, json: bool) -> Result<(), CliError> {
    let status: ClusterStatus = api.get("/cluster").await?;
    if json {
        print_json(&status);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            let applied = n.applied_index.map_or("unreachable".into(), |i| i.to_string());
            let disk = n.disk.as_ref().map_or("-".into(), |d| {
                format!("{} ({} free)", d.status, crate::units::format_bytes(d.free))
            });
            vec![n.id.to_string(), n.role.clone(), n.url.clone(), applied, disk]
        })
        .collect();
    print!("{}", table(&["ID", "ROLE", "URL", "APPLIED_INDEX", "DISK"], &rows));
    for n in &status.nodes {
        match n.disk.as_ref().map(|d| d.status.as_str()) {
            Some("full") => println!(
                "node {}: its disk is under its reserve: it refuses host writes, and as a follower it cannot append much longer ('flashcopy lspool')",
                n.id
            ),
            Some("warning") => println!("node {}: its disk is past its warning threshold ('flashcopy lspool')", n.id),
            _ => {}
        }
    }
    println!(
        "node {}: applied index {}, digest {}",
        status.node_id, status.applied_index, status.digest
    );
    Ok(())
}

pub async fn add(api: &ApiClient, node_id: u64, url: String, json: bool) -> Result<(), CliError> {
    let status: NodeStatus = api.post("/cluster/nodes", &AddNode { id: node_id, url }).await?;
    if json {
        print_json(&status);
    } else {
        println!("added node {node_id}");
    }
    Ok(())
}

pub async fn remove(api: &ApiClient, node_id: u64, json: bool) -> Result<(), CliError> {
    let status: NodeStatus = api.delete(&format!("/cluster/nodes/{node_id}")).await?;
    if json {
        print_json(&status);
    } else {
        println!("removed node {node_id}");
    }
    Ok(())
}

/// `health`: the node answers its admin API (it needs no leader for that).
pub async fn health(api: &ApiClient) -> Result<(), CliError> {
    let node: NodeStatus = api.get("/node").await?;
    println!("node {}: applied index {}", node.id, node.applied_index);
    Ok(())
}
