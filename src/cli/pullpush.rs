//! `pull` and `push`, run on the user's machine as Heroku's pg:pull and pg:push are:
//!
//! ```text
//! pull: service: pg_dump -Fc -Z0 ─zstd─▶ HTTP ─▶ CLI: unzstd ─▶ local pg_restore --no-owner --no-acl
//! push: CLI: local pg_dump -Fc -Z0 ─zstd─▶ HTTP ─▶ service: spooled, then restored (a restore)
//! ```
//! The service's database is named by its registered name: its URL and password stay on the
//! service. The local database is a `postgres://` URL, or a bare name for a database on the
//! local server reached with libpq's defaults (PGHOST, PGPORT, PGUSER, PGPASSWORD of this
//! environment; the unix socket when unset). Afterwards both compare the two databases'
//! extensions and warn when they differ, as Heroku does.

use std::io::{self, Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use tokio_util::sync::CancellationToken;

use super::client::{CliError, Client, decode};
use super::confirm::{self, confirmed};
use super::shared::Env;
use super::urlarg::{self, Role};
use super::watch;
use crate::api::{DUMP_VERSION_HEADER, ExtensionsView, UploadQuery};
use crate::catalog::TransferRecord;
use crate::format;
use crate::pg::client::{
    COUNT_TABLES_SQL, EXTENSIONS_SQL, first_value, local_database, local_tool_command, query_local,
    quote_ident, quote_literal,
};
use crate::pg::dump_stream::DumpStreamError;
use crate::pg::restore_errors::Parser;
use crate::pg::{DbName, DumpFilter, PgTool, PgTools, PgUrl, Version};

/// zstd's level for a pushed dump (as the service's for a pulled one).
const LEVEL: i32 = 2;

/// `pgbackups pull SOURCE TARGET`: the registered database SOURCE into a new local database.
pub async fn pull(
    env: &Env,
    source: String,
    target: String,
    filter: DumpFilter,
    verbose: bool,
) -> Result<i32, CliError> {
    let source = registered(&source, "pull reads from")?;
    filter.validate().map_err(CliError::lib)?;
    let target_arg = urlarg::resolve(target, Role::Target, env)?;
    let target = local_database(&target_arg).map_err(CliError::lib)?;
    let bare = !target_arg.contains("://");
    let name = target.dbname();
    let place = place(&target, bare);
    let tools = PgTools::discover(&env.pg_bin);
    let admin = target.with_dbname("postgres");
    let rows = query_local(
        &tools,
        &admin,
        &format!(
            "SELECT current_setting('server_version_num'), (SELECT count(*) FROM pg_database WHERE datname = {})",
            quote_literal(&name)
        ),
    )
    .await
    .map_err(|e| CliError::msg(format!("cannot reach {place} to create `{name}`: {e}")))?;
    let local_version = version_of(&rows);
    let exists = rows
        .first()
        .and_then(|r| r.get(1))
        .is_some_and(|n| n != "0");
    if exists && bare {
        return Err(CliError::msg(format!(
            "database `{name}` already exists on {place}; pull creates a new database: pick another name, or drop it first (`dropdb {name}`)"
        )));
    }
    if exists {
        let tables = count_tables(&tools, &target).await?;
        if tables > 0 {
            return Err(CliError::msg(format!(
                "database `{name}` on {place} has {tables} table(s); pull fills a new or empty database: pick another name, or drop it first"
            )));
        }
    }
    let c = Client::connect(env)?;
    let resp = c
        .send(
            c.request(Method::POST, &format!("/databases/{source}/dump"))
                .json(&filter),
        )
        .await?;
    let dump_major = resp
        .headers()
        .get(DUMP_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let pg_restore = tools
        .find(PgTool::Restore, dump_major.max(local_version.major))
        .map_err(CliError::lib)?;
    if !exists {
        query_local(
            &tools,
            &admin,
            &format!("CREATE DATABASE {}", quote_ident(&name)),
        )
        .await
        .map_err(|e| {
            CliError::msg(format!(
                "could not create database `{name}` on {place}: {e}"
            ))
        })?;
    }
    let incomplete = if exists {
        format!("The database `{name}` is incomplete: empty or drop it before you pull again.")
    } else {
        format!(
            "The database `{name}` was created and is incomplete: drop it (`dropdb {name}`) before you pull again."
        )
    };
    let title = format!("Pulling {source} into {name} on {place}");
    eprintln!("{title}...");

    let (restore_in, feed) = io::pipe().map_err(CliError::io("cannot make a pipe"))?;
    let parser = Arc::new(Mutex::new(Parser::default()));
    let mut restore = local_tool_command(&pg_restore, &target);
    restore
        .args([
            "--format=custom",
            "--verbose",
            "--no-owner",
            "--no-acl",
            "--no-password",
            "--dbname",
        ])
        .arg(target.without_password())
        .stdin(Stdio::from(restore_in))
        .keep_lines(20)
        .log_to(restore_sink(&parser, verbose));
    let running = restore.spawn().map_err(CliError::lib)?;
    drop(restore);
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    let body = resp.bytes_stream().map(move |r| {
        if let Ok(b) = &r {
            counted.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r.map_err(io::Error::other)
    });
    let reader =
        tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(body)));
    let stop = CancellationToken::new();
    let ticker = tokio::spawn(progress(received.clone(), "received"));
    let feeding = async {
        let fed = tokio::task::spawn_blocking(move || unzstd_into(reader, feed)).await;
        let fed = fed.unwrap_or_else(|e| Err(Feed::Stream(io::Error::other(e))));
        if matches!(fed, Err(Feed::Stream(_))) {
            // A dump cut short must not be restored as if it were whole.
            stop.cancel();
        }
        fed
    };
    let (finished, fed) = tokio::join!(running.wait(&stop, None), feeding);
    ticker.abort();
    end_progress();
    let finished = finished.map_err(CliError::lib)?;
    if let Err(Feed::Stream(e)) = &fed {
        eprintln!("{title}... failed");
        return Err(CliError::msg(format!(
            "the dump stream from the service broke off after {} ({e}): pg_dump failed on the service or the connection was lost (the service's log says which). {incomplete}",
            format::bytes(received.load(Ordering::Relaxed))
        )));
    }
    if finished.success() {
        // pg_restore ended well; it may have stopped reading before the stream's very end
        // (nothing of the archive comes after its last data block).
        eprintln!(
            "{title}... done ({} received)",
            format::bytes(received.load(Ordering::Relaxed))
        );
    } else {
        let warnings = parser.lock().unwrap_or_else(|p| p.into_inner()).warnings();
        match warnings {
            Some(w) => {
                let s = if w.len() == 1 { "" } else { "s" };
                eprintln!("{title}... done, with {} warning{s}", w.len());
                for w in &w {
                    eprintln!("{}", w.warning_line());
                }
            }
            None => {
                eprintln!("{title}... failed");
                let why = finished.check().err().map(|e| e.to_string());
                return Err(CliError::msg(format!(
                    "{}. {incomplete}",
                    why.unwrap_or_else(|| "pg_restore failed".into())
                )));
            }
        }
    }
    compare_extensions(&c, &source, &tools, &target, Side::Target).await;
    Ok(0)
}

/// `pgbackups push SOURCE TARGET`: the local database SOURCE into the registered database
/// TARGET, restored by the service once the whole dump has arrived.
pub async fn push(
    env: &Env,
    source: String,
    target: String,
    confirm: Option<String>,
    filter: DumpFilter,
    no_wait: bool,
    verbose: bool,
) -> Result<i32, CliError> {
    let source_arg = urlarg::resolve(source, Role::Source, env)?;
    let src = local_database(&source_arg).map_err(CliError::lib)?;
    let target = registered(&target, "push writes to")?;
    filter.validate().map_err(CliError::lib)?;
    let place = place(&src, !source_arg.contains("://"));
    let name = src.dbname();
    let tools = PgTools::discover(&env.pg_bin);
    // Connecting first: a source that does not exist or a wrong password is said plainly,
    // before anything is sent.
    let rows = query_local(
        &tools,
        &src,
        "SELECT current_setting('server_version_num'), 0",
    )
    .await
    .map_err(|e| {
        CliError::msg(format!(
            "cannot read the local database `{name}` on {place}: {e}. Nothing was sent; {target} was not changed"
        ))
    })?;
    let pg_dump = tools
        .find(PgTool::Dump, version_of(&rows).major)
        .map_err(CliError::lib)?;
    let c = Client::connect(env)?;
    let query = UploadQuery {
        name: Some(name.clone()),
        database: Some(target.clone()),
        jobs: Some(1),
        zstd: true,
        push: true,
        ..UploadQuery::default()
    };
    // Confirmed first (asked on a terminal when the target has tables), then pg_dump runs once.
    let confirm = confirmed(confirm, confirm::copy_effect, |confirm| {
        let (c, query) = (&c, query.clone());
        async move { super::transfers::check_upload(c, query, confirm).await }
    })
    .await?;
    let query = UploadQuery { confirm, ..query };
    let rec: TransferRecord = push_once(&c, &pg_dump, &src, &filter, query, &target).await?;
    println!("{}", rec.id);
    if no_wait {
        return Ok(0);
    }
    let code = watch::watch(
        &c,
        rec.id,
        &format!("Restoring {name} (pushed) to {target}"),
        verbose,
    )
    .await?;
    if code == 0 {
        compare_extensions(&c, &target, &tools, &src, Side::Source).await;
    }
    Ok(code)
}

/// One attempt at a push: the local pg_dump, compressed, as the body of an upload restore.
async fn push_once(
    c: &Client,
    pg_dump: &std::path::Path,
    src: &PgUrl,
    filter: &DumpFilter,
    query: UploadQuery,
    target: &str,
) -> Result<TransferRecord, CliError> {
    let (from_dump, dump_stdout) = io::pipe().map_err(CliError::io("cannot make a pipe"))?;
    let mut dump = local_tool_command(pg_dump, src);
    dump.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        "--dbname",
    ])
    .arg(src.without_password())
    .args(filter.args())
    .stdout(Stdio::from(dump_stdout))
    .keep_lines(20);
    let running = dump.spawn().map_err(CliError::lib)?;
    drop(dump);
    let (chunks, ended) = crate::pg::dump_stream::compressed(running, from_dump, LEVEL);
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let body = crate::pg::dump_stream::into_stream(chunks).inspect(move |r| {
        if let Ok(b) = r {
            counted.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    });
    eprintln!("Pushing {} to {target}...", src.dbname());
    let ticker = tokio::spawn(progress(sent.clone(), "sent"));
    let answer = c
        .send(
            c.request(Method::POST, "/restores/upload")
                .query(&query)
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await;
    ticker.abort();
    end_progress();
    // How the dump ended decides what the answer means: a failed pg_dump aborted the body,
    // and the service restores only a body that arrived whole.
    let dumped = match &answer {
        Ok(_) => None,
        Err(_) => Some(ended.await),
    };
    match (answer, dumped) {
        (Ok(resp), _) => decode(resp).await,
        (Err(_), Some(Ok(Err(DumpStreamError::Dump(e))))) => Err(CliError::msg(format!(
            "the local {}. The upload was aborted, so the service restored nothing: {target} was not changed",
            e.to_string().trim_end_matches(['.', ';'])
        ))),
        (Err(e), _) => Err(e),
    }
}

/// Which side of the comparison is the local database.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

/// Heroku's warning when the two databases' extensions differ after a pull or push (a
/// comparison that cannot be made is said, and does not fail the command).
async fn compare_extensions(c: &Client, remote: &str, tools: &PgTools, local: &PgUrl, side: Side) {
    let theirs: Result<ExtensionsView, CliError> =
        c.get(&format!("/databases/{remote}/extensions")).await;
    let ours = query_local(tools, local, EXTENSIONS_SQL).await;
    let (theirs, ours) = match (theirs, ours) {
        (Ok(t), Ok(o)) => (
            t.extensions,
            o.into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect::<Vec<_>>(),
        ),
        (Err(e), _) => {
            eprintln!("Note: could not compare the extensions: {e}");
            return;
        }
        (_, Err(e)) => {
            eprintln!("Note: could not compare the extensions: {e}");
            return;
        }
    };
    let (source, target) = match side {
        Side::Target => (theirs, ours),
        Side::Source => (ours, theirs),
    };
    if let Some(text) = extensions_warning(&source, &target) {
        eprintln!("{text}");
    }
}

/// Heroku's warning (pg:pull and pg:push) when the extensions differ; None when they match.
fn extensions_warning(source: &[String], target: &[String]) -> Option<String> {
    if source == target {
        return None;
    }
    Some(format!(
        "WARNING: Extensions in newly created target database differ from existing source database.\n\
         \n\
         Target extensions:\n{}\n\
         Source extensions:\n{}\n\
         HINT: You should review output to ensure that any errors\n\
         ignored are acceptable - entire tables may have been missed, where a dependency\n\
         could not be resolved. You may need to install a postgresql-contrib package\n\
         and retry.",
        target.join("\n"),
        source.join("\n")
    ))
}

/// A registered database's name, checked (a URL is refused: the service's side is named so
/// that its credentials stay there).
fn registered(arg: &str, what: &str) -> Result<String, CliError> {
    if arg.contains("://") || arg == "-" {
        return Err(CliError::msg(format!(
            "{what} a database registered on the service, named as `pgbackups databases` lists it, so that its credentials stay there: register it first with `pgbackups databases:add NAME postgres://...`"
        )));
    }
    Ok(DbName::parse(arg).map_err(CliError::lib)?.to_string())
}

/// Where a local database is, for messages.
fn place(url: &PgUrl, bare: bool) -> String {
    if bare {
        "the local server".into()
    } else {
        url.host_port()
    }
}

/// The server version in the first field of the first row.
fn version_of(rows: &[Vec<String>]) -> Version {
    Version::from_server_num(first_value(rows).unwrap_or(0))
}

async fn count_tables(tools: &PgTools, url: &PgUrl) -> Result<u64, CliError> {
    let rows = query_local(tools, url, COUNT_TABLES_SQL)
        .await
        .map_err(CliError::lib)?;
    Ok(first_value(&rows).unwrap_or(0))
}

/// pg_restore's stderr: to the warnings parser, and to the terminal with `--verbose`.
fn restore_sink(parser: &Arc<Mutex<Parser>>, verbose: bool) -> crate::proc::Sink {
    let parser = parser.clone();
    Arc::new(move |line: &str| {
        parser.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        if verbose {
            eprintln!("{line}");
        }
    })
}

/// Why feeding pg_restore stopped.
enum Feed {
    /// The stream from the service broke, or is not a whole zstd stream.
    Stream(io::Error),
    /// pg_restore stopped reading (its status says why).
    Restore,
}

/// Decompresses the stream into pg_restore's stdin.
fn unzstd_into(from: impl Read, to: io::PipeWriter) -> Result<(), Feed> {
    let mut dec = zstd::Decoder::new(from).map_err(Feed::Stream)?;
    let mut to = io::BufWriter::with_capacity(crate::stream::CHUNK, to);
    let mut buf = vec![0u8; crate::stream::CHUNK];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Feed::Stream(e)),
        };
        to.write_all(&buf[..n]).map_err(|_| Feed::Restore)?;
    }
    to.flush().map_err(|_| Feed::Restore)
}

/// Shows the bytes counted by `n` every second on a terminal, every 10 s otherwise.
async fn progress(n: Arc<AtomicU64>, word: &'static str) {
    use std::io::IsTerminal;
    let tty = io::stderr().is_terminal();
    let every = if tty { 1 } else { 10 };
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        let line = format!("{} {word}", format::bytes(n.load(Ordering::Relaxed)));
        if tty {
            eprint!("\r\x1b[K{line}");
            let _ = io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
}

/// Clears the progress line on a terminal.
fn end_progress() {
    use std::io::IsTerminal;
    if io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_that_differ_get_herokus_warning() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(extensions_warning(&s(&["plpgsql"]), &s(&["plpgsql"])), None);
        let w = extensions_warning(&s(&["hstore", "plpgsql"]), &s(&["plpgsql"])).unwrap();
        assert!(w.starts_with(
            "WARNING: Extensions in newly created target database differ from existing source database."
        ));
        assert!(w.contains("Target extensions:\nplpgsql\nSource extensions:\nhstore\nplpgsql\n"));
        assert!(w.contains("postgresql-contrib"));
    }

    #[test]
    fn the_service_side_is_a_registered_name() {
        assert!(registered("main", "pull reads from").is_ok());
        let e = registered("postgres://u:pw@h/db", "pull reads from").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
        assert!(e.to_string().contains("databases:add"), "{e}");
    }
}
