//! The link to a remote cluster: its admin API, authenticated with that cluster's token. A path
//! may name several of the remote's nodes (`URL,URL,...`): each request goes to the first that
//! answers (any node forwards to its leader). Every request counts what it cost: bytes sent and
//! the round trip.

use crate::protocol::{
    AcceptSecondary, BecameSecondary, BecomeSecondary, ClusterStatus, ErrorBody, MirrorReply, RemoteFlash, RemovePair,
    API_PREFIX,
};
use statemachine::{MirrorBatch, PprcPath};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Why a request over the link failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LinkError {
    /// No node of the remote answered (or it answered "no leader, try again").
    #[error("remote cluster at {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    /// The remote refused the request; its code says why (`pair-generation`, `volume-in-use`, ...).
    #[error("remote cluster refused: {message} ({code})")]
    Refused { code: String, message: String },
}

impl LinkError {
    pub fn code(&self) -> &str {
        match self {
            LinkError::Unreachable { .. } => "remote-unreachable",
            LinkError::Refused { code, .. } => code,
        }
    }
}

/// What a link cost so far (`lspprcpath`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub bytes_sent: u64,
    pub requests: u64,
    /// The last request's round trip, and a moving average.
    pub last_rtt: Option<Duration>,
    pub average_rtt: Option<Duration>,
    pub failures: u64,
}

/// Requests to remote clusters, with their costs per remote cluster id.
#[derive(Default)]
pub struct Links {
    /// One client per CA a path names (`None`: the system's roots), so connections are reused.
    clients: Mutex<HashMap<Option<String>, reqwest::Client>>,
    stats: Mutex<HashMap<String, LinkStats>>,
}

impl Links {
    fn client(&self, url: &str, ca: Option<&str>) -> Result<reqwest::Client, LinkError> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if let Some(client) = clients.get(&ca.map(str::to_string)) {
            return Ok(client.clone());
        }
        let unusable = |reason: String| LinkError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
        if let Some(pem) = ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| unusable(format!("the path's CA is not PEM certificates: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| unusable(format!("no HTTP client: {e}")))?;
        clients.insert(ca.map(str::to_string), client.clone());
        Ok(client)
    }

    pub fn stats(&self, remote: &str) -> LinkStats {
        self.stats
            .lock()
            .expect("not poisoned")
            .get(remote)
            .copied()
            .unwrap_or_default()
    }

    /// The remote's cluster status, asked of `url` with `token` (a path being made).
    pub async fn probe(&self, url: &str, token: Option<&str>, ca: Option<&str>) -> Result<ClusterStatus, LinkError> {
        let path = PprcPath {
            remote_cluster: String::new(),
            url: url.to_string(),
            token: token.map(str::to_string),
            ca: ca.map(str::to_string),
        };
        let reply = self
            .send(&path, reqwest::Method::GET, "/cluster", None, Duration::from_secs(5))
            .await?;
        serde_json::from_slice(&reply).map_err(|e| LinkError::Unreachable {
            url: url.to_string(),
            reason: format!("its answer is not a flashcopy cluster status: {e}"),
        })
    }

    pub async fn accept(&self, path: &PprcPath, request: &AcceptSecondary) -> Result<(), LinkError> {
        let body = serde_json::to_vec(request).expect("encodes");
        self.send(
            path,
            reqwest::Method::POST,
            "/pprc/accept",
            Some(body),
            Duration::from_secs(20),
        )
        .await
        .map(|_| ())
    }

    /// Sends batches of one or several pairs (applied together there); per secondary volume,
    /// the highest sequence number it has applied.
    pub async fn apply(
        &self,
        path: &PprcPath,
        batches: &[MirrorBatch],
        timeout: Duration,
    ) -> Result<BTreeMap<String, u64>, LinkError> {
        let body = crate::server::transport::wire::encode_exact(&batches).expect("encodes");
        let reply = self
            .send(path, reqwest::Method::POST, "/pprc/apply", Some(body), timeout)
            .await?;
        let reply: MirrorReply = serde_json::from_slice(&reply).map_err(|e| LinkError::Unreachable {
            url: path.url.clone(),
            reason: format!("a mirror reply that does not decode: {e}"),
        })?;
        Ok(reply.confirmed)
    }

    pub async fn become_secondary(&self, path: &PprcPath, request: &BecomeSecondary) -> Result<Vec<u32>, LinkError> {
        let body = serde_json::to_vec(request).expect("encodes");
        let reply = self
            .send(
                path,
                reqwest::Method::POST,
                "/pprc/become-secondary",
                Some(body),
                Duration::from_secs(20),
            )
            .await?;
        let reply: BecameSecondary = serde_json::from_slice(&reply).map_err(|e| LinkError::Unreachable {
            url: path.url.clone(),
            reason: format!("an answer that does not decode: {e}"),
        })?;
        Ok(reply.tracks)
    }

    /// A FlashCopy command at the secondaries' site (Remote Pair FlashCopy).
    pub async fn flash(&self, path: &PprcPath, request: &RemoteFlash) -> Result<(), LinkError> {
        let body = serde_json::to_vec(request).expect("encodes");
        self.send(
            path,
            reqwest::Method::POST,
            "/pprc/flash",
            Some(body),
            Duration::from_secs(20),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove(&self, path: &PprcPath, request: &RemovePair) -> Result<(), LinkError> {
        let body = serde_json::to_vec(request).expect("encodes");
        self.send(
            path,
            reqwest::Method::POST,
            "/pprc/remove",
            Some(body),
            Duration::from_secs(20),
        )
        .await
        .map(|_| ())
    }

    /// One request, to each of the path's URLs in turn until one answers.
    async fn send(
        &self,
        path: &PprcPath,
        method: reqwest::Method,
        route: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let sent = body.as_ref().map_or(0, |b| b.len() as u64);
        let client = self.client(&path.url, path.ca.as_deref())?;
        let mut last = None;
        let urls: Vec<&str> = path.url.split(',').map(|u| u.trim().trim_end_matches('/')).collect();
        // All of the path's URLs within the one timeout.
        let timeout = timeout / urls.len().max(1) as u32;
        for url in urls {
            let started = Instant::now();
            let mut request = client
                .request(method.clone(), format!("{url}{API_PREFIX}{route}"))
                .timeout(timeout);
            if let Some(token) = &path.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                let kind = if route == "/pprc/apply" {
                    "application/octet-stream"
                } else {
                    "application/json"
                };
                request = request.header("content-type", kind).body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(reply) => {
                    let status = reply.status();
                    match reply.bytes().await {
                        Ok(bytes) if status.is_success() => Ok(bytes.to_vec()),
                        Ok(bytes) => Err(refusal(url, status, &bytes)),
                        Err(e) => Err(LinkError::Unreachable {
                            url: url.to_string(),
                            reason: e.to_string(),
                        }),
                    }
                }
                Err(e) => Err(LinkError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                }),
            };
            self.count(&path.remote_cluster, sent, started.elapsed(), outcome.is_ok());
            match outcome {
                Ok(bytes) => return Ok(bytes),
                // The remote answered: another of its nodes would answer the same.
                Err(e @ LinkError::Refused { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LinkError::Unreachable {
            url: path.url.clone(),
            reason: "the path names no URL".into(),
        }))
    }

    fn count(&self, remote: &str, sent: u64, rtt: Duration, ok: bool) {
        let mut stats = self.stats.lock().expect("not poisoned");
        let s = stats.entry(remote.to_string()).or_default();
        s.requests += 1;
        s.bytes_sent += sent;
        if ok {
            s.last_rtt = Some(rtt);
            s.average_rtt = Some(match s.average_rtt {
                Some(avg) => (avg * 7 + rtt) / 8,
                None => rtt,
            });
        } else {
            s.failures += 1;
        }
    }
}

/// A remote's error reply. A leaderless remote ("no-leader", "not-leader") is unreachable for
/// now, not a refusal.
fn refusal(url: &str, status: reqwest::StatusCode, body: &[u8]) -> LinkError {
    match serde_json::from_slice::<ErrorBody>(body) {
        // A server error (no leader, a commit timeout) may pass: only a refusal is final.
        Ok(e) if !status.is_server_error() => LinkError::Refused {
            code: e.error.code,
            message: e.error.message,
        },
        Ok(e) => LinkError::Unreachable {
            url: url.to_string(),
            reason: e.error.message,
        },
        Err(_) => LinkError::Unreachable {
            url: url.to_string(),
            reason: format!("HTTP {status} without a flashcopy error"),
        },
    }
}
