//! Controller limits against resource exhaustion (issue #13 items 3 and 5), against the
//! real `weft-controller` process: the wrong-password storm, login throttling, idle
//! connections, the per-source connection cap and descriptor exhaustion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::Ctl;

/// Reads until the server closes the connection (EOF or reset); returns how long that
/// took, or `None` when it stayed open past `deadline`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    mut s: S,
    deadline: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Time of `GET /version` on a fresh connection.
async fn version_latency(ctl: &Ctl) -> Duration {
    let start = Instant::now();
    let res = ctl.http().get(ctl.url("/version")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    start.elapsed()
}

/// Issue #13 item 3: 500 concurrent wrong-password logins took the controller from
/// 116 MB to 9.5 GB and `GET /version` to 3.3 s. The throttle is opened wide here so
/// that every attempt reaches the hashing gate, which alone must bound memory; one
/// hashing thread (the default on two cores) keeps the figures machine-independent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_password_storm_keeps_memory_bounded_and_version_fast() {
    let ctl = Ctl::start_with(
        "metrics.listen = \"127.0.0.1:0\"\n\
         auth.login_failures_burst = 1000000\n\
         auth.login_failures_per_minute = 1000000\n\
         http.max_connections_per_source = 4096\n\
         auth.password_hash_concurrency = 1",
    );
    let base_kib = ctl.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base_kib));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), ctl.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kib = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let probe = ctl.http();
    assert_eq!(
        probe
            .get(ctl.url("/version"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let storm_client = ctl.http();
    let url = ctl.client_url("/authenticate?method=password");
    let storm: Vec<_> = (0..500)
        .map(|i| {
            let (http, url) = (storm_client.clone(), url.clone());
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .json(&json!({"username": "admin", "password": format!("wrong-{i}")}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (
                    status,
                    body["error"]["code"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    // `GET /version` while the storm runs, on a connection opened before it (a fresh
    // connection also queues its TLS handshake behind the storm's 500, all on the two
    // cores this test shares with the controller: reported, not asserted).
    let mut worst = Duration::ZERO;
    let mut worst_fresh = Duration::ZERO;
    while !storm.iter().all(tokio::task::JoinHandle::is_finished) {
        let start = Instant::now();
        let res = probe.get(ctl.url("/version")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        worst = worst.max(start.elapsed());
        worst_fresh = worst_fresh.max(version_latency(&ctl).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in storm {
        let (status, code) = t.await.unwrap();
        *counts.entry((status, code)).or_insert(0u32) += 1;
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_kib = peak.load(Ordering::Relaxed);
    eprintln!(
        "storm: RSS {} MiB before, peak {} MiB; worst GET /version {worst:?} ({worst_fresh:?} on a new connection); answers {counts:?}",
        base_kib / 1024,
        peak_kib / 1024
    );
    for (status, code) in counts.keys() {
        assert!(
            (*status == 401 && code == "INVALID_AUTH")
                || (*status == 429 && code == "RATE_LIMITED"),
            "unexpected answer {status} {code}"
        );
    }
    assert!(
        counts.keys().any(|(s, _)| *s == 429),
        "500 concurrent checks must overflow the hashing queue"
    );
    assert!(
        peak_kib < 400 * 1024,
        "peak RSS {} MiB under the storm",
        peak_kib / 1024
    );
    assert!(
        worst < Duration::from_secs(1),
        "GET /version took {worst:?}"
    );
    assert!(ctl.metric("weft_controller_logins_refused_busy_total") > 0);
    assert_eq!(ctl.metric("weft_controller_password_hashes_in_flight"), 0);
    // The right password still works afterwards.
    let _ = ctl.admin_token().await;
}

/// Failed logins are throttled per user name and per source address (default burst 10).
/// The refill is slowed to one failure a minute: with the default (ten a minute), ten
/// password hashes on a loaded machine took over 6 s and earned an eleventh try.
#[tokio::test]
async fn repeated_wrong_passwords_are_throttled() {
    let ctl =
        Ctl::start_with("metrics.listen = \"127.0.0.1:0\"\nauth.login_failures_per_minute = 1");
    let http = ctl.http();
    let login = |user: &'static str| {
        http.post(ctl.mgmt("/authenticate?method=password"))
            .json(&json!({"username": user, "password": "wrong"}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(login("admin").await.unwrap().status(), 401);
    }
    let res = login("admin").await.unwrap();
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED");
    // The address is out of attempts too, whatever the user name.
    assert_eq!(login("someone-else").await.unwrap().status(), 429);
    assert!(ctl.metric("weft_controller_logins_throttled_total") >= 2);
}

/// Issue #13 item 5: a connection that completes TLS and sends nothing, or only the
/// HTTP/2 preface, stayed open for good. Now: closed after the request-head timeout,
/// and a connection idle between requests after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_by_the_server() {
    let ctl = Ctl::start_with(
        "metrics.listen = \"127.0.0.1:0\"\n\
         http.tls_handshake_timeout_ms = 1500\n\
         http.header_read_timeout_ms = 1500\n\
         http.idle_timeout_ms = 2500",
    );
    let tls = ctl.client_tls();
    let deadline = Duration::from_secs(30);
    let mut waits = Vec::new();
    for _ in 0..40 {
        let s = ctl.tls_connect(tls.clone()).await.unwrap();
        waits.push(tokio::spawn(closed_within(s, deadline)));
    }
    // Only the HTTP/2 connection preface, no SETTINGS, no request.
    let mut h2 = ctl.tls_connect(tls.clone()).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2.flush().await.unwrap();
    let h2_wait = tokio::spawn(closed_within(h2, deadline));
    // Plain TCP that never starts TLS.
    let tcp = tokio::net::TcpStream::connect(ctl.addr).await.unwrap();
    let tcp_wait = tokio::spawn(closed_within(tcp, deadline));
    // One request, then silence: closed after the idle timeout, not before the answer.
    let mut used = ctl.tls_connect(tls.clone()).await.unwrap();
    used.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    used.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let used_wait = tokio::spawn(closed_within(used, deadline));
    // The listener keeps answering meanwhile.
    assert!(version_latency(&ctl).await < Duration::from_secs(5));
    let mut longest = Duration::ZERO;
    for w in waits {
        let lived = w.await.unwrap().expect("idle TLS connection left open");
        longest = longest.max(lived);
    }
    let h2_lived = h2_wait
        .await
        .unwrap()
        .expect("HTTP/2-preface-only connection left open");
    let tcp_lived = tcp_wait
        .await
        .unwrap()
        .expect("connection without TLS left open");
    let used_lived = used_wait
        .await
        .unwrap()
        .expect("connection idle after a request left open");
    eprintln!(
        "idle lifetimes: TLS-only up to {longest:?}, h2 preface {h2_lived:?}, no TLS {tcp_lived:?}, after a request {used_lived:?}"
    );
    assert!(used_lived >= Duration::from_millis(1000), "{used_lived:?}");
    assert!(ctl.metric("weft_controller_connections_closed_idle_total") >= 43);
    assert!(version_latency(&ctl).await < Duration::from_secs(5));
}

/// The per-source cap refuses connections beyond it and admits again once one closes.
#[tokio::test]
async fn per_source_cap_refuses_the_excess() {
    let ctl =
        Ctl::start_with("metrics.listen = \"127.0.0.1:0\"\nhttp.max_connections_per_source = 4");
    let tls = ctl.client_tls();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(ctl.tls_connect(tls.clone()).await.unwrap());
    }
    // The fifth is closed as soon as it is accepted: the handshake fails.
    assert!(ctl.tls_connect(tls.clone()).await.is_err());
    assert!(ctl.metric("weft_controller_connections_refused_per_source_total") >= 1);
    assert_eq!(ctl.metric("weft_controller_connections_open"), 4);
    // One closes: a new connection gets in (wait for the server to see the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = ctl.tls_connect(tls.clone()).await {
            s.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await.unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection admitted after one closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// At the descriptor limit the accept loop closes the least recently active idle
/// connections instead of failing accepts forever: `GET /version` still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_sheds_idle_connections() {
    let ctl = Ctl::start_with_nofile(
        "metrics.listen = \"127.0.0.1:0\"\n\
         http.max_connections_per_source = 100000\n\
         http.header_read_timeout_ms = 600000\n\
         http.tls_handshake_timeout_ms = 600000",
        128,
    );
    let tls = ctl.client_tls();
    let mut held = Vec::new();
    for _ in 0..200 {
        // Past the limit some are shed or never handshake: only their count matters.
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(5), ctl.tls_connect(tls.clone())).await
        {
            held.push(s);
        }
    }
    let start = Instant::now();
    let res = ctl.http().get(ctl.url("/version")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    eprintln!(
        "{} idle connections held; GET /version at the descriptor limit took {:?}",
        held.len(),
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(ctl.metric("weft_controller_connections_shed_total") > 0);
}

/// A request whose body never comes is answered 503 `TIMEOUT` after
/// `http_request_timeout_ms` and its connection closed, instead of holding it forever.
#[tokio::test]
async fn a_request_that_never_finishes_times_out() {
    let ctl = Ctl::start_with(
        "metrics.listen = \"127.0.0.1:0\"\n\
         http.request_timeout_ms = 1000",
    );
    let mut s = ctl.tls_connect(ctl.client_tls()).await.unwrap();
    s.write_all(
        b"POST /edge/client/v1/authenticate?method=cert HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"TIMEOUT\""), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(ctl.metric("weft_controller_requests_timed_out_total"), 1);
}
