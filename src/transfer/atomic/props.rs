//! The database-level properties an atomic restore carries from the database it replaces to
//! the fresh one, so that the swap changes the contents and nothing else: owner, encoding,
//! locale provider and locales, tablespace (given at `CREATE DATABASE`), and connection limit,
//! connection and template flags, privileges, comment, security labels, `ALTER DATABASE … SET`
//! and `ALTER ROLE … IN DATABASE … SET` settings (given at the swap, in the rename's
//! transaction, so that none of them — a connection limit, a revoked CONNECT, a
//! `default_transaction_read_only` — stands in the way of the restore itself).
//!
//! The collation version is not copied: the fresh database's is the one its indexes were
//! built with, which is what PostgreSQL records it for.

use serde::Deserialize;
use serde_json::Value;

use crate::pg::client::{quote_ident, quote_literal};

/// What the server answers about the target, read in one query as JSON (a comment may hold
/// tabs and newlines, which psql's unaligned rows cannot carry).
#[derive(Debug, Deserialize)]
pub(super) struct DbProps {
    /// The whole `pg_database` row (without `datacl`): its columns differ between major
    /// versions (`datlocprovider` from 15, `daticurules` from 16, `datlocale` from 17).
    db: serde_json::Map<String, Value>,
    owner: String,
    encoding: String,
    tablespace: String,
    template_tablespace: Option<String>,
    /// `None`: the default privileges (`datacl` is null).
    acl: Option<Vec<AclEntry>>,
    comment: Option<String>,
    settings: Vec<Setting>,
    labels: Vec<Label>,
    /// Whether the role may create databases.
    pub may_create: bool,
    /// Whether the role may rename the target (its owner, a member of it, or a superuser).
    pub may_rename: bool,
}

#[derive(Debug, Deserialize)]
struct AclEntry {
    grantor: String,
    grantee: String,
    privilege: String,
    grantable: bool,
}

#[derive(Debug, Deserialize)]
struct Setting {
    /// `None`: a setting of the database (`ALTER DATABASE … SET`).
    role: Option<String>,
    config: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Label {
    provider: String,
    label: String,
}

/// The query that reads [`DbProps`] of the database it runs in, for the current role.
pub(super) const QUERY: &str = r#"
SELECT json_build_object(
  'db', to_jsonb(d) - 'datacl',
  'owner', d.datdba::regrole::text,
  'encoding', pg_encoding_to_char(d.encoding),
  'tablespace', t.spcname,
  'template_tablespace', (SELECT tt.spcname FROM pg_database t0
                          JOIN pg_tablespace tt ON tt.oid = t0.dattablespace
                          WHERE t0.datname = 'template0'),
  'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE coalesce((SELECT json_agg(json_build_object(
        'grantor', a.grantor::regrole::text,
        'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
        'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY a.n)
      FROM aclexplode(d.datacl) WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n)),
      '[]') END,
  'comment', shobj_description(d.oid, 'pg_database'),
  'settings', coalesce((SELECT json_agg(json_build_object(
        'role', CASE WHEN s.setrole = 0 THEN NULL ELSE s.setrole::regrole::text END,
        'config', s.setconfig) ORDER BY s.setrole)
      FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '[]'),
  'labels', coalesce((SELECT json_agg(json_build_object('provider', l.provider, 'label', l.label))
      FROM pg_shseclabel l WHERE l.objoid = d.oid AND l.classoid = 'pg_database'::regclass), '[]'),
  'may_create', r.rolsuper OR r.rolcreatedb,
  'may_rename', r.rolsuper OR pg_has_role(r.oid, d.datdba, 'MEMBER')
)
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace, pg_roles r
WHERE d.datname = current_database() AND r.rolname = current_user
"#;

/// Settings whose value is a list of quoted items: each item is given as its own literal, as
/// pg_dump does (`variable_is_guc_list_quote`), so that the stored value is the same again.
const LIST_QUOTE: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// The server's answer to [`QUERY`] was not what it should be.
#[derive(Debug, thiserror::Error)]
#[error("unexpected answer about the database: {0}")]
pub struct BadProps(#[source] serde_json::Error);

impl DbProps {
    /// Parses the answer to [`QUERY`].
    pub fn parse(json: &str) -> Result<DbProps, BadProps> {
        serde_json::from_str(json).map_err(BadProps)
    }

    fn text(&self, column: &str) -> Option<&str> {
        self.db
            .get(column)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `CREATE DATABASE` for the fresh database, with everything that can only be given there.
    pub fn create_sql(&self, fresh: &str) -> String {
        let mut sql = format!(
            "CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {}",
            quote_ident(fresh),
            self.owner,
            quote_literal(&self.encoding)
        );
        // PostgreSQL 15 and later: 'c' libc, 'i' ICU, 'b' builtin (17).
        let locale = self.text("daticulocale").or(self.text("datlocale"));
        match self.text("datlocprovider") {
            Some("i") => {
                sql.push_str(" LOCALE_PROVIDER icu");
                if let Some(l) = locale {
                    sql.push_str(&format!(" ICU_LOCALE {}", quote_literal(l)));
                }
                if let Some(rules) = self.text("daticurules") {
                    sql.push_str(&format!(" ICU_RULES {}", quote_literal(rules)));
                }
            }
            Some("b") => {
                sql.push_str(" LOCALE_PROVIDER builtin");
                if let Some(l) = locale {
                    sql.push_str(&format!(" BUILTIN_LOCALE {}", quote_literal(l)));
                }
            }
            Some(_) => sql.push_str(" LOCALE_PROVIDER libc"),
            None => {}
        }
        for (option, column) in [("LC_COLLATE", "datcollate"), ("LC_CTYPE", "datctype")] {
            if let Some(v) = self.text(column) {
                sql.push_str(&format!(" {option} {}", quote_literal(v)));
            }
        }
        // Naming pg_default needs CREATE on it, which only superusers have: give a tablespace
        // only when it differs from the one the database would get anyway.
        if self.template_tablespace.as_deref() != Some(self.tablespace.as_str()) {
            sql.push_str(&format!(" TABLESPACE {}", quote_ident(&self.tablespace)));
        }
        sql
    }

    /// The statements that give database `db` every other property: run at the swap, and
    /// rehearsed beforehand on the target itself (in a transaction rolled back).
    pub fn apply_statements(&self, db: &str) -> Vec<String> {
        let on = format!("DATABASE {}", quote_ident(db));
        let mut sql = Vec::new();
        let limit = self.db.get("datconnlimit").and_then(Value::as_i64);
        if let Some(n) = limit.filter(|n| *n != -1) {
            sql.push(format!("ALTER {on} WITH CONNECTION LIMIT {n}"));
        }
        if self.db.get("datallowconn").and_then(Value::as_bool) == Some(false) {
            sql.push(format!("ALTER {on} WITH ALLOW_CONNECTIONS false"));
        }
        if self.db.get("datistemplate").and_then(Value::as_bool) == Some(true) {
            sql.push(format!("ALTER {on} WITH IS_TEMPLATE true"));
        }
        if let Some(acl) = &self.acl {
            sql.extend(self.acl_statements(&on, acl));
        }
        if let Some(c) = &self.comment {
            sql.push(format!("COMMENT ON {on} IS {}", quote_literal(c)));
        }
        for l in &self.labels {
            sql.push(format!(
                "SECURITY LABEL FOR {} ON {on} IS {}",
                quote_ident(&l.provider),
                quote_literal(&l.label)
            ));
        }
        for s in &self.settings {
            let alter = match &s.role {
                None => format!("ALTER {on}"),
                Some(role) => format!("ALTER ROLE {role} IN {on}"),
            };
            for item in &s.config {
                let Some((name, value)) = item.split_once('=') else {
                    continue;
                };
                sql.push(format!(
                    "{alter} SET {} = {}",
                    quote_ident(name),
                    setting_value(name, value)
                ));
            }
        }
        sql
    }

    /// Privileges exactly as they are: everything revoked, then each grantor's grants in the
    /// order of the ACL (a grantor other than the owner grants as itself, as pg_dump does).
    fn acl_statements(&self, on: &str, acl: &[AclEntry]) -> Vec<String> {
        let mut sql = vec![
            format!("REVOKE ALL ON {on} FROM PUBLIC"),
            format!("REVOKE ALL ON {on} FROM {}", self.owner),
        ];
        let mut groups: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = Vec::new();
        for e in acl {
            let at = match groups
                .iter()
                .position(|g| g.0 == e.grantor && g.1 == e.grantee)
            {
                Some(i) => i,
                None => {
                    groups.push((&e.grantor, &e.grantee, Vec::new(), Vec::new()));
                    groups.len() - 1
                }
            };
            let g = &mut groups[at];
            if e.grantable {
                g.3.push(&e.privilege);
            } else {
                g.2.push(&e.privilege);
            }
        }
        for (grantor, grantee, plain, grantable) in groups {
            let as_other = grantor != self.owner;
            if as_other {
                sql.push(format!("SET ROLE {grantor}"));
            }
            if !plain.is_empty() {
                sql.push(format!("GRANT {} ON {on} TO {grantee}", plain.join(", ")));
            }
            if !grantable.is_empty() {
                sql.push(format!(
                    "GRANT {} ON {on} TO {grantee} WITH GRANT OPTION",
                    grantable.join(", ")
                ));
            }
            if as_other {
                sql.push("RESET ROLE".into());
            }
        }
        sql
    }
}

/// A rehearsal of `statements`: each run in turn in one transaction that is rolled back, the
/// first refused one named in the error (`pgbackups: cannot run: STATEMENT: REASON`).
pub(super) fn rehearsal(statements: &[String]) -> String {
    let list = statements
        .iter()
        .map(|s| quote_literal(s))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "BEGIN; DO $pgbackups$ DECLARE s text; BEGIN FOREACH s IN ARRAY ARRAY[{list}]::text[] LOOP \
         BEGIN EXECUTE s; EXCEPTION WHEN OTHERS THEN \
         RAISE EXCEPTION 'pgbackups: cannot run: %: %', s, SQLERRM; END; END LOOP; END $pgbackups$; ROLLBACK;"
    )
}

/// The SQL for a stored setting's value.
fn setting_value(name: &str, value: &str) -> String {
    if !LIST_QUOTE.contains(&name.to_ascii_lowercase().as_str()) {
        return quote_literal(value);
    }
    let items = split_guc_list(value);
    if items.is_empty() {
        return "''".into();
    }
    items
        .iter()
        .map(|i| quote_literal(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits a stored list setting (`"$user", public, "a ""b"""`) into its items, as
/// PostgreSQL's `SplitGUCList` does: double-quoted items keep their case and commas, `""`
/// inside quotes is one quote.
fn split_guc_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.next_if_eq(&'"').is_some() {
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item = item.trim_end().to_string();
        }
        items.push(item);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&',').is_none() {
            break;
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_list_settings_as_postgres_stores_them() {
        assert_eq!(
            split_guc_list(r#""$user", public, "Odd, ""Name""""#),
            vec!["$user", "public", r#"Odd, "Name""#]
        );
        assert!(split_guc_list("").is_empty());
        assert_eq!(setting_value("search_path", "a, b"), "'a', 'b'");
        assert_eq!(setting_value("work_mem", "8MB"), "'8MB'");
    }

    #[test]
    fn reproduces_the_acl_in_order_with_grant_options() {
        let props = DbProps::parse(
            r#"{"db": {"datconnlimit": 7, "datlocprovider": "i", "daticulocale": "sv-SE",
                       "datcollate": "C.UTF-8", "datctype": "C.UTF-8"},
                "owner": "app_owner", "encoding": "UTF8", "tablespace": "pg_default",
                "template_tablespace": "pg_default",
                "acl": [{"grantor": "app_owner", "grantee": "app_owner", "privilege": "CONNECT", "grantable": false},
                        {"grantor": "app_owner", "grantee": "reader", "privilege": "TEMPORARY", "grantable": true},
                        {"grantor": "app_owner", "grantee": "reader", "privilege": "CONNECT", "grantable": false},
                        {"grantor": "reader", "grantee": "other", "privilege": "TEMPORARY", "grantable": false}],
                "comment": null, "settings": [], "labels": [], "may_create": true, "may_rename": true}"#,
        )
        .unwrap();
        assert_eq!(
            props.create_sql("t_new"),
            "CREATE DATABASE \"t_new\" TEMPLATE template0 OWNER app_owner ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
        );
        let sql = props.apply_statements("t_new").join(";\n") + ";\n";
        assert_eq!(
            sql,
            "ALTER DATABASE \"t_new\" WITH CONNECTION LIMIT 7;\n\
             REVOKE ALL ON DATABASE \"t_new\" FROM PUBLIC;\n\
             REVOKE ALL ON DATABASE \"t_new\" FROM app_owner;\n\
             GRANT CONNECT ON DATABASE \"t_new\" TO app_owner;\n\
             GRANT CONNECT ON DATABASE \"t_new\" TO reader;\n\
             GRANT TEMPORARY ON DATABASE \"t_new\" TO reader WITH GRANT OPTION;\n\
             SET ROLE reader;\n\
             GRANT TEMPORARY ON DATABASE \"t_new\" TO other;\n\
             RESET ROLE;\n"
        );
    }
}
