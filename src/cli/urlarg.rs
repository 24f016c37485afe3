//! Database URLs kept off the command line. A process's arguments are visible to every user
//! of the machine (`ps`, /proc/PID/cmdline) for as long as it runs, and a watched transfer
//! runs for hours: a URL with a password belongs in the environment or on standard input.
//!
//! Wherever a command takes a database URL, `-` stands for "not here": the URL is read from
//! the environment variable of its role ([`Role::env`]) when that is set, else as one line of
//! standard input (not echoed on a terminal). A command with two `-` reads the source's line
//! first, then the target's.

use std::io::{IsTerminal, Write};

use super::client::CliError;
use super::shared::Env;

/// Which end of a transfer a URL names.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// What is read: the database a capture backs up, the source of a copy, the local
    /// database a push reads, the backup or http(s) URL a restore reads.
    Source,
    /// What is written: the database a restore or copy replaces, the local database a pull
    /// creates, the server of a restore test.
    Target,
}

impl Role {
    /// The environment variable `-` reads this role's URL from.
    pub fn env(self) -> &'static str {
        match self {
            Role::Source => "PGBACKUPS_SOURCE_URL",
            Role::Target => "PGBACKUPS_TARGET_URL",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

/// What a URL argument stands for: `-` is replaced by the URL from the environment or
/// standard input; anything else is taken as given, with a warning on stderr when it holds a
/// password.
pub fn resolve(arg: String, role: Role, env: &Env) -> Result<String, CliError> {
    if arg != "-" {
        warn_if_password(
            &arg,
            &format!(
                "pass `-` instead and put the URL in {} or on standard input",
                role.env()
            ),
        );
        return Ok(arg);
    }
    let from_env = match role {
        Role::Source => &env.source_url,
        Role::Target => &env.target_url,
    };
    if let Some(v) = from_env {
        return Ok(v.trim().to_string());
    }
    read_line(
        &format!("{} database URL", capitalized(role.word())),
        &format!(
            "no {} URL: `-` stands for the URL in {} or on standard input, and neither has one",
            role.word(),
            role.env()
        ),
    )
}

/// [`resolve`] for an argument that may be left out.
pub fn resolve_opt(arg: Option<String>, role: Role, env: &Env) -> Result<Option<String>, CliError> {
    arg.map(|a| resolve(a, role, env)).transpose()
}

/// Says on stderr that `arg`, given on the command line, shows its password to every user of
/// the machine, and what to do instead.
pub fn warn_if_password(arg: &str, instead: &str) {
    if crate::pg::redact(arg) != arg {
        eprintln!(
            "warning: the password in a URL on the command line is visible to other users of this machine in `ps` while the command runs; {instead}"
        );
    }
}

/// One line of standard input, trimmed; on a terminal, prompted for and not echoed.
pub fn read_line(prompt: &str, missing: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    let read = if stdin.is_terminal() {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        use std::os::fd::AsFd;
        eprint!("{prompt} (postgres://user:password@host:5432/dbname, not echoed): ");
        let _ = std::io::stderr().flush();
        // Typed, not echoed: the password never shows on the screen.
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
        }
        let read = stdin.read_line(&mut line);
        if let Some(t) = &saved {
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
            eprintln!();
        }
        read
    } else {
        stdin.read_line(&mut line)
    };
    read.map_err(CliError::io("cannot read the URL from standard input"))?;
    let url = line.trim().to_string();
    if url.is_empty() {
        return Err(CliError::msg(missing));
    }
    Ok(url)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
