//! Request extractors whose rejections are OpenZiti error envelopes.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::store::NameFilter;

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

#[derive(Debug, Deserialize)]
struct RawListQuery {
    limit: Option<String>,
    offset: Option<String>,
    filter: Option<String>,
}

/// `limit`, `offset` and `filter` of list endpoints.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Page size (1..=500, default 10 as in OpenZiti).
    pub limit: i64,
    /// Items to skip.
    pub offset: i64,
    /// Optional name filter.
    pub filter: Option<NameFilter>,
}

/// Parses the small subset of ZitiQL supported here: `name = "x"`,
/// `name contains "x"` (whitespace around operators optional).
pub fn parse_filter(f: &str) -> Result<NameFilter, ApiError> {
    let bad = || {
        ApiError::InvalidParameter(format!(
            "unsupported filter {f:?}: use name=\"x\" or name contains \"x\""
        ))
    };
    let rest = f.trim().strip_prefix("name").ok_or_else(bad)?.trim_start();
    let (contains, rest) = if let Some(r) = rest.strip_prefix('=') {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("contains") {
        (true, r)
    } else {
        return Err(bad());
    };
    let quoted = rest.trim();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|s| !s.contains('"'))
        .ok_or_else(bad)?;
    Ok(if contains {
        NameFilter::Contains(inner.into())
    } else {
        NameFilter::Exact(inner.into())
    })
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = axum::extract::Query::<RawListQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::InvalidParameter(e.body_text()))?
            .0;
        let num = |name: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
            match v {
                None => Ok(default),
                Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::InvalidParameter(format!("{name} must be a non-negative integer"))
                }),
            }
        };
        let limit = num("limit", q.limit, 10)?;
        if !(1..=500).contains(&limit) {
            return Err(ApiError::InvalidParameter(
                "limit must be between 1 and 500".into(),
            ));
        }
        let offset = num("offset", q.offset, 0)?;
        let filter = q.filter.as_deref().map(parse_filter).transpose()?;
        Ok(Self {
            limit,
            offset,
            filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(
            parse_filter("name=\"my svc\"").unwrap(),
            NameFilter::Exact("my svc".into())
        );
        assert_eq!(
            parse_filter("name contains \"x\"").unwrap(),
            NameFilter::Contains("x".into())
        );
        assert!(parse_filter("id=\"x\"").is_err());
        assert!(parse_filter("name=x").is_err());
    }
}
