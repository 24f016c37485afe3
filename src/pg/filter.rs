//! Partial dumps: which schemas and tables a capture or copy takes, as pg_dump's own
//! `--schema`, `--exclude-schema`, `--table` and `--exclude-table-data` options.

use super::client::quote_literal;
use serde::{Deserialize, Serialize};

/// The pg_dump selection options of a partial capture or copy. Patterns are pg_dump's (`*`
/// and `?` wildcards, `schema.table`, quoting as in psql).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_schema: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_table_data: Vec<String>,
}

/// A pattern pg_dump would misread or that cannot be passed to it.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a usable pattern for {1}: it must be non-empty, one line, without NUL")]
pub struct FilterError(pub String, pub &'static str);

impl DumpFilter {
    /// Whether the dump is partial.
    pub fn is_empty(&self) -> bool {
        self.schema.is_empty()
            && self.exclude_schema.is_empty()
            && self.table.is_empty()
            && self.exclude_table_data.is_empty()
    }

    /// Checks every pattern.
    pub fn validate(&self) -> Result<(), FilterError> {
        for (option, patterns) in self.groups() {
            for p in patterns {
                if p.trim().is_empty() || p.contains(['\0', '\n', '\r']) {
                    return Err(FilterError(p.clone(), option));
                }
            }
        }
        Ok(())
    }

    /// The options for pg_dump, each as one argument (`--schema=PATTERN`), so that a pattern
    /// is never read as another option.
    pub fn args(&self) -> Vec<String> {
        self.groups()
            .into_iter()
            .flat_map(|(option, patterns)| patterns.iter().map(move |p| format!("{option}={p}")))
            .collect()
    }

    /// Splits every `--exclude-table-data` value on `;`, as Heroku's `pg:pull` and `pg:copy`
    /// do (`--exclude-table-data 'logs;items'`), trimming blanks and dropping empty parts, so
    /// that the flag may also be repeated.
    pub fn split_exclusions(mut self) -> DumpFilter {
        self.exclude_table_data = self
            .exclude_table_data
            .iter()
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        self
    }

    /// A query that answers, one row each, the positions in `exclude_table_data` of the
    /// patterns that match no table of the database it runs in (None when there are none to
    /// check). pg_dump has
    /// `--strict-names` for `--table` and `--schema` but not for this option: a misspelt
    /// pattern would silently copy the rows the user meant to leave out. The patterns are
    /// matched as pg_dump matches them (its `expand_table_name_patterns`: the same relation
    /// kinds, the session's search path for an unqualified name).
    pub fn unmatched_exclusions_query(&self) -> Option<String> {
        if self.exclude_table_data.is_empty() {
            return None;
        }
        let rows: Vec<String> = self
            .exclude_table_data
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (schema, name) = pattern_regexes(p);
                format!(
                    "({i}, {}::text, {}::text)",
                    schema
                        .map(|s| quote_literal(&s))
                        .unwrap_or_else(|| "NULL".into()),
                    quote_literal(&name)
                )
            })
            .collect();
        Some(format!(
            "SELECT p.i FROM (VALUES {}) AS p(i, nsp, rel) WHERE NOT EXISTS (\
             SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r', 'S', 'v', 'm', 'f', 'p']) \
             AND c.relname OPERATOR(pg_catalog.~) ('^(' || p.rel || ')$') COLLATE pg_catalog.default \
             AND CASE WHEN p.nsp IS NULL THEN pg_catalog.pg_table_is_visible(c.oid) \
             ELSE n.nspname OPERATOR(pg_catalog.~) ('^(' || p.nsp || ')$') COLLATE pg_catalog.default END) ORDER BY p.i",
            rows.join(", ")
        ))
    }

    fn groups(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("--schema", &self.schema),
            ("--exclude-schema", &self.exclude_schema),
            ("--table", &self.table),
            ("--exclude-table-data", &self.exclude_table_data),
        ]
    }
}

/// The schema and name regular expressions of a pg_dump pattern, as psql's
/// `patternToSQLRegex` builds them: outside double quotes letters fold to lower case, `*` is
/// `.*`, `?` is `.`, and a dot separates the parts; inside them every character is literal;
/// `$` is always literal. With a database part (`db.schema.table`) the database is pg_dump's
/// own check; only the last two parts are kept. An empty name matches every name.
fn pattern_regexes(pattern: &str) -> (Option<String>, String) {
    let mut parts = vec![String::new()];
    let mut in_quotes = false;
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        let cur = parts.last_mut().expect("parts is never empty");
        match ch {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => in_quotes = !in_quotes,
            c if !in_quotes && c.is_ascii_uppercase() => cur.push(c.to_ascii_lowercase()),
            '*' if !in_quotes => cur.push_str(".*"),
            '?' if !in_quotes => cur.push('.'),
            '.' if !in_quotes => parts.push(String::new()),
            '$' => cur.push_str("\\$"),
            c => {
                // psql leaves regexp characters outside quotes to the user, except `[]` (an
                // array type's name far more often than a bracket expression).
                let special = in_quotes && "|*+?()[]{}.^\\".contains(c);
                if special || (c == '[' && chars.peek() == Some(&']')) {
                    cur.push('\\');
                }
                cur.push(c);
            }
        }
    }
    let name = parts.pop().unwrap_or_default();
    let name = if name.is_empty() { ".*".into() } else { name };
    let schema = parts
        .pop()
        .map(|s| if s.is_empty() { ".*".into() } else { s });
    (schema, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_one_argument_per_pattern_and_refuses_bad_ones() {
        let f = DumpFilter {
            schema: vec!["sales".into()],
            exclude_table_data: vec!["public.log*".into(), "-x".into()],
            ..Default::default()
        };
        assert!(!f.is_empty());
        assert!(f.validate().is_ok());
        assert_eq!(
            f.args(),
            [
                "--schema=sales",
                "--exclude-table-data=public.log*",
                "--exclude-table-data=-x"
            ]
        );
        let bad = DumpFilter {
            table: vec!["a\nb".into()],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--table"));
        assert!(DumpFilter::default().is_empty());
    }

    #[test]
    fn exclusions_split_on_semicolons_as_heroku_does() {
        // Heroku: `--exclude-table-data 'logs;items'` leaves out the rows of both tables.
        let f = DumpFilter {
            exclude_table_data: vec![" logs; items ;;".into(), "sales.big*".into()],
            ..Default::default()
        }
        .split_exclusions();
        assert_eq!(f.exclude_table_data, ["logs", "items", "sales.big*"]);
        assert!(
            DumpFilter {
                exclude_table_data: vec![" ; ".into()],
                ..Default::default()
            }
            .split_exclusions()
            .is_empty()
        );
    }

    #[test]
    fn patterns_become_the_regexes_pg_dump_matches() {
        assert_eq!(pattern_regexes("Logs"), (None, "logs".into()));
        assert_eq!(
            pattern_regexes("sales.log*"),
            (Some("sales".into()), "log.*".into())
        );
        assert_eq!(
            pattern_regexes("\"My.Table\"?"),
            (None, "My\\.Table.".into())
        );
        assert_eq!(pattern_regexes("a$b"), (None, "a\\$b".into()));
        assert_eq!(pattern_regexes("s."), (Some("s".into()), ".*".into()));
        assert_eq!(pattern_regexes("db.s.t"), (Some("s".into()), "t".into()));
        assert_eq!(pattern_regexes("\"a\"\"b\""), (None, "a\"b".into()));
        let q = DumpFilter {
            exclude_table_data: vec!["it's".into()],
            ..Default::default()
        }
        .unmatched_exclusions_query()
        .unwrap();
        assert!(q.contains("(0, NULL::text, 'it''s'::text)"), "{q}");
        assert!(DumpFilter::default().unmatched_exclusions_query().is_none());
    }
}
