//! List parameters of every list endpoint (`limit`, `offset`, `filter`, `sort`, as in
//! OpenZiti) and their application to JSON documents.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::filter::{self, Fields, Limit, Query, SortKey};

/// Most items one page may hold (OpenZiti's maximum `limit`).
pub const MAX_LIMIT: i64 = 500;
/// Page size when none is asked for (OpenZiti's default).
pub const DEFAULT_LIMIT: i64 = 10;

#[derive(Debug, Deserialize)]
struct RawListQuery {
    limit: Option<String>,
    offset: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
}

/// `limit`, `offset`, `filter` and `sort` of a list request. The filter and sort are
/// parsed by [`ListQuery::apply`], once the collection's fields are known.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Page size (1..=500, default 10 as in OpenZiti).
    pub limit: i64,
    /// Items to skip.
    pub offset: i64,
    /// The `filter` parameter ([`crate::filter`]).
    pub filter: Option<String>,
    /// The `sort` parameter (`name desc, createdAt`); a `sort by` in the filter wins.
    pub sort: Option<String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            offset: 0,
            filter: None,
            sort: None,
        }
    }
}

/// One page of a list and what `meta.pagination` reports about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of the page.
    pub items: Vec<T>,
    /// Effective page size.
    pub limit: i64,
    /// Effective offset.
    pub offset: i64,
    /// Items matching the filter, over all pages.
    pub total: i64,
}

impl<T> Page<T> {
    /// The same page with each item converted by an async `f`, one after another.
    pub async fn try_map_async<U, E, F>(self, mut f: impl FnMut(T) -> F) -> Result<Page<U>, E>
    where
        F: Future<Output = Result<U, E>>,
    {
        let mut items = Vec::with_capacity(self.items.len());
        for item in self.items {
            items.push(f(item).await?);
        }
        Ok(Page {
            items,
            limit: self.limit,
            offset: self.offset,
            total: self.total,
        })
    }

    /// The same page with each item converted.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            limit: self.limit,
            offset: self.offset,
            total: self.total,
        })
    }
}

impl From<filter::FilterError> for ApiError {
    fn from(e: filter::FilterError) -> Self {
        match e.kind {
            filter::ErrorKind::Filter => Self::InvalidFilter(e.to_string()),
            filter::ErrorKind::Sort => Self::InvalidSort(e.to_string()),
        }
    }
}

impl ListQuery {
    /// Parses the filter and sort for a collection with `fields`.
    pub fn query(&self, fields: &Fields) -> Result<Query, ApiError> {
        let mut q = match self.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => filter::parse(f, fields)?,
            _ => Query::default(),
        };
        if q.sort.is_empty() {
            if let Some(s) = self.sort.as_deref().filter(|s| !s.trim().is_empty()) {
                q.sort = filter::parse_sort(s, fields)?;
            }
        }
        if let Some(Limit::Count(n)) = q.limit {
            if n == 0 || n > MAX_LIMIT as u64 {
                return Err(ApiError::InvalidPagination(format!(
                    "limit must be between 1 and {MAX_LIMIT} (or none)"
                )));
            }
        }
        Ok(q)
    }

    /// Filters `items` (each with the document the filter sees), sorts them (by
    /// `default_sort` when the request names no order; then by `id`) and cuts the page.
    pub fn apply<T>(
        &self,
        fields: &Fields,
        default_sort: &[&str],
        items: Vec<(Value, T)>,
    ) -> Result<Page<T>, ApiError> {
        let q = self.query(fields)?;
        let sort = if q.sort.is_empty() {
            default_sort
                .iter()
                .filter_map(|f| {
                    fields.lookup(f).map(|ty| SortKey {
                        field: (*f).to_owned(),
                        ty,
                        descending: false,
                    })
                })
                .collect()
        } else {
            q.sort.clone()
        };
        let mut kept: Vec<(Value, T)> = items.into_iter().filter(|(d, _)| q.matches(d)).collect();
        kept.sort_by(|a, b| filter::compare_docs(&sort, &a.0, &b.0));
        let total = kept.len() as i64;
        let offset = q
            .skip
            .map_or(self.offset, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let limit = match q.limit {
            Some(Limit::Count(n)) => i64::try_from(n).unwrap_or(MAX_LIMIT),
            Some(Limit::None) => total,
            None => self.limit,
        };
        let items = kept
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(_, t)| t)
            .collect();
        Ok(Page {
            items,
            limit,
            offset,
            total,
        })
    }
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
        let limit = num("limit", q.limit, DEFAULT_LIMIT)?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidParameter(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let offset = num("offset", q.offset, 0)?;
        Ok(Self {
            limit,
            offset,
            filter: q.filter,
            sort: q.sort,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::FieldType;

    fn items() -> Vec<(Value, u32)> {
        (0..25)
            .map(|i| {
                (
                    json!({"id": format!("{i:02}"), "name": format!("n{}", 24 - i), "cost": i % 3}),
                    i,
                )
            })
            .collect()
    }

    fn fields() -> Fields {
        Fields::base().with("cost", FieldType::Number)
    }

    #[test]
    fn paging_sorting_and_filter_clauses() {
        let q = ListQuery {
            limit: 5,
            offset: 20,
            ..ListQuery::default()
        };
        let p = q.apply(&fields(), &["name"], items()).unwrap();
        assert_eq!((p.total, p.items.len(), p.limit, p.offset), (25, 5, 5, 20));
        let q = ListQuery {
            filter: Some("cost = 0 sort by name desc skip 1 limit 2".into()),
            ..ListQuery::default()
        };
        let p = q.apply(&fields(), &["name"], items()).unwrap();
        assert_eq!(p.total, 9);
        assert_eq!(p.items, [18, 21]);
        assert_eq!((p.limit, p.offset), (2, 1));
        let q = ListQuery {
            sort: Some("cost desc, name".into()),
            filter: Some("limit none".into()),
            ..ListQuery::default()
        };
        let p = q.apply(&fields(), &["name"], items()).unwrap();
        assert_eq!(p.items.len(), 25);
        assert_eq!(p.items[0], 23);
    }

    #[test]
    fn bad_queries_are_api_errors() {
        let err = |filter: &str, sort: Option<&str>| {
            ListQuery {
                filter: Some(filter.into()),
                sort: sort.map(Into::into),
                ..ListQuery::default()
            }
            .apply(&fields(), &[], items())
            .unwrap_err()
            .code()
        };
        assert_eq!(err("bogus", None), "INVALID_FILTER");
        assert_eq!(err("", Some("bogus")), "INVALID_SORT_IDENTIFIER");
        assert_eq!(err("limit 501", None), "INVALID_PAGINATION");
    }
}
