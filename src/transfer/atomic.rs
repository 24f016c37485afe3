//! Atomic restore (`--atomic`, beyond Heroku): restore into a fresh database on the target's
//! server, and only when that succeeded swap it in under the target's name — both renames in
//! one transaction. A failed or cancelled restore leaves the target exactly as it was; the
//! previous contents are kept under a dated name until the user drops them (`--drop-old` drops
//! them at once).
//!
//! The fresh database carries every database-level property of the target (`props`): the
//! swap changes the contents and nothing else.
//!
//! Requirements, checked before anything is created: the role may create databases
//! (CREATEDB or superuser), owns the target (or is a superuser), since renaming needs it, and
//! may give the fresh database the target's properties (rehearsed on the target and rolled
//! back); at the swap, nobody else may be connected to the target (PostgreSQL refuses to
//! rename a database in use).
//!
//! How far it got is recorded on the transfer ([`Stage`]), so that after a crash start-up
//! recovery ([`recover`]) drops the fresh database and says what is true of the target.

use jiff::Timestamp;

use super::{Job, JobEnd};
use crate::pg::PgUrl;
use crate::pg::client::{PgError, query, quote_ident, quote_literal, run_script};

mod props;

use props::DbProps;

/// What an atomic restore does after its swap.
#[derive(Clone, Copy, Debug)]
pub struct AtomicSwap {
    /// Drop the previous contents right after the swap.
    pub drop_old: bool,
}

/// How far an atomic restore got, recorded on its transfer (`detail`) before each step that
/// leaves something on the server, so that start-up recovery after a crash knows what exists
/// there and what to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The fresh database is (being) created and filled; the target is untouched.
    Restoring { fresh: String },
    /// The swap (one transaction: both renames) is running: either it committed and the
    /// target holds the restored data, its previous contents in `old`, or nothing changed.
    Swapping { fresh: String, old: String },
}

const RESTORING: &str = "atomic restore into the fresh database ";
const SWAPPING: &str = "atomic restore swapping in the fresh database ";
const OLD: &str = "; the previous contents go to ";

impl Stage {
    /// What is recorded in the transfer's `detail`.
    pub fn detail(&self) -> String {
        match self {
            Stage::Restoring { fresh } => format!("{RESTORING}{fresh}"),
            Stage::Swapping { fresh, old } => format!("{SWAPPING}{fresh}{OLD}{old}"),
        }
    }

    /// The stage a transfer's `detail` records, if it is an atomic restore's.
    pub fn parse(detail: Option<&str>) -> Option<Stage> {
        let detail = detail?;
        if let Some(rest) = detail.strip_prefix(SWAPPING) {
            let (fresh, old) = rest.rsplit_once(OLD)?;
            return Some(Stage::Swapping {
                fresh: fresh.to_string(),
                old: old.to_string(),
            });
        }
        detail
            .strip_prefix(RESTORING)
            .map(|fresh| Stage::Restoring {
                fresh: fresh.to_string(),
            })
    }

    /// What is known without asking the server, for the message written at start-up.
    pub fn interrupted(&self) -> String {
        match self {
            Stage::Restoring { fresh } => format!(
                "This --atomic restore had not reached its swap, so the target database was not changed; its partial copy {fresh} is dropped at start when the server is known"
            ),
            Stage::Swapping { .. } => "This --atomic restore was stopped during its swap; whether the target now holds the restored data is checked at start when the server is known".to_string(),
        }
    }
}

/// A database name of at most 63 bytes: `base` shortened (on a character boundary) + suffix.
fn name_with(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// The fresh database of an atomic restore, and what it must be given at the swap.
pub(super) struct Fresh {
    pub url: PgUrl,
    props: DbProps,
}

/// Checks the requirements, reads every database-level property of the target and proves that
/// the fresh database can be given them all (a rehearsal on the target, rolled back), and only
/// then creates the fresh database with the target's owner, encoding, locales and tablespace.
pub(super) async fn prepare(job: &mut Job, target: &PgUrl) -> Result<Fresh, JobEnd> {
    let tools = &job.engine.tools;
    let fail = |m: String| JobEnd::failed(m);
    let rows = query(tools, target, props::QUERY)
        .await
        .map_err(JobEnd::failed)?;
    let json = rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or_default();
    let props = DbProps::parse(&json).map_err(JobEnd::failed)?;
    if !props.may_create {
        return Err(fail(format!(
            "--atomic restores into a new database, and role {} may not create databases: grant it with ALTER ROLE ... CREATEDB, or restore without --atomic",
            target.user().unwrap_or_default()
        )));
    }
    if !props.may_rename {
        return Err(fail(format!(
            "--atomic renames database {} at the end, which only its owner (or a superuser) may do: restore as its owner, or without --atomic",
            target.dbname()
        )));
    }
    // The same statements the swap runs, on the target, in a transaction that is rolled back:
    // a privilege, setting or label this role may not give is refused here, before anything
    // exists.
    let statements = props.apply_statements(&target.dbname());
    if !statements.is_empty() {
        query(tools, target, &props::rehearsal(&statements))
            .await
            .map_err(|e| {
                let why = match &e {
                    PgError::Query { detail, .. } => detail
                        .split_once("pgbackups: cannot run: ")
                        .map(|(_, why)| why.split(" CONTEXT:").next().unwrap_or(why).to_string())
                        .unwrap_or_else(|| e.to_string()),
                    _ => e.to_string(),
                };
                fail(format!(
                    "--atomic must give the new database every property of {db}, and role {role} cannot give this one: {why}. Nothing was created; restore as a role that may (a superuser), or without --atomic",
                    db = target.dbname(),
                    role = target.user().unwrap_or_default()
                ))
            })?;
    }
    let fresh = name_with(&target.dbname(), &format!("_pgbackups_{}", job.rec.id));
    let admin = target.with_dbname("postgres");
    // Recorded first, so that after a crash start-up recovery drops what may exist.
    job.rec.detail = Some(
        Stage::Restoring {
            fresh: fresh.clone(),
        }
        .detail(),
    );
    job.save().await?;
    // A failed CREATE DATABASE leaves nothing behind.
    query(tools, &admin, &props.create_sql(&fresh))
        .await
        .map_err(|e| {
            fail(format!(
                "could not create the fresh database {fresh} with the owner, encoding, locale and tablespace of {}: {e}. Nothing was created; restore without --atomic",
                target.dbname()
            ))
        })?;
    job.log(&format!(
        "Atomic restore: restoring into the fresh database {fresh} (owner, encoding, locale and tablespace of {target_name}; its privileges, settings and comment are given at the swap); it replaces {target_name} only if the restore succeeds",
        target_name = target.dbname()
    ));
    Ok(Fresh {
        url: target.with_dbname(&fresh),
        props,
    })
}

/// After the restore into `fresh`: swap it in on success, drop it on failure.
pub(super) async fn finish(
    job: &mut Job,
    target: &PgUrl,
    fresh: &Fresh,
    swap: AtomicSwap,
    restored: Result<(), JobEnd>,
) -> Result<(), JobEnd> {
    let tools = job.engine.tools.clone();
    let admin = target.with_dbname("postgres");
    let properties: String = fresh
        .props
        .apply_statements(&fresh.url.dbname())
        .iter()
        .map(|s| format!("{s};\n"))
        .collect();
    let fresh = &fresh.url;
    let drop_fresh = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&fresh.dbname())
    );
    if let Err(e) = restored {
        // The fresh database took the damage; the target was never touched.
        job.target_touched = false;
        match query(&tools, &admin, &drop_fresh).await {
            Ok(_) => job.log(&format!("Dropped the fresh database {}", fresh.dbname())),
            Err(d) => job.log(&format!(
                "Could not drop the fresh database {}: {d}; drop it yourself",
                fresh.dbname()
            )),
        }
        return Err(e);
    }
    // Everything so far happened in the fresh database.
    job.target_touched = false;
    let busy = query(
        &tools,
        &admin,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
            quote_literal(&target.dbname())
        ),
    )
    .await;
    let busy = match busy {
        Ok(b) => b,
        Err(e) => {
            let _ = query(&tools, &admin, &drop_fresh).await;
            return Err(JobEnd::failed(e));
        }
    };
    let connections = busy
        .first()
        .and_then(|r| r.first())
        .map(String::as_str)
        .unwrap_or("0")
        .to_string();
    if connections != "0" {
        job.target_touched = false;
        // Left for the user to swap by hand, so it gets the target's properties now.
        if let Err(e) = run_script(&tools, &admin, &properties).await {
            job.log(&format!(
                "Could not give {} the privileges, settings and comment of {}: {e}",
                fresh.dbname(),
                target.dbname()
            ));
        }
        return Err(JobEnd::failed(format!(
            "the restore succeeded into database {fresh_name}, but {target_name} has {connections} open connection(s) and a database in use cannot be renamed. {target_name} is unchanged; close its connections and swap them yourself (ALTER DATABASE {target_name} RENAME TO ...; ALTER DATABASE {fresh_name} RENAME TO {target_name}), or drop {fresh_name}",
            fresh_name = fresh.dbname(),
            target_name = target.dbname()
        )));
    }
    let old = name_with(
        &target.dbname(),
        &format!(
            "_old_{}_{}",
            Timestamp::now().strftime("%Y%m%d%H%M%S"),
            job.rec.id
        ),
    );
    super::hold::at(&job.ctx, "atomic-restored").await;
    if job.ctx.is_cancelled() {
        let _ = query(&tools, &admin, &drop_fresh).await;
        return Err(JobEnd::Stopped);
    }
    job.rec.detail = Some(
        Stage::Swapping {
            fresh: fresh.dbname(),
            old: old.clone(),
        }
        .detail(),
    );
    job.save().await?;
    super::hold::at(&job.ctx, "atomic-swapping").await;
    run_script(
        &tools,
        &admin,
        &format!(
            "{properties}ALTER DATABASE {} RENAME TO {};\nALTER DATABASE {} RENAME TO {};\n",
            quote_ident(&target.dbname()),
            quote_ident(&old),
            quote_ident(&fresh.dbname()),
            quote_ident(&target.dbname())
        ),
    )
    .await
    .map_err(|e| {
        JobEnd::failed(format!(
            "the restore succeeded into {}, but the swap failed ({e}); {} is unchanged",
            fresh.dbname(),
            target.dbname()
        ))
    })?;
    job.rec.detail = Some(format!(
        "atomic restore: swapped in; the previous contents were in {old}"
    ));
    job.log(&format!(
        "Swapped: {} now holds the restored data; its previous contents are in {old}",
        target.dbname()
    ));
    super::hold::at(&job.ctx, "atomic-swapped").await;
    if swap.drop_old {
        let drop_old = format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&old));
        match query(&tools, &admin, &drop_old).await {
            Ok(_) => job.log(&format!("Dropped {old} (--drop-old)")),
            Err(e) => job.log(&format!("Could not drop {old}: {e}; drop it yourself")),
        }
    }
    Ok(())
}

/// Start-up recovery of an atomic restore that was running when the service stopped: finds
/// out on the server what the recorded `stage` left, drops the fresh database when the target
/// was not changed, and returns what is true, for the transfer's error, and whether the swap
/// is known to have committed.
pub(super) async fn recover(
    engine: &super::Engine,
    t: &crate::catalog::TransferRecord,
    stage: &Stage,
) -> (String, bool) {
    let outcome = recover_stage(engine, t, stage).await;
    let swapped = outcome.starts_with(SWAP_DONE);
    (outcome, swapped)
}

const SWAP_DONE: &str = "The swap had been done before the service stopped";

async fn recover_stage(
    engine: &super::Engine,
    t: &crate::catalog::TransferRecord,
    stage: &Stage,
) -> String {
    let (fresh, old) = match stage {
        Stage::Restoring { fresh } => (fresh, None),
        Stage::Swapping { fresh, old } => (fresh, Some(old)),
    };
    let server = &t.database;
    let by_hand = |why: String| match old {
        None => format!(
            "The target database was not changed; its partial copy {fresh} may remain on {server} ({why}): drop it (DROP DATABASE {})",
            quote_ident(fresh)
        ),
        Some(old) => format!(
            "It was stopped during its swap and {server} could not be checked ({why}): if database {fresh} exists there, the target was not changed (drop {fresh}); if not, the swap was done: the target holds the restored backup and its previous contents are in {old}"
        ),
    };
    // A URL target is recorded without its password, so only a registered name can be reached.
    let url = if server.starts_with("postgres://") || server.starts_with("postgresql://") {
        return by_hand("its password is not stored".into());
    } else {
        let (registry, reference) = (engine.registry.clone(), server.clone());
        match super::blocking(move || Ok(registry.resolve(Some(&reference))?)).await {
            Ok((_, url)) => url,
            Err(e) => return by_hand(e.to_string()),
        }
    };
    let admin = url.with_dbname("postgres");
    let exists = |name: &str| {
        let sql = format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(name)
        );
        let tools = engine.tools.clone();
        let admin = admin.clone();
        async move {
            query(&tools, &admin, &sql).await.map(|rows| {
                rows.first()
                    .and_then(|r| r.first())
                    .is_some_and(|n| n != "0")
            })
        }
    };
    let fresh_exists = match exists(fresh).await {
        Ok(e) => e,
        Err(e) => return by_hand(e.to_string()),
    };
    if fresh_exists {
        // Both renames are one transaction: the fresh database still under its own name means
        // the swap never committed.
        let what = if old.is_some() { "restored" } else { "partial" };
        return match super::verify::drop_scratch(&engine.tools, &admin, fresh).await {
            Ok(()) => {
                format!("The target database was not changed; the {what} copy {fresh} was dropped")
            }
            Err(e) => format!(
                "The target database was not changed; the {what} copy {fresh} could not be dropped ({e}): drop it (DROP DATABASE {})",
                quote_ident(fresh)
            ),
        };
    }
    let Some(old) = old else {
        return "The target database was not changed".to_string();
    };
    match exists(old).await {
        Ok(true) => format!(
            "{SWAP_DONE}: {} holds the restored backup, and its previous contents are in {old}",
            url.dbname()
        ),
        Ok(false) => format!(
            "{SWAP_DONE}: {} holds the restored backup; its previous contents ({old}) are gone (--drop-old drops them)",
            url.dbname()
        ),
        Err(e) => format!(
            "{SWAP_DONE}: {} holds the restored backup; whether its previous contents remain in {old} could not be checked ({e})",
            url.dbname()
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_fit_in_63_bytes() {
        let long = "é".repeat(40);
        let n = super::name_with(&long, "_pgbackups_r001");
        assert!(n.len() <= 63 && n.ends_with("_pgbackups_r001"));
        assert_eq!(super::name_with("app", "_old_1"), "app_old_1");
    }
}
