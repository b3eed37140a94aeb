//! The CLI's client of the admin API, and how its failures map to exit statuses:
//! 1 the cluster refused, 2 usage error, 3 the cluster could not be reached or has no leader.

use crate::protocol::{CommandReply, ErrorBody, API_PREFIX};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a client keeps retrying while the cluster has no leader.
const LEADER_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("error: {code}: {message}")]
    Usage { code: String, message: String },
    #[error("error: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("error: {code}: {message}")]
    Unreachable { code: String, message: String },
}

impl CliError {
    pub fn usage(code: &str, message: impl Into<String>) -> Self {
        CliError::Usage {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        CliError::Refused {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Usage { .. } => 2,
            CliError::Unreachable { .. } => 3,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            CliError::Usage { code, .. } | CliError::Refused { code, .. } | CliError::Unreachable { code, .. } => code,
        }
    }
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The token from `--token-file`, else from `FLASHCOPY_TOKEN`.
pub fn load_token(token_file: Option<&Path>) -> Result<Option<String>, CliError> {
    match token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| CliError::usage("token-file", format!("cannot read {}: {e}", path.display()))),
        None => Ok(std::env::var("FLASHCOPY_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string())),
    }
}

impl ApiClient {
    /// Checks the API's HTTPS certificate against the CA certificates in `path` (PEM).
    pub fn with_ca(mut self, path: &Path) -> Result<Self, CliError> {
        let bad = |reason: String| CliError::usage("ca-file", format!("{}: {reason}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        let mut builder = reqwest::Client::builder();
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
        self.http = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(self)
    }

    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request, retrying while the cluster is between leaders.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        json: bool,
    ) -> Result<reqwest::Response, CliError> {
        let url = format!("{}{API_PREFIX}{path}", self.base);
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .timeout(Duration::from_secs(120));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                let content_type = if json {
                    "application/json"
                } else {
                    "application/octet-stream"
                };
                request = request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body.clone());
            }
            let reply = request.send().await.map_err(|e| CliError::Unreachable {
                code: "unreachable".into(),
                message: format!("cannot reach the flashcopy API at {}: {e}", self.base),
            })?;
            let status = reply.status();
            if status.is_success() {
                return Ok(reply);
            }
            let (code, message) = match reply.json::<ErrorBody>().await {
                Ok(body) => (body.error.code, body.error.message),
                Err(_) => ("http-error".to_string(), format!("the API answered {status}")),
            };
            return Err(match status {
                StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                StatusCode::SERVICE_UNAVAILABLE => CliError::Unreachable { code, message },
                StatusCode::BAD_REQUEST => CliError::Usage { code, message },
                _ => CliError::Refused { code, message },
            });
        }
    }

    async fn decode<T: DeserializeOwned>(reply: reqwest::Response) -> Result<T, CliError> {
        reply
            .json()
            .await
            .map_err(|e| CliError::refused("bad-reply", format!("cannot read the API's reply: {e}")))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        Self::decode(self.send(Method::GET, path, None, false).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CliError> {
        let bytes = serde_json::to_vec(body).expect("request bodies serialise");
        Self::decode(self.send(Method::POST, path, Some(bytes), true).await?).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        Self::decode(self.send(Method::DELETE, path, None, false).await?).await
    }

    /// Writes bytes into a volume (the administrator's data route; it needs the cluster
    /// token). Returns the index of the entry that applied the write.
    pub async fn write(&self, volume: &str, offset: u64, data: Vec<u8>) -> Result<u64, CliError> {
        let reply: CommandReply = Self::decode(
            self.send(
                Method::PUT,
                &format!("/volumes/{volume}/data?offset={offset}"),
                Some(data),
                false,
            )
            .await?,
        )
        .await?;
        Ok(reply.index)
    }

    /// Reads bytes of a volume as a host sees them.
    pub async fn read(&self, volume: &str, offset: u64, length: u64) -> Result<Vec<u8>, CliError> {
        let reply = self
            .send(
                Method::GET,
                &format!("/volumes/{volume}/data?offset={offset}&length={length}"),
                None,
                false,
            )
            .await?;
        reply
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| CliError::refused("bad-reply", e.to_string()))
    }
}
