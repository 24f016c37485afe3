//! Running the stock client tools against a server: the child environment that carries the
//! password, `psql` queries, the facts a transfer records, and cleaning a restore's target.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{PgTool, PgTools, PgUrl, ToolError, Version};
use crate::proc::{Output, RunError, Tool};

/// A failure talking to a PostgreSQL server. Messages name the database (redacted) and carry
/// libpq's own explanation; they never contain the password, which only ever travels in the
/// child's environment.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("could not connect to database {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("query on database {target} failed: {detail}")]
    Query { target: String, detail: String },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Variables passed through from the service's own environment to the tools: TLS material and
/// service files a deployment may set for libpq. Everything else is left out, so that an
/// operator's own `PGPASSWORD` or `PGDATABASE` never leaks into a connection to another server.
const PASS_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "TZ",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGPASSFILE",
];

/// A stock tool with an explicit environment, named after its executable's file name. When
/// `url` is given, its password (if any) is put in `PGPASSWORD`; the caller passes
/// [`PgUrl::without_password`] on the command line. The child is killed if the handle is
/// dropped.
pub fn tool_command(exe: &Path, url: Option<&PgUrl>) -> Tool {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| exe.display().to_string());
    let mut cmd = Tool::new(name, exe);
    for key in PASS_THROUGH {
        if let Some(v) = crate::config::process_env::var_os(key) {
            cmd.env(key, v);
        }
    }
    // Messages in English so that logs are the same everywhere, and errors parse.
    cmd.env("LC_MESSAGES", "C");
    cmd.env("LANG", "C.UTF-8");
    cmd.env("PGAPPNAME", "pgbackups");
    cmd.env("PGCONNECT_TIMEOUT", "10");
    if let Some(pw) = url.and_then(|u| u.password()) {
        cmd.env("PGPASSWORD", pw);
    }
    cmd
}

/// libpq's defaults that a tool run on the user's own machine (`pull`'s pg_restore, `push`'s
/// pg_dump) takes from the CLI's environment, as `psql mydb` would: a bare database name means
/// the local server these point at (the unix socket when none is set).
const LOCAL_DEFAULTS: &[&str] = &["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD"];

/// [`tool_command`] for a database on the user's machine: libpq's defaults
/// ([`LOCAL_DEFAULTS`]) come from our environment, and a password in `url` wins over
/// `PGPASSWORD`. Still only in the child's environment, never its arguments.
pub fn local_tool_command(exe: &Path, url: &PgUrl) -> Tool {
    let mut cmd = tool_command(exe, None);
    cmd.pass_env(LOCAL_DEFAULTS);
    if let Some(pw) = url.password() {
        cmd.env("PGPASSWORD", pw);
    }
    cmd
}

/// A database on the user's machine, as `pull` and `push` take it: a `postgres://` URL, or a
/// bare name (`mydb`) for a database of the local server reached with libpq's defaults.
pub fn local_database(arg: &str) -> Result<PgUrl, super::PgUrlError> {
    if arg.contains("://") {
        return PgUrl::parse(arg);
    }
    // A bare name is a plain name: a connection string (`host=… password=…`) or a URL without
    // its scheme (`me:pw@host`) would otherwise become a database called that, its password
    // shown in messages, run in argv and kept in `pg_database`. Not echoed, for that reason.
    if arg.trim().is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#=@:'\\".contains(c))
    {
        return Err(super::PgUrlError::Malformed(
            "the local database is neither a postgres:// URL nor a plain database name (no spaces, `=`, `@`, `:`, `/`); for a connection string, write it as a postgres:// URL, or pass `-` to read it from the environment or standard input".into(),
        ));
    }
    Ok(PgUrl::parse("postgresql:///postgres")?.with_dbname(arg))
}

/// A SQL string literal: `it's` → `'it''s'`; with a backslash, an escape string (`a\b` →
/// `E'a\\b'`), read the same whatever the server's `standard_conforming_strings` (with it
/// off, `'a\'` would leave the literal open and the text after it would run as SQL).
pub fn quote_literal(s: &str) -> String {
    let quoted = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A SQL identifier: `my "db"` → `"my ""db"""`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The extensions of a database, sorted: what Heroku compares after a pull or push.
pub const EXTENSIONS_SQL: &str = "SELECT extname FROM pg_extension ORDER BY extname";

/// How many tables a database has outside the system schemas: what makes it "not empty" for
/// pull and push.
pub const COUNT_TABLES_SQL: &str = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%'";

/// The first field of the first row, parsed (a count, a version number); `None` when there
/// is none or it does not parse.
pub fn first_value<T: std::str::FromStr>(rows: &[Vec<String>]) -> Option<T> {
    rows.first()?.first()?.parse().ok()
}

/// Runs `sql` with `psql` and returns the rows, each a vector of fields.
pub async fn query(tools: &PgTools, url: &PgUrl, sql: &str) -> Result<Vec<Vec<String>>, PgError> {
    let out = run_psql(tools, url, &["-A", "-t", "-F", "\t", "-c", sql], None).await?;
    Ok(rows(&out))
}

/// [`query`] on a database of the user's machine (see [`local_tool_command`]).
pub async fn query_local(
    tools: &PgTools,
    url: &PgUrl,
    sql: &str,
) -> Result<Vec<Vec<String>>, PgError> {
    let mut cmd = psql(tools, url, &["-A", "-t", "-F", "\t", "-c", sql], None)?;
    cmd.pass_env(LOCAL_DEFAULTS);
    if let Some(pw) = url.password() {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd.output(None).await?;
    if out.status.success() {
        Ok(rows(&out.stdout_text()))
    } else {
        Err(psql_failure(url, &out))
    }
}

fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Runs a script with `psql` in one transaction, stopping at the first error.
pub async fn run_script(tools: &PgTools, url: &PgUrl, script: &str) -> Result<(), PgError> {
    run_psql(tools, url, &["-1", "-f", "-"], Some(script)).await?;
    Ok(())
}

async fn run_psql(
    tools: &PgTools,
    url: &PgUrl,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, PgError> {
    let out = psql(tools, url, args, stdin)?.output(None).await?;
    if out.status.success() {
        Ok(out.stdout_text())
    } else {
        Err(psql_failure(url, &out))
    }
}

/// `psql` on `url` with the options every query and script uses, then `args`, fed `stdin`.
fn psql(tools: &PgTools, url: &PgUrl, args: &[&str], stdin: Option<&str>) -> Result<Tool, PgError> {
    let exe = tools.newest(PgTool::Psql)?;
    let mut cmd = tool_command(&exe, Some(url));
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        &url.without_password(),
    ])
    .args(args)
    // The whole of what psql says: its failure message is built from all of it.
    .keep_lines(1000);
    if let Some(script) = stdin {
        cmd.feed(script);
    }
    Ok(cmd)
}

/// What a failed psql run means: exit status 2 is a failed connection, 3 a failed script.
fn psql_failure(url: &PgUrl, out: &Output) -> PgError {
    let detail = clean_libpq_message(&out.stderr.tail_text());
    let target = format!("{} on {}", url.dbname(), url.host_port());
    if out.status.code() == Some(2) {
        PgError::Connect { target, detail }
    } else {
        PgError::Query { target, detail }
    }
}

/// Turns `psql: error: connection to server at "h" (1.2.3.4), port 5432 failed: FATAL:  x` into
/// a one-line message, keeping libpq's explanation.
pub fn clean_libpq_message(stderr: &str) -> String {
    let text = stderr
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim_start_matches("psql: error: ")
                .trim_start_matches("pg_dump: error: ")
                .trim_start_matches("pg_restore: error: ")
                .trim_start_matches("ERROR:  ")
                .replace("FATAL:  ", "")
        })
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        "no message (the tool exited with an error)".into()
    } else {
        text
    }
}

/// What a transfer records about the server it talks to.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    pub version: Version,
    /// `pg_database_size` of the database, in bytes.
    pub database_size: u64,
}

/// Connects to `url` and asks for its version and size. This is also how a transfer checks
/// early that the database exists and the credentials work.
pub async fn server_facts(tools: &PgTools, url: &PgUrl) -> Result<ServerFacts, PgError> {
    let rows = query(
        tools,
        url,
        "SELECT current_setting('server_version_num'), pg_database_size(current_database())",
    )
    .await?;
    let bad = || PgError::Query {
        target: format!("{} on {}", url.dbname(), url.host_port()),
        detail: "unexpected answer to a version query".into(),
    };
    let row = rows.first().ok_or_else(bad)?;
    let num: u32 = row.first().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let size: u64 = row.get(1).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    Ok(ServerFacts {
        version: Version::from_server_num(num),
        database_size: size,
    })
}

/// Drops every user object of a database, as Heroku does before a restore: user schemas
/// (with everything in them), extensions, large objects and publications. The `public` schema is
/// recreated with its owner, privileges and comment as they were, so that a restore of a dump
/// taken from a fresh database gives the same schema again. Runs in one transaction: when any
/// drop is refused (an object owned by another role, say), nothing has been dropped.
///
/// A cancel never kills the drop halfway through its commit (after which nobody could say
/// whether the database was emptied): see [`run_script_cancellable`]. `tag` names the
/// connection (`pgbackups-r001-empty-<nonce>`: no spaces, which a URL parameter would turn
/// into `+`) so that a cancel reaches it.
pub async fn clean_database(
    tools: &PgTools,
    url: &PgUrl,
    cancel: &CancellationToken,
    tag: &str,
) -> ScriptEnd {
    run_script_cancellable(tools, url, CLEAN_SCRIPT, cancel, tag).await
}

/// How a script run by [`run_script_cancellable`] ended, as the server knows it.
#[derive(Debug)]
pub enum ScriptEnd {
    /// psql committed the whole script.
    Committed,
    /// Nothing was committed: the server refused a statement, the cancel reached the script
    /// before its commit, or psql never connected.
    RolledBack(PgError),
    /// The connection broke mid-way (or psql had to be killed), so whether the commit
    /// happened is not known.
    Unknown(String),
}

/// How long after a cancel the script may take to stop before psql is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Runs a script with `psql` in one transaction, like [`run_script`], but when `cancel` fires
/// it asks the server to cancel the script's query (`pg_cancel_backend` on the connection
/// named `tag`) instead of killing psql, and waits for psql to tell how it ended: a cancel
/// that reaches the script before its commit rolls it back, one that comes after finds it
/// committed. Killing psql would leave that unknown.
pub async fn run_script_cancellable(
    tools: &PgTools,
    url: &PgUrl,
    script: &str,
    cancel: &CancellationToken,
    tag: &str,
) -> ScriptEnd {
    if cancel.is_cancelled() {
        return ScriptEnd::RolledBack(PgError::Query {
            target: format!("{} on {}", url.dbname(), url.host_port()),
            detail: "cancelled before it started".into(),
        });
    }
    // A connection parameter, so that it wins over an application_name in the user's URL.
    let named = url.with_param("application_name", tag);
    let mut tool = match psql(tools, &named, &["-1", "-f", "-"], Some(script)) {
        Ok(tool) => tool,
        Err(e) => return ScriptEnd::RolledBack(e),
    };
    let mut ended = Box::pin(tool.output(None));
    let out = tokio::select! {
        out = &mut ended => out,
        _ = cancel.cancelled() => {
            // A cancel only stops a statement that is running: psql may still be connecting,
            // or be between its BEGIN, the script and its COMMIT. So it is sent again every
            // quarter second until psql has exited.
            let stop = format!(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = {} AND datname = current_database() AND pid <> pg_backend_pid()",
                quote_literal(tag)
            );
            let deadline = tokio::time::Instant::now() + CANCEL_GRACE;
            let mut warned = false;
            loop {
                if let Err(e) = query(tools, url, &stop).await
                    && !warned
                {
                    tracing::warn!("could not cancel the running script ({tag}): {e}");
                    warned = true;
                }
                let pause = tokio::time::Instant::now() + Duration::from_millis(250);
                tokio::select! {
                    out = &mut ended => break out,
                    _ = tokio::time::sleep_until(pause.min(deadline)) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    // Dropping the wait kills psql (kill_on_drop).
                    return ScriptEnd::Unknown(format!(
                        "the script did not stop within {} s of the cancel and was killed",
                        CANCEL_GRACE.as_secs()
                    ));
                }
            }
        }
    };
    let out = match out {
        Ok(out) => out,
        Err(e @ RunError::Start { .. }) => return ScriptEnd::RolledBack(e.into()),
        Err(e) => return ScriptEnd::Unknown(format!("lost track of psql: {e}")),
    };
    if out.status.success() {
        return ScriptEnd::Committed;
    }
    let detail = clean_libpq_message(&out.stderr.tail_text());
    match out.status.code() {
        // psql exits with 2 when it could not connect, and also when the connection broke
        // mid-way: only the second leaves the outcome open. "connection to server was lost"
        // is printed by a non-interactive psql only once it had connected.
        Some(2) if detail.contains("connection to server was lost") => ScriptEnd::Unknown(detail),
        Some(_) => ScriptEnd::RolledBack(psql_failure(url, &out)),
        None => ScriptEnd::Unknown(format!("psql was killed by a signal: {detail}")),
    }
}

/// The drop before a restore. Besides schemas, extensions, large objects and publications, it
/// drops what a dump recreates outside schemas — event triggers, subscriptions (detached from
/// their slot first: the slot is on the publisher, and a restored subscription's slot belongs
/// to the database it was dumped from), user-defined casts and transforms, foreign servers with
/// their user mappings, foreign-data wrappers, access methods and procedural languages — unless
/// an extension owns them, so that a second restore into the same database finds nothing in
/// its way. A role that is not a superuser keeps what only a superuser (or the object's owner)
/// may drop, such as access methods and casts between built-in types; it could not restore
/// them either. Event triggers go first, so that none fires at the drops.
const CLEAN_SCRIPT: &str = r#"
DO $pgbackups$
DECLARE
  r record;
  public_owner text;
  public_acl aclitem[];
  public_comment text;
BEGIN
  -- Event triggers first, so that none of them fires at (or refuses) the drops below.
  FOR r IN SELECT e.evtname FROM pg_event_trigger e
           WHERE pg_has_role(e.evtowner, 'USAGE')
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_event_trigger'::regclass
                             AND d.objid = e.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP EVENT TRIGGER %I', r.evtname);
  END LOOP;
  -- A subscription is detached from its replication slot before the drop: the slot lives on
  -- the publisher, and for a restored subscription it belongs to the database it was dumped from.
  FOR r IN SELECT s.subname, s.subenabled, s.subslotname FROM pg_subscription s
           WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND pg_has_role(s.subowner, 'USAGE') LOOP
    IF r.subenabled THEN
      EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', r.subname);
    END IF;
    IF r.subslotname IS NOT NULL THEN
      EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', r.subname);
    END IF;
    EXECUTE format('DROP SUBSCRIPTION %I', r.subname);
  END LOOP;
  PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
  FOR r IN SELECT pubname FROM pg_publication LOOP
    EXECUTE format('DROP PUBLICATION %I', r.pubname);
  END LOOP;
  FOR r IN SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' LOOP
    EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', r.extname);
  END LOOP;
  FOR r IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('public', 'information_schema')
             AND nspname NOT LIKE 'pg\_%' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', r.nspname);
  END LOOP;
  SELECT nspowner::regrole::text, nspacl, obj_description(oid, 'pg_namespace')
    INTO public_owner, public_acl, public_comment
    FROM pg_namespace WHERE nspname = 'public';
  IF FOUND THEN
    DROP SCHEMA public CASCADE;
    EXECUTE format('CREATE SCHEMA public AUTHORIZATION %s', public_owner);
    IF public_comment IS NOT NULL THEN
      EXECUTE format('COMMENT ON SCHEMA public IS %L', public_comment);
    END IF;
    IF public_acl IS NOT NULL THEN
      EXECUTE format('REVOKE ALL ON SCHEMA public FROM %s', public_owner);
      FOR r IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee,
                      a.privilege_type, a.is_grantable
               FROM aclexplode(public_acl) a LOOP
        EXECUTE format('GRANT %s ON SCHEMA public TO %s%s', r.privilege_type, r.grantee,
                       CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
      END LOOP;
    END IF;
  ELSE
    CREATE SCHEMA public;
  END IF;
  -- What lives outside schemas and is not part of an extension (objects with OIDs below 16384
  -- are built in). Casts and transforms belong to the owner of their source or target type.
  FOR r IN SELECT format_type(c.castsource, NULL) AS s, format_type(c.casttarget, NULL) AS t
           FROM pg_cast c
           WHERE c.oid >= 16384
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e')
             AND (pg_has_role((SELECT typowner FROM pg_type WHERE oid = c.castsource), 'USAGE')
                  OR pg_has_role((SELECT typowner FROM pg_type WHERE oid = c.casttarget), 'USAGE')) LOOP
    EXECUTE format('DROP CAST (%s AS %s)', r.s, r.t);
  END LOOP;
  FOR r IN SELECT format_type(t.trftype, NULL) AS ty, l.lanname
           FROM pg_transform t JOIN pg_language l ON l.oid = t.trflang
           WHERE t.oid >= 16384
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_transform'::regclass
                             AND d.objid = t.oid AND d.deptype = 'e')
             AND pg_has_role((SELECT typowner FROM pg_type WHERE oid = t.trftype), 'USAGE') LOOP
    EXECUTE format('DROP TRANSFORM FOR %s LANGUAGE %I', r.ty, r.lanname);
  END LOOP;
  -- Foreign servers (with their user mappings), then wrappers.
  FOR r IN SELECT s.srvname FROM pg_foreign_server s
           WHERE pg_has_role(s.srvowner, 'USAGE')
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_foreign_server'::regclass
                             AND d.objid = s.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP SERVER %I CASCADE', r.srvname);
  END LOOP;
  FOR r IN SELECT w.fdwname FROM pg_foreign_data_wrapper w
           WHERE pg_has_role(w.fdwowner, 'USAGE')
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_foreign_data_wrapper'::regclass
                             AND d.objid = w.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP FOREIGN DATA WRAPPER %I CASCADE', r.fdwname);
  END LOOP;
  -- Access methods and procedural languages: only a superuser may drop them.
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    FOR r IN SELECT a.amname FROM pg_am a
             WHERE a.oid >= 16384
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_am'::regclass
                               AND d.objid = a.oid AND d.deptype = 'e') LOOP
      EXECUTE format('DROP ACCESS METHOD %I CASCADE', r.amname);
    END LOOP;
    FOR r IN SELECT l.lanname FROM pg_language l
             WHERE l.oid >= 16384
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_language'::regclass
                               AND d.objid = l.oid AND d.deptype = 'e') LOOP
      EXECUTE format('DROP LANGUAGE %I CASCADE', r.lanname);
    END LOOP;
  END IF;
END
$pgbackups$;
"#;

#[cfg(test)]
mod tests {

    /// A connection string or a URL without its scheme is not taken for a database name: its
    /// password would end up in messages, argv and `pg_database`.
    #[test]
    fn a_bare_local_database_is_a_plain_name_and_never_echoes_a_password() {
        assert_eq!(
            super::local_database("app_dev").unwrap().dbname(),
            "app_dev"
        );
        for arg in [
            "host=db user=app password=s3cret dbname=app",
            "me:s3cret@localhost",
            "app dev",
            "",
        ] {
            let err = super::local_database(arg).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
    #[test]
    fn quotes_literals_and_identifiers() {
        assert_eq!(super::quote_literal("it's"), "'it''s'");
        assert_eq!(super::quote_literal(r"a\'b"), r"E'a\\''b'");
        assert_eq!(super::quote_ident("my \"db\""), "\"my \"\"db\"\"\"");
    }
}
