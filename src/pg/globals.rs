//! The server's roles as `pg_dumpall --globals-only --no-role-passwords` writes them: which
//! roles a script defines, and a script that creates only the ones a target server lacks.
//!
//! A dump restored on a fresh server fails on every `ALTER ... OWNER TO` and `GRANT` naming a
//! role that server does not have; keeping the globals beside each backup lets
//! `backups:restore --roles` create them first. pg_dumpall writes each role as one
//! `CREATE ROLE name;` line followed by `ALTER ROLE name WITH ...;` and `ALTER ROLE name SET
//! ...;` lines, which is all this reads.

/// The roles a globals script creates, in its order.
pub fn roles(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE ROLE "))
        .filter_map(|rest| ident(rest).map(|(name, _)| name))
        .collect()
}

/// Whether the script sets any role's password (it never should: captures use
/// `--no-role-passwords`).
pub fn has_password(script: &str) -> bool {
    script
        .lines()
        .filter(|l| l.starts_with("ALTER ROLE ") || l.starts_with("CREATE ROLE "))
        .any(|l| l.contains(" PASSWORD "))
}

/// The statements that define `role`: its `CREATE ROLE` and its `ALTER ROLE` lines, leaving
/// out per-database settings (`ALTER ROLE ... IN DATABASE`), whose database may not exist.
/// `NOSUPERUSER`, `NOREPLICATION` and `NOBYPASSRLS` are left out too: a new role has them
/// already, and only a superuser may name them, even to say no.
fn statements_of(script: &str, role: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| {
            let (verb, rest) = if let Some(rest) = l.strip_prefix("CREATE ROLE ") {
                ("CREATE ROLE ", rest)
            } else {
                ("ALTER ROLE ", l.strip_prefix("ALTER ROLE ")?)
            };
            let (name, after) = ident(rest)?;
            if name != role || after.starts_with(" IN DATABASE ") {
                return None;
            }
            let named = &rest[..rest.len() - after.len()];
            let after = match after.strip_prefix(" WITH ") {
                Some(attrs) => {
                    let kept: Vec<&str> = attrs
                        .trim_end_matches(';')
                        .split(' ')
                        .filter(|a| !matches!(*a, "NOSUPERUSER" | "NOREPLICATION" | "NOBYPASSRLS"))
                        .collect();
                    format!(" WITH {};", kept.join(" "))
                }
                None => after.to_string(),
            };
            Some(format!("{verb}{named}{after}"))
        })
        .collect()
}

/// A script creating each of `missing` with its attributes and settings. Each role is created
/// in its own block that gives way when the role exists by then (another session made it), so
/// an existing role never fails a restore. `None` when the globals hold a statement this
/// cannot quote safely.
pub fn creation_script(script: &str, missing: &[String]) -> Option<String> {
    const TAG: &str = "$pgbackups_roles$";
    if !lines_are_whole(script) {
        return None;
    }
    // The statements were written for standard_conforming_strings on, which pg_dumpall sets
    // at its top; a target database may default to off. (pg_dumpall writes a backslash in a
    // setting as E'..', safe either way: this is for any other literal it may write.)
    let mut out = String::from("SET standard_conforming_strings = on;\n");
    for role in missing {
        let statements = statements_of(script, role);
        if statements.is_empty() || statements.iter().any(|s| s.contains(TAG)) {
            return None;
        }
        out.push_str(&format!("DO {TAG}\nBEGIN\n"));
        for s in statements {
            out.push_str("  EXECUTE ");
            out.push_str(&super::client::quote_literal(s.trim_end_matches(';')));
            out.push_str(";\n");
        }
        out.push_str(&format!(
            "EXCEPTION WHEN duplicate_object THEN\n  RAISE NOTICE 'role % exists already', {};\nEND\n{TAG};\n",
            super::client::quote_literal(role)
        ));
    }
    Some(out)
}

/// Whether every line ends outside a quoted name or literal. A role's setting (which any role
/// may set for itself: `ALTER ROLE me SET application_name TO E'x\nALTER ROLE b WITH
/// SUPERUSER;'`) or a name can hold a newline, and the line after it would read as a
/// statement of its own: such a script is refused, not executed line by line.
fn lines_are_whole(script: &str) -> bool {
    script.lines().filter(|l| !l.starts_with("--")).all(|l| {
        let mut quote = None;
        for c in l.chars() {
            match quote {
                // A doubled quote closes and reopens: the same state either way.
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None => {}
            }
        }
        quote.is_none()
    })
}

/// An identifier at the start of `s` (bare, or double-quoted with `""` for a quote) and what
/// follows it.
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s.find([' ', ';']).unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBALS: &str = "--\n-- Roles\n--\n\nCREATE ROLE app_owner;\nALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\nCREATE ROLE \"Odd \"\"name\"\"\";\nALTER ROLE \"Odd \"\"name\"\"\" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;\nALTER ROLE app_owner SET search_path TO 'app', 'public';\nALTER ROLE app_owner IN DATABASE other SET work_mem TO '8MB';\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n";

    #[test]
    fn roles_are_read_from_create_role_lines_with_quoted_names() {
        assert_eq!(roles(GLOBALS), ["app_owner", "Odd \"name\"", "postgres"]);
    }

    #[test]
    fn a_role_is_created_with_its_attributes_and_settings_but_not_per_database_ones() {
        let script = creation_script(GLOBALS, &["app_owner".to_string()]).unwrap();
        assert_eq!(
            script,
            "SET standard_conforming_strings = on;\nDO $pgbackups_roles$\nBEGIN\n  EXECUTE 'CREATE ROLE app_owner';\n  EXECUTE 'ALTER ROLE app_owner WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN';\n  EXECUTE 'ALTER ROLE app_owner SET search_path TO ''app'', ''public''';\nEXCEPTION WHEN duplicate_object THEN\n  RAISE NOTICE 'role % exists already', 'app_owner';\nEND\n$pgbackups_roles$;\n"
        );
    }

    #[test]
    fn a_quoted_role_keeps_its_quotes_and_a_superuser_its_attributes() {
        let script = creation_script(
            GLOBALS,
            &["Odd \"name\"".to_string(), "postgres".to_string()],
        )
        .unwrap();
        assert!(
            script.contains("EXECUTE 'CREATE ROLE \"Odd \"\"name\"\"\"';"),
            "{script}"
        );
        assert!(
            script.contains("EXECUTE 'ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS';"),
            "{script}"
        );
    }

    #[test]
    fn a_role_the_globals_do_not_define_cannot_be_created() {
        assert!(creation_script(GLOBALS, &["nobody".to_string()]).is_none());
    }

    #[test]
    fn a_setting_or_name_spanning_lines_cannot_smuggle_in_a_statement() {
        // Any role may set its own settings on the source; a newline in one must not make
        // `backups:restore --roles` (run by a superuser) make another role a superuser.
        let setting = format!(
            "{GLOBALS}ALTER ROLE app_owner SET application_name TO 'x\nALTER ROLE \"Odd \"\"name\"\"\" WITH SUPERUSER;\n';\n"
        );
        assert!(creation_script(&setting, &["Odd \"name\"".to_string()]).is_none());
        let name = format!("{GLOBALS}CREATE ROLE \"a\nALTER ROLE app_owner WITH SUPERUSER;\n\";\n");
        assert!(creation_script(&name, &["app_owner".to_string()]).is_none());
        // Quotes inside names and literals, doubled quotes, comments: still read.
        assert!(creation_script(GLOBALS, &["Odd \"name\"".to_string()]).is_some());
        assert!(
            creation_script(
                &format!(
                    "--\n-- Rob's roles\n{GLOBALS}ALTER ROLE app_owner SET x TO 'it''s \"q';\n"
                ),
                &["app_owner".to_string()]
            )
            .is_some()
        );
    }

    #[test]
    fn passwords_are_noticed() {
        assert!(!has_password(GLOBALS));
        assert!(has_password(
            "ALTER ROLE a WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\n"
        ));
    }
}
