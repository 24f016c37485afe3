//! `users`, `users:add`, `users:remove`, `users:password`, `users:role`, `tokens`,
//! `tokens:create`, `tokens:revoke`, `audit`: the team and what it did.

use reqwest::Method;

use super::args::TeamCommand;
use super::client::{CliError, Client, decode};
use super::shared::{Env, path_part, print_json};
use super::{confirm, password, print};
use crate::api::{
    AddUserRequest, AuditEntry, AuditQuery, SetPasswordRequest, SetRoleRequest, TokenCreated,
    TokenQuery, TokenRequest, TokenView, UserView,
};

pub async fn run(command: TeamCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        TeamCommand::Users { json } => {
            let c = Client::connect(env)?;
            let users: Vec<UserView> = c.get("/users").await?;
            if json {
                print_json(&users)?;
            } else {
                print!("{}", print::team::users_listing(&users));
            }
        }
        TeamCommand::UsersAdd { name, role } => {
            let c = Client::connect(env)?;
            let who = name.clone();
            let password =
                tokio::task::spawn_blocking(move || password::new_password(&who)).await??;
            let user: UserView = c
                .post(
                    "/users",
                    &AddUserRequest {
                        name,
                        role,
                        password,
                    },
                )
                .await?;
            println!("Added user {} ({}).", user.name, user.role);
        }
        TeamCommand::UsersRemove { name, confirm } => {
            let c = Client::connect(env)?;
            let path = format!("/users/{}", path_part(&name));
            confirm::confirmed(confirm, remove_effect, |confirm| {
                let req = c
                    .request(Method::DELETE, &path)
                    .query(&[("confirm", confirm)]);
                async { c.send(req).await.map(drop) }
            })
            .await?;
            println!("Removed user {name} with their sessions and tokens.");
        }
        TeamCommand::UsersPassword { name } => {
            let c = Client::connect(env)?;
            let who = name.clone();
            let password =
                tokio::task::spawn_blocking(move || password::new_password(&who)).await??;
            let path = format!("/users/{}/password", path_part(&name));
            c.send(
                c.request(Method::PUT, &path)
                    .json(&SetPasswordRequest { password }),
            )
            .await?;
            println!("Set the password of {name}; their browser sessions have ended.");
        }
        TeamCommand::UsersRole { name, role } => {
            let c = Client::connect(env)?;
            let path = format!("/users/{}/role", path_part(&name));
            let resp = c
                .send(c.request(Method::PUT, &path).json(&SetRoleRequest { role }))
                .await?;
            let user: UserView = decode(resp).await?;
            println!("{} is now {}.", user.name, user.role.with_article());
        }
        TeamCommand::Tokens { user, json } => {
            let c = Client::connect(env)?;
            let resp = c
                .send(
                    c.request(Method::GET, "/tokens")
                        .query(&TokenQuery { user }),
                )
                .await?;
            let tokens: Vec<TokenView> = decode(resp).await?;
            if json {
                print_json(&tokens)?;
            } else {
                print!("{}", print::team::tokens_listing(&tokens));
            }
        }
        TeamCommand::TokensCreate { label, user } => {
            let c = Client::connect(env)?;
            let made: TokenCreated = c.post("/tokens", &TokenRequest { label, user }).await?;
            print!("{}", print::team::token_created_text(&made));
        }
        TeamCommand::TokensRevoke { id } => {
            let c = Client::connect(env)?;
            c.send(c.request(Method::DELETE, &format!("/tokens/{}", path_part(&id))))
                .await?;
            println!("Revoked token {id}.");
        }
        TeamCommand::Audit { limit, json } => {
            let c = Client::connect(env)?;
            let q = AuditQuery {
                limit,
                before: None,
            };
            let resp = c.send(c.request(Method::GET, "/audit").query(&q)).await?;
            let entries: Vec<AuditEntry> = decode(resp).await?;
            if json {
                print_json(&entries)?;
            } else {
                print!("{}", print::team::audit_listing(&entries));
            }
        }
    }
    Ok(0)
}

/// What `users:remove` does to the user `name`.
fn remove_effect(name: &str) -> String {
    format!("This command will remove the user {name} with their browser sessions and API tokens")
}
