//! Metro Mirror: paths and pairs (`mkpprcpath`, `mkpprc`, ...), and the routes the other site
//! calls (`/pprc/...`: accept a pair, apply what the primary sent, fail back, remove). Both
//! kinds are authenticated with this cluster's token, like every route.

use super::error::ApiError;
use super::{run, AdminApi, Api};
use crate::protocol::{
    AcceptSecondary, BecameSecondary, BecomeSecondary, CommandReply, MirrorReply, MkPprc, MkPprcPath, PathRow,
    PprcVolumes, RemoteFlash, RemovePair,
};
use crate::server::mirror::LinkError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use statemachine::{
    Command, CommandError, Event, MirrorBatch, MirrorTarget, Pair, PairRole, PairState, PprcPath, SuspendReason,
    VolumeId, WriteData,
};
use storage::StateQuery;

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unreachable { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "remote-unreachable", e.to_string())
            }
            LinkError::Refused { code, message } => ApiError::new(
                StatusCode::CONFLICT,
                &format!("remote-{code}"),
                format!("the remote cluster refused: {message}"),
            ),
        }
    }
}

pub(super) async fn list_paths(State(a): Api) -> Result<impl IntoResponse, ApiError> {
    a.consensus.linearizable().await?;
    let paths = a.state.query(|s| s.mirror_paths());
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let rows: Vec<PathRow> = paths
        .into_iter()
        .map(|path| {
            let stats = a.mirror.links.stats(&path.remote_cluster);
            PathRow {
                path,
                requests: stats.requests,
                failures: stats.failures,
                bytes_sent: stats.bytes_sent,
                last_rtt_ms: ms(stats.last_rtt),
                average_rtt_ms: ms(stats.average_rtt),
            }
        })
        .collect();
    Ok(Json(rows))
}

/// `mkpprcpath`: the remote is asked who it is, with its token, before the path is recorded.
pub(super) async fn mkpath(
    State(a): Api,
    body: Result<Json<MkPprcPath>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(m) = body?;
    let url = m.remote.trim().trim_end_matches('/').to_string();
    let bad = url.is_empty()
        || url
            .split(',')
            .any(|u| !(u.trim().starts_with("http://") || u.trim().starts_with("https://")) || u.trim().len() < 8);
    if bad {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-url",
            format!("{url:?} is not a remote admin API: give http(s)://HOST:PORT, or several separated by commas"),
        ));
    }
    if let Some(ca) = &m.ca {
        reqwest::Certificate::from_pem_bundle(ca.as_bytes()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-ca",
                format!("the CA is not PEM certificates: {e}"),
            )
        })?;
    }
    let status = a
        .mirror
        .links
        .probe(&url, m.token.as_deref(), m.ca.as_deref())
        .await
        .map_err(|e| match e {
            LinkError::Refused { code, .. } if code == "unauthorized" => ApiError::new(
                StatusCode::CONFLICT,
                "remote-unauthenticated",
                format!("the cluster at {url} did not accept the token: give its token with --remote-token-file"),
            ),
            e => e.into(),
        })?;
    let Some(remote) = status.cluster_id else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "remote-unnamed",
            format!("the cluster at {url} has no id yet (it has had no leader); try again in a moment"),
        ));
    };
    if Some(remote.as_str()) == own_id(&a).as_deref() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "same-cluster",
            format!("{url} is this cluster ({remote}): a path goes to another cluster"),
        ));
    }
    run(
        &a,
        Command::MkPprcPath(PprcPath {
            remote_cluster: remote,
            url,
            token: m.token,
            ca: m.ca,
        }),
    )
    .await
}

pub(super) async fn rmpath(
    State(a): Api,
    remote: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(remote_cluster) = remote?;
    run(&a, Command::RmPprcPath { remote_cluster }).await
}

pub(super) async fn list_pairs(
    State(a): Api,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let volumes = super::relationships::volume_params(query?);
    a.consensus.linearizable().await?;
    Ok(Json(a.state.query(|s| s.mirror_pairs(&volumes))))
}

/// `mkpprc LOCAL:REMOTE`: the remote accepts the pair (checks its volume, empties it), then the
/// pair is recorded here and the first copy starts. If it cannot be recorded here, the remote's
/// side is removed again.
pub(super) async fn mkpprc(
    State(a): Api,
    body: Result<Json<MkPprc>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(m) = body?;
    if m.pairs.is_empty() {
        return Err(CommandError::NoPairs.into());
    }
    let pairs: Vec<Pair> = m
        .pairs
        .iter()
        .map(|p| {
            p.parse::<Pair>().map_err(|_| {
                let error = CommandError::InvalidPair {
                    pair: p.clone(),
                    reason: "a mirror pair is written LOCAL:REMOTE: the volume here, a colon, the volume at the remote cluster".into(),
                };
                ApiError::new(StatusCode::BAD_REQUEST, error.code(), error.to_string())
            })
        })
        .collect::<Result<_, _>>()?;
    a.consensus.linearizable().await?;
    let own = own_id(&a).ok_or_else(unnamed)?;
    let remote = match m.remote_cluster {
        Some(r) => r,
        None => {
            let paths: Vec<String> = a.state.query(|s| s.paths().map(|p| p.remote_cluster.clone()).collect());
            match paths.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "path-not-found",
                        "there is no path to a remote cluster; make one with 'flashcopy mkpprcpath --remote URL'",
                    ))
                }
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "remote-cluster-needed",
                        format!(
                            "there are paths to {}: say which with --remote-cluster",
                            paths.join(", ")
                        ),
                    ))
                }
            }
        }
    };
    let mut reply = CommandReply {
        index: 0,
        events: Vec::new(),
    };
    for pair in pairs {
        let (local, remote_volume) = (pair.source, pair.target);
        let (size, path) = a.state.query(|s| -> Result<_, CommandError> {
            let id = s.check_new_pair(&local, Some(&remote))?;
            let size = s.record(id).expect("checked").volume.size;
            Ok((size, s.path(&remote)?.clone()))
        })?;
        let generation = a.consensus.now_millis();
        let accept = AcceptSecondary {
            volume: remote_volume.clone(),
            primary_cluster: own.clone(),
            primary_volume: local.clone(),
            size,
            generation,
        };
        a.mirror.links.accept(&path, &accept).await?;
        let made = run(
            &a,
            Command::MkPprc {
                volume: local,
                remote_cluster: remote.clone(),
                remote_volume: remote_volume.clone(),
                generation,
            },
        )
        .await;
        match made {
            Ok(Json(r)) => {
                reply.index = r.index;
                reply.events.extend(r.events);
            }
            Err(e) => {
                let undo = RemovePair {
                    volume: remote_volume,
                    generation,
                };
                if let Err(undo_error) = a.mirror.links.remove(&path, &undo).await {
                    tracing::warn!(error = %undo_error, "the remote side of a pair not made here could not be removed");
                }
                return Err(e);
            }
        }
    }
    Ok(Json(reply))
}

pub(super) async fn pausepprc(
    State(a): Api,
    body: Result<Json<PprcVolumes>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    each(&a, &v.volumes, |volume| Command::PausePprc {
        volume,
        reason: SuspendReason::Operator,
        generation: None,
    })
    .await
}

pub(super) async fn resumepprc(
    State(a): Api,
    body: Result<Json<PprcVolumes>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    each(&a, &v.volumes, |volume| Command::ResumePprc { volume }).await
}

pub(super) async fn failoverpprc(
    State(a): Api,
    body: Result<Json<PprcVolumes>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    each(&a, &v.volumes, |volume| Command::FailoverPprc { volume }).await
}

/// `rmpprc`: at the primary the secondary's side is removed first (unless `--unconditional`
/// and it cannot be reached); at the secondary only its own side.
pub(super) async fn rmpprc(
    State(a): Api,
    body: Result<Json<PprcVolumes>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    if v.volumes.is_empty() {
        return Err(no_volumes());
    }
    let mut reply = CommandReply {
        index: 0,
        events: Vec::new(),
    };
    for volume in v.volumes {
        let remote = a.state.query(|s| -> Result<_, CommandError> {
            let (_, pair) = s.pair_of(&volume)?;
            Ok((pair.role == PairRole::Primary).then(|| {
                (
                    s.path(&pair.remote_cluster).ok().cloned(),
                    RemovePair {
                        volume: pair.remote_volume.clone(),
                        generation: pair.generation,
                    },
                )
            }))
        })?;
        if let Some((path, request)) = remote {
            let removed = match &path {
                Some(path) => a.mirror.links.remove(path, &request).await,
                None => Err(LinkError::Unreachable {
                    url: String::new(),
                    reason: "its path is gone".into(),
                }),
            };
            if let Err(e) = removed {
                if !v.unconditional {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        e.code(),
                        format!("{e}; the secondary keeps its side of the pair. Remove the pair here only with --unconditional"),
                    ));
                }
            }
        }
        let Json(r) = run(&a, Command::RmPprc { volume }).await?;
        reply.index = r.index;
        reply.events.extend(r.events);
    }
    Ok(Json(reply))
}

/// `failbackpprc` at the failed-over side: the old primary becomes its secondary and says what
/// it changed; the union of both sides' changes is copied back.
pub(super) async fn failbackpprc(
    State(a): Api,
    body: Result<Json<PprcVolumes>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(v) = body?;
    if v.volumes.is_empty() {
        return Err(no_volumes());
    }
    let mut reply = CommandReply {
        index: 0,
        events: Vec::new(),
    };
    for volume in v.volumes {
        let (path, request) = a.state.query(|s| -> Result<_, CommandError> {
            let (_, pair) = s.primary(&volume)?;
            if pair.state != PairState::Suspended(SuspendReason::FailedOver) {
                return Err(CommandError::PairState {
                    volume: volume.clone(),
                    state: pair.state_name(),
                    wanted: "suspended by failoverpprc".into(),
                });
            }
            let request = BecomeSecondary {
                volume: pair.remote_volume.clone(),
                generation: pair.generation,
            };
            Ok((s.path(&pair.remote_cluster)?.clone(), request))
        })?;
        let remote_changes = a.mirror.links.become_secondary(&path, &request).await?;
        let Json(r) = run(&a, Command::FailbackPprc { volume, remote_changes }).await?;
        reply.index = r.index;
        reply.events.extend(r.events);
    }
    Ok(Json(reply))
}

/// From the primary's site: accept a pair.
pub(super) async fn accept(
    State(a): Api,
    body: Result<Json<AcceptSecondary>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    run(
        &a,
        Command::AcceptSecondary {
            volume: r.volume,
            primary_cluster: r.primary_cluster,
            primary_volume: r.primary_volume,
            size: r.size,
            generation: r.generation,
        },
    )
    .await
}

/// From the primary's site: apply a batch (bincode), answer the highest sequence number applied.
pub(super) async fn apply(State(a): Api, body: Result<Bytes, BytesRejection>) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    let (batches, _): (Vec<MirrorBatch>, usize) = bincode::serde::decode_from_slice(&body, bincode::config::standard())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("not mirror batches: {e}"),
            )
        })?;
    // The secondary keeps its reserve like the primary: mirrored data waits (the primary
    // retries, then suspends) rather than fill this disk.
    let data: u64 = batches
        .iter()
        .flat_map(|b| &b.writes)
        .map(|w| match &w.data {
            WriteData::Bytes(bytes) => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    if data > 0 {
        if let Err(short) = a.disk.admit(data) {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk-full",
                format!(
                    "the secondary's disk is under its reserve ({} bytes free, {} about to be written, {} kept): mirrored data waits until space returns",
                    short.free, short.pending, short.reserve
                ),
            ));
        }
    }
    let volumes: Vec<String> = batches.iter().map(|b| b.volume.clone()).collect();
    let _applied = run(&a, Command::MirrorApply(batches)).await?;
    let confirmed = a.state.query(|s| {
        volumes
            .into_iter()
            .map(|v| {
                let confirmed = s.pair_of(&v)?.1.confirmed;
                Ok((v, confirmed))
            })
            .collect::<Result<_, CommandError>>()
    })?;
    Ok(Json(MirrorReply { confirmed }))
}

/// From the failed-over site: become its secondary and say which tracks changed here.
pub(super) async fn become_secondary(
    State(a): Api,
    body: Result<Json<BecomeSecondary>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let Json(reply) = run(
        &a,
        Command::BecomeSecondary {
            volume: r.volume,
            generation: r.generation,
        },
    )
    .await?;
    let tracks = reply
        .events
        .into_iter()
        .find_map(|e| match e {
            Event::PairBecameSecondary { tracks, .. } => Some(tracks),
            _ => None,
        })
        .unwrap_or_default();
    Ok(Json(BecameSecondary { tracks }))
}

/// From the primary's site: remove this side of a pair (of that generation; nothing to do if
/// there is no pair any more).
pub(super) async fn remove(
    State(a): Api,
    body: Result<Json<RemovePair>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    a.consensus.linearizable().await?;
    let generation = a.state.query(|s| s.pair_of(&r.volume).ok().map(|(_, p)| p.generation));
    match generation {
        None => Ok(Json(CommandReply {
            index: 0,
            events: Vec::new(),
        })),
        Some(g) if g != r.generation => Err(CommandError::PairGeneration {
            volume: r.volume,
            generation: r.generation,
            current: g,
            role: "secondary".into(),
        }
        .into()),
        Some(_) => run(&a, Command::RmPprc { volume: r.volume }).await,
    }
}

/// Runs a FlashCopy command on Remote Pair FlashCopy relationships at both sites, at the same
/// point in the write stream: host writes to their volumes are held (those in flight finish,
/// confirmed by the secondaries), every pair involved has nothing unconfirmed, the secondaries'
/// site runs `remote`, then this site `local`, then writes go on. If it ran there and not here,
/// the secondaries of `targets` are rewritten from here (`PprcCopyAll`).
pub(super) async fn at_both_sites(
    a: &AdminApi,
    pairs: &[Pair],
    local: Command,
    remote: Command,
    cluster: &str,
    targets: Vec<String>,
) -> Result<Json<CommandReply>, ApiError> {
    let path = a.state.query(|s| s.path(cluster).cloned())?;
    let volumes: Vec<VolumeId> = a.state.query(|s| {
        pairs
            .iter()
            .flat_map(|p| [&p.source, &p.target])
            .filter_map(|name| s.volume_id(name))
            .collect()
    });
    let not_possible = |reason: &str| ApiError::new(StatusCode::CONFLICT, "pmir-not-possible", reason);
    let _held = tokio::time::timeout(a.mirror.timeout, a.host_io.hold_writes(&volumes))
        .await
        .map_err(|_| not_possible("host writes to its volumes did not finish in time; try again"))?;
    a.mirror
        .drained(&volumes)
        .await
        .map_err(|reason| not_possible(&reason))?;
    match a.mirror.links.flash(&path, &RemoteFlash { command: remote }).await {
        Ok(()) => {}
        Err(e @ LinkError::Refused { .. }) => return Err(e.into()),
        Err(e) => {
            // It may have run there: the targets' secondaries are rewritten from here.
            copy_all(a, &targets).await;
            return Err(e.into());
        }
    }
    match run(a, local).await {
        Ok(reply) => Ok(reply),
        Err(e) => {
            copy_all(a, &targets).await;
            Err(e)
        }
    }
}

/// Marks every track of these primaries out of sync (their secondaries are rewritten).
async fn copy_all(a: &AdminApi, volumes: &[String]) {
    for volume in volumes {
        let command = Command::PprcCopyAll { volume: volume.clone() };
        if let Err(e) = a.consensus.propose(command).await {
            tracing::warn!(%volume, error = %e, "a secondary could not be marked for a full copy");
        }
    }
}

/// From the primaries' site: a FlashCopy command of a Remote Pair FlashCopy.
pub(super) async fn flash(
    State(a): Api,
    body: Result<Json<RemoteFlash>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let allowed = match &r.command {
        Command::MkFlash { options, .. } => options.mirror == MirrorTarget::RemotePairSecondary,
        Command::RmFlash { .. } | Command::ResyncFlash { .. } | Command::ReverseFlash { .. } => true,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "only the FlashCopy commands of a Remote Pair FlashCopy travel between sites",
        ));
    }
    run(&a, r.command).await
}

/// Runs one command per volume, in order, stopping at the first refusal.
async fn each(
    a: &AdminApi,
    volumes: &[String],
    command: impl Fn(String) -> Command,
) -> Result<Json<CommandReply>, ApiError> {
    if volumes.is_empty() {
        return Err(no_volumes());
    }
    let mut reply = CommandReply {
        index: 0,
        events: Vec::new(),
    };
    for volume in volumes {
        let Json(r) = run(a, command(volume.clone())).await?;
        reply.index = r.index;
        reply.events.extend(r.events);
    }
    Ok(Json(reply))
}

fn own_id(a: &AdminApi) -> Option<String> {
    a.state.query(|s| s.cluster_id().map(str::to_string))
}

fn unnamed() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cluster-unnamed",
        "this cluster has no id yet (its leader names it at once); try again in a moment",
    )
}

fn no_volumes() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "no-volumes", "name at least one volume")
}
