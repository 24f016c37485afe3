//! The CLI's HTTP client for the service's API.

use std::path::PathBuf;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::shared::Env;
use crate::config::{SERVICE_URL_FILE, default_data_dir};
use crate::secret::TOKEN_FILE;

/// Any failure of the library, kept as its own error (with its sources) for the message.
pub type LibError = Box<dyn std::error::Error + Send + Sync>;

/// A CLI failure, printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Something the CLI itself has to say (a bad argument, a missing backup).
    #[error("{0}")]
    Message(String),
    /// The service answered with an error; its message is for the user as is.
    #[error("{0}")]
    Api(String),
    /// The service refused a destructive request for want of its confirmation: `expected` is
    /// the name to confirm with (asked for on a terminal, see `confirm.rs`).
    #[error("{message}")]
    Unconfirmed { message: String, expected: String },
    /// The service could not be reached, or its answer not read.
    #[error("{context}: {source}")]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The service's answer is not what this CLI reads.
    #[error(
        "the service's answer is not what this CLI expects ({source}); are the CLI and service the same version?"
    )]
    Answer {
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Json(serde_json::Error),
    #[error(transparent)]
    Id(#[from] crate::catalog::TransferIdError),
    /// A blocking task of the CLI panicked or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// What failed, and why.
    #[error("{context}: {source}")]
    Context {
        context: &'static str,
        #[source]
        source: Box<CliError>,
    },
    /// The library failed: its own error, as is.
    #[error(transparent)]
    Lib(LibError),
}

impl CliError {
    pub fn msg(m: impl Into<String>) -> CliError {
        CliError::Message(m.into())
    }

    /// A library error, kept as is (with its sources).
    pub fn lib(e: impl Into<LibError>) -> CliError {
        CliError::Lib(e.into())
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }
}

/// Where the service is and how to authenticate to it.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// Finds the service: `PGBACKUPS_URL` and `PGBACKUPS_TOKEN`, or else the files a service
    /// writes in its data directory (`PGBACKUPS_DATA_DIR` or the default), for a CLI on the
    /// same machine.
    pub fn connect(env: &Env) -> Result<Client, CliError> {
        let data_dir: PathBuf = default_data_dir();
        let base = match env.url.clone() {
            Some(u) => u,
            None => std::fs::read_to_string(data_dir.join(SERVICE_URL_FILE))
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    CliError::msg(format!(
                        "cannot find the pgbackups service: set PGBACKUPS_URL (and PGBACKUPS_TOKEN), or start it with `pgbackups serve` (no running service has written {} in {})",
                        SERVICE_URL_FILE,
                        data_dir.display()
                    ))
                })?,
        };
        let token = match env.token.clone() {
            Some(t) => t,
            None => std::fs::read_to_string(data_dir.join(TOKEN_FILE))
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    CliError::msg(format!(
                        "no API token: set PGBACKUPS_TOKEN to the contents of the service's `{TOKEN_FILE}` file ({} here: {e})",
                        data_dir.join(TOKEN_FILE).display()
                    ))
                })?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|source| CliError::Http {
                context: "cannot create an HTTP client".into(),
                source,
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The service's base URL (`http://127.0.0.1:8080`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to an API path such as `/transfers`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request and checks its status; errors carry the service's message.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, CliError> {
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "connection refused or unreachable; is `pgbackups serve` running?".to_string()
            } else if e.is_timeout() {
                "timed out".to_string()
            } else {
                e.to_string()
            };
            CliError::msg(format!(
                "cannot reach the pgbackups service at {}: {why}",
                self.base
            ))
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let (message, confirm) = serde_json::from_str::<crate::api::ErrorBody>(&text)
            .map(|b| (b.error, b.confirm))
            .unwrap_or_else(|_| (format!("the service answered {status}: {text}"), None));
        if status == StatusCode::UNAUTHORIZED {
            return Err(CliError::Api(format!("{message} (check PGBACKUPS_TOKEN)")));
        }
        match confirm {
            Some(expected) => Err(CliError::Unconfirmed { message, expected }),
            None => Err(CliError::Api(message)),
        }
    }

    /// GET and decode JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        decode(resp).await
    }

    /// POST a JSON body and decode the JSON answer.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, CliError> {
        let resp = self
            .send(self.request(Method::POST, path).json(body))
            .await?;
        decode(resp).await
    }

    /// POST without a body of its own (`{}`) and decode the JSON answer.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        /// Serializes as `{}`.
        #[derive(serde::Serialize)]
        struct NoBody {}
        self.post(path, &NoBody {}).await
    }
}

/// Decodes the JSON answer of a request sent with [`Client::send`].
pub async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, CliError> {
    let text = resp.text().await.map_err(|source| CliError::Http {
        context: "reading the service's answer".into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CliError::Answer { source })
}
