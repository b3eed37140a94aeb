//! The FlashCopy verbs: `mkflash`, `lsflash`, `rmflash`, `resyncflash`, `reverseflash`,
//! `setflashrevertible`, `commitflash`, `revertflash`, `chflash`, `unfreezeflash`. Pair syntax and option combinations are checked here first: a typo is a
//! usage error (exit 2), not a refusal by the cluster.

use super::args::ClientArgs;
use super::client::{ApiClient, CliError};
use super::progress::{relationships_query, wait_for_copy, watch};
use super::report::relationships_table;
use super::{api, print_events, print_json};
use crate::protocol::{
    ChFlash, CommandReply, Increment, MkFlash, Pmir, ResyncFlash, ReverseFlash, RmFlash, UnfreezeFlash,
};
use statemachine::{EstablishOptions, MirrorTarget, Pair, RelationshipInfo};

pub async fn mkflash(
    client: &ClientArgs,
    pairs: Vec<String>,
    o: EstablishOptions,
    pmir: Option<Pmir>,
    wait: bool,
) -> Result<(), CliError> {
    let parsed = parse_pairs(&pairs)?;
    if wait && o.copy_rate == Some(0) {
        return Err(CliError::usage(
            "usage",
            "--wait waits for the background copy, which --copy-rate 0 turns off",
        ));
    }
    check_wait(wait, o.nocp)?;
    if o.record && !o.persist {
        return Err(CliError::usage("invalid-option", "--record needs --persist"));
    }
    if o.nocp && o.copy_rate.is_some_and(|r| r > 0) {
        return Err(CliError::usage(
            "invalid-option",
            "a background copy rate needs a background copy: drop --nocp",
        ));
    }
    let body = MkFlash {
        pairs,
        nocp: o.nocp,
        persist: o.persist,
        record: o.record,
        tgtinhibit: o.tgtinhibit,
        freeze: o.freeze,
        seqnum: o.seqnum,
        copy_rate: o.copy_rate,
        tgtpprc: o.mirror == MirrorTarget::Copy,
        pmir,
    };
    send(&api(client)?, "/mkflash", &body, wait.then_some(&parsed[..])).await
}

pub async fn lsflash(api: &ApiClient, volumes: &[String], json: bool, follow: bool) -> Result<(), CliError> {
    if follow {
        return watch(api, volumes).await;
    }
    let rels: Vec<RelationshipInfo> = api.get(&relationships_query(volumes)).await?;
    if json {
        print_json(&rels);
    } else {
        print!("{}", relationships_table(&rels));
    }
    Ok(())
}

pub async fn rmflash(
    client: &ClientArgs,
    pairs: Vec<String>,
    cp: bool,
    seqnum: Option<u32>,
    wait: bool,
) -> Result<(), CliError> {
    let parsed = parse_pairs(&pairs)?;
    if wait && !cp {
        return Err(CliError::usage(
            "usage",
            "--wait goes with --cp (a plain rmflash withdraws at once)",
        ));
    }
    let body = RmFlash { pairs, cp, seqnum };
    send(&api(client)?, "/rmflash", &body, wait.then_some(&parsed[..])).await
}

pub async fn resyncflash(
    client: &ClientArgs,
    pairs: Vec<String>,
    nocp: bool,
    tgtinhibit: bool,
    seqnum: Option<u32>,
    wait: bool,
) -> Result<(), CliError> {
    let parsed = parse_pairs(&pairs)?;
    check_wait(wait, nocp)?;
    let body = ResyncFlash {
        pairs,
        nocp,
        tgtinhibit,
        seqnum,
    };
    send(&api(client)?, "/resyncflash", &body, wait.then_some(&parsed[..])).await
}

pub async fn reverseflash(
    client: &ClientArgs,
    pairs: Vec<String>,
    fast: bool,
    seqnum: Option<u32>,
    wait: bool,
) -> Result<(), CliError> {
    let parsed = parse_pairs(&pairs)?;
    // The copy back runs on the reversed pair.
    let reversed: Vec<(String, String)> = parsed.into_iter().map(|(s, t)| (t, s)).collect();
    let body = ReverseFlash { pairs, fast, seqnum };
    send(&api(client)?, "/reverseflash", &body, wait.then_some(&reversed[..])).await
}

/// `setflashrevertible`, `commitflash` or `revertflash` (by API path): nothing to wait for, as
/// no background copy runs while an increment is revertible.
pub async fn increment(
    client: &ClientArgs,
    path: &str,
    pairs: Vec<String>,
    seqnum: Option<u32>,
) -> Result<(), CliError> {
    parse_pairs(&pairs)?;
    send(&api(client)?, path, &Increment { pairs, seqnum }, None).await
}

pub async fn chflash(client: &ClientArgs, pairs: Vec<String>, copy_rate: Option<u32>) -> Result<(), CliError> {
    parse_pairs(&pairs)?;
    send(&api(client)?, "/chflash", &ChFlash { pairs, copy_rate }, None).await
}

pub async fn unfreezeflash(api: &ApiClient, sources: Vec<String>) -> Result<(), CliError> {
    let reply: CommandReply = api.post("/unfreezeflash", &UnfreezeFlash { sources }).await?;
    print_events(&reply);
    Ok(())
}

/// Sends a relationship command, prints what it did and, with `--wait`, follows the copy of `pairs`.
async fn send<B: serde::Serialize>(
    api: &ApiClient,
    path: &str,
    body: &B,
    wait: Option<&[(String, String)]>,
) -> Result<(), CliError> {
    let reply: CommandReply = api.post(path, body).await?;
    print_events(&reply);
    if let Some(pairs) = wait {
        wait_for_copy(api, pairs).await?;
    }
    Ok(())
}

/// Checks `SRC:TGT` syntax locally.
pub(super) fn parse_pairs(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
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
