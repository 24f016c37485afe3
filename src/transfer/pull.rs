//! The service's side of `pull` (Heroku's pg:pull runs on the user's machine): a registered
//! database's dump, streamed out of the service, and a database's extensions, which `pull` and
//! `push` compare. The source's URL and password never leave the service: only the dump does.
//!
//! ```text
//! pg_dump -Fc -Z0 (source) ─pipe─▶ zstd (level 2) ─channel of 4 chunks─▶ HTTP body
//! ```
//! (`pg::dump_stream`). A pull is not a transfer of the catalog (Heroku does not list pulls either): the service
//! logs it. If pg_dump fails, the body ends with an error, so the client sees a broken
//! stream, never a clean end; the zstd frame is finished only after pg_dump exited 0.

use std::io;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Engine, TransferError, blocking};
use crate::pg::client::{EXTENSIONS_SQL, query, server_facts, tool_command};
use crate::pg::{DbName, DumpFilter, PgTool, Version};

/// zstd's level for a streamed dump: fast enough to keep up with pg_dump, and a WAN pull
/// several times smaller than the plain dump.
const LEVEL: i32 = 2;

impl Engine {
    /// A registered database, as pull and push name it (a name only): its name and URL.
    async fn registered(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<(String, crate::pg::PgUrl), TransferError> {
        let name = DbName::parse(name)
            .map_err(crate::registry::RegistryError::from)?
            .to_string();
        let (registry, n) = (self.registry.clone(), name.clone());
        let url = blocking(move || Ok(registry.resolve(Some(&n))?))
            .await
            .map_err(|e| match e {
                TransferError::UnknownDatabase(n) => TransferError::UnknownForPullPush(n),
                other => other,
            })?
            .1;
        Ok((name, url))
    }
}

/// A dump being streamed: its pieces as they come (an `Err` last if it failed), and the
/// version of the pg_dump that writes it.
pub struct DumpStream {
    pub chunks: mpsc::Receiver<io::Result<Bytes>>,
    pub pg_dump: Option<Version>,
}

impl Engine {
    /// Starts a dump of the registered database `name` (a name only: a URL would come from
    /// the client, which has its own tools) with `filter`, compressed with zstd. Connects
    /// first, so that a wrong name or an unreachable source is an error answer, not a broken
    /// stream.
    pub async fn stream_dump(
        self: &Arc<Self>,
        name: &str,
        filter: DumpFilter,
    ) -> Result<DumpStream, TransferError> {
        filter.validate()?;
        let (name, url) = self.registered(name).await?;
        let facts = server_facts(&self.tools, &url)
            .await
            .map_err(|e| TransferError::Source(format!("{name}: {e}")))?;
        let pg_dump = self
            .tools
            .find(PgTool::Dump, facts.version.major)
            .map_err(|e| TransferError::Source(e.to_string()))?;
        let version = self.tools.version_of(&pg_dump);
        let (from_dump, dump_stdout) =
            io::pipe().map_err(|e| TransferError::Internal(e.to_string()))?;
        let mut dump = tool_command(&pg_dump, Some(&url));
        let label = name.clone();
        dump.args([
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--dbname",
        ])
        .arg(url.without_password())
        .args(filter.args())
        .stdout(Stdio::from(dump_stdout))
        .keep_lines(20)
        .log_to(Arc::new(
            move |line: &str| tracing::debug!(database = %label, "pull: {line}"),
        ));
        let running = dump
            .spawn()
            .map_err(|e| TransferError::Source(e.to_string()))?;
        // Our copy of the pipe's write end must go, or the reader would never see its end.
        drop(dump);
        tracing::info!(database = %name, "pull: streaming a dump of {name} to a client");
        let (chunks, ended) = crate::pg::dump_stream::compressed(running, from_dump, LEVEL);
        tokio::spawn(async move {
            match ended.await {
                Ok(Ok(())) => {
                    tracing::info!(database = %name, "pull: the dump of {name} was sent whole")
                }
                Ok(Err(e)) => {
                    tracing::error!(database = %name, "pull: the dump of {name} did not end whole: {e}")
                }
                Err(e) => tracing::error!(database = %name, "pull: the dump of {name}: {e}"),
            }
        });
        Ok(DumpStream {
            chunks,
            pg_dump: version,
        })
    }

    /// The extensions installed in `name`, sorted (what `pull` and `push` compare).
    pub async fn extensions(self: &Arc<Self>, name: &str) -> Result<Vec<String>, TransferError> {
        let (name, url) = self.registered(name).await?;
        let rows = query(&self.tools, &url, EXTENSIONS_SQL)
            .await
            .map_err(|e| TransferError::Source(format!("{name}: {e}")))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect())
    }
}
