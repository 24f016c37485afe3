//! `backups:schedule`, `backups:unschedule`, `backups:schedules`, `backups:retention`:
//! daily captures and how many backups are kept.

use reqwest::Method;

use super::args::ScheduleCommand;
use super::client::{CliError, Client, decode};
use super::print;
use super::shared::{Env, path_part, print_json};
use crate::api::{RetentionView, ScheduleView, SetRetentionRequest, SetScheduleRequest};
use crate::catalog::VerifyMode;

pub async fn run(command: ScheduleCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        ScheduleCommand::Schedule {
            database,
            at,
            verify,
        } => {
            let verify: VerifyMode = verify.parse().map_err(CliError::msg)?;
            let c = Client::connect(env)?;
            let s: ScheduleView = c
                .post(
                    "/schedules",
                    &SetScheduleRequest {
                        database,
                        at,
                        verify,
                    },
                )
                .await?;
            print!("{}", print::scheduled_text(&s));
            Ok(0)
        }
        ScheduleCommand::Unschedule { database } => {
            let c = Client::connect(env)?;
            let name = match database {
                Some(d) => d,
                None => {
                    let all: Vec<ScheduleView> = c.get("/schedules").await?;
                    match all.as_slice() {
                        [one] => one.database.clone(),
                        [] => return Err(CliError::msg("no database has a schedule")),
                        _ => {
                            return Err(CliError::msg(
                                "several databases have schedules; name the one to unschedule",
                            ));
                        }
                    }
                }
            };
            c.send(c.request(Method::DELETE, &format!("/schedules/{}", path_part(&name))))
                .await?;
            println!("Stopped automatic daily backups of {name}");
            Ok(0)
        }
        ScheduleCommand::Retention {
            database,
            daily,
            weekly,
            monthly,
            manual,
        } => {
            let c = Client::connect(env)?;
            let path = format!("/retention/{}", path_part(&database));
            let v: RetentionView = if [daily, weekly, monthly, manual].iter().all(Option::is_none) {
                c.get(&path).await?
            } else {
                let body = SetRetentionRequest {
                    daily,
                    weekly,
                    monthly,
                    manual,
                };
                decode(c.send(c.request(Method::PUT, &path).json(&body)).await?).await?
            };
            print!("{}", print::retention_text(&v));
            Ok(0)
        }
        ScheduleCommand::Schedules { json } => {
            let c = Client::connect(env)?;
            if json {
                // The service's answer as is.
                let all: serde_json::Value = c.get("/schedules").await?;
                print_json(&all)?;
            } else {
                let all: Vec<ScheduleView> = c.get("/schedules").await?;
                print!("{}", print::schedules_listing(&all));
            }
            Ok(0)
        }
    }
}
