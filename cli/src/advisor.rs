//! `weft edge policy-advisor identities|services`: why an identity can or cannot dial or
//! bind a service, pair by pair.
//!
//! After `ziti edge policy-advisor` (openziti/ziti `ziti/cmd/edge/policy_advisor.go`):
//! for each (identity, service) pair the controller's policy advice
//! (`GET /identities/{id}/policy-advice/{serviceId}`, evaluated by the controller's own
//! policy index) says whether a Dial and a Bind service policy select both, which edge
//! routers the identity's edge router policies and the service's service edge router
//! policies select, and which of the routers in both are online. A pair is `OKAY` when
//! the identity may dial or bind, both sides have edge routers, they share one and one
//! of the shared routers is online; otherwise `ERROR`, naming each cause. Weft adds a
//! disabled identity as a cause, a `WARNING` when only some shared routers are online,
//! the granting policies by name and their posture checks.
//!
//! Unlike `ziti`, which pairs an identity with the services its policies already grant,
//! one named entity is paired with every entity of the other type, so a missing policy
//! shows up; `-q` keeps the pairs with a problem (in `ziti` it only hides the guide).

use std::sync::Arc;

use clap::Subcommand;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::client::{Api, CliError};

/// Most pairs one run checks: more is refused (name an identity or a service).
pub const MAX_PAIRS: usize = 10_000;

/// Advice requests in flight at once.
const IN_FLIGHT: usize = 8;

/// Router names a line lists before `+N more`.
const NAMES_SHOWN: usize = 5;

/// `weft edge policy-advisor …`.
#[derive(Debug, Subcommand)]
pub enum AdvisorCommand {
    /// Check identities against services: IDENTITY against SERVICE, IDENTITY against
    /// every service, or every identity against every service.
    Identities {
        /// Identity name or id (default: every identity).
        identity: Option<String>,
        /// Service name or id (default: every service).
        service: Option<String>,
        /// Print only the pairs with a problem (ERROR or WARNING), without the summary.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Check services against identities: SERVICE against IDENTITY, SERVICE against
    /// every identity, or every service against every identity.
    Services {
        /// Service name or id (default: every service).
        service: Option<String>,
        /// Identity name or id (default: every identity).
        identity: Option<String>,
        /// Print only the pairs with a problem (ERROR or WARNING), without the summary.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

/// An identity or a service as the advisor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entity {
    id: String,
    name: String,
    /// Identities only: disabled now.
    disabled: bool,
}

impl Entity {
    fn from_json(v: &Value) -> Self {
        Self {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            disabled: v["disabled"].as_bool().unwrap_or(false),
        }
    }
}

/// A reference to an entity (`entityRef`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ref {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

impl Ref {
    /// The name, or the id when the name is empty.
    fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// An edge router reference with whether it is online (`routerEntityRef`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterRef {
    /// The router.
    #[serde(flatten)]
    pub router: Ref,
    /// A control channel is up.
    #[serde(default)]
    pub is_online: bool,
}

/// A service policy granting access, with its posture checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The policy.
    #[serde(flatten)]
    pub policy: Ref,
    /// Its posture checks.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub posture_checks: Vec<Ref>,
}

/// The controller's policy advice for one identity and one service (`policyAdvice`;
/// the lists after `commonRouters` are Weft's additions, empty from a controller
/// without them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Advice {
    /// The identity.
    pub identity: Ref,
    /// The service.
    pub service: Ref,
    /// A Dial service policy selects both.
    pub is_dial_allowed: bool,
    /// A Bind service policy selects both.
    pub is_bind_allowed: bool,
    /// Edge routers the identity may use.
    pub identity_router_count: usize,
    /// Edge routers the service may be reached through.
    pub service_router_count: usize,
    /// Edge routers in both sets.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub common_routers: Vec<RouterRef>,
    /// Edge routers the identity may use.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub identity_routers: Vec<RouterRef>,
    /// Edge routers the service may be reached through.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub service_routers: Vec<RouterRef>,
    /// The Dial service policies selecting both.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dial_policies: Vec<Policy>,
    /// The Bind service policies selecting both.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub bind_policies: Vec<Policy>,
}

/// A JSON `null` list (Go's nil slice) as an empty one.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// How a pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The identity can use the service.
    Okay,
    /// It can, with less margin than policies intend (some shared routers offline).
    Warning,
    /// It cannot.
    Error,
}

impl Level {
    /// `OKAY`, `WARNING` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Okay => "OKAY",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

/// The verdict on a pair: its level and the causes of a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The worst level among the causes; `Okay` when there is none.
    pub level: Level,
    /// Each cause, with what to adjust.
    pub causes: Vec<String>,
}

/// Names of `routers`, at most [`NAMES_SHOWN`] of them, then `+N more`.
fn names(routers: &[&RouterRef]) -> String {
    let mut out: Vec<String> = routers
        .iter()
        .take(NAMES_SHOWN)
        .map(|r| r.router.label().to_owned())
        .collect();
    if routers.len() > NAMES_SHOWN {
        out.push(format!("+{} more", routers.len() - NAMES_SHOWN));
    }
    out.join(", ")
}

/// Judges a pair from its advice and whether the identity is disabled (the causes
/// `ziti edge policy-advisor` reports, plus the disabled identity and the partly
/// offline shared routers).
pub fn judge(a: &Advice, identity_disabled: bool) -> Verdict {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if identity_disabled {
        errors.push(format!(
            "identity is disabled (weft edge enable identity {})",
            a.identity.label()
        ));
    }
    if !a.is_dial_allowed && !a.is_bind_allowed {
        errors.push("no Dial or Bind service policy (adjust service policies)".to_owned());
    }
    if a.identity_router_count == 0 {
        errors.push("identity has no edge router (adjust edge router policies)".to_owned());
    }
    if a.service_router_count == 0 {
        errors.push("service has no edge router (adjust service edge router policies)".to_owned());
    }
    if a.identity_router_count > 0 && a.service_router_count > 0 {
        let common: Vec<&RouterRef> = a.common_routers.iter().collect();
        let offline: Vec<&RouterRef> = common.iter().copied().filter(|r| !r.is_online).collect();
        if common.is_empty() {
            let mut cause = "no common edge router".to_owned();
            if !a.identity_routers.is_empty() || !a.service_routers.is_empty() {
                let of = |rs: &[RouterRef]| {
                    let rs: Vec<&RouterRef> = rs.iter().collect();
                    if rs.is_empty() {
                        "-".to_owned()
                    } else {
                        names(&rs)
                    }
                };
                cause.push_str(&format!(
                    " (identity: {}; service: {})",
                    of(&a.identity_routers),
                    of(&a.service_routers)
                ));
            }
            cause.push_str(" (adjust edge router policies or service edge router policies)");
            errors.push(cause);
        } else if offline.len() == common.len() {
            errors.push(format!(
                "common edge routers all offline: {} (start one, or share an online router through policies)",
                names(&offline)
            ));
        } else if !offline.is_empty() {
            warnings.push(format!(
                "{} of {} common edge routers offline: {}",
                offline.len(),
                common.len(),
                names(&offline)
            ));
        }
    }
    let level = if !errors.is_empty() {
        Level::Error
    } else if !warnings.is_empty() {
        Level::Warning
    } else {
        Level::Okay
    };
    errors.extend(warnings);
    Verdict {
        level,
        causes: errors,
    }
}

/// `yes (policy, …)` or `no`.
fn granted(policies: &[Policy]) -> String {
    if policies.is_empty() {
        return "no".to_owned();
    }
    let names: Vec<&str> = policies.iter().map(|p| p.policy.label()).collect();
    format!("yes ({})", names.join(", "))
}

/// The posture checks of the granting policies: `none`, or per policy (Dial first, each
/// once) its checks and its name, `pc-os, pc-mfa (dial-echo); none (dial-all)`. Access
/// needs every check of any one of them.
fn posture(a: &Advice) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut parts = Vec::new();
    for p in a.dial_policies.iter().chain(&a.bind_policies) {
        if seen.contains(&p.policy.id.as_str()) {
            continue;
        }
        seen.push(&p.policy.id);
        let checks: Vec<&str> = p.posture_checks.iter().map(Ref::label).collect();
        let checks = if checks.is_empty() {
            "none".to_owned()
        } else {
            checks.join(", ")
        };
        parts.push(format!("{checks} ({})", p.policy.label()));
    }
    let any = a
        .dial_policies
        .iter()
        .chain(&a.bind_policies)
        .any(|p| !p.posture_checks.is_empty());
    if any {
        parts.join("; ")
    } else {
        "none".to_owned()
    }
}

/// The line of a pair: the verdict first, then `IDENTITY -> SERVICE`, the causes of a
/// problem, Dial and Bind with the granting policies, the edge router counts with the
/// online shared routers, and the posture checks; fields separated by ` | `.
pub fn line(a: &Advice, v: &Verdict) -> String {
    let online: Vec<&RouterRef> = a.common_routers.iter().filter(|r| r.is_online).collect();
    let mut fields = vec![format!(
        "{:<7} {} -> {}",
        v.level.as_str(),
        a.identity.label(),
        a.service.label()
    )];
    if !v.causes.is_empty() {
        fields.push(v.causes.join("; "));
    }
    fields.push(format!("dial: {}", granted(&a.dial_policies)));
    fields.push(format!("bind: {}", granted(&a.bind_policies)));
    let mut routers = format!(
        "edge routers: identity {}, service {}, common {}, online {}",
        a.identity_router_count,
        a.service_router_count,
        a.common_routers.len(),
        online.len()
    );
    if !online.is_empty() {
        routers.push_str(&format!(" ({})", names(&online)));
    }
    fields.push(routers);
    fields.push(format!("posture checks: {}", posture(a)));
    fields.join(" | ")
}

/// The identity or service `name_or_id` of `coll`; a usage error naming it when there
/// is none.
async fn one(api: &Api, coll: &str, what: &str, name_or_id: &str) -> Result<Entity, CliError> {
    let id = match api.resolve(coll, name_or_id, true).await {
        Ok(id) => id,
        Err(CliError::Usage(_)) => {
            return Err(CliError::Usage(format!(
                "no {what} named or with id {name_or_id:?}"
            )));
        }
        Err(e) => return Err(e),
    };
    Ok(Entity::from_json(
        &api.get(&format!("{coll}/{id}")).await?["data"],
    ))
}

/// `name_or_id` alone, or every entity of `coll`.
async fn some(
    api: &Api,
    coll: &str,
    what: &str,
    name_or_id: Option<&str>,
) -> Result<Vec<Entity>, CliError> {
    match name_or_id {
        Some(n) => Ok(vec![one(api, coll, what, n).await?]),
        None => Ok(api
            .list_all(coll, None)
            .await?
            .iter()
            .map(Entity::from_json)
            .collect()),
    }
}

/// The policy advice for one pair.
async fn advice(api: &Api, identity: &str, service: &str) -> Result<Advice, CliError> {
    let v = api
        .get(&format!("identities/{identity}/policy-advice/{service}"))
        .await?;
    serde_json::from_value(v["data"].clone())
        .map_err(|e| CliError::Answer(format!("policy advice: {e}")))
}

/// Counts of pairs by level.
#[derive(Debug, Default)]
struct Tally {
    okay: usize,
    warning: usize,
    error: usize,
}

/// Runs a `weft edge policy-advisor` command; problems found are the report, not an
/// error (exit code 0).
pub async fn run(api: Api, cmd: AdvisorCommand) -> Result<(), CliError> {
    let (identity, service, quiet, identities_outer) = match cmd {
        AdvisorCommand::Identities {
            identity,
            service,
            quiet,
        } => (identity, service, quiet, true),
        AdvisorCommand::Services {
            service,
            identity,
            quiet,
        } => (identity, service, quiet, false),
    };
    // Look up the named entity first, so an unknown name is the error whatever else.
    let (identities, services) = if identities_outer {
        let i = some(&api, "identities", "identity", identity.as_deref()).await?;
        (
            i,
            some(&api, "services", "service", service.as_deref()).await?,
        )
    } else {
        let s = some(&api, "services", "service", service.as_deref()).await?;
        (
            some(&api, "identities", "identity", identity.as_deref()).await?,
            s,
        )
    };
    let total = pair_count(identities.len(), services.len())?;
    let pairs: Vec<(&Entity, &Entity)> = if identities_outer {
        identities
            .iter()
            .flat_map(|i| services.iter().map(move |s| (i, s)))
            .collect()
    } else {
        services
            .iter()
            .flat_map(|s| identities.iter().map(move |i| (i, s)))
            .collect()
    };
    let api = Arc::new(api);
    let mut tally = Tally::default();
    for chunk in pairs.chunks(IN_FLIGHT) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|(i, s)| {
                let (api, i, s) = (Arc::clone(&api), i.id.clone(), s.id.clone());
                tokio::spawn(async move { advice(&api, &i, &s).await })
            })
            .collect();
        for ((identity, _), task) in chunk.iter().zip(tasks) {
            let a = task
                .await
                .map_err(|e| CliError::Answer(format!("advice task: {e}")))??;
            let v = judge(&a, identity.disabled);
            match v.level {
                Level::Okay => tally.okay += 1,
                Level::Warning => tally.warning += 1,
                Level::Error => tally.error += 1,
            }
            if !quiet || v.level != Level::Okay {
                println!("{}", line(&a, &v));
            }
        }
    }
    if !quiet {
        println!(
            "{}",
            summary(identities.len(), services.len(), total, &tally)
        );
    }
    Ok(())
}

/// How many pairs `identities` identities and `services` services make; refused above
/// [`MAX_PAIRS`].
fn pair_count(identities: usize, services: usize) -> Result<usize, CliError> {
    let total = identities.saturating_mul(services);
    if total > MAX_PAIRS {
        return Err(CliError::Usage(format!(
            "{identities} identities and {services} services make {total} pairs, more than \
             {MAX_PAIRS}: name an identity or a service"
        )));
    }
    Ok(total)
}

/// The last line: how many pairs, by verdict.
fn summary(identities: usize, services: usize, pairs: usize, t: &Tally) -> String {
    if pairs == 0 {
        return format!("no pairs: {identities} identities, {services} services");
    }
    format!(
        "pairs: {pairs} (OKAY {}, WARNING {}, ERROR {})",
        t.okay, t.warning, t.error
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn router(name: &str, online: bool) -> Value {
        json!({"id": format!("id-{name}"), "name": name, "entity": "edge-routers", "isOnline": online})
    }

    fn advice(v: Value) -> Advice {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({
            "identityId": "i1", "identity": {"id": "i1", "name": "alice"},
            "serviceId": "s1", "service": {"id": "s1", "name": "echo"},
            "isDialAllowed": true, "isBindAllowed": false,
            "identityRouterCount": 1, "serviceRouterCount": 1,
            "commonRouters": [router("er1", true)],
            "identityRouters": [router("er1", true)],
            "serviceRouters": [router("er1", true)],
            "dialPolicies": [{"id": "p1", "name": "dial-echo", "postureChecks": []}],
            "bindPolicies": [],
        })
    }

    #[test]
    fn an_okay_pair_names_its_policy_and_online_router() {
        let a = advice(base());
        let v = judge(&a, false);
        assert_eq!(v.level, Level::Okay);
        assert_eq!(
            line(&a, &v),
            "OKAY    alice -> echo | dial: yes (dial-echo) | bind: no | edge routers: identity 1, \
             service 1, common 1, online 1 (er1) | posture checks: none"
        );
    }

    #[test]
    fn each_cause_is_named() {
        let mut v = base();
        v["isDialAllowed"] = json!(false);
        v["dialPolicies"] = json!([]);
        let a = advice(v);
        let verdict = judge(&a, true);
        assert_eq!(verdict.level, Level::Error);
        assert_eq!(
            verdict.causes,
            [
                "identity is disabled (weft edge enable identity alice)",
                "no Dial or Bind service policy (adjust service policies)"
            ]
        );

        let mut v = base();
        v["identityRouterCount"] = json!(0);
        v["identityRouters"] = json!([]);
        v["commonRouters"] = json!(null);
        let verdict = judge(&advice(v), false);
        assert_eq!(
            verdict.causes,
            ["identity has no edge router (adjust edge router policies)"]
        );

        let mut v = base();
        v["identityRouters"] = json!([router("a", true)]);
        v["serviceRouters"] = json!([router("b", true)]);
        v["commonRouters"] = json!([]);
        let verdict = judge(&advice(v), false);
        assert_eq!(
            verdict.causes,
            [
                "no common edge router (identity: a; service: b) (adjust edge router policies \
              or service edge router policies)"
            ]
        );

        let mut v = base();
        v["commonRouters"] = json!([router("er1", false)]);
        let verdict = judge(&advice(v), false);
        assert_eq!(verdict.level, Level::Error);
        assert!(
            verdict.causes[0].starts_with("common edge routers all offline: er1"),
            "{verdict:?}"
        );

        let mut v = base();
        v["serviceRouterCount"] = json!(2);
        v["identityRouterCount"] = json!(2);
        v["commonRouters"] = json!([router("er1", true), router("er2", false)]);
        let a = advice(v);
        let verdict = judge(&a, false);
        assert_eq!(verdict.level, Level::Warning);
        assert_eq!(verdict.causes, ["1 of 2 common edge routers offline: er2"]);
        assert!(line(&a, &verdict).starts_with(
            "WARNING alice -> echo | 1 of 2 common edge routers offline: er2 | dial: yes"
        ));
    }

    #[test]
    fn posture_checks_are_listed_per_granting_policy() {
        let mut v = base();
        v["dialPolicies"] = json!([
            {"id": "p1", "name": "dial-echo", "postureChecks": [{"id": "c1", "name": "pc-os"}]},
            {"id": "p2", "name": "dial-all", "postureChecks": []},
        ]);
        v["bindPolicies"] = json!([{"id": "p1", "name": "dial-echo", "postureChecks": null}]);
        assert_eq!(posture(&advice(v)), "pc-os (dial-echo); none (dial-all)");
    }

    #[test]
    fn too_many_pairs_are_refused_and_the_summary_counts_verdicts() {
        assert_eq!(pair_count(100, 100).unwrap(), 10_000);
        let err = pair_count(101, 100).unwrap_err().to_string();
        assert_eq!(
            err,
            "101 identities and 100 services make 10100 pairs, more than 10000: name an \
             identity or a service"
        );
        let t = Tally {
            okay: 1,
            warning: 0,
            error: 2,
        };
        assert_eq!(
            summary(1, 3, 3, &t),
            "pairs: 3 (OKAY 1, WARNING 0, ERROR 2)"
        );
        assert_eq!(
            summary(0, 3, 0, &Tally::default()),
            "no pairs: 0 identities, 3 services"
        );
    }

    #[test]
    fn long_router_lists_are_cut() {
        let rs: Vec<RouterRef> = (0..7)
            .map(|i| serde_json::from_value(router(&format!("r{i}"), true)).unwrap())
            .collect();
        let refs: Vec<&RouterRef> = rs.iter().collect();
        assert_eq!(names(&refs), "r0, r1, r2, r3, r4, +2 more");
    }
}
