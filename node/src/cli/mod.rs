//! The `flashcopy` command line: every verb but `serve` is a client of the admin API (verbs
//! named after the DS8000 DS CLI). One small function per verb, in a file per domain.

mod args;
mod audit;
pub mod client;
mod cluster;
mod demo;
mod flash;
mod hosts;
mod mirror;
mod progress;
mod report;
mod volumes;

pub use args::{AuditAction, Cli, ClientArgs, ClusterAction, Verb};

use client::{load_token, ApiClient, CliError};
use report::describe;
use statemachine::EstablishOptions;

/// Runs a client verb (or the demo) and returns the exit status: 0, or the error's.
pub async fn run(verb: Verb) -> i32 {
    match dispatch(verb).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

async fn dispatch(verb: Verb) -> Result<(), CliError> {
    match verb {
        Verb::Serve(_) => unreachable!("main runs the server"),
        Verb::Demo => demo::run().await,
        Verb::Mkpprcpath {
            remote,
            remote_token_file,
            remote_ca,
            client,
        } => mirror::mkpprcpath(&api(&client)?, remote, remote_token_file, remote_ca).await,
        Verb::Lspprcpath { json, client } => mirror::lspprcpath(&api(&client)?, json).await,
        Verb::Rmpprcpath { remote_cluster, client } => mirror::rmpprcpath(&api(&client)?, &remote_cluster).await,
        Verb::Mkpprc {
            pairs,
            remote_cluster,
            mode: _,
            client,
        } => mirror::mkpprc(&api(&client)?, pairs, remote_cluster).await,
        Verb::Lspprc { volumes, json, client } => mirror::lspprc(&api(&client)?, &volumes, json).await,
        Verb::Pausepprc { volumes, client } => mirror::on_volumes(&api(&client)?, "/pausepprc", volumes, false).await,
        Verb::Resumepprc { volumes, client } => mirror::on_volumes(&api(&client)?, "/resumepprc", volumes, false).await,
        Verb::Failoverpprc { volumes, client } => {
            mirror::on_volumes(&api(&client)?, "/failoverpprc", volumes, false).await
        }
        Verb::Failbackpprc { volumes, client } => {
            mirror::on_volumes(&api(&client)?, "/failbackpprc", volumes, false).await
        }
        Verb::Rmpprc {
            volumes,
            unconditional,
            client,
        } => mirror::on_volumes(&api(&client)?, "/rmpprc", volumes, unconditional).await,
        Verb::Health { client } => cluster::health(&api(&client)?).await,
        Verb::Mkvol { name, size, client } => volumes::mkvol(&api(&client)?, name, &size).await,
        Verb::Lsvol { json, bytes, client } => volumes::lsvol(&api(&client)?, json, bytes).await,
        Verb::Lspool { json, bytes, client } => volumes::lspool(&api(&client)?, json, bytes).await,
        Verb::Rmvol { name, client } => volumes::rmvol(&api(&client)?, &name).await,
        Verb::Mkhost {
            name,
            psk_identity,
            cert_cn,
            client,
        } => hosts::mkhost(&api(&client)?, name, psk_identity, cert_cn).await,
        Verb::Lshost { json, client } => hosts::lshost(&api(&client)?, json).await,
        Verb::Rmhost { name, client } => hosts::rmhost(&api(&client)?, &name).await,
        Verb::Mapvol {
            volume,
            host,
            read_only,
            client,
        } => hosts::mapvol(&api(&client)?, volume, &host, read_only).await,
        Verb::Unmapvol { volume, host, client } => hosts::unmapvol(&api(&client)?, &volume, &host).await,
        Verb::Mkflash {
            pairs,
            nocp,
            persist,
            record,
            tgtinhibit,
            freeze,
            seqnum,
            copy_rate,
            tgtpprc,
            pmir,
            wait,
            client,
        } => {
            let options = EstablishOptions {
                nocp,
                persist,
                record,
                tgtinhibit,
                freeze,
                seqnum,
                copy_rate,
                mirror: if tgtpprc {
                    statemachine::MirrorTarget::Copy
                } else {
                    statemachine::MirrorTarget::None
                },
            };
            flash::mkflash(&client, pairs, options, pmir, wait).await
        }
        Verb::Lsflash {
            volumes,
            json,
            watch,
            client,
        } => flash::lsflash(&api(&client)?, &volumes, json, watch).await,
        Verb::Rmflash {
            pairs,
            cp,
            seqnum,
            wait,
            client,
        } => flash::rmflash(&client, pairs, cp, seqnum, wait).await,
        Verb::Resyncflash {
            pairs,
            nocp,
            tgtinhibit,
            seqnum,
            wait,
            client,
        } => flash::resyncflash(&client, pairs, nocp, tgtinhibit, seqnum, wait).await,
        Verb::Reverseflash {
            pairs,
            fast,
            seqnum,
            wait,
            client,
        } => flash::reverseflash(&client, pairs, fast, seqnum, wait).await,
        Verb::Setflashrevertible { pairs, seqnum, client } => {
            flash::increment(&client, "/setflashrevertible", pairs, seqnum).await
        }
        Verb::Commitflash(end) => flash::increment(&end.client, "/commitflash", end.pairs, end.seqnum).await,
        Verb::Revertflash(end) => flash::increment(&end.client, "/revertflash", end.pairs, end.seqnum).await,
        Verb::Chflash {
            pairs,
            copy_rate,
            client,
        } => flash::chflash(&client, pairs, copy_rate.0).await,
        Verb::Unfreezeflash { sources, client } => flash::unfreezeflash(&api(&client)?, sources).await,
        Verb::Cluster { action, json, client } => {
            let api = api(&client)?;
            match action {
                ClusterAction::Status => cluster::status(&api, json).await,
                ClusterAction::Add { node_id, url } => cluster::add(&api, node_id, url, json).await,
                ClusterAction::Remove { node_id } => cluster::remove(&api, node_id, json).await,
            }
        }
        Verb::Audit {
            action,
            volume,
            relationship,
            since,
            at,
            json,
            client,
        } => match (action, at) {
            (Some(AuditAction::Verify { .. }), at)
                if volume.is_some() || relationship.is_some() || since.is_some() || at.is_some() =>
            {
                Err(CliError::usage(
                    "usage",
                    "audit verify replays the whole journal: --volume, --relationship, --since and --at do not apply",
                ))
            }
            (Some(AuditAction::Verify { data_dir }), _) => audit::verify(&client, data_dir, json).await,
            (None, Some(at)) => audit::at(&api(&client)?, &at, volume, json).await,
            (None, None) => audit::list(&api(&client)?, volume, relationship, since, json).await,
        },
    }
}

fn api(args: &ClientArgs) -> Result<ApiClient, CliError> {
    let client = ApiClient::new(&args.api, load_token(args.token_file.as_deref())?);
    match &args.ca_file {
        Some(path) => client.with_ca(path),
        None => Ok(client),
    }
}

fn print_events(reply: &crate::protocol::CommandReply) {
    for event in &reply.events {
        println!("{}", describe(event));
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("API values serialise"));
}
