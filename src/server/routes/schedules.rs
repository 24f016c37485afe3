//! Routes of schedules, retention and pins: when a database is captured, and which of its
//! backups are kept.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::{
    RetentionPolicy, RetentionView, ScheduleView, SetRetentionRequest, SetScheduleRequest,
    TransferView,
};
use crate::catalog::ScheduleRecord;
use crate::schedule::retention::Policy;
use crate::schedule::{DailyAt, spec_of};
use crate::server::auth::AuditTarget;
use crate::server::extract::{Json as JsonBody, Path};
use crate::transfer::TransferError;

use super::{ApiError, ApiResult, AppState, blocking, parse_id};

impl From<Policy> for RetentionPolicy {
    fn from(p: Policy) -> RetentionPolicy {
        RetentionPolicy {
            daily: p.daily,
            weekly: p.weekly,
            monthly: p.monthly,
            manual: p.manual,
        }
    }
}

impl From<RetentionPolicy> for Policy {
    fn from(p: RetentionPolicy) -> Policy {
        Policy {
            daily: p.daily,
            weekly: p.weekly,
            monthly: p.monthly,
            manual: p.manual,
        }
    }
}

/// A schedule as the API shows it, with its next run after `now`.
fn schedule_view(
    s: &ScheduleRecord,
    spec: &DailyAt,
    now: jiff::Timestamp,
    retention: Policy,
) -> ScheduleView {
    let (_, next) = spec.next_after(now);
    ScheduleView {
        database: s.database.clone(),
        at: spec.spec(),
        zone: spec.zone.clone(),
        created_at: s.created_at,
        next_run_at: next,
        next_run_local: spec.show_local(next),
        retention: retention.into(),
        verify: s.verify,
    }
}

/// `GET /api/schedules`.
pub(super) async fn list_schedules(
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    Ok(Json(schedule_views(&s).await?))
}

/// Every schedule with its next run, by database: the API's listing and the dashboard's.
pub(in crate::server) async fn schedule_views(s: &AppState) -> ApiResult<Vec<ScheduleView>> {
    let c = s.catalog.clone();
    let all = blocking(move || {
        let mut out = Vec::new();
        for s in c.schedules()? {
            let policy = c.retention(&s.database)?.unwrap_or_default();
            out.push((s, policy));
        }
        Ok(out)
    })
    .await?;
    let now = s.scheduler.clock().now();
    Ok(all
        .iter()
        .filter_map(|(r, p)| spec_of(r).ok().map(|spec| schedule_view(r, &spec, now, *p)))
        .collect())
}

/// One database's schedule with its next run, if it has one: what a database's page shows,
/// without computing every other database's next run.
pub(in crate::server) async fn schedule_view_of(
    s: &AppState,
    database: &str,
) -> ApiResult<Option<ScheduleView>> {
    let (c, name) = (s.catalog.clone(), database.to_string());
    let found = blocking(move || {
        let Some(r) = c.schedules()?.into_iter().find(|r| r.database == name) else {
            return Ok(None);
        };
        let policy = c.retention(&name)?.unwrap_or_default();
        Ok(Some((r, policy)))
    })
    .await?;
    let now = s.scheduler.clock().now();
    Ok(found.and_then(|(r, p)| {
        spec_of(&r)
            .ok()
            .map(|spec| schedule_view(&r, &spec, now, p))
    }))
}

/// `POST /api/schedules`: sets (or replaces) a registered database's daily capture.
pub(super) async fn set_schedule(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<SetScheduleRequest>,
) -> ApiResult<(StatusCode, axum::Extension<AuditTarget>, Json<ScheduleView>)> {
    let view = apply_schedule(&s, body).await?;
    let target = AuditTarget(format!("{} at {}", view.database, view.at));
    Ok((StatusCode::CREATED, axum::Extension(target), Json(view)))
}

/// Sets (or replaces) a registered database's daily capture: the API's and the dashboard's.
pub(in crate::server) async fn apply_schedule(
    s: &AppState,
    body: SetScheduleRequest,
) -> ApiResult<ScheduleView> {
    let spec = DailyAt::parse(&body.at)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let r = s.registry.clone();
    let database = body.database.clone();
    let (name, _) = blocking(move || Ok(r.resolve(database.as_deref())?)).await?;
    if name.starts_with("postgres") && name.contains("://") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schedules are for registered databases: add it with `pgbackups databases:add NAME` first",
        ));
    }
    let now = s.scheduler.clock().now();
    let record = ScheduleRecord {
        database: name,
        hour: spec.hour,
        minute: spec.minute,
        zone: spec.zone.clone(),
        created_at: now,
        verify: body.verify,
    };
    let (c, r) = (s.catalog.clone(), record.clone());
    let policy = blocking(move || {
        c.set_schedule(&r)?;
        Ok(c.retention(&r.database)?.unwrap_or_default())
    })
    .await?;
    s.scheduler.schedules_changed();
    Ok(schedule_view(&record, &spec, now, policy))
}

/// `DELETE /api/schedules/{database}`.
pub(super) async fn remove_schedule(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<StatusCode> {
    let c = s.catalog.clone();
    let removed = blocking(move || Ok(c.remove_schedule(&database)?)).await?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "that database has no schedule; list them with `pgbackups backups:schedules`",
        ));
    }
    s.scheduler.schedules_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/retention/{database}`: the policy set, or the default one.
pub(super) async fn show_retention(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<Json<RetentionView>> {
    let (r, c) = (s.registry.clone(), s.catalog.clone());
    let view = blocking(move || {
        crate::registry::check_name(&database)?;
        if !r.contains(&database)? {
            return Err(TransferError::UnknownDatabase(database));
        }
        let set = c.retention(&database)?;
        Ok(RetentionView {
            default: set.is_none(),
            policy: set.unwrap_or_default().into(),
            database,
        })
    })
    .await?;
    Ok(Json(view))
}

/// `PUT /api/retention/{database}`: changes the counts the request names.
pub(super) async fn set_retention(
    State(s): State<AppState>,
    Path(database): Path<String>,
    JsonBody(body): JsonBody<SetRetentionRequest>,
) -> ApiResult<Json<RetentionView>> {
    Ok(Json(apply_retention(&s, database, body).await?))
}

/// Changes the retention counts `body` names: the API's and the dashboard's.
pub(in crate::server) async fn apply_retention(
    s: &AppState,
    database: String,
    body: SetRetentionRequest,
) -> ApiResult<RetentionView> {
    if !body.in_range() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "retention counts must be between 0 and {}",
                RetentionView::MAX_COUNT
            ),
        ));
    }
    let (r, c) = (s.registry.clone(), s.catalog.clone());
    let view = blocking(move || {
        let (name, _) = r.resolve(Some(&database))?;
        let old = c.retention(&name)?.unwrap_or_default();
        let policy = body.apply(old.into());
        c.set_retention(&name, &policy.into())?;
        Ok(RetentionView {
            database: name,
            policy,
            default: false,
        })
    })
    .await?;
    Ok(view)
}

/// `POST /api/backups/{id}/pin`: never expired by retention.
pub(super) async fn pin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TransferView>> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.set_pinned(id, true)).await?))
}

/// `DELETE /api/backups/{id}/pin`.
pub(super) async fn unpin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TransferView>> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.set_pinned(id, false)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's policy is the engine's, field for field, in the same JSON.
    #[test]
    fn retention_policies_convert_both_ways() {
        let p = Policy {
            daily: 1,
            weekly: 2,
            monthly: 3,
            manual: 4,
        };
        let api = RetentionPolicy::from(p);
        assert_eq!(
            serde_json::to_value(api).expect("serializes"),
            serde_json::to_value(p).expect("serializes")
        );
        assert_eq!(Policy::from(api), p);
    }
}
