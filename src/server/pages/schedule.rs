//! A database's schedule and retention, edited from its page by admins, with a preview of the
//! next runs in the schedule's zone and in UTC (the first run after the next clock change
//! included, so that DST is seen before it surprises anyone).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use jiff::Timestamp;
use serde::Deserialize;

use crate::api::{SetRetentionRequest, SetScheduleRequest};
use crate::catalog::VerifyMode;
use crate::schedule::DailyAt;
use crate::server::extract::Path;
use crate::team::Principal;

use super::database::database_page;
use super::{AppState, PageResult, apply_retention, apply_schedule, blocking, html};

/// How many runs a preview lists (then the first after a clock change).
const PREVIEWED: usize = 3;

/// `2026-03-29 02:30 BST (01:30 UTC)`, one line per run of [`DailyAt::preview`].
pub fn preview_lines(spec: &DailyAt, now: Timestamp) -> Vec<String> {
    spec.preview(now, PREVIEWED)
        .into_iter()
        .map(|t| {
            format!(
                "{} ({} UTC)",
                spec.show_local(t),
                t.strftime("%Y-%m-%d %H:%M")
            )
        })
        .collect()
}

#[derive(Template)]
#[template(
    source = r#"<ul id="schedule-preview" aria-live="polite">{% if let Some(e) = error %}<li class="error">{{ e }}</li>{% endif %}{% for l in lines %}<li>{{ l }}</li>{% endfor %}</ul>"#,
    ext = "html"
)]
struct Preview {
    lines: Vec<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PreviewQuery {
    #[serde(default)]
    at: String,
}

/// `GET /schedule-preview?at=02:00+Europe/London`: the preview as the schedule form is typed.
pub(super) async fn preview(State(s): State<AppState>, Query(q): Query<PreviewQuery>) -> Response {
    let fragment = match DailyAt::parse(&q.at) {
        Ok(spec) => Preview {
            lines: preview_lines(&spec, s.clock.now()),
            error: None,
        },
        Err(e) => Preview {
            lines: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    html(&fragment)
}

#[derive(Deserialize)]
pub(super) struct ScheduleForm {
    at: String,
    #[serde(default)]
    verify: String,
}

/// `POST /databases/{name}/schedule`: sets (or replaces) the daily capture.
pub(super) async fn set(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<ScheduleForm>,
) -> PageResult {
    let verify = match f.verify.trim() {
        "" => VerifyMode::Off,
        typed => match typed.parse::<VerifyMode>() {
            Ok(mode) => mode,
            Err(why) => {
                return database_page(&s, &p, &name, None, Some(why), StatusCode::BAD_REQUEST)
                    .await;
            }
        },
    };
    let request = SetScheduleRequest {
        database: Some(name.clone()),
        at: f.at,
        verify,
    };
    match apply_schedule(&s, request).await {
        Ok(_) => Ok(Redirect::to(&format!("/databases/{name}#schedule-heading")).into_response()),
        Err(e) => {
            let why = e.message().to_string();
            database_page(&s, &p, &name, None, Some(why), e.status()).await
        }
    }
}

/// `POST /databases/{name}/schedule/remove`.
pub(super) async fn remove(State(s): State<AppState>, Path(name): Path<String>) -> PageResult {
    let (c, n) = (s.catalog.clone(), name.clone());
    blocking(move || Ok(c.remove_schedule(&n)?)).await?;
    s.scheduler.schedules_changed();
    Ok(Redirect::to(&format!("/databases/{name}#schedule-heading")).into_response())
}

#[derive(Deserialize)]
pub(super) struct RetentionForm {
    daily: String,
    weekly: String,
    monthly: String,
    manual: String,
}

/// `POST /databases/{name}/retention`: the four counts.
pub(super) async fn retention(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<RetentionForm>,
) -> PageResult {
    let count = |what: &str, v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} must be a whole number from 0 up, not `{v}`"))
    };
    let parsed = (|| {
        Ok::<_, String>(SetRetentionRequest {
            daily: Some(count("daily", &f.daily)?),
            weekly: Some(count("weekly", &f.weekly)?),
            monthly: Some(count("monthly", &f.monthly)?),
            manual: Some(count("manual", &f.manual)?),
        })
    })();
    let request = match parsed {
        Ok(r) => r,
        Err(why) => {
            return database_page(&s, &p, &name, None, Some(why), StatusCode::BAD_REQUEST).await;
        }
    };
    match apply_retention(&s, name.clone(), request).await {
        Ok(_) => Ok(Redirect::to(&format!("/databases/{name}#schedule-heading")).into_response()),
        Err(e) => {
            let why = e.message().to_string();
            database_page(&s, &p, &name, None, Some(why), e.status()).await
        }
    }
}
