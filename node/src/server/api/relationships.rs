//! FlashCopy relationships: lsflash and the DS CLI verbs, each one log entry.

use super::error::ApiError;
use super::{run, AdminApi, Api};
use crate::protocol::{
    ChFlash, CommandReply, Increment, MkFlash, Pmir, ResyncFlash, ReverseFlash, RmFlash, UnfreezeFlash,
};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use statemachine::{Command, EstablishOptions, MirrorTarget, Pair};
use storage::StateQuery;

pub(super) fn pair(raw: &str) -> Result<Pair, ApiError> {
    raw.parse::<Pair>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

fn pairs(raw: &[String]) -> Result<Vec<Pair>, ApiError> {
    raw.iter().map(|p| pair(p)).collect()
}

pub(super) async fn list(
    State(a): Api,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let volumes = volume_params(query?);
    a.consensus.linearizable().await?;
    Ok(Json(a.state.query(|s| s.relationships(&volumes))))
}

/// The `volume=` parameters of a listing (none: every volume).
pub(super) fn volume_params(Query(query): Query<Vec<(String, String)>>) -> Vec<String> {
    query
        .into_iter()
        .filter(|(k, _)| k == "volume")
        .map(|(_, v)| v)
        .collect()
}

pub(super) async fn mkflash(
    State(a): Api,
    body: Result<Json<MkFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(m) = body?;
    let mut options = EstablishOptions {
        nocp: m.nocp,
        persist: m.persist,
        record: m.record,
        tgtinhibit: m.tgtinhibit,
        freeze: m.freeze,
        seqnum: m.seqnum,
        copy_rate: m.copy_rate,
        mirror: if m.tgtpprc {
            MirrorTarget::Copy
        } else {
            MirrorTarget::None
        },
    };
    let pairs = pairs(&m.pairs)?;
    let Some(pmir) = m.pmir else {
        return run(&a, Command::MkFlash { pairs, options }).await;
    };
    a.consensus.linearizable().await?;
    match (a.state.query(|s| s.remote_pairs(&pairs)), pmir) {
        (Ok((cluster, remote)), _) => {
            let local = Command::MkFlash {
                pairs: pairs.clone(),
                options: EstablishOptions {
                    mirror: MirrorTarget::RemotePair,
                    ..options.clone()
                },
            };
            let remote = Command::MkFlash {
                pairs: remote,
                options: EstablishOptions {
                    mirror: MirrorTarget::RemotePairSecondary,
                    ..options
                },
            };
            let targets = pairs.iter().map(|p| p.target.clone()).collect();
            super::mirror::at_both_sites(&a, &pairs, local, remote, &cluster, targets).await
        }
        (Err(e), Pmir::Required) => Err(e.into()),
        (Err(_), Pmir::Preferred) => {
            options.mirror = MirrorTarget::Copy;
            run(&a, Command::MkFlash { pairs, options }).await
        }
    }
}

/// A command on existing relationships: a Remote Pair FlashCopy runs it at both sites (the
/// secondaries' names in `remote`); `targets` are the volumes it places tracks on here.
async fn on_relationships(
    a: &AdminApi,
    pairs: Vec<Pair>,
    command: impl Fn(Vec<Pair>) -> Command,
    targets: impl Fn(&Pair) -> String,
) -> Result<Json<CommandReply>, ApiError> {
    a.consensus.linearizable().await?;
    match a.state.query(|s| s.existing_remote_pairs(&pairs)) {
        Err(e @ statemachine::CommandError::PmirNotPossible { .. }) => Err(e.into()),
        // Any other refusal is the state machine's to make (and to journal).
        Err(_) | Ok(None) => run(a, command(pairs)).await,
        Ok(Some((cluster, remote))) => {
            let targets = pairs.iter().map(targets).collect();
            super::mirror::at_both_sites(a, &pairs, command(pairs.clone()), command(remote), &cluster, targets).await
        }
    }
}

pub(super) async fn rmflash(
    State(a): Api,
    body: Result<Json<RmFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let (cp, seqnum) = (r.cp, r.seqnum);
    on_relationships(
        &a,
        pairs(&r.pairs)?,
        |pairs| Command::RmFlash { pairs, cp, seqnum },
        |p| p.target.clone(),
    )
    .await
}

pub(super) async fn resyncflash(
    State(a): Api,
    body: Result<Json<ResyncFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let (nocp, tgtinhibit, seqnum) = (r.nocp, r.tgtinhibit, r.seqnum);
    on_relationships(
        &a,
        pairs(&r.pairs)?,
        |pairs| Command::ResyncFlash {
            pairs,
            nocp,
            tgtinhibit,
            seqnum,
        },
        |p| p.target.clone(),
    )
    .await
}

pub(super) async fn reverseflash(
    State(a): Api,
    body: Result<Json<ReverseFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let (fast, seqnum) = (r.fast, r.seqnum);
    // Reversed, the source becomes the target.
    on_relationships(
        &a,
        pairs(&r.pairs)?,
        |pairs| Command::ReverseFlash { pairs, fast, seqnum },
        |p| p.source.clone(),
    )
    .await
}

/// `setflashrevertible`, `commitflash`, `revertflash`: never a Remote Pair FlashCopy's (the state
/// machine refuses one a revertible increment), so one site's entry.
async fn increment(
    a: &AdminApi,
    body: Result<Json<Increment>, JsonRejection>,
    command: fn(Vec<Pair>, Option<u32>) -> Command,
) -> Result<Json<CommandReply>, ApiError> {
    let Json(r) = body?;
    run(a, command(pairs(&r.pairs)?, r.seqnum)).await
}

pub(super) async fn setflashrevertible(
    State(a): Api,
    body: Result<Json<Increment>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    increment(&a, body, |pairs, seqnum| Command::SetFlashRevertible { pairs, seqnum }).await
}

pub(super) async fn commitflash(
    State(a): Api,
    body: Result<Json<Increment>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    increment(&a, body, |pairs, seqnum| Command::CommitFlash { pairs, seqnum }).await
}

pub(super) async fn revertflash(
    State(a): Api,
    body: Result<Json<Increment>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    increment(&a, body, |pairs, seqnum| Command::RevertFlash { pairs, seqnum }).await
}

pub(super) async fn chflash(
    State(a): Api,
    body: Result<Json<ChFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(c) = body?;
    // Pacing is each site's own: a Remote Pair FlashCopy's secondaries keep their rate.
    let command = Command::ChFlash {
        pairs: pairs(&c.pairs)?,
        copy_rate: c.copy_rate,
    };
    run(&a, command).await
}

pub(super) async fn unfreezeflash(
    State(a): Api,
    body: Result<Json<UnfreezeFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(u) = body?;
    run(&a, Command::UnfreezeFlash { sources: u.sources }).await
}
