//! Request extractors whose rejections are OpenZiti error envelopes.

use axum::extract::{FromRequest, Request};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Limit for bodies accepted before authentication (and for all bodies).
pub const MAX_BODY: usize = 1024 * 1024;

/// Oversized bodies up to this size are read and discarded before the 413 is
/// sent, so that HTTP/1.1 clients still writing the body see the response
/// instead of a reset connection; beyond it the connection is dropped.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// Reads the whole body, at most [`MAX_BODY`] bytes (413 beyond).
pub async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::CouldNotParseBody("the body could not be read".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY as u64 {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY as u64 {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// A JSON body. Syntax errors give `COULD_NOT_PARSE_BODY`, schema errors
/// (unknown fields, wrong types) `COULD_NOT_VALIDATE`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with the error split described on [`JsonBody`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::CouldNotParseBody(e.to_string()))?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::CouldNotValidate(format!("invalid body: {e}")))
}
