//! Atomic restore (`--atomic`, beyond Heroku): restore into a fresh database on the target's
//! server, and only when that succeeded swap it in under the target's name — both renames in
//! one transaction. A failed or cancelled restore leaves the target exactly as it was; the
//! previous contents are kept under a dated name until the user drops them (`--drop-old` drops
//! them at once).
//!
//! Requirements, checked before anything is created: the role may create databases
//! (CREATEDB or superuser) and owns the target (or is a superuser), since renaming needs it;
//! at the swap, nobody else may be connected to the target (PostgreSQL refuses to rename a
//! database in use).

use jiff::Timestamp;

use super::{Job, JobEnd};
use crate::pg::PgUrl;
use crate::pg::client::{query, quote_ident, quote_literal, run_script};

/// What an atomic restore does after its swap.
#[derive(Clone, Copy, Debug)]
pub struct AtomicSwap {
    /// Drop the previous contents right after the swap.
    pub drop_old: bool,
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

/// Checks the requirements and creates the fresh database; returns its URL.
pub(super) async fn prepare(job: &mut Job, target: &PgUrl) -> Result<PgUrl, JobEnd> {
    let tools = &job.engine.tools;
    let fail = |m: String| JobEnd::failed(m);
    let rows = query(
        tools,
        target,
        "SELECT r.rolsuper OR r.rolcreatedb, r.rolsuper OR pg_has_role(r.oid, d.datdba, 'MEMBER'), \
                pg_encoding_to_char(d.encoding), d.datcollate, d.datctype \
         FROM pg_roles r, pg_database d \
         WHERE r.rolname = current_user AND d.datname = current_database()",
    )
    .await
    .map_err(JobEnd::failed)?;
    let row = rows.first().cloned().unwrap_or_default();
    let field = |i: usize| row.get(i).cloned().unwrap_or_default();
    if field(0) != "t" {
        return Err(fail(format!(
            "--atomic restores into a new database, and role {} may not create databases: grant it with ALTER ROLE ... CREATEDB, or restore without --atomic",
            target.user().unwrap_or_default()
        )));
    }
    if field(1) != "t" {
        return Err(fail(format!(
            "--atomic renames database {} at the end, which only its owner (or a superuser) may do: restore as its owner, or without --atomic",
            target.dbname()
        )));
    }
    let fresh = name_with(&target.dbname(), &format!("_pgbackups_{}", job.rec.id));
    let admin = target.with_dbname("postgres");
    query(
        tools,
        &admin,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(&fresh),
            quote_literal(&field(2)),
            quote_literal(&field(3)),
            quote_literal(&field(4))
        ),
    )
    .await
    .map_err(|e| fail(format!("could not create the fresh database {fresh}: {e}")))?;
    job.log(&format!(
        "Atomic restore: restoring into the fresh database {fresh}; it replaces {} only if the restore succeeds",
        target.dbname()
    ));
    Ok(target.with_dbname(&fresh))
}

/// After the restore into `fresh`: swap it in on success, drop it on failure.
pub(super) async fn finish(
    job: &mut Job,
    target: &PgUrl,
    fresh: &PgUrl,
    swap: AtomicSwap,
    restored: Result<(), JobEnd>,
) -> Result<(), JobEnd> {
    let tools = job.engine.tools.clone();
    let admin = target.with_dbname("postgres");
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
    run_script(
        &tools,
        &admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {};\nALTER DATABASE {} RENAME TO {};\n",
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
    job.log(&format!(
        "Swapped: {} now holds the restored data; its previous contents are in {old}",
        target.dbname()
    ));
    if swap.drop_old {
        let drop_old = format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&old));
        match query(&tools, &admin, &drop_old).await {
            Ok(_) => job.log(&format!("Dropped {old} (--drop-old)")),
            Err(e) => job.log(&format!("Could not drop {old}: {e}; drop it yourself")),
        }
    }
    Ok(())
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
