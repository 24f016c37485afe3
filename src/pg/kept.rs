//! What the drop before a restore kept: objects outside schemas that the restoring role may
//! not drop (only a superuser or their owner may), so that the transfer log can name them.

use super::PgTools;
use super::PgUrl;
use super::client::{PgError, query};

/// Objects outside schemas, not part of an extension, that a restore's drop removes when it
/// may: one row each, `kind name`.
const KEPT: &str = r#"
SELECT o.kind || ' ' || o.name FROM (
  SELECT 'event trigger' AS kind, quote_ident(evtname) AS name, oid, 'pg_event_trigger'::regclass AS cls
    FROM pg_event_trigger
  UNION ALL SELECT 'subscription', quote_ident(subname), oid, 'pg_subscription'::regclass
    FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT 'cast', format('(%s AS %s)', format_type(castsource, NULL), format_type(casttarget, NULL)),
                   oid, 'pg_cast'::regclass FROM pg_cast WHERE oid >= 16384
  UNION ALL SELECT 'transform', format('FOR %s LANGUAGE %s', format_type(trftype, NULL),
                   (SELECT quote_ident(lanname) FROM pg_language WHERE oid = trflang)),
                   oid, 'pg_transform'::regclass FROM pg_transform WHERE oid >= 16384
  UNION ALL SELECT 'server', quote_ident(srvname), oid, 'pg_foreign_server'::regclass FROM pg_foreign_server
  UNION ALL SELECT 'foreign-data wrapper', quote_ident(fdwname), oid, 'pg_foreign_data_wrapper'::regclass
    FROM pg_foreign_data_wrapper
  UNION ALL SELECT 'access method', quote_ident(amname), oid, 'pg_am'::regclass FROM pg_am WHERE oid >= 16384
  UNION ALL SELECT 'language', quote_ident(lanname), oid, 'pg_language'::regclass
    FROM pg_language WHERE oid >= 16384
) o
WHERE NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype = 'e')
ORDER BY 1
"#;

/// The objects a restore's drop kept in the database at `url` (see [`KEPT`]).
pub async fn kept_objects(tools: &PgTools, url: &PgUrl) -> Result<Vec<String>, PgError> {
    let rows = query(tools, url, KEPT).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// The transfer log's line about what was kept, if anything was.
pub fn kept_line(kept: &[String]) -> Option<String> {
    (!kept.is_empty()).then(|| {
        format!(
            "Kept, as this role may not drop them (only a superuser or their owner may): {}. A backup that holds them too reports them as already existing",
            kept.join(", ")
        )
    })
}
