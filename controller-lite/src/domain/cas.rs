//! 3rd-party CAs beyond create, update and delete: verification (openziti/edge-api
//! `source/management/cas.yml`, `POST /cas/{id}/verify`).

use crate::clock;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::model::CaRecord;
use crate::thirdparty_ca::{CaError, StoredCa, cert};

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Ca {id:?} not found"))
}

/// Marks CA `id` verified when `pem` is a certificate it signed whose common name is its
/// verification token (a CA is verified once). Routers learn of the CA at once.
pub async fn verify(ctl: &Controller, id: &str, pem: &[u8]) -> Result<(), ApiError> {
    let mut tx = ctl.store.begin_write().await?;
    let mut record = tx
        .entity::<CaRecord>(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let ca = StoredCa::from_record(id, &record.name, record.doc.clone())
        .ok_or_else(|| ApiError::Internal(format!("CA {id:?} is damaged in the store")))?;
    if record.doc.is_verified {
        return Err(ApiError::Ca(CaError::AlreadyVerified));
    }
    let token = &record.doc.verification_token;
    cert::check_verification(&ca.der, token, pem, clock::now_unix()).map_err(ApiError::Ca)?;
    record.doc.is_verified = true;
    record.updated_at = clock::now_string();
    let name = record.name.clone();
    if !tx.update_typed(record).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    tracing::info!(ca = %name, "CA verified");
    ctl.notify_routers().await;
    Ok(())
}
