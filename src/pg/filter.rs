//! Partial dumps: which schemas and tables a capture or copy takes, as pg_dump's own
//! `--schema`, `--exclude-schema`, `--table` and `--exclude-table-data` options.

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

    fn groups(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("--schema", &self.schema),
            ("--exclude-schema", &self.exclude_schema),
            ("--table", &self.table),
            ("--exclude-table-data", &self.exclude_table_data),
        ]
    }
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
}
