//! Heroku's interactive confirmation. A destructive command run without `--confirm` on a
//! terminal asks for the name to be typed, as `heroku pg:backups:restore` and `pg:copy` do;
//! the typed name is sent as the confirmation, so the service still checks it. Without a
//! terminal (a script, a pipe) nothing is asked and the service's refusal is the error, as
//! before.

use std::future::Future;
use std::io::{self, BufRead, IsTerminal, Write};

use super::client::CliError;

/// Runs a destructive request `run` with the user's `--confirm`. When it was not given and
/// the service refuses for want of it, on a terminal: prints the warning (`effect` says what
/// the command does to the database it names) and runs the request again with the name the
/// user typed. Every destructive command goes through here.
pub async fn confirmed<T, F, Fut>(
    confirm: Option<String>,
    effect: fn(&str) -> String,
    mut run: F,
) -> Result<T, CliError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    let asked = confirm.is_none();
    match run(confirm).await {
        Err(CliError::Unconfirmed { message, expected }) if asked && io::stdin().is_terminal() => {
            let what = effect(&expected);
            let name = expected.clone();
            let typed = tokio::task::spawn_blocking(move || {
                ask(&name, &what, &mut io::stdin().lock(), &mut io::stderr())
            })
            .await?
            .map_err(CliError::io("cannot read the confirmation"))?;
            match typed {
                Some(typed) => run(Some(typed)).await,
                // Nothing typed (end of input): the refusal stands.
                None => Err(CliError::Unconfirmed { message, expected }),
            }
        }
        other => other,
    }
}

/// Prints Heroku's warning for a destructive action on `name` to `out` and reads one line from
/// `input`: the name typed, trimmed, or None when nothing was (an empty line, end of input).
pub fn ask(
    name: &str,
    effect: &str,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> io::Result<Option<String>> {
    write!(
        out,
        " ▸    WARNING: Destructive action\n ▸    {effect}\n ▸    To proceed, type {name} or re-run this command with --confirm {name}\n\n> "
    )?;
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let typed = line.trim();
    Ok((!typed.is_empty()).then(|| typed.to_string()))
}

/// What a restore does to its target.
pub fn restore_effect(name: &str) -> String {
    format!("This command will replace all data in {name} with the backup")
}

/// What a copy or a push does to its target (Heroku's `pg:copy` words).
pub fn copy_effect(name: &str) -> String {
    format!("This command will remove all data from {name}")
}

/// What `backups:delete` does to a backup of `name`.
pub fn delete_effect(name: &str) -> String {
    format!("This command will delete a backup of {name}: its stored object and its record")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_the_name_as_heroku_does_and_returns_what_was_typed() {
        let mut out = Vec::new();
        let typed = ask(
            "staging",
            &copy_effect("staging"),
            &mut &b"  staging \nmore\n"[..],
            &mut out,
        )
        .unwrap();
        assert_eq!(typed.as_deref(), Some("staging"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " ▸    WARNING: Destructive action\n ▸    This command will remove all data from staging\n ▸    To proceed, type staging or re-run this command with --confirm staging\n\n> "
        );
    }

    #[test]
    fn nothing_typed_is_no_confirmation() {
        for input in [&b""[..], &b"\n"[..], &b"   \n"[..]] {
            let typed = ask(
                "main",
                &restore_effect("main"),
                &mut &input[..],
                &mut Vec::new(),
            );
            assert_eq!(typed.unwrap(), None);
        }
        // A wrong name is returned as typed: the service refuses it and says what it wanted.
        let typed = ask("main", "", &mut &b"mian\n"[..], &mut Vec::new()).unwrap();
        assert_eq!(typed.as_deref(), Some("mian"));
    }

    #[tokio::test]
    async fn a_given_confirmation_or_another_error_is_never_asked_about() {
        // Refused with the confirmation given: the refusal is the answer, nothing is asked
        // (and so no terminal is needed here).
        let mut calls = Vec::new();
        let r: Result<(), CliError> = confirmed(Some("x".into()), copy_effect, |c| {
            calls.push(c);
            async {
                Err(CliError::Unconfirmed {
                    message: "this is destructive".into(),
                    expected: "main".into(),
                })
            }
        })
        .await;
        assert!(matches!(r, Err(CliError::Unconfirmed { .. })));
        assert_eq!(calls, [Some("x".to_string())]);
        let mut calls = 0;
        let r: Result<u8, CliError> = confirmed(None, copy_effect, |_| {
            calls += 1;
            async { Ok(7) }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 1);
    }
}
