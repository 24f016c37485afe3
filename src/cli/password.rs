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

/// One line typed on the terminal with echo off (restored afterwards, whatever happens: also
/// when Ctrl-C, a hangup or a kill ends the command during the prompt).
fn hidden(prompt: &str) -> Result<String, CliError> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd())
        .map_err(|e| CliError::io("cannot read the terminal's settings")(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let _ = SAVED.set(saved.clone().into());
    let restore_on_signal = EchoGuard::arm();
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)
        .map_err(|e| CliError::io("cannot turn off the terminal's echo")(e.into()))?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let read = first_line(&mut stdin.lock());
    let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    drop(restore_on_signal);
    read.map_err(CliError::io("cannot read the password"))
}

/// The terminal's settings before the prompt, for the signal handler (set once: every prompt
/// of a command starts from the same settings).
static SAVED: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

/// The signals that end a command at a prompt.
const ENDING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// While alive, a signal that ends the command first puts the terminal's echo back (only
/// async-signal-safe calls: `tcsetattr`, `signal`, `raise`), then ends it as it would have.
struct EchoGuard {
    previous: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl EchoGuard {
    fn arm() -> EchoGuard {
        let handler = restore_and_reraise as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let previous = ENDING
            .iter()
            // SAFETY: installs a handler that only makes async-signal-safe calls.
            .map(|&sig| (sig, unsafe { libc::signal(sig, handler) }))
            .collect();
        EchoGuard { previous }
    }
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        for &(sig, old) in &self.previous {
            // SAFETY: puts back the handler that was there before.
            unsafe { libc::signal(sig, old) };
        }
    }
}

extern "C" fn restore_and_reraise(sig: libc::c_int) {
    if let Some(t) = SAVED.get() {
        // SAFETY: tcsetattr, signal and raise are async-signal-safe; `t` is never written
        // after it is set.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
    }
    // SAFETY: as above.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
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
