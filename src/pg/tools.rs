//! Finding the stock PostgreSQL client tools and running them with an explicit environment.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A PostgreSQL major.minor version, as the tools and servers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// Parses `server_version_num` (150004 → 15.4; 90624 → 9.6).
    pub fn from_server_num(num: u32) -> Version {
        if num >= 100_000 {
            Version {
                major: num / 10_000,
                minor: num % 10_000,
            }
        } else {
            Version {
                major: num / 10_000 * 10 + num / 100 % 100,
                minor: num % 100,
            }
        }
    }

    /// Parses the first line a tool prints for `--version`, such as
    /// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` or `pg_dump (PostgreSQL) 17beta1`.
    pub fn from_tool_output(out: &str) -> Option<Version> {
        let after = out.split(')').nth(1)?.trim_start();
        let digits: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = digits.split('.').filter(|p| !p.is_empty());
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        // 9.6.24 style: major is "9.6"
        if major < 10 {
            return Some(Version {
                major: major * 10 + minor,
                minor: parts.next().and_then(|m| m.parse().ok()).unwrap_or(0),
            });
        }
        Some(Version { major, minor })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (90..100).contains(&self.major) {
            // Releases before 10 had two-part majors, folded into 90..99 by the parsers.
            write!(f, "{}.{}.{}", self.major / 10, self.major % 10, self.minor)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// The client tools pgbackups runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgTool {
    Dump,
    /// `pg_dumpall --globals-only`, which keeps the server's roles beside each capture.
    DumpAll,
    Restore,
    Psql,
    /// `pg_basebackup`, for base backups of protected databases.
    BaseBackup,
    /// `pg_ctl`, to start a rolled-back or forked server.
    Ctl,
    /// `pg_receivewal`, which streams the WAL of protected databases.
    ReceiveWal,
    /// `pg_waldump`, which reads where an archive ends before a rollback.
    WalDump,
}

impl PgTool {
    /// The executable's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            PgTool::Dump => "pg_dump",
            PgTool::DumpAll => "pg_dumpall",
            PgTool::Restore => "pg_restore",
            PgTool::Psql => "psql",
            PgTool::BaseBackup => "pg_basebackup",
            PgTool::Ctl => "pg_ctl",
            PgTool::ReceiveWal => "pg_receivewal",
            PgTool::WalDump => "pg_waldump",
        }
    }
}

/// One installation of the client tools: a `bin` directory and the version of its `pg_dump`.
#[derive(Clone, Debug)]
struct Install {
    dir: PathBuf,
    version: Version,
}

/// The client tool installations found on this machine, newest first.
#[derive(Clone, Debug, Default)]
pub struct PgTools {
    installs: Vec<Install>,
}

/// A tool that cannot be found at the version needed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "no {tool} is installed: install the PostgreSQL client package (for example postgresql-client-{wanted} on Debian/Ubuntu) or point PGBACKUPS_PG_BIN at its bin directory"
    )]
    Missing { tool: &'static str, wanted: u32 },
    #[error(
        "{tool} {wanted} or newer is needed for a PostgreSQL {wanted} server, but only {found} installed; install postgresql-client-{wanted} (or newer) or point PGBACKUPS_PG_BIN at its bin directory"
    )]
    TooOld {
        tool: &'static str,
        wanted: u32,
        found: String,
    },
}

impl PgTools {
    /// Looks for client tools in `extra_dirs` (from configuration), in the usual install
    /// locations of Debian/Ubuntu, RHEL and Homebrew, and on `PATH`.
    pub fn discover(extra_dirs: &[PathBuf]) -> PgTools {
        let mut candidates: Vec<PathBuf> = extra_dirs.to_vec();
        for pattern_dir in [
            "/usr/lib/postgresql",
            "/usr/local/lib/postgresql",
            "/opt/homebrew/opt",
            "/usr/local/opt",
        ] {
            if let Ok(entries) = std::fs::read_dir(pattern_dir) {
                let mut dirs: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .collect();
                dirs.sort();
                candidates.extend(dirs);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/usr") {
            for e in entries.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with("pgsql-") {
                    candidates.push(e.path().join("bin"));
                }
            }
        }
        if let Some(path) = crate::config::process_env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        let mut installs: Vec<Install> = Vec::new();
        for dir in candidates {
            let exe = dir.join(PgTool::Dump.file_name());
            if !exe.is_file() {
                continue;
            }
            let Some(version) = tool_version(&exe) else {
                continue;
            };
            // The first directory found for a version wins: explicit ones come first, and
            // versioned install directories before PATH entries such as Debian's pg_wrapper.
            if installs.iter().any(|i| i.version == version) {
                continue;
            }
            installs.push(Install { dir, version });
        }
        installs.sort_by_key(|i| std::cmp::Reverse(i.version));
        PgTools { installs }
    }

    /// The tool from the installation best suited to a server of major version `server_major`:
    /// the same major if installed, else the oldest newer one (pg_dump and pg_restore must be at
    /// least as new as the server or archive they read).
    pub fn find(&self, tool: PgTool, server_major: u32) -> Result<PathBuf, ToolError> {
        let usable = self
            .installs
            .iter()
            .filter(|i| i.version.major >= server_major && i.dir.join(tool.file_name()).is_file())
            .min_by_key(|i| i.version.major);
        match usable {
            Some(i) => Ok(i.dir.join(tool.file_name())),
            None if self.installs.is_empty() => Err(ToolError::Missing {
                tool: tool.file_name(),
                wanted: server_major,
            }),
            None => Err(ToolError::TooOld {
                tool: tool.file_name(),
                wanted: server_major,
                found: self.describe(),
            }),
        }
    }

    /// The newest installation's tool, for work where any version does (simple `psql` queries).
    pub fn newest(&self, tool: PgTool) -> Result<PathBuf, ToolError> {
        self.installs
            .iter()
            .find(|i| i.dir.join(tool.file_name()).is_file())
            .map(|i| i.dir.join(tool.file_name()))
            .ok_or(ToolError::Missing {
                tool: tool.file_name(),
                wanted: 15,
            })
    }

    /// The tool of every installation that has it, newest first (for `pg_waldump`, which
    /// reads only the WAL of its own major version).
    pub fn all(&self, tool: PgTool) -> Vec<PathBuf> {
        self.installs
            .iter()
            .map(|i| i.dir.join(tool.file_name()))
            .filter(|p| p.is_file())
            .collect()
    }

    /// The version of the installation that `path` belongs to.
    pub fn version_of(&self, path: &Path) -> Option<Version> {
        let dir = path.parent()?;
        self.installs
            .iter()
            .find(|i| i.dir == dir)
            .map(|i| i.version)
    }

    /// "15.20 (in /usr/lib/postgresql/15/bin), ..." for messages.
    pub fn describe(&self) -> String {
        if self.installs.is_empty() {
            return "none".into();
        }
        self.installs
            .iter()
            .map(|i| format!("{} (in {})", i.version, i.dir.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn tool_version(exe: &Path) -> Option<Version> {
    let out = super::client::tool_command(exe, None)
        .arg("--version")
        .output_blocking()
        .ok()?;
    Version::from_tool_output(&out.stdout_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(root: &Path, major: u32) -> Install {
        let dir = root.join(major.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        for tool in ["pg_dump", "pg_restore", "psql"] {
            std::fs::write(dir.join(tool), "").unwrap();
        }
        Install {
            dir,
            version: Version { major, minor: 1 },
        }
    }

    #[test]
    fn picks_the_oldest_tools_at_least_as_new_as_the_server() {
        let root = tempfile::tempdir().unwrap();
        let tools = PgTools {
            installs: vec![fake_install(root.path(), 17), fake_install(root.path(), 15)],
        };
        let dump = |major| tools.find(PgTool::Dump, major);
        assert!(dump(15).unwrap().ends_with("15/pg_dump"));
        assert!(dump(14).unwrap().ends_with("15/pg_dump"));
        assert!(dump(16).unwrap().ends_with("17/pg_dump"));
        let err = dump(18).unwrap_err().to_string();
        assert!(err.contains("pg_dump 18 or newer"), "{err}");
        assert!(err.contains("postgresql-client-18"), "{err}");
        let none = PgTools::default()
            .find(PgTool::Restore, 15)
            .unwrap_err()
            .to_string();
        assert!(none.contains("no pg_restore is installed"), "{none}");
    }

    #[test]
    fn parses_versions() {
        assert_eq!(
            Version::from_tool_output("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(Version {
                major: 15,
                minor: 20
            })
        );
        assert_eq!(
            Version::from_tool_output("pg_dump (PostgreSQL) 17beta1"),
            Some(Version {
                major: 17,
                minor: 0
            })
        );
        assert_eq!(
            Version::from_tool_output("pg_dump (PostgreSQL) 9.6.24"),
            Some(Version {
                major: 96,
                minor: 24
            })
        );
        assert_eq!(
            Version::from_server_num(150004),
            Version {
                major: 15,
                minor: 4
            }
        );
        assert_eq!(
            Version::from_server_num(90624),
            Version {
                major: 96,
                minor: 24
            }
        );
        assert_eq!(Version::from_tool_output("garbage"), None);
    }
}
