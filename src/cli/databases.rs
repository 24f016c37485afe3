//! `databases`, `databases:add`, `databases:remove`: registered databases.

use reqwest::Method;

use super::args::DatabaseCommand;
use super::client::{CliError, Client};
use super::shared::{Env, path_part, print_json};
use super::{print, urlarg};
use crate::api::{AddDatabaseRequest, DatabaseAdded};
use crate::catalog::DatabaseRecord;

pub async fn run(command: DatabaseCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        DatabaseCommand::Databases { json } => {
            let c = Client::connect(env)?;
            let dbs: Vec<DatabaseRecord> = c.get("/databases").await?;
            if json {
                print_json(&dbs)?;
            } else {
                print!("{}", print::databases_listing(&dbs));
            }
            Ok(0)
        }
        DatabaseCommand::DatabasesAdd { name, url } => {
            let url = match url.filter(|u| u != "-") {
                Some(u) => {
                    urlarg::warn_if_password(
                        &u,
                        "leave the URL out (or pass `-`) and give it on standard input",
                    );
                    u
                }
                None => urlarg::read_line(
                    "Database URL",
                    "no URL given: pass it as the second argument or on standard input",
                )?,
            };
            let c = Client::connect(env)?;
            let added: DatabaseAdded = c
                .post(
                    "/databases",
                    &AddDatabaseRequest {
                        name: name.clone(),
                        url,
                    },
                )
                .await?;
            println!("Added database {name}: {}", added.url);
            Ok(0)
        }
        DatabaseCommand::DatabasesRemove { name } => {
            let c = Client::connect(env)?;
            c.send(c.request(Method::DELETE, &format!("/databases/{}", path_part(&name))))
                .await?;
            println!("Removed database {name} (its backups are kept).");
            Ok(0)
        }
    }
}
