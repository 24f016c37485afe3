//! pg_restore's errors (in `pg/` so that both the service's restores and the CLI's local
//! `pull` read them the same way), each tied to the TOC entry it came from, and told apart: an object the
//! target may refuse without losing any data (an extension, its comment, ownership,
//! privileges) is a warning, as Heroku's "Completed with N warnings"; anything else (a table,
//! its data, an index, a constraint) fails the transfer as before.
//!
//! pg_restore prints, for each failed statement:
//!
//! ```text
//! pg_restore: from TOC entry 2; 3079 16385 EXTENSION pgrowlocks (no owner)
//! pg_restore: error: could not execute query: ERROR:  permission denied to create extension "pgrowlocks"
//! HINT:  Must be superuser to create this extension.
//! Command was: CREATE EXTENSION IF NOT EXISTS pgrowlocks WITH SCHEMA public;
//! ```
//!
//! and at its end `pg_restore: warning: errors ignored on restore: N`.

/// How a warning line starts (the transfer log's `LogLine::WARNING` is this same text).
pub const WARNING: &str = "WARNING: ";

/// One error pg_restore reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// The TOC entry's description (`EXTENSION`, `COMMENT`, `TABLE DATA`, ...) and tag (its
    /// name: `pgrowlocks`, `EXTENSION pgrowlocks`, `public t`), when pg_restore named one.
    pub entry: Option<(String, String)>,
    /// The server's error, without its `ERROR:` prefix.
    pub message: String,
    /// The statement that failed (`Command was: ...`), if printed.
    pub command: Option<String>,
}

impl RestoreError {
    /// Whether the data survives this error: the object is an extension, a comment on one,
    /// privileges, default privileges, or ownership.
    pub fn is_tolerable(&self) -> bool {
        let Some((desc, tag)) = &self.entry else {
            return false;
        };
        let owner_change = self.command.as_deref().is_some_and(is_owner_change);
        match desc.as_str() {
            "EXTENSION" | "ACL" | "DEFAULT ACL" => true,
            "COMMENT" => tag.starts_with("EXTENSION "),
            _ => owner_change,
        }
    }

    /// The object the error is about, in words: `extension pgrowlocks`.
    fn object(&self) -> String {
        match &self.entry {
            Some((desc, tag)) if desc == "COMMENT" => format!("comment on {}", tag.to_lowercase()),
            Some((desc, tag)) => format!("{} {tag}", desc.to_lowercase()),
            None => "an object".to_string(),
        }
    }

    /// The warning's log line: `WARNING: extension pgrowlocks was not restored: ...`.
    pub fn warning_line(&self) -> String {
        format!(
            "{}{} was not restored: {}",
            WARNING,
            self.object(),
            self.message
        )
    }
}

/// Whether `command` is pg_restore's `ALTER <object> <name> OWNER TO <role>;` and nothing
/// else. Names and literals are read past first: `Command was:` holds only the first line of
/// a statement, and a constraint's `ALTER TABLE ONLY public."a owner to b"` (whose failure
/// loses data) must not pass for an ownership change.
fn is_owner_change(command: &str) -> bool {
    let mut bare = String::new();
    let mut quote = None;
    for c in command.chars() {
        match quote {
            // A doubled quote closes and reopens: the same state either way.
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                bare.push('x');
            }
            None => bare.push(c.to_ascii_uppercase()),
        }
    }
    if quote.is_some() {
        return false;
    }
    let Some(role) = bare
        .strip_prefix("ALTER ")
        .and_then(|rest| rest.rsplit_once(" OWNER TO "))
        .map(|(_, role)| role)
    else {
        return false;
    };
    role.strip_suffix(';')
        .is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

/// Reads one pg_restore's stderr, line by line.
#[derive(Debug, Default)]
pub struct Parser {
    entry: Option<(String, String)>,
    errors: Vec<RestoreError>,
    /// `errors ignored on restore: N`, when printed.
    ignored: Option<usize>,
}

impl Parser {
    pub fn push(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("pg_restore: from TOC entry ") {
            self.entry = parse_entry(rest);
        } else if line.starts_with("pg_restore: while ") {
            // "while PROCESSING TOC:" / "while INITIALIZING:" come before an entry line.
        } else if let Some(rest) = line.strip_prefix("pg_restore: error: ") {
            let message = rest
                .strip_prefix("could not execute query: ")
                .unwrap_or(rest)
                .trim_start_matches("ERROR:")
                .trim()
                .to_string();
            self.errors.push(RestoreError {
                entry: self.entry.take(),
                message,
                command: None,
            });
        } else if let Some(n) =
            line.strip_prefix("pg_restore: warning: errors ignored on restore: ")
        {
            self.ignored = n.trim().parse().ok();
        } else if let Some(cmd) = line.strip_prefix("Command was: ")
            && let Some(last) = self.errors.last_mut()
            && last.command.is_none()
        {
            last.command = Some(cmd.to_string());
        } else if let Some(hint) = line.strip_prefix("HINT:")
            && let Some(last) = self.errors.last_mut()
            && last.command.is_none()
        {
            last.message = format!("{} ({})", last.message, hint.trim());
        }
    }

    /// The errors, as warnings, when every one is tolerable and pg_restore counted exactly
    /// these (an error this parser missed must not pass for a success); `None` otherwise.
    pub fn warnings(&self) -> Option<Vec<RestoreError>> {
        if self.errors.is_empty()
            || self.ignored != Some(self.errors.len())
            || !self.errors.iter().all(RestoreError::is_tolerable)
        {
            return None;
        }
        // A comment on an extension that was refused fails only because the extension is
        // missing: one warning, the extension's.
        let refused = |ext: &str| {
            self.errors.iter().any(|e| {
                e.entry
                    .as_ref()
                    .is_some_and(|(d, t)| d == "EXTENSION" && t == ext)
            })
        };
        Some(
            self.errors
                .iter()
                .filter(|e| match &e.entry {
                    Some((d, t)) if d == "COMMENT" => {
                        !t.strip_prefix("EXTENSION ").is_some_and(refused)
                    }
                    _ => true,
                })
                .cloned()
                .collect(),
        )
    }
}

/// `2; 3079 16385 EXTENSION pgrowlocks (no owner)` → (`EXTENSION`, `pgrowlocks`). The
/// description may be two words (`TABLE DATA`, `DEFAULT ACL`, `FK CONSTRAINT`); the owner is
/// the last word, `(no owner)`, or nothing at all (a comment on an extension: its line ends
/// in the tag, the empty owner's space trimmed away).
fn parse_entry(rest: &str) -> Option<(String, String)> {
    let (desc, tag) = split_desc(rest)?;
    let words: Vec<&str> = tag.split(' ').collect();
    let tag = match (desc.as_str(), words.as_slice()) {
        ("EXTENSION", [name, ..]) => name.to_string(),
        ("COMMENT", ["EXTENSION", name, ..]) => format!("EXTENSION {name}"),
        (_, [.., _owner]) if words.len() > 1 => words[..words.len() - 1].join(" "),
        _ => tag,
    };
    Some((desc, tag))
}

/// The description and the rest (tag and owner, without `(no owner)`).
fn split_desc(rest: &str) -> Option<(String, String)> {
    let (_, after) = rest.split_once("; ")?;
    let mut words = after.splitn(3, ' ');
    let (_tableoid, _oid, rest) = (words.next()?, words.next()?, words.next()?);
    let rest = rest.strip_suffix(" (no owner)").unwrap_or(rest);
    const TWO_WORDS: [&str; 11] = [
        "TABLE DATA",
        "DEFAULT ACL",
        "FK CONSTRAINT",
        "SEQUENCE SET",
        "SEQUENCE OWNED",
        "MATERIALIZED VIEW",
        "FOREIGN TABLE",
        "EVENT TRIGGER",
        "BLOB DATA",
        "LARGE OBJECT",
        "ACCESS METHOD",
    ];
    for d in TWO_WORDS {
        if let Some(tag) = rest.strip_prefix(d).and_then(|t| t.strip_prefix(' ')) {
            return Some((d.to_string(), tag.to_string()));
        }
    }
    let (desc, tag) = rest.split_once(' ')?;
    Some((desc.to_string(), tag.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parser {
        let mut p = Parser::default();
        for l in text.lines() {
            p.push(l);
        }
        p
    }

    /// Real pg_restore 15 stderr for an untrusted extension restored by a non-superuser.
    const EXTENSION_REFUSED: &str = r#"pg_restore: connecting to database for restore
pg_restore: creating EXTENSION "pgrowlocks"
pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 2; 3079 16385 EXTENSION pgrowlocks (no owner)
pg_restore: error: could not execute query: ERROR:  permission denied to create extension "pgrowlocks"
HINT:  Must be superuser to create this extension.
Command was: CREATE EXTENSION IF NOT EXISTS pgrowlocks WITH SCHEMA public;
pg_restore: creating COMMENT "EXTENSION pgrowlocks"
pg_restore: from TOC entry 3349; 0 0 COMMENT EXTENSION pgrowlocks
pg_restore: error: could not execute query: ERROR:  extension "pgrowlocks" does not exist
Command was: COMMENT ON EXTENSION pgrowlocks IS 'show row-level locking information';
pg_restore: creating TABLE "public.t"
pg_restore: warning: errors ignored on restore: 2"#;

    #[test]
    fn an_extension_the_target_refuses_is_one_warning_with_its_comment_as_on_heroku() {
        let p = parse(EXTENSION_REFUSED);
        let w = p.warnings().expect("tolerable");
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].warning_line(),
            "WARNING: extension pgrowlocks was not restored: permission denied to create extension \"pgrowlocks\" (Must be superuser to create this extension.)"
        );
        // A comment alone (its extension was there) is a warning of its own.
        let p = parse(
            r#"pg_restore: from TOC entry 3356; 0 0 COMMENT EXTENSION plpgsql
pg_restore: error: could not execute query: ERROR:  must be owner of extension plpgsql
Command was: COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';
pg_restore: warning: errors ignored on restore: 1"#,
        );
        assert_eq!(
            p.warnings().expect("tolerable")[0].warning_line(),
            "WARNING: comment on extension plpgsql was not restored: must be owner of extension plpgsql"
        );
    }

    #[test]
    fn table_data_that_fails_is_not_a_warning() {
        let p = parse(
            r#"pg_restore: processing data for table "public.t"
pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 3350; 0 16390 TABLE DATA t postgres
pg_restore: error: could not execute query: ERROR:  permission denied for table t
Command was: COPY public.t (g) FROM stdin;
pg_restore: warning: errors ignored on restore: 1"#,
        );
        assert_eq!(p.errors[0].entry, Some(("TABLE DATA".into(), "t".into())));
        assert!(p.warnings().is_none());
    }

    #[test]
    fn a_tolerable_error_beside_a_failed_table_fails() {
        let text = format!(
            "{}\npg_restore: from TOC entry 215; 1259 16391 TABLE t postgres\npg_restore: error: could not execute query: ERROR:  relation \"t\" already exists\nCommand was: CREATE TABLE public.t (g integer);\npg_restore: warning: errors ignored on restore: 3",
            EXTENSION_REFUSED.replace("pg_restore: warning: errors ignored on restore: 2", "")
        );
        assert!(parse(&text).warnings().is_none());
    }

    #[test]
    fn an_error_without_an_entry_or_a_count_that_does_not_match_fails() {
        let p = parse(
            "pg_restore: error: connection to server failed: FATAL:  password authentication failed",
        );
        assert!(p.warnings().is_none());
        let p = parse(&EXTENSION_REFUSED.replace("restore: 2", "restore: 3"));
        assert!(p.warnings().is_none());
    }

    #[test]
    fn a_failed_constraint_on_a_table_named_like_an_owner_change_fails_the_restore() {
        // Heroku says "Completed with N warnings" only when every row is there: a primary key
        // that cannot be built (duplicate rows) is a failure, whatever the table is called.
        let p = parse(
            r#"pg_restore: from TOC entry 3200; 2606 16395 CONSTRAINT "a owner to b" a_pkey app
pg_restore: error: could not execute query: ERROR:  could not create unique index "a_pkey"
DETAIL:  Key (id)=(1) is duplicated.
Command was: ALTER TABLE ONLY public."a owner to b"
    ADD CONSTRAINT a_pkey PRIMARY KEY (id);
pg_restore: warning: errors ignored on restore: 1"#,
        );
        assert_eq!(p.errors.len(), 1);
        assert!(p.warnings().is_none());
        for cmd in [
            "ALTER TABLE public.t OWNER TO app;",
            "ALTER TABLE public.\"Odd OWNER TO x\" OWNER TO \"my role\";",
            "ALTER FUNCTION public.f(text) OWNER TO app;",
        ] {
            assert!(is_owner_change(cmd), "{cmd}");
        }
        for cmd in [
            "ALTER TABLE ONLY public.\"a OWNER TO b\"",
            "ALTER TABLE ONLY public.t ALTER COLUMN c SET DEFAULT ' owner to x;'::text;",
            "ALTER TABLE ONLY public.t OWNER TO app; DROP TABLE x;",
            "CREATE TABLE t OWNER TO x;",
        ] {
            assert!(!is_owner_change(cmd), "{cmd}");
        }
    }

    #[test]
    fn privileges_default_privileges_and_ownership_are_tolerable() {
        let p = parse(
            r#"pg_restore: from TOC entry 3357; 0 0 ACL SCHEMA public pg_database_owner
pg_restore: error: could not execute query: ERROR:  role "app" does not exist
Command was: GRANT USAGE ON SCHEMA public TO app;
pg_restore: from TOC entry 2050; 826 16400 DEFAULT ACL DEFAULT PRIVILEGES FOR TABLES postgres
pg_restore: error: could not execute query: ERROR:  role "app" does not exist
Command was: ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO app;
pg_restore: from TOC entry 214; 1259 16391 TABLE t app
pg_restore: error: could not execute query: ERROR:  role "app" does not exist
Command was: ALTER TABLE public.t OWNER TO app;
pg_restore: warning: errors ignored on restore: 3"#,
        );
        let w = p.warnings().expect("tolerable");
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[1].warning_line(),
            "WARNING: default acl DEFAULT PRIVILEGES FOR TABLES was not restored: role \"app\" does not exist"
        );
    }
}
