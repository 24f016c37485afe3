//! `catalog:migrate`: everything one catalog holds, copied into another that is empty (a
//! one-node SQLite catalog into the PostgreSQL catalog that several nodes will share), through
//! the [`Catalog`] trait alone, so it works between any two backends.
//!
//! Copied: databases (their URLs still sealed with the data directory's key), protections,
//! schedules and their claimed runs (so that no run is started again), retention policies,
//! transfers with their layout, pin and whole log, the ID counters, users, personal tokens
//! and the audit log. Not copied: browser sessions (users log in again). The copy is not one
//! transaction: after a failure, empty the target (drop and create its database) and run it
//! again; the source is only read.

use super::{Catalog, CatalogError};

/// How much was copied, for the command's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub databases: usize,
    pub transfers: usize,
    pub log_lines: usize,
    pub users: usize,
    pub tokens: usize,
    pub audit_lines: usize,
}

/// Copies everything `from` holds into `to`, which must hold nothing yet
/// ([`CatalogError::NotEmpty`] otherwise).
pub fn copy_catalog(from: &dyn Catalog, to: &dyn Catalog) -> Result<Copied, CatalogError> {
    refuse_unless_empty(to)?;
    let mut copied = Copied::default();
    for d in from.list_databases()? {
        let sealed = from
            .database_url_sealed(&d.name)?
            .ok_or_else(|| CatalogError::NotRegistered(d.name.clone()))?;
        to.add_database(&d.name, &sealed, &d.url, d.created_at)?;
        if let Some(p) = from.retention(&d.name)? {
            to.set_retention(&d.name, &p)?;
        }
        copied.databases += 1;
    }
    for p in from.protections()? {
        to.set_protection(&p)?;
    }
    for s in from.schedules()? {
        to.set_schedule(&s)?;
    }
    let runs = from.scheduled_runs()?;
    let claims: Vec<_> = runs
        .iter()
        .map(|(db, date, due, _)| (db.clone(), date.clone(), *due))
        .collect();
    if let Some((_, _, first_due, _)) = runs.first() {
        to.claim_runs(&claims, *first_due)?;
    }
    let started: Vec<_> = runs
        .into_iter()
        .filter_map(|(db, date, _, id)| id.map(|id| (db, date, id)))
        .collect();
    to.set_run_transfers(&started)?;
    for t in from.transfers(None)? {
        to.save_transfer(&t)?;
        if let Some(layout) = from.layout(t.id)? {
            to.set_layout(t.id, &layout)?;
        }
        if t.pinned {
            to.set_pinned(t.id, true)?;
        }
        let lines: Vec<_> = from
            .logs(t.id, 0)?
            .into_iter()
            .map(|l| (l.at, l.line))
            .collect();
        for batch in lines.chunks(1000) {
            to.append_logs(t.id, batch)?;
        }
        copied.log_lines += lines.len();
        copied.transfers += 1;
    }
    for id in from.id_counters()? {
        to.bump_id_counter(id)?;
    }
    for u in from.users()? {
        to.add_user(&u)?;
        copied.users += 1;
    }
    for t in from.tokens(None)? {
        to.add_token(&t)?;
        copied.tokens += 1;
    }
    // Oldest first, so that the lines keep their order (their numbers are the target's).
    let mut audit = Vec::new();
    let mut before = None;
    loop {
        let page = from.audit(1000, before)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        audit.extend(page);
    }
    for line in audit.iter().rev() {
        to.append_audit(line)?;
    }
    copied.audit_lines = audit.len();
    Ok(copied)
}

/// Refuses a target that holds any record the copy would add to.
fn refuse_unless_empty(to: &dyn Catalog) -> Result<(), CatalogError> {
    let held = [
        ("registered databases", !to.list_databases()?.is_empty()),
        ("transfers", !to.transfers(None)?.is_empty()),
        ("users", !to.users()?.is_empty()),
        ("audit lines", !to.audit(1, None)?.is_empty()),
        ("transfer IDs", !to.id_counters()?.is_empty()),
    ];
    match held.iter().find(|(_, any)| *any) {
        Some((what, _)) => Err(CatalogError::NotEmpty(what.to_string())),
        None => Ok(()),
    }
}
