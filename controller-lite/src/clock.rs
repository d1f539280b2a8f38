//! Time helpers: OpenZiti timestamps are RFC 3339 UTC with milliseconds and a `Z`
//! (go-openapi `strfmt.DateTime`; the C SDK ignores zone offsets, spec §3.4).

use time::OffsetDateTime;
use time::macros::format_description;

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Current Unix time in milliseconds.
pub fn now_unix_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Formats a Unix time (seconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn fmt_unix(secs: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    fmt(t)
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn fmt(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Formatting a valid date with a fixed, valid description cannot fail; fall
    // back to the epoch string rather than panicking.
    t.format(f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

/// Current time formatted as [`fmt`] does.
pub fn now_string() -> String {
    fmt(OffsetDateTime::now_utc())
}

/// Parses an RFC 3339 time (as [`fmt`] writes it) into Unix seconds.
pub fn parse_unix(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}
