//! The clap definitions of the team's commands: users, personal API tokens, the audit log.

use clap::Subcommand;

use crate::api::Role;

/// Users and their roles, personal API tokens, and the audit log.
#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// List the users and their roles.
    Users {
        #[arg(long)]
        json: bool,
    },
    /// Add a user with a role: viewer (sees), operator (also captures, restores, cancels,
    /// verifies, downloads) or admin (also manages databases, schedules, retention,
    /// protection and users). The password is asked for twice without echo on a terminal, or
    /// read as the first line of standard input; never from the command line.
    #[command(name = "users:add")]
    UsersAdd {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Remove a user, their browser sessions and their personal tokens.
    #[command(name = "users:remove")]
    UsersRemove {
        name: String,
        /// The user's name, to confirm (asked for on a terminal when not given).
        #[arg(long, short)]
        confirm: Option<String>,
    },
    /// Set a user's password (asked for as by users:add); their browser sessions end.
    #[command(name = "users:password")]
    UsersPassword { name: String },
    /// Change a user's role; their tokens and sessions carry the new one at once.
    #[command(name = "users:role")]
    UsersRole {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// List personal API tokens: yours (with a personal token), a user's (--user; admins),
    /// or everyone's (with the service's token).
    Tokens {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a personal API token with your role (or, for admins, a user's: --user). Its
    /// text is printed this once; the service keeps only its hash.
    #[command(name = "tokens:create")]
    TokensCreate {
        /// What the token is for (a machine, a script).
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a personal API token by its ID: it stops working at once.
    #[command(name = "tokens:revoke")]
    TokensRevoke { id: String },
    /// Show the audit log, newest first: who did what, to what, when, and the answer.
    Audit {
        /// How many entries (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, crate::api::RoleError> {
    s.parse()
}
