//! The admin CLI `weft`, mirroring OpenZiti's `ziti edge` verbs and flags:
//! `weft login`, `weft edge create|list|update|delete …`, `weft edge policy-advisor
//! identities|services`, and `weft fabric list links|circuits|routers` as `ziti fabric
//! list` does.

pub mod advisor;
pub mod client;
pub mod create;
pub mod enroll;
pub mod enrollments;
pub mod fabric;
pub mod integrity;
pub mod login;
pub mod output;
pub mod quickstart;
pub mod tunnel;
pub mod update;

use clap::{Parser, Subcommand};

pub use client::{Api, CliConfig, CliError};
pub use create::{CreateCommand, create_body};
pub use update::{UpdateCommand, update_body};

/// Command line of `weft`.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about = "Weft admin CLI")]
pub struct Cli {
    /// The saved login to use, or for `weft login` to save as (default: the current
    /// login, see `weft edge use`).
    #[arg(long = "cli-identity", global = true, value_name = "NAME")]
    pub cli_identity: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
    /// Logging (`--log-format`, `--log-level`).
    #[command(flatten)]
    pub log: weft_ops::logging::LogArgs,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a controller's management API and save the login (under
    /// `--cli-identity NAME`, default `default`), making it current.
    Login(login::LoginArgs),
    /// End a saved login's session and remove it (default: the current login).
    Logout {
        /// The saved login (see `weft edge use`).
        name: Option<String>,
    },
    /// Edge management commands.
    Edge {
        /// The edge command.
        #[command(subcommand)]
        cmd: EdgeCommand,
    },
    /// Mesh commands: links, circuits and routers as the controller sees them.
    Fabric {
        /// The fabric command.
        #[command(subcommand)]
        cmd: fabric::FabricCommand,
    },
    /// Proxy local TCP connections over the overlay (dial side or host side).
    Tunnel {
        /// The tunnel side.
        #[command(subcommand)]
        cmd: tunnel::TunnelCommand,
    },
    /// Start a local network (controller, router, identities, a demo service), show
    /// traffic through it, and keep it up until Ctrl-C.
    Quickstart(quickstart::QuickstartArgs),
}

/// `weft edge …`.
#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// Create an entity.
    Create {
        /// What to create.
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// List entities of a type (`weft edge list identities [FILTER]`), the entities
    /// related to one (`weft edge list identity services NAME [FILTER]`, as `ziti edge
    /// list` does), or how many of each type there are (`weft edge list summary`).
    List {
        /// Entity type (e.g. identities, services, service-policies, api-sessions), a
        /// singular type with a related type and a name (see `RELATED`), or `summary`.
        entity: String,
        /// `[FILTER]`, or `RELATED NAME_OR_ID [FILTER]`. A filter is e.g.
        /// `name contains "x" sort by name limit 5`.
        #[arg(num_args = 0..=3, value_name = "ARGS")]
        args: Vec<String>,
        /// Output format: `table` or `json`.
        #[arg(long, default_value = "table")]
        output: String,
        /// JSON output (same as `--output json`).
        #[arg(short = 'j', long = "output-json")]
        json: bool,
    },
    /// Refresh an enrollment: a new token and expiry.
    Refresh {
        /// What to refresh.
        #[command(subcommand)]
        what: enrollments::RefreshCommand,
    },
    /// Re-enroll an edge router (a new enrollment token replaces its certificate).
    #[command(name = "re-enroll")]
    ReEnroll {
        /// What to re-enroll.
        #[command(subcommand)]
        what: enrollments::ReEnrollCommand,
    },
    /// Update an entity (only the given fields change).
    Update {
        /// What to update.
        #[command(subcommand)]
        what: UpdateCommand,
    },
    /// List the saved logins, or make login NAME current.
    Use {
        /// The saved login to use from now on.
        name: Option<String>,
    },
    /// Enroll an identity with its one-time token and write its identity file.
    Enroll(enroll::EnrollArgs),
    /// Delete an entity by name or id.
    Delete {
        /// Entity type.
        entity: String,
        /// Name or id.
        name_or_id: String,
    },
    /// Disable an identity (it cannot log in; its API sessions end).
    Disable {
        /// `identity`.
        entity: String,
        /// Name or id.
        name_or_id: String,
        /// Minutes it stays disabled; 0: until enabled.
        #[arg(short = 'd', long, default_value_t = 0)]
        duration_minutes: i64,
    },
    /// Verify a 3rd-party CA with a certificate it signed whose common name is the CA's
    /// verification token (`ziti edge verify ca`).
    Verify {
        /// `ca`.
        entity: String,
        /// Name or id.
        name_or_id: String,
        /// PEM file of the verification certificate.
        #[arg(short = 'c', long = "cert")]
        cert: std::path::PathBuf,
    },
    /// Enable a disabled or locked-out identity.
    Enable {
        /// `identity`.
        entity: String,
        /// Name or id.
        name_or_id: String,
    },
    /// Say, for identity and service pairs, whether the identity may dial or bind the
    /// service and why not: service policies, edge routers on both sides and online,
    /// posture checks (`ziti edge policy-advisor`).
    PolicyAdvisor {
        /// Which side to start from.
        #[command(subcommand)]
        cmd: advisor::AdvisorCommand,
    },
    /// Check every reference in the controller's store and print what is broken; fails
    /// when something is left unfixed.
    CheckIntegrity {
        /// Also repair what has a safe repair (in one transaction).
        #[arg(long)]
        fix: bool,
    },
}

/// Entity types: singular and plural CLI names, and whether they have names.
const COLLECTIONS: &[(&str, &str, bool)] = &[
    ("identity", "identities", true),
    ("service", "services", true),
    ("config", "configs", true),
    ("config-type", "config-types", true),
    ("service-policy", "service-policies", true),
    ("edge-router-policy", "edge-router-policies", true),
    (
        "service-edge-router-policy",
        "service-edge-router-policies",
        true,
    ),
    ("edge-router", "edge-routers", true),
    ("terminator", "terminators", true),
    ("auth-policy", "auth-policies", true),
    ("identity-type", "identity-types", true),
    ("external-jwt-signer", "external-jwt-signers", true),
    ("posture-check", "posture-checks", true),
    ("posture-check-type", "posture-check-types", true),
    ("ca", "cas", true),
    ("authenticator", "authenticators", false),
    ("enrollment", "enrollments", false),
    ("api-session", "api-sessions", false),
    ("session", "sessions", false),
];

/// For each collection, the related lists the management API serves
/// (`/{collection}/{id}/{related}`), as `weft edge list ENTITY RELATED NAME` reaches them.
const RELATED: &[(&str, &[&str])] = &[
    (
        "identities",
        &[
            "services",
            "edge-routers",
            "authenticators",
            "enrollments",
            "service-policies",
            "edge-router-policies",
            "service-configs",
        ],
    ),
    (
        "services",
        &[
            "identities",
            "edge-routers",
            "configs",
            "terminators",
            "service-policies",
            "service-edge-router-policies",
        ],
    ),
    (
        "edge-routers",
        &[
            "identities",
            "services",
            "edge-router-policies",
            "service-edge-router-policies",
        ],
    ),
    ("service-policies", &["identities", "services"]),
    ("edge-router-policies", &["identities", "edge-routers"]),
    (
        "service-edge-router-policies",
        &["services", "edge-routers"],
    ),
    ("config-types", &["configs"]),
    ("configs", &["services"]),
];

/// What `weft edge list` lists.
#[derive(Debug, PartialEq, Eq)]
pub enum ListTarget<'a> {
    /// `weft edge list summary`: counts per entity type.
    Summary,
    /// Every entity of `coll` (that `filter` lets through).
    All {
        /// The collection.
        coll: &'static str,
        /// The filter.
        filter: Option<&'a str>,
    },
    /// The entities of `related` that entity `name_or_id` of `coll` relates to.
    Related {
        /// The collection of the entity.
        coll: &'static str,
        /// The related collection.
        related: &'static str,
        /// The entity.
        name_or_id: &'a str,
        /// The filter.
        filter: Option<&'a str>,
    },
}

/// Reads `weft edge list ENTITY ARGS…`: `summary`; `TYPE [FILTER]`; or `TYPE RELATED
/// NAME [FILTER]` when the first argument names a related type of `TYPE`.
pub fn list_target<'a>(entity: &str, args: &'a [String]) -> Result<ListTarget<'a>, CliError> {
    if entity == "summary" {
        if !args.is_empty() {
            return Err(CliError::Usage("`list summary` takes no arguments".into()));
        }
        return Ok(ListTarget::Summary);
    }
    let coll = collection(entity)?;
    let related_of = RELATED
        .iter()
        .find(|(c, _)| *c == coll)
        .map_or(&[][..], |(_, r)| *r);
    // A related list is named like a collection, or as the API names it
    // (`service-configs`, an identity's own configs for services).
    let related = args.first().and_then(|a| {
        let r = collection(a).unwrap_or(a.as_str());
        related_of.iter().find(|x| **x == r).copied()
    });
    match (related, args) {
        (Some(related), [_, name_or_id, rest @ ..]) => Ok(ListTarget::Related {
            coll,
            related,
            name_or_id,
            filter: rest.first().map(String::as_str),
        }),
        (Some(related), _) => Err(CliError::Usage(format!(
            "name the {} whose {related} to list: weft edge list {entity} {related} NAME",
            singular(coll)
        ))),
        (None, [filter]) => Ok(ListTarget::All {
            coll,
            filter: Some(filter),
        }),
        (None, []) => Ok(ListTarget::All { coll, filter: None }),
        (None, [first, ..]) => {
            let known = if related_of.is_empty() {
                "none".to_owned()
            } else {
                related_of.join(", ")
            };
            Err(CliError::Usage(format!(
                "{first:?} is not a list related to {coll} (those are: {known}); a filter \
                 is one argument (quote it)"
            )))
        }
    }
}

/// Other CLI names of collections (`ziti edge list ext-jwt-signers`).
const ALIASES: &[(&str, &str)] = &[
    ("ext-jwt-signer", "external-jwt-signers"),
    ("ext-jwt-signers", "external-jwt-signers"),
];

/// Maps the singular or plural CLI entity names to API collections.
pub fn collection(entity: &str) -> Result<&'static str, CliError> {
    if let Some((_, coll)) = ALIASES.iter().find(|(alias, _)| *alias == entity) {
        return Ok(coll);
    }
    COLLECTIONS
        .iter()
        .find(|(one, many, _)| *one == entity || *many == entity)
        .map(|(_, many, _)| *many)
        .ok_or_else(|| CliError::Usage(format!("unknown entity type {entity:?}")))
}

/// Whether entities of the collection have (unique) names.
fn named(collection: &str) -> bool {
    COLLECTIONS
        .iter()
        .any(|(_, many, named)| *many == collection && *named)
}

/// The singular of a collection name, as `ziti edge create` prints it
/// ("New identity NAME created with id: ID").
fn singular(collection: &str) -> String {
    if let Some(stem) = collection.strip_suffix("ies") {
        format!("{stem}y")
    } else {
        collection
            .strip_suffix('s')
            .unwrap_or(collection)
            .to_owned()
    }
}

/// `disable`/`enable` apply to identities only.
fn identity_only(entity: &str) -> Result<(), CliError> {
    if collection(entity)? == "identities" {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "only identities can be disabled and enabled, not {entity}"
        )))
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Command::Tunnel { cmd } => tunnel::run(cmd).await?,
        Command::Quickstart(args) => quickstart::run(args).await?,
        Command::Login(args) => login::login(args, cli.cli_identity.as_deref()).await?,
        Command::Logout { name } => {
            login::logout(name.as_deref().or(cli.cli_identity.as_deref())).await?;
        }
        Command::Fabric { cmd } => {
            let api = Api::from_saved(cli.cli_identity.as_deref())?;
            fabric::run(&api, cmd).await?;
        }
        Command::Edge { cmd } => {
            // Every edge command but `enroll` needs the saved login.
            let api = || Api::from_saved(cli.cli_identity.as_deref());
            match cmd {
                EdgeCommand::Create {
                    what: CreateCommand::Enrollment(cmd),
                } => enrollments::create(&api()?, &cmd).await?,
                EdgeCommand::Refresh { what } => enrollments::refresh(&api()?, &what).await?,
                EdgeCommand::ReEnroll { what } => enrollments::re_enroll(&api()?, &what).await?,
                EdgeCommand::Update {
                    what: UpdateCommand::Authenticator(cmd),
                } => enrollments::change_password(&api()?, &cmd).await?,
                EdgeCommand::Update {
                    what: UpdateCommand::IdentityConfigs(args),
                } => update::identity_configs(&api()?, &args).await?,
                EdgeCommand::Create { what } => {
                    let (coll, body) = create_body(&what)?;
                    let output = what.output();
                    if let Some((path, force)) = output {
                        output::check_output(path, force)?;
                    }
                    let v = api()?.post(coll, &body).await?;
                    let id = v["data"]["id"].as_str().unwrap_or_default().to_string();
                    println!(
                        "New {} {} created with id: {id}",
                        singular(coll),
                        body["name"].as_str().unwrap_or_default()
                    );
                    if let Some((path, force)) = output {
                        // Routers carry their token at the top; identities per method.
                        let method = match &what {
                            CreateCommand::Identity { updb: Some(_), .. } => "updb",
                            _ => "ott",
                        };
                        let (jwt, expires) = match &what {
                            CreateCommand::EdgeRouter { .. } => (
                                &v["data"]["enrollmentJwt"],
                                &v["data"]["enrollmentExpiresAt"],
                            ),
                            _ => (
                                &v["data"]["enrollment"][method]["jwt"],
                                &v["data"]["enrollment"][method]["expiresAt"],
                            ),
                        };
                        let jwt = jwt.as_str().ok_or_else(|| {
                            CliError::Usage("the controller returned no enrollment JWT".into())
                        })?;
                        output::write_output(path, jwt.as_bytes(), force)?;
                        println!(
                            "Enrollment expires at {}; token written to {}",
                            output::plain_time(expires),
                            path.display()
                        );
                    }
                }
                EdgeCommand::List {
                    entity,
                    args,
                    output,
                    json,
                } => {
                    let format = output::Format::parse(&output, json)?;
                    match list_target(&entity, &args)? {
                        ListTarget::Summary => {
                            let v = api()?.get("summary").await?;
                            output::print_summary(&v["data"], format)?;
                        }
                        ListTarget::All { coll, filter } => {
                            let listed = api()?.list_counted(coll, filter).await?;
                            output::print_listed(listed, coll, format)?;
                        }
                        ListTarget::Related {
                            coll,
                            related,
                            name_or_id,
                            filter,
                        } => {
                            let api = api()?;
                            let id = api.resolve(coll, name_or_id, named(coll)).await?;
                            let path = format!("{coll}/{id}/{related}");
                            let listed = api.list_counted(&path, filter).await?;
                            output::print_listed(listed, related, format)?;
                        }
                    }
                }
                EdgeCommand::Update { what } => {
                    let (coll, name_or_id, body) = update_body(&what)?;
                    let api = api()?;
                    let id = api.resolve(coll, name_or_id, true).await?;
                    api.patch(coll, &id, &body).await?;
                    println!("updated {} {name_or_id} ({id})", singular(coll));
                }
                EdgeCommand::Enroll(args) => enroll::run(args).await?,
                EdgeCommand::Use { name } => login::use_login(name)?,
                EdgeCommand::Delete { entity, name_or_id } => {
                    let coll = collection(&entity)?;
                    let api = api()?;
                    let id = api.resolve(coll, &name_or_id, named(coll)).await?;
                    api.delete(coll, &id).await?;
                    println!("deleted {coll} {name_or_id} ({id})");
                }
                EdgeCommand::Disable {
                    entity,
                    name_or_id,
                    duration_minutes,
                } => {
                    identity_only(&entity)?;
                    let api = api()?;
                    let id = api.resolve("identities", &name_or_id, true).await?;
                    api.post(
                        &format!("identities/{id}/disable"),
                        &serde_json::json!({"durationMinutes": duration_minutes}),
                    )
                    .await?;
                    if duration_minutes > 0 {
                        println!(
                            "disabled identity {name_or_id} ({id}) for {duration_minutes} minutes"
                        );
                    } else {
                        println!("disabled identity {name_or_id} ({id}) until enabled");
                    }
                }
                EdgeCommand::Verify {
                    entity,
                    name_or_id,
                    cert,
                } => {
                    if collection(&entity)? != "cas" {
                        return Err(CliError::Usage(format!(
                            "only CAs are verified, not {entity}"
                        )));
                    }
                    let pem = std::fs::read_to_string(&cert).map_err(|e| {
                        CliError::Usage(format!("cannot read {}: {e}", cert.display()))
                    })?;
                    let api = api()?;
                    let id = api.resolve("cas", &name_or_id, true).await?;
                    api.post_text(&format!("cas/{id}/verify"), pem).await?;
                    println!("verified ca {name_or_id} ({id})");
                }
                EdgeCommand::PolicyAdvisor { cmd } => advisor::run(api()?, cmd).await?,
                EdgeCommand::CheckIntegrity { fix } => integrity::run(&api()?, fix).await?,
                EdgeCommand::Enable { entity, name_or_id } => {
                    identity_only(&entity)?;
                    let api = api()?;
                    let id = api.resolve("identities", &name_or_id, true).await?;
                    api.post(&format!("identities/{id}/enable"), &serde_json::json!({}))
                        .await?;
                    println!("enabled identity {name_or_id} ({id})");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod singular_tests {
    #[test]
    fn collection_names_become_singular() {
        assert_eq!(super::singular("identities"), "identity");
        assert_eq!(
            super::singular("service-edge-router-policies"),
            "service-edge-router-policy"
        );
        assert_eq!(super::singular("edge-routers"), "edge-router");
        assert_eq!(super::singular("configs"), "config");
    }
}

#[cfg(test)]
mod list_target_tests {
    use super::{ListTarget, list_target};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_lists_related_lists_and_the_summary() {
        assert_eq!(list_target("summary", &[]).ok(), Some(ListTarget::Summary));
        let a = args(&[]);
        assert_eq!(
            list_target("identities", &a).ok(),
            Some(ListTarget::All {
                coll: "identities",
                filter: None
            })
        );
        let a = args(&["name contains \"a\""]);
        assert_eq!(
            list_target("identity", &a).ok(),
            Some(ListTarget::All {
                coll: "identities",
                filter: Some("name contains \"a\"")
            })
        );
        let a = args(&["service-policies", "alice", "limit 2"]);
        assert_eq!(
            list_target("identity", &a).ok(),
            Some(ListTarget::Related {
                coll: "identities",
                related: "service-policies",
                name_or_id: "alice",
                filter: Some("limit 2"),
            })
        );
        let a = args(&["configs", "intercept.v1"]);
        assert_eq!(
            list_target("config-type", &a).ok(),
            Some(ListTarget::Related {
                coll: "config-types",
                related: "configs",
                name_or_id: "intercept.v1",
                filter: None,
            })
        );
    }

    #[test]
    fn a_related_list_needs_a_name_and_a_known_relation() {
        let e = list_target("service", &args(&["identities"])).unwrap_err();
        assert!(e.to_string().contains("name the service"), "{e}");
        let e = list_target("service", &args(&["cats", "web"])).unwrap_err();
        assert!(
            e.to_string().contains("not a list related to services"),
            "{e}"
        );
        let e = list_target("summary", &args(&["x"])).unwrap_err();
        assert!(e.to_string().contains("no arguments"), "{e}");
        assert!(list_target("nonsense", &[]).is_err());
    }
}
