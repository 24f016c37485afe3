//! A tool's stderr: drained as bytes into a sink, its first error lines and last lines kept
//! to explain a failure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;

use super::Sink;

/// At most this many error lines are kept from the start of a tool's stderr.
const FIRST_ERRORS: usize = 10;

/// A longer line is cut into pieces of this size: a tool printing without newlines must not
/// grow our memory.
const MAX_LINE: u64 = 64 << 10;

/// What a tool's stderr said that explains a failure: its first error lines (up to ten) and
/// its last lines.
#[derive(Clone, Debug, Default)]
pub struct Stderr {
    errors: Vec<String>,
    tail: VecDeque<String>,
    keep: usize,
}

impl Stderr {
    /// Keeping the last `keep` lines.
    pub fn new(keep: usize) -> Stderr {
        Stderr {
            errors: Vec::new(),
            tail: VecDeque::new(),
            keep,
        }
    }

    /// Takes one line (empty ones are skipped) and hands it to `sink`.
    pub(super) fn push(&mut self, line: &str, sink: &Sink) {
        if line.is_empty() {
            return;
        }
        sink(line);
        if is_error_line(line) && self.errors.len() < FIRST_ERRORS {
            self.errors.push(line.to_string());
        }
        if self.tail.len() == self.keep {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// The kept lines: the first error lines, then the last lines not among them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.errors.clone();
        for line in &self.tail {
            if !self.errors.contains(line) {
                lines.push(line.clone());
            }
        }
        lines
    }

    /// The last lines, in order, one per line (all of a short stderr).
    pub fn tail_text(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The kept lines that say what went wrong, joined for an error message.
    pub fn summary(&self) -> String {
        error_summary(&self.lines())
    }
}

/// Reads `pipe` to its end into `into`, line by line, each line also handed to `sink`.
///
/// Bytes, not `lines()`: a tool prints names in the database's encoding, which need not be
/// UTF-8, and giving up on a line would close the pipe under the tool.
pub(super) fn drain(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    tool: String,
    sink: Sink,
    into: Arc<Mutex<Stderr>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut raw: Vec<u8> = Vec::new();
        loop {
            raw.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut raw)
                .await
            {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&raw);
                    into.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.trim_end(), &sink);
                }
                Err(e) => {
                    sink(&format!("(could not read {tool}'s messages: {e})"));
                    // Keep draining, so that the tool never blocks or dies on a full pipe.
                    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                    break;
                }
            }
        }
    })
}

fn is_error_line(line: &str) -> bool {
    line.contains("error:")
        || line.contains("detail:")
        || line.contains("FATAL")
        || line.contains("ERROR")
}

/// The lines of a tool's stderr that say what went wrong (its error lines when there are any,
/// else the last lines), joined for an error message.
pub fn error_summary(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| is_error_line(l))
        .map(String::as_str)
        .collect();
    if errors.is_empty() {
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    } else {
        errors.join(" / ")
    }
}
