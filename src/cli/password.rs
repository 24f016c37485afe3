//! Passwords for `users:add` and `users:password`, kept off the command line (where `ps` and
//! the shell's history would show them): typed twice at a prompt without echo on a terminal,
//! or the first line of standard input when it is not one (for scripts).

use std::io::{BufRead, IsTerminal, Write};

use super::client::CliError;

/// The new password for `user`: asked for twice on a terminal (the two must match), else the
/// first line of standard input without its line ending.
pub fn new_password(user: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = hidden(&format!("Password for {user} (not echoed): "))?;
        let again = hidden("Type it again: ")?;
        if first != again {
            return Err(CliError::msg(
                "the two passwords differ; run the command again and type the same one twice",
            ));
        }
        first
    } else {
        first_line(&mut stdin.lock())
            .map_err(CliError::io("cannot read the password from standard input"))?
    };
    if password.is_empty() {
        return Err(CliError::msg(
            "no password: type it at the prompt, or give it as the first line of standard input",
        ));
    }
    Ok(password)
}

/// The first line of `input`, without its line ending (spaces are part of a password).
fn first_line(input: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

/// One line typed on the terminal with echo off (restored afterwards, whatever happens).
fn hidden(prompt: &str) -> Result<String, CliError> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let read = first_line(&mut stdin.lock());
    if let Some(t) = &saved {
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
    }
    read.map_err(CliError::io("cannot read the password"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_line_is_the_password_with_its_spaces() {
        let line = |s: &str| super::first_line(&mut s.as_bytes()).unwrap();
        assert_eq!(line(" correct horse  \nsecond\n"), " correct horse  ");
        assert_eq!(line("windows line\r\n"), "windows line");
        assert_eq!(line(""), "");
    }
}
