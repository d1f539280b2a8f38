//! `/database/*`, as OpenZiti's management API serves it (openziti/edge-api
//! `source/management/database.yml`; openziti/ziti
//! `controller/internal/routes/database_router.go`): a snapshot of an SQLite store (at
//! most one a minute, 429 `RATE_LIMITED` otherwise), and the data integrity check of
//! the store ([`crate::database`]): starting a check or a fixing check answers 202 at
//! once and the run goes on in the background; a start while one runs is 429
//! `RATE_LIMITED`; the results are those of the latest run.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::views::to_json;
use crate::api::endpoint::{ApiBuilder, Data, Endpoint};
use crate::api::{AppState, envelope};
use crate::auth::Admin;
use crate::error::ApiError;

/// One finding (`dataIntegrityCheckDetail`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Detail {
    /// What is wrong.
    pub description: String,
    /// Repaired by the run.
    pub fixed: bool,
}

/// The latest run (`dataIntegrityCheckDetails`). The spec's strings are not nullable:
/// `startTime` is `""` before the first run, `endTime` while one runs, `error` when
/// none.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    /// A run is in progress.
    pub in_progress: bool,
    /// The run repairs what it can.
    pub fixing_errors: bool,
    /// It found more than the 1000 findings kept.
    pub too_many_errors: bool,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When it ended.
    pub end_time: String,
    /// Why it failed.
    pub error: String,
    /// What it found.
    pub results: Vec<Detail>,
}

/// Adds the routes of this module.
pub fn routes(api: ApiBuilder) -> ApiBuilder {
    api.add(
        Endpoint::post("/database/snapshot", "createDatabaseSnapshot")
            .doc(
                "Database",
                "Writes a consistent copy of the SQLite store beside it (`FILE-YYYYMMDD-HHMMSS`), at most one a minute",
            )
            .admin()
            .returns(200, Data::Object("`{path}`: the snapshot's file on the controller's host.")),
        |State(ctl): State<AppState>, _: Admin| async move { snapshot(&ctl).await },
    )
    .add(
        Endpoint::post("/database/check-data-integrity", "checkDataIntegrity")
            .doc(
                "Database",
                "Starts a check of every reference in the store; the results are at `/database/data-integrity-results`",
            )
            .admin()
            .returns(202, Data::Empty),
        |State(ctl): State<AppState>, _: Admin| async move { start(&ctl, false) },
    )
    .add(
        Endpoint::post("/database/fix-data-integrity", "fixDataIntegrity")
            .doc(
                "Database",
                "Starts a check that also repairs what has a safe repair, in one transaction",
            )
            .admin()
            .returns(202, Data::Empty),
        |State(ctl): State<AppState>, _: Admin| async move { start(&ctl, true) },
    )
    .add(
        Endpoint::get("/database/data-integrity-results", "dataIntegrityResults")
            .doc("Database", "The latest data integrity run: in progress or its findings")
            .admin()
            .returns(200, Data::Schema(|g| g.subschema_for::<Details>())),
        |State(ctl): State<AppState>, _: Admin| async move { results(&ctl) },
    )
}

async fn snapshot(ctl: &AppState) -> Result<Response, ApiError> {
    if ctl.store.backend() == crate::store::Backend::Postgres {
        return Err(ApiError::Conflict(
            "the store is PostgreSQL: back it up with pg_dump (a controller snapshots only an SQLite store)"
                .into(),
        ));
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let taken = ctl
        .snapshots
        .take(ctl.store.snapshot(&stamp))
        .await
        .ok_or(ApiError::RateLimited)?;
    let path = taken.map_err(|e| {
        tracing::error!(error = %e, "database snapshot failed");
        ApiError::Internal(format!("the snapshot failed: {e}"))
    })?;
    tracing::info!(path = %path.display(), "database snapshot written");
    let pruned = match ctl.store.sqlite_file().await {
        Ok(Some(db)) => crate::store::prune_snapshots(&db, ctl.config.store.snapshots_kept, &path),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    match pruned {
        Ok(removed) => {
            for old in removed {
                tracing::info!(path = %old.display(), "old database snapshot removed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "old database snapshots not removed"),
    }
    Ok(envelope::ok(json!({"path": path.display().to_string()})))
}

fn start(ctl: &AppState, fix: bool) -> Result<Response, ApiError> {
    if !crate::database::start(ctl, fix) {
        return Err(ApiError::RateLimited);
    }
    tracing::info!(fix, "data integrity run started");
    Ok((StatusCode::ACCEPTED, envelope::empty()).into_response())
}

fn results(ctl: &AppState) -> Result<Response, ApiError> {
    let (in_progress, run) = ctl.integrity.latest();
    let details = Details {
        in_progress,
        fixing_errors: run.fixing_errors,
        too_many_errors: run.too_many_errors,
        start_time: run.start_time.unwrap_or_default(),
        end_time: run.end_time.unwrap_or_default(),
        error: run.error.unwrap_or_default(),
        results: run
            .results
            .into_iter()
            .map(|f| Detail {
                description: f.description,
                fixed: f.fixed,
            })
            .collect(),
    };
    let count = details.results.len();
    // OpenZiti's meta: the whole list on one page.
    Ok(axum::Json(json!({
        "data": to_json(&details)?,
        "meta": {
            "pagination": {"limit": -1, "offset": 0, "totalCount": count},
            "filterableFields": [],
        },
    }))
    .into_response())
}
