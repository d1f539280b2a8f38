//! The admin CLI `weft`, mirroring OpenZiti's `ziti edge` verbs and flags:
//! `weft login`, `weft edge create|list|delete …`.

pub mod client;
pub mod quickstart;
pub mod tunnel;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

pub use client::{Api, CliConfig, CliError};

/// Command line of `weft`.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about = "Weft admin CLI")]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a controller's management API and remember the session.
    Login {
        /// Controller URL, e.g. https://localhost:1280.
        url: String,
        /// User name.
        #[arg(short = 'u', long)]
        username: String,
        /// Password.
        #[arg(short = 'p', long)]
        password: String,
        /// PEM file of the CA to trust; without it the controller's
        /// `/.well-known/est/cacerts` are fetched and trusted on first use.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Edge management commands.
    Edge {
        /// The edge command.
        #[command(subcommand)]
        cmd: EdgeCommand,
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
    /// List entities of a type.
    List {
        /// Entity type (e.g. identities, services, service-policies).
        entity: String,
        /// Optional filter, e.g. `name="x"`.
        filter: Option<String>,
        /// Output format: `table` or `json`.
        #[arg(long, short = 'j', default_value = "table")]
        output: String,
    },
    /// Delete an entity by name or id.
    Delete {
        /// Entity type.
        entity: String,
        /// Name or id.
        name_or_id: String,
    },
}

/// Role and semantic flags shared by the policy commands.
#[derive(Debug, Args)]
pub struct SemanticArg {
    /// `AllOf` or `AnyOf`.
    #[arg(long, default_value = "AllOf")]
    pub semantic: String,
}

/// `weft edge create …`.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create an identity with a one-time enrollment token.
    Identity {
        /// Name.
        name: String,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Write the enrollment JWT to this file.
        #[arg(short = 'o', long = "jwt-output-file")]
        output: Option<PathBuf>,
        /// Administrator.
        #[arg(short = 'A', long)]
        admin: bool,
    },
    /// Create a service.
    Service {
        /// Name.
        name: String,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Config names or ids, comma separated.
        #[arg(short = 'c', long = "configs", value_delimiter = ',')]
        configs: Vec<String>,
        /// End-to-end encryption: `on` or `off`.
        #[arg(short = 'e', long, default_value = "on")]
        encryption: String,
    },
    /// Create a service policy.
    ServicePolicy {
        /// Name.
        name: String,
        /// `Dial` or `Bind`.
        policy_type: String,
        /// Identity roles, comma separated.
        #[arg(short = 'i', long, value_delimiter = ',')]
        identity_roles: Vec<String>,
        /// Service roles, comma separated.
        #[arg(short = 's', long, value_delimiter = ',')]
        service_roles: Vec<String>,
        /// Posture check roles, comma separated.
        #[arg(short = 'p', long, value_delimiter = ',')]
        posture_check_roles: Vec<String>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticArg,
    },
    /// Create an edge router policy.
    EdgeRouterPolicy {
        /// Name.
        name: String,
        /// Edge router roles, comma separated.
        #[arg(short = 'e', long, value_delimiter = ',')]
        edge_router_roles: Vec<String>,
        /// Identity roles, comma separated.
        #[arg(short = 'i', long, value_delimiter = ',')]
        identity_roles: Vec<String>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticArg,
    },
    /// Create a service edge router policy.
    ServiceEdgeRouterPolicy {
        /// Name.
        name: String,
        /// Edge router roles, comma separated.
        #[arg(short = 'e', long, value_delimiter = ',')]
        edge_router_roles: Vec<String>,
        /// Service roles, comma separated.
        #[arg(short = 's', long, value_delimiter = ',')]
        service_roles: Vec<String>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticArg,
    },
    /// Create a config of a config type (name or id) from JSON data.
    Config {
        /// Name.
        name: String,
        /// Config type name or id, e.g. `intercept.v1`.
        config_type: String,
        /// The config data as a JSON object.
        data: String,
    },
    /// Create an edge router record with its advertised edge listener.
    EdgeRouter {
        /// Name.
        name: String,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Advertised edge listener, e.g. `tls://er1.example:3022`.
        #[arg(long)]
        tls: Option<String>,
        /// Write the router's enrollment JWT (`erott`) to this file.
        #[arg(short = 'o', long = "jwt-output-file")]
        output: Option<PathBuf>,
    },
}

/// Maps the singular or plural CLI entity names to API collections.
pub fn collection(entity: &str) -> Result<&'static str, CliError> {
    use crate::model::Kind;
    let plural = match entity {
        "identity" => "identities",
        "service" => "services",
        "config" => "configs",
        "config-type" => "config-types",
        "service-policy" => "service-policies",
        "edge-router-policy" => "edge-router-policies",
        "service-edge-router-policy" => "service-edge-router-policies",
        "edge-router" => "edge-routers",
        "terminator" => "terminators",
        other => other,
    };
    Kind::from_collection(plural)
        .map(Kind::collection)
        .ok_or_else(|| CliError::Usage(format!("unknown entity type {entity:?}")))
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

fn create_body(what: &CreateCommand) -> Result<(&'static str, Value), CliError> {
    Ok(match what {
        CreateCommand::Identity {
            name,
            role_attributes,
            admin,
            ..
        } => (
            "identities",
            json!({"name": name, "type": "User", "isAdmin": admin, "roleAttributes": role_attributes, "enrollment": {"ott": true}}),
        ),
        CreateCommand::Service {
            name,
            role_attributes,
            configs,
            encryption,
        } => {
            let enc = match encryption.as_str() {
                "on" => true,
                "off" => false,
                other => {
                    return Err(CliError::Usage(format!(
                        "--encryption must be on or off, not {other:?}"
                    )));
                }
            };
            (
                "services",
                json!({"name": name, "roleAttributes": role_attributes, "configs": configs, "encryptionRequired": enc}),
            )
        }
        CreateCommand::ServicePolicy {
            name,
            policy_type,
            identity_roles,
            service_roles,
            posture_check_roles,
            semantic,
        } => (
            "service-policies",
            json!({"name": name, "type": policy_type, "semantic": semantic.semantic, "identityRoles": identity_roles,
                   "serviceRoles": service_roles, "postureCheckRoles": posture_check_roles}),
        ),
        CreateCommand::EdgeRouterPolicy {
            name,
            edge_router_roles,
            identity_roles,
            semantic,
        } => (
            "edge-router-policies",
            json!({"name": name, "semantic": semantic.semantic, "edgeRouterRoles": edge_router_roles, "identityRoles": identity_roles}),
        ),
        CreateCommand::ServiceEdgeRouterPolicy {
            name,
            edge_router_roles,
            service_roles,
            semantic,
        } => (
            "service-edge-router-policies",
            json!({"name": name, "semantic": semantic.semantic, "edgeRouterRoles": edge_router_roles, "serviceRoles": service_roles}),
        ),
        CreateCommand::Config {
            name,
            config_type,
            data,
        } => {
            let data: Value = serde_json::from_str(data)
                .map_err(|e| CliError::Usage(format!("config data is not JSON: {e}")))?;
            (
                "configs",
                json!({"name": name, "configTypeId": config_type, "data": data}),
            )
        }
        CreateCommand::EdgeRouter {
            name,
            role_attributes,
            tls,
            output: _,
        } => {
            let mut body = json!({"name": name, "roleAttributes": role_attributes});
            if let Some(url) = tls {
                let host = url
                    .strip_prefix("tls://")
                    .and_then(|r| r.rsplit_once(':'))
                    .map(|(h, _)| h.to_string())
                    .ok_or_else(|| {
                        CliError::Usage("--tls must look like tls://host:port".into())
                    })?;
                body["hostname"] = json!(host);
                body["supportedProtocols"] = json!({"tls": url});
            }
            ("edge-routers", body)
        }
    })
}

fn print_table(items: &[Value]) {
    println!("{:<34} {:<32} ATTRIBUTES/ROLES", "ID", "NAME");
    for it in items {
        let extra: Vec<String> = [
            "roleAttributes",
            "identityRoles",
            "serviceRoles",
            "edgeRouterRoles",
        ]
        .iter()
        .filter_map(|k| {
            it.get(*k)
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        })
        .map(Value::to_string)
        .collect();
        println!(
            "{:<34} {:<32} {}",
            it["id"].as_str().unwrap_or_default(),
            it["name"].as_str().unwrap_or_default(),
            extra.join(" ")
        );
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Command::Tunnel { cmd } => tunnel::run(cmd).await?,
        Command::Quickstart(args) => quickstart::run(args).await?,
        Command::Login {
            url,
            username,
            password,
            ca,
        } => {
            let url = url.trim_end_matches('/').to_string();
            let ca_pem = match ca {
                Some(path) => std::fs::read_to_string(path)?,
                None => {
                    let pem = client::fetch_ca_bundle_unverified(&url).await?;
                    eprintln!(
                        "warning: trusting the CA certificates served by {url} (trust on first use)"
                    );
                    pem
                }
            };
            let token = client::login(&url, &ca_pem, &username, &password).await?;
            let cfg = CliConfig { url, token, ca_pem };
            let path = cfg.save()?;
            println!("logged in; session saved in {}", path.display());
        }
        Command::Edge { cmd } => {
            let api = Api::from_config(CliConfig::load()?)?;
            match cmd {
                EdgeCommand::Create { what } => {
                    let (coll, body) = create_body(&what)?;
                    let v = api.post(coll, &body).await?;
                    let id = v["data"]["id"].as_str().unwrap_or_default().to_string();
                    println!(
                        "New {} {} created with id: {id}",
                        singular(coll),
                        body["name"].as_str().unwrap_or_default()
                    );
                    if let CreateCommand::EdgeRouter {
                        output: Some(path), ..
                    } = &what
                    {
                        let jwt = v["data"]["enrollmentJwt"].as_str().ok_or_else(|| {
                            CliError::Usage("the controller returned no enrollment JWT".into())
                        })?;
                        std::fs::write(path, jwt)?;
                        println!("Enrollment expires at {}", v["data"]["enrollmentExpiresAt"]);
                    }
                    if let CreateCommand::Identity {
                        output: Some(path), ..
                    } = &what
                    {
                        let jwt =
                            v["data"]["enrollment"]["ott"]["jwt"]
                                .as_str()
                                .ok_or_else(|| {
                                    CliError::Usage(
                                        "the controller returned no enrollment JWT".into(),
                                    )
                                })?;
                        std::fs::write(path, jwt)?;
                        println!(
                            "Enrollment expires at {}",
                            v["data"]["enrollment"]["ott"]["expiresAt"]
                        );
                    }
                }
                EdgeCommand::List {
                    entity,
                    filter,
                    output,
                } => {
                    let coll = collection(&entity)?;
                    let items = api.list_all(coll, filter.as_deref()).await?;
                    match output.as_str() {
                        "json" => println!(
                            "{}",
                            serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default()
                        ),
                        "table" => print_table(&items),
                        other => {
                            return Err(CliError::Usage(format!(
                                "--output must be table or json, not {other:?}"
                            )));
                        }
                    }
                }
                EdgeCommand::Delete { entity, name_or_id } => {
                    let coll = collection(&entity)?;
                    let id = api.resolve(coll, &name_or_id).await?;
                    api.delete(coll, &id).await?;
                    println!("deleted {coll} {name_or_id} ({id})");
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
