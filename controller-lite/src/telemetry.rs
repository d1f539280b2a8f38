//! What the controller counts per API request and per authentication, served on its
//! operations endpoint (`metrics_listen`) beside [`crate::limits::Metrics`], and how it
//! logs security events: at WARN, with a stable `event` field and the fields named in
//! `docs/operations.md` ("Logs"), so that alerting can match them.
//!
//! Label values are bounded: a request's route is the template it matched (the route
//! table is fixed) or `unmatched`; its method is one of the standard ones or `other`;
//! an authentication's method is one the API knows or `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::AppState;

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One histogram series: counts per bucket (not cumulative), sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn record(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            if let Some(b) = self.buckets.get_mut(i) {
                *b += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// API requests by route, method and status, with their durations: one map, keyed by
/// the route template, so a request takes one lock and allocates only the first time
/// its route, method or status is seen.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<String, BTreeMap<&'static str, RouteSeries>>>,
}

/// The series of one route and method.
#[derive(Debug, Default)]
struct RouteSeries {
    durations: Histogram,
    by_status: BTreeMap<u16, u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one insert or increment, never left half-done.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The label of an HTTP method: the standard ones, else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl HttpMetrics {
    /// Counts one request.
    pub fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let mut routes = lock(&self.routes);
        let methods = match routes.get_mut(route) {
            Some(m) => m,
            None => routes.entry(route.to_owned()).or_default(),
        };
        let series = methods.entry(method).or_default();
        *series.by_status.entry(status).or_default() += 1;
        series.durations.record(elapsed.as_secs_f64());
    }

    /// Appends the Prometheus text of the requests and their durations.
    pub fn render(&self, out: &mut String) {
        let routes = lock(&self.routes);
        let name = "weft_controller_http_requests_total";
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {name} API requests answered, by method, route and status.\n# TYPE {name} counter"
        );
        for (route, methods) in routes.iter() {
            for (method, series) in methods {
                for (status, n) in &series.by_status {
                    let _ = writeln!(
                        out,
                        "{name}{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }
        let name = "weft_controller_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer an API request, by method and route.\n# TYPE {name} histogram"
        );
        for (route, methods) in routes.iter() {
            for (method, series) in methods {
                let h = &series.durations;
                let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
    }
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The OpenZiti error code of an error response (a response extension).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Middleware: counts every API request by the route it matched; a refused enrollment
/// is a security event (`event = "enrollment_refused"`).
pub async fn record_request(State(ctl): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let source = req
        .extensions()
        .get::<crate::server::ConnInfo>()
        .map(|c| c.peer_addr.ip());
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status();
    ctl.metrics
        .http
        .record(method, &route, status.as_u16(), started.elapsed());
    if status.is_client_error() && is_enrollment(&route) {
        let code = res.extensions().get::<ErrorCode>().map_or("", |c| c.0);
        // Formatted only for the event (a missing address logs as empty).
        let source = source.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::warn!(
            event = "enrollment_refused",
            %route,
            %source,
            status = status.as_u16(),
            code,
            "enrollment refused"
        );
    }
    res
}

/// Whether `route` redeems an enrollment (`/enroll`, `/enroll/{method}`, under either
/// API prefix).
fn is_enrollment(route: &str) -> bool {
    route.split('/').any(|segment| segment == "enroll")
}

/// The outcome of an authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthResult {
    /// An API session was made (possibly partial, with authentication queries open).
    Success,
    /// Refused.
    Failure,
}

/// Authentications by method and result.
#[derive(Debug, Default)]
pub struct AuthMetrics {
    counts: Mutex<BTreeMap<(&'static str, AuthResult), u64>>,
}

impl AuthMetrics {
    /// Counts one authentication with `method` (`cert`, `password`, `ext-jwt`, `totp`;
    /// anything else counts as `other`).
    pub fn record(&self, method: &str, result: AuthResult) {
        let method = match method {
            "cert" => "cert",
            "password" => "password",
            "ext-jwt" => "ext-jwt",
            "totp" => "totp",
            _ => "other",
        };
        *lock(&self.counts).entry((method, result)).or_default() += 1;
    }

    /// Appends the Prometheus text of the counts.
    pub fn render(&self, out: &mut String) {
        let name = "weft_controller_authentications_total";
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {name} Authentications, by method and result.\n# TYPE {name} counter"
        );
        for ((method, result), n) in lock(&self.counts).iter() {
            let result = match result {
                AuthResult::Success => "success",
                AuthResult::Failure => "failure",
            };
            let _ = writeln!(out, "{name}{{method=\"{method}\",result=\"{result}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_counters_and_cumulative_histograms() {
        let m = HttpMetrics::default();
        m.record(
            "GET",
            "/edge/client/v1/services",
            200,
            Duration::from_millis(3),
        );
        m.record(
            "GET",
            "/edge/client/v1/services",
            200,
            Duration::from_millis(30),
        );
        m.record(
            "POST",
            "/edge/client/v1/authenticate",
            401,
            Duration::from_secs(9),
        );
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "weft_controller_http_requests_total{method=\"GET\",route=\"/edge/client/v1/services\",status=\"200\"} 2",
            "weft_controller_http_requests_total{method=\"POST\",route=\"/edge/client/v1/authenticate\",status=\"401\"} 1",
            "weft_controller_http_request_duration_seconds_bucket{method=\"GET\",route=\"/edge/client/v1/services\",le=\"0.005\"} 1",
            "weft_controller_http_request_duration_seconds_bucket{method=\"GET\",route=\"/edge/client/v1/services\",le=\"0.05\"} 2",
            "weft_controller_http_request_duration_seconds_count{method=\"GET\",route=\"/edge/client/v1/services\"} 2",
            // Beyond the last bound: only +Inf counts it.
            "weft_controller_http_request_duration_seconds_bucket{method=\"POST\",route=\"/edge/client/v1/authenticate\",le=\"5\"} 0",
            "weft_controller_http_request_duration_seconds_bucket{method=\"POST\",route=\"/edge/client/v1/authenticate\",le=\"+Inf\"} 1",
            "weft_controller_http_request_duration_seconds_sum{method=\"POST\",route=\"/edge/client/v1/authenticate\"} 9",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line} in\n{out}");
        }
    }

    #[test]
    fn authentications_count_by_method_and_result_with_bounded_labels() {
        let a = AuthMetrics::default();
        a.record("cert", AuthResult::Success);
        a.record("password", AuthResult::Failure);
        a.record("password", AuthResult::Failure);
        a.record("x\"}evil", AuthResult::Failure);
        let mut out = String::new();
        a.render(&mut out);
        assert!(out.contains(
            "weft_controller_authentications_total{method=\"cert\",result=\"success\"} 1\n"
        ));
        assert!(out.contains(
            "weft_controller_authentications_total{method=\"password\",result=\"failure\"} 2\n"
        ));
        assert!(out.contains(
            "weft_controller_authentications_total{method=\"other\",result=\"failure\"} 1\n"
        ));
        assert!(!out.contains("evil"));
    }

    #[test]
    fn enrollment_routes_are_known_by_their_segment() {
        for yes in ["/enroll", "/enroll/updb", "/edge/client/v1/enroll/erott"] {
            assert!(is_enrollment(yes), "{yes}");
        }
        for no in ["/enrollments", "/enrollments/{id}/refresh", "/authenticate"] {
            assert!(!is_enrollment(no), "{no}");
        }
    }

    #[test]
    fn route_labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
