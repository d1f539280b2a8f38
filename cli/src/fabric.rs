//! `weft fabric list links|circuits|routers`: the mesh as the controller sees it,
//! mirroring `ziti fabric list …` (which reads OpenZiti's fabric API; Weft serves
//! `/links` and `/circuits` on the management API with the same list envelope).
//!
//! Tables name routers and services by name (looked up in `/edge-routers` and
//! `/services`; an id stays an id when its entity is gone). `--output json` prints the
//! entities as the API returns them, as `weft edge list` does.

use std::collections::BTreeMap;

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use crate::client::{Api, CliError};
use crate::output::{self, Format};

/// `weft fabric …`.
#[derive(Debug, Subcommand)]
pub enum FabricCommand {
    /// List links between routers, circuits across routers, or routers.
    List {
        /// What to list.
        entity: FabricEntity,
        /// Optional filter, e.g. `state = "up"` or `sort by createdAt desc limit 5`.
        filter: Option<String>,
        /// Output format: `table` or `json`.
        #[arg(long, default_value = "table")]
        output: String,
        /// JSON output (same as `--output json`).
        #[arg(short = 'j', long = "output-json")]
        json: bool,
    },
}

/// The mesh entities `weft fabric list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FabricEntity {
    /// Links between routers (state, latency measured by each end, cost).
    #[value(alias = "link")]
    Links,
    /// Circuits routed across routers, with their paths.
    #[value(alias = "circuit")]
    Circuits,
    /// Routers: online, cost, links up.
    #[value(alias = "router")]
    Routers,
}

/// Runs a `weft fabric` command.
pub async fn run(api: &Api, cmd: FabricCommand) -> Result<(), CliError> {
    match cmd {
        FabricCommand::List {
            entity,
            filter,
            output,
            json,
        } => {
            let format = Format::parse(&output, json)?;
            let filter = filter.as_deref();
            let listed = match entity {
                FabricEntity::Links => api.list_counted("links", filter).await?,
                FabricEntity::Circuits => api.list_counted("circuits", filter).await?,
                FabricEntity::Routers => api.list_counted("edge-routers", filter).await?,
            };
            if format == Format::Json {
                return output::print_listed(listed, "", format);
            }
            let items = &listed.items;
            let (headers, rows) = match entity {
                FabricEntity::Links => {
                    let routers = names(&api.list_all("edge-routers", None).await?);
                    (LINK_HEADERS, link_rows(items, &routers))
                }
                FabricEntity::Circuits => {
                    let routers = names(&api.list_all("edge-routers", None).await?);
                    let services = names(&api.list_all("services", None).await?);
                    (CIRCUIT_HEADERS, circuit_rows(items, &routers, &services))
                }
                FabricEntity::Routers => {
                    let links = api.list_all("links", None).await?;
                    (ROUTER_HEADERS, router_rows(items, &links))
                }
            };
            output::print_columns(headers, &rows);
            println!(
                "{}",
                output::results(listed.offset, rows.len(), listed.total)
            );
            Ok(())
        }
    }
}

/// Id → name of a list of named entities.
pub fn names(items: &[Value]) -> BTreeMap<String, String> {
    items
        .iter()
        .filter_map(|it| {
            Some((
                it["id"].as_str()?.to_owned(),
                it["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The name of entity `id`, or the id itself when it has none (deleted meanwhile).
fn name_of(names: &BTreeMap<String, String>, id: &str) -> String {
    names.get(id).cloned().unwrap_or_else(|| id.to_owned())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A latency in ms as the API gives it (`null` while unknown).
fn latency(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}ms"))
}

/// Columns of `weft fabric list links`.
pub const LINK_HEADERS: &[&str] = &[
    "ID",
    "SOURCE",
    "DEST",
    "STATE",
    "SRC LATENCY",
    "DST LATENCY",
    "STATIC COST",
    "COST",
];

/// Rows of `weft fabric list links`: the dialer as source, the listener as dest, each
/// end's measured latency, and why a link is down.
pub fn link_rows(links: &[Value], routers: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    links
        .iter()
        .map(|l| {
            let state = text(&l["state"]);
            let reason = l["downReason"].as_str().unwrap_or_default();
            let state = if state == "down" && !reason.is_empty() {
                format!("down ({reason})")
            } else {
                state
            };
            vec![
                text(&l["id"]),
                name_of(routers, l["sourceRouterId"].as_str().unwrap_or_default()),
                name_of(routers, l["destRouterId"].as_str().unwrap_or_default()),
                state,
                latency(&l["sourceLatencyMs"]),
                latency(&l["destLatencyMs"]),
                text(&l["staticCost"]),
                text(&l["cost"]),
            ]
        })
        .collect()
}

/// Columns of `weft fabric list circuits`.
pub const CIRCUIT_HEADERS: &[&str] = &["ID", "SERVICE", "PATH", "COST", "CREATED"];

/// Rows of `weft fabric list circuits`: the path as router names, ingress first.
pub fn circuit_rows(
    circuits: &[Value],
    routers: &BTreeMap<String, String>,
    services: &BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    circuits
        .iter()
        .map(|c| {
            let path = c["path"]
                .as_array()
                .map(|hops| {
                    hops.iter()
                        .map(|r| name_of(routers, r.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                })
                .unwrap_or_default();
            vec![
                text(&c["id"]),
                name_of(services, c["serviceId"].as_str().unwrap_or_default()),
                path,
                text(&c["cost"]),
                output::plain_time(&c["createdAt"]),
            ]
        })
        .collect()
}

/// Columns of `weft fabric list routers`.
pub const ROUTER_HEADERS: &[&str] = &[
    "ID",
    "NAME",
    "ONLINE",
    "COST",
    "NO TRAVERSAL",
    "DISABLED",
    "LINKS UP",
];

/// Rows of `weft fabric list routers`, with the links up at each router (as source or
/// dest).
pub fn router_rows(routers: &[Value], links: &[Value]) -> Vec<Vec<String>> {
    routers
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default();
            let up = links
                .iter()
                .filter(|l| l["state"] == "up")
                .filter(|l| l["sourceRouterId"] == id || l["destRouterId"] == id)
                .count();
            vec![
                id.to_owned(),
                text(&r["name"]),
                text(&r["isOnline"]),
                text(&r["cost"]),
                text(&r["noTraversal"]),
                text(&r["disabled"]),
                up.to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn routers() -> BTreeMap<String, String> {
        names(&[
            json!({"id": "r1", "name": "alpha"}),
            json!({"id": "r2", "name": "beta"}),
        ])
    }

    #[test]
    fn links_show_router_names_latencies_and_why_one_is_down() {
        let links = [
            json!({"id": "r1->r2", "sourceRouterId": "r1", "destRouterId": "r2",
                   "state": "up", "sourceLatencyMs": 0.214, "destLatencyMs": 1.5,
                   "staticCost": 1, "cost": 3, "downReason": ""}),
            json!({"id": "r1->r9", "sourceRouterId": "r1", "destRouterId": "r9",
                   "state": "down", "sourceLatencyMs": null, "destLatencyMs": null,
                   "staticCost": 1, "cost": 1, "downReason": "silent for 3 s"}),
        ];
        let rows = link_rows(&links, &routers());
        assert_eq!(
            rows[0],
            [
                "r1->r2", "alpha", "beta", "up", "0.21ms", "1.50ms", "1", "3"
            ]
        );
        // An unknown router stays an id; unknown latencies print as "-".
        assert_eq!(
            rows[1],
            [
                "r1->r9",
                "alpha",
                "r9",
                "down (silent for 3 s)",
                "-",
                "-",
                "1",
                "1"
            ]
        );
    }

    #[test]
    fn circuits_show_the_path_by_name_and_a_plain_date() {
        let services = names(&[json!({"id": "s1", "name": "echo"})]);
        let circuits = [json!({"id": "7", "serviceId": "s1", "terminatorId": "t1",
                               "path": ["r1", "r2"], "cost": 12,
                               "createdAt": "2026-12-06T10:42:07.123Z"})];
        assert_eq!(
            circuit_rows(&circuits, &routers(), &services)[0],
            [
                "7",
                "echo",
                "alpha -> beta",
                "12",
                "2026-12-06 10:42:07 UTC"
            ]
        );
    }

    #[test]
    fn routers_count_the_links_up_at_either_end() {
        let list = [
            json!({"id": "r1", "name": "alpha", "isOnline": true, "cost": 0,
                   "noTraversal": false, "disabled": false}),
            json!({"id": "r3", "name": "gamma", "isOnline": false, "cost": 5,
                   "noTraversal": true, "disabled": true}),
        ];
        let links = [
            json!({"sourceRouterId": "r1", "destRouterId": "r2", "state": "up"}),
            json!({"sourceRouterId": "r3", "destRouterId": "r1", "state": "up"}),
            json!({"sourceRouterId": "r2", "destRouterId": "r3", "state": "down"}),
        ];
        let rows = router_rows(&list, &links);
        assert_eq!(rows[0], ["r1", "alpha", "true", "0", "false", "false", "2"]);
        assert_eq!(rows[1], ["r3", "gamma", "false", "5", "true", "true", "1"]);
    }
}
