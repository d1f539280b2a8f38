//! `weft fabric list links|circuits|routers` against a real controller and two linked
//! routers carrying a circuit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::{Admin, Ctl, Router, free_port, init_logs};

mod common;
use common::{login_admin, ok, weft};

const WAIT: Duration = Duration::from_secs(30);

/// The table row (split on runs of two spaces or more) whose first cell is `id`.
fn row(table: &str, id: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|c| c == id))
        .unwrap_or_else(|| panic!("no row {id} in\n{table}"))
}

async fn links_up(admin: &Admin) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let links = admin.get("links").await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if links.len() == 1
            && links[0]["state"] == "up"
            && links[0]["sourceLatencyMs"].is_number()
            && links[0]["destLatencyMs"].is_number()
        {
            return links;
        }
        assert!(Instant::now() < deadline, "no link up: {links:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An SDK context for a new identity with `attrs`.
async fn context(admin: &Admin, name: &str, attrs: &[&str]) -> weft_sdk::Context {
    let (_, jwt) = admin.identity(name, attrs).await;
    let identity = weft_sdk::enroll(&jwt).await.unwrap();
    weft_sdk::Context::new(identity).await.unwrap()
}

#[tokio::test]
async fn fabric_lists_need_a_login() {
    let home = tempfile::tempdir().unwrap();
    for what in ["links", "circuits", "routers"] {
        let (ok, out, err) = weft(home.path(), &["fabric", "list", what]).await;
        assert!(!ok, "{what}: {out}");
        assert!(err.contains("not logged in"), "{what}: {err}");
    }
    let (ok, _, err) = weft(home.path(), &["fabric", "list", "nodes"]).await;
    assert!(!ok && err.contains("invalid value 'nodes'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_lists_links_routers_and_a_circuit_across_two_routers() {
    init_logs();
    let ctl = Ctl::start();
    let admin = ctl.admin().await;
    let control = ctl.control_addr();
    // B listens, A dials it: one link A → B.
    let b_config = format!(
        "[link]\nlisten = \"127.0.0.1:{}\"\ngroups = [\"ab\"]\ndial_groups = []\n",
        free_port()
    );
    let b = Router::start_configured(&admin, "fab-b", &control, &b_config, &[]).await;
    let a = Router::start_configured(
        &admin,
        "fab-a",
        &control,
        "[link]\ndial_groups = [\"ab\"]\n",
        &[],
    )
    .await;
    let links = links_up(&admin).await;
    let link_id = links[0]["id"].as_str().unwrap().to_owned();

    let home = tempfile::tempdir().unwrap();
    let h: PathBuf = home.path().to_owned();
    login_admin(&h, &ctl).await;

    // Links: router names, state, both latencies, cost.
    let table = ok(&h, &["fabric", "list", "links"]).await;
    eprintln!("{table}");
    assert!(table.starts_with("ID "), "{table}");
    for header in [
        "SOURCE",
        "DEST",
        "STATE",
        "SRC LATENCY",
        "DST LATENCY",
        "COST",
    ] {
        assert!(table.lines().next().unwrap().contains(header), "{table}");
    }
    let cells = row(&table, &link_id);
    assert_eq!(cells[1..4], ["fab-a", "fab-b", "up"], "{table}");
    for latency in &cells[4..6] {
        let ms: f64 = latency.strip_suffix("ms").unwrap().parse().unwrap();
        assert!((0.0..1000.0).contains(&ms), "{table}");
    }
    // The cost follows the measured latency, so it may have moved since `links` was
    // read: a number at least the static cost.
    let static_cost: u64 = cells[6].parse().unwrap();
    assert_eq!(
        static_cost,
        links[0]["staticCost"].as_u64().unwrap(),
        "{table}"
    );
    assert!(cells[7].parse::<u64>().unwrap() >= static_cost, "{table}");
    let json = ok(&h, &["fabric", "list", "links", "-j"]).await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["id"], link_id.as_str());
    assert_eq!(v[0]["sourceRouterId"], a.id.as_str());
    // A filter reaches the API.
    let none = ok(&h, &["fabric", "list", "links", "state = \"down\"", "-j"]).await;
    assert_eq!(serde_json::from_str::<Value>(&none).unwrap(), json!([]));

    // Routers: online, one link up each.
    let table = ok(&h, &["fabric", "list", "routers"]).await;
    eprintln!("{table}");
    for (id, name) in [(&a.id, "fab-a"), (&b.id, "fab-b")] {
        let cells = row(&table, id);
        assert_eq!(cells[1..3], [name, "true"], "{table}");
        assert_eq!(cells.last().unwrap(), "1", "{table}");
    }

    // No circuit yet: the header, and no results.
    let table = ok(&h, &["fabric", "list", "circuits"]).await;
    assert_eq!(
        table.lines().collect::<Vec<_>>()[1..],
        ["results: none"],
        "{table}"
    );

    // A circuit that must cross the link: dialers may use A only, hosts B only.
    for (name, identities, routers) in [
        ("dialers-on-a", "#dialer", "#fab-a"),
        ("hosts-on-b", "#hoster", "#fab-b"),
    ] {
        admin
            .create(
                "edge-router-policies",
                json!({"name": name, "edgeRouterRoles": [routers], "identityRoles": [identities]}),
            )
            .await;
    }
    admin
        .create(
            "service-edge-router-policies",
            json!({"name": "all", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
        )
        .await;
    admin.service("fab-echo", &["fab-echo"], false).await;
    admin
        .service_policy("fab-dial", "Dial", &["#dialer"], &["#fab-echo"])
        .await;
    admin
        .service_policy("fab-bind", "Bind", &["#hoster"], &["#fab-echo"])
        .await;
    let host = context(&admin, "fab-host", &["hoster"]).await;
    let client = context(&admin, "fab-client", &["dialer"]).await;
    let listener = host.bind("fab-echo").await.unwrap();
    let server = tokio::spawn(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(&buf).await.unwrap();
        // Hold the circuit until the client closes it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let mut stream = client.dial("fab-echo").await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello");

    let circuits = admin.get("circuits").await["data"].clone();
    let circuit_id = circuits[0]["id"].as_str().unwrap().to_owned();
    let table = ok(&h, &["fabric", "list", "circuits"]).await;
    eprintln!("{table}");
    for header in ["SERVICE", "PATH", "CREATED"] {
        assert!(table.lines().next().unwrap().contains(header), "{table}");
    }
    let cells = row(&table, &circuit_id);
    assert_eq!(cells[1..3], ["fab-echo", "fab-a -> fab-b"], "{table}");
    assert!(cells.last().unwrap().ends_with(" UTC"), "{table}");
    let json = ok(&h, &["fabric", "list", "circuit", "-j"]).await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["path"], json!([a.id, b.id]));

    stream.shutdown().await.unwrap();
    drop(stream);
    server.await.unwrap();
}
