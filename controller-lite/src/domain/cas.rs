//! 3rd-party CAs beyond create, update and delete: verification (openziti/edge-api
//! `source/management/cas.yml`, `POST /cas/{id}/verify`).

use serde_json::json;

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::Kind;
use crate::thirdparty_ca::{CaError, StoredCa, cert};

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Ca {id:?} not found"))
}

/// Marks CA `id` verified when `pem` is a certificate it signed whose common name is its
/// verification token (a CA is verified once). Routers learn of the CA at once.
pub async fn verify(ctl: &Controller, id: &str, pem: &[u8]) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    let mut row = tx
        .get_entity(Kind::Cas.collection(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if row.data["isVerified"].as_bool() == Some(true) {
        return Err(ApiError::Ca(CaError::AlreadyVerified));
    }
    let ca = StoredCa::from_row(&row)
        .ok_or_else(|| ApiError::Internal(format!("CA {id:?} is damaged in the store")))?;
    let token = row.data["verificationToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    cert::check_verification(&ca.der, &token, pem, clock::now_unix()).map_err(ApiError::Ca)?;
    row.data["isVerified"] = json!(true);
    row.updated_at = clock::now_string();
    if !tx.update_entity(&row).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    tracing::info!(ca = %row.name, "CA verified");
    ctl.notify_routers().await;
    Ok(())
}
