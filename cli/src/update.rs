//! `weft edge update …`: the flags of `ziti edge update`, sent as a PATCH of only the
//! fields given.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::CliError;
use super::create::{encryption, tls_listener};

/// Flags every update takes.
#[derive(Debug, Args)]
pub struct Target {
    /// Name or id of the entity to update.
    pub name_or_id: String,
    /// New name.
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Tags as `key=value` pairs, comma separated (replaces all tags; `--tags ''` clears).
    #[arg(long, value_delimiter = ',')]
    pub tags: Option<Vec<String>>,
}

/// `--semantic` of the policy updates.
#[derive(Debug, Args)]
pub struct SemanticFlag {
    /// `AllOf` or `AnyOf`.
    #[arg(long)]
    pub semantic: Option<String>,
}

/// `weft edge update …`.
#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Change the logged-in identity's own authenticator (`updb`: its password).
    #[command(subcommand)]
    Authenticator(crate::enrollments::AuthenticatorCommand),
    /// Give an identity its own config for a service, in place of the service's config
    /// of that type (`ziti edge update identity-configs`); `--remove` takes it away.
    IdentityConfigs(IdentityConfigsArgs),
    /// Update an identity.
    Identity {
        /// Which identity, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Role attributes, comma separated (replaces them; `-a ''` clears).
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Option<Vec<String>>,
        /// Default hosting cost.
        #[arg(long)]
        default_hosting_cost: Option<u16>,
        /// Authentication policy (name or id).
        #[arg(short = 'P', long = "auth-policy")]
        auth_policy: Option<String>,
    },
    /// Update a service.
    Service {
        /// Which service, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Option<Vec<String>>,
        /// Config names or ids, comma separated.
        #[arg(short = 'c', long = "configs", value_delimiter = ',')]
        configs: Option<Vec<String>>,
        /// End-to-end encryption: `on` or `off`.
        #[arg(short = 'e', long)]
        encryption: Option<String>,
        /// Terminator strategy.
        #[arg(long)]
        terminator_strategy: Option<String>,
    },
    /// Update a service policy.
    ServicePolicy {
        /// Which policy, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Identity roles, comma separated.
        #[arg(short = 'i', long, value_delimiter = ',')]
        identity_roles: Option<Vec<String>>,
        /// Service roles, comma separated.
        #[arg(short = 's', long, value_delimiter = ',')]
        service_roles: Option<Vec<String>>,
        /// Posture check roles, comma separated.
        #[arg(short = 'p', long, value_delimiter = ',')]
        posture_check_roles: Option<Vec<String>>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticFlag,
    },
    /// Update an edge router.
    EdgeRouter {
        /// Which router, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Option<Vec<String>>,
        /// Advertised edge listener, e.g. `tls://er1.example:3022`.
        #[arg(long)]
        tls: Option<String>,
        /// Routing cost.
        #[arg(long)]
        cost: Option<u16>,
        /// Never use for traversal: `true` or `false`.
        #[arg(long)]
        no_traversal: Option<bool>,
        /// Disable (`true`) or enable (`false`).
        #[arg(long)]
        disabled: Option<bool>,
        /// Tunneler enabled: `true` or `false`.
        #[arg(long)]
        tunneler_enabled: Option<bool>,
    },
    /// Update an edge router policy.
    EdgeRouterPolicy {
        /// Which policy, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Edge router roles, comma separated.
        #[arg(short = 'e', long, value_delimiter = ',')]
        edge_router_roles: Option<Vec<String>>,
        /// Identity roles, comma separated.
        #[arg(short = 'i', long, value_delimiter = ',')]
        identity_roles: Option<Vec<String>>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticFlag,
    },
    /// Update a service edge router policy.
    ServiceEdgeRouterPolicy {
        /// Which policy, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Edge router roles, comma separated.
        #[arg(short = 'e', long, value_delimiter = ',')]
        edge_router_roles: Option<Vec<String>>,
        /// Service roles, comma separated.
        #[arg(short = 's', long, value_delimiter = ',')]
        service_roles: Option<Vec<String>>,
        /// Semantic.
        #[command(flatten)]
        semantic: SemanticFlag,
    },
    /// Update a 3rd-party CA (its certificate cannot change).
    Ca {
        /// Which CA, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Its certificates log in (once verified): `true` or `false`.
        #[arg(short = 'e', long = "auth")]
        auth: Option<bool>,
        /// Its certificates enroll new identities: `true` or `false`.
        #[arg(long = "autoca")]
        autoca: Option<bool>,
        /// `ottca` enrollments may name it: `true` or `false`.
        #[arg(short = 'o', long = "ottca")]
        ottca: Option<bool>,
        /// Role attributes of the identities it enrolls, comma separated.
        #[arg(short = 'r', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Option<Vec<String>>,
        /// Names of the identities it enrolls.
        #[arg(short = 'f', long = "identity-name-format")]
        identity_name_format: Option<String>,
    },
    /// Update a posture check (its type cannot change).
    PostureCheck {
        /// Which check, new name, tags.
        #[command(flatten)]
        target: Target,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Option<Vec<String>>,
        /// OS checks: `TYPE[:RANGE[:RANGE…]]`, repeatable (replaces the list).
        #[arg(short = 'o', long = "os")]
        os: Option<Vec<String>>,
        /// MAC checks: addresses, comma separated (replaces the list).
        #[arg(short = 'm', long = "mac-addresses", value_delimiter = ',')]
        mac_addresses: Option<Vec<String>>,
        /// DOMAIN checks: domains, comma separated (replaces the list).
        #[arg(short = 'd', long = "domains", value_delimiter = ',')]
        domains: Option<Vec<String>>,
        /// MFA checks: seconds a TOTP answer counts (0: the whole API session).
        #[arg(short = 's', long)]
        seconds: Option<i64>,
    },
    /// Update a config's data.
    Config {
        /// Which config, new name, tags.
        #[command(flatten)]
        target: Target,
        /// The config data as a JSON object.
        #[arg(short = 'd', long)]
        data: Option<String>,
        /// A file holding the config data as a JSON object.
        #[arg(short = 'f', long = "json-file", conflicts_with = "data")]
        json_file: Option<PathBuf>,
    },
}

/// A PATCH document under construction.
struct Patch(Map<String, Value>);

impl Patch {
    fn new(target: &Target) -> Result<Self, CliError> {
        let mut p = Self(Map::new());
        p.set("name", target.name.as_ref().map(|n| json!(n)));
        if let Some(tags) = &target.tags {
            let mut m = Map::new();
            for pair in tags.iter().filter(|t| !t.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--tags: {pair:?} is not key=value")))?;
                m.insert(k.to_owned(), json!(v));
            }
            p.0.insert("tags".into(), Value::Object(m));
        }
        Ok(p)
    }

    fn set(&mut self, key: &str, value: Option<Value>) {
        if let Some(v) = value {
            self.0.insert(key.to_owned(), v);
        }
    }

    /// A comma-separated list flag; empty entries are dropped, so `-a ''` clears.
    fn list(&mut self, key: &str, value: &Option<Vec<String>>) {
        if let Some(items) = value {
            let items: Vec<&String> = items.iter().filter(|s| !s.is_empty()).collect();
            self.0.insert(key.to_owned(), json!(items));
        }
    }

    fn semantic(&mut self, s: &SemanticFlag) {
        self.set("semantic", s.semantic.as_ref().map(|s| json!(s)));
    }
}

/// `weft edge update identity-configs IDENTITY SERVICE CONFIG [--remove]`.
#[derive(Debug, Args)]
pub struct IdentityConfigsArgs {
    /// The identity, by name or id.
    pub identity: String,
    /// The service, by name or id.
    pub service: String,
    /// The config, by name or id (with `--remove`: any config of the type to remove).
    pub config: String,
    /// Remove the identity's config of the config's type for the service instead.
    #[arg(long)]
    pub remove: bool,
}

/// Runs `weft edge update identity-configs`: the controller resolves the service and
/// the config (ids or names) and answers 404 for either unknown.
pub async fn identity_configs(
    api: &crate::client::Api,
    args: &IdentityConfigsArgs,
) -> Result<(), CliError> {
    let id = api.resolve("identities", &args.identity, true).await?;
    let path = format!("identities/{id}/service-configs");
    let body = json!([{"serviceId": args.service, "configId": args.config}]);
    if args.remove {
        api.delete_with(&path, &body).await?;
        println!(
            "identity {} no longer has its own config of {}'s type for service {}",
            args.identity, args.config, args.service
        );
    } else {
        api.post(&path, &body).await?;
        println!(
            "identity {} uses config {} for service {}",
            args.identity, args.config, args.service
        );
    }
    Ok(())
}

/// The collection, the name or id, and the PATCH document of a command (not for one's
/// own authenticator: [`crate::enrollments::change_password`]).
pub fn update_body(what: &UpdateCommand) -> Result<(&'static str, &str, Value), CliError> {
    let (coll, target, patch) = match what {
        UpdateCommand::Authenticator(_) => {
            return Err(CliError::Usage(
                "one's own authenticator is not an entity patch (enrollments::change_password)"
                    .into(),
            ));
        }
        UpdateCommand::IdentityConfigs(_) => {
            return Err(CliError::Usage(
                "identity configs are not an entity patch (update::identity_configs)".into(),
            ));
        }
        UpdateCommand::Identity {
            target,
            role_attributes,
            default_hosting_cost,
            auth_policy,
        } => {
            let mut p = Patch::new(target)?;
            p.list("roleAttributes", role_attributes);
            p.set("defaultHostingCost", default_hosting_cost.map(|c| json!(c)));
            p.set("authPolicyId", auth_policy.as_ref().map(|a| json!(a)));
            ("identities", target, p)
        }
        UpdateCommand::Service {
            target,
            role_attributes,
            configs,
            encryption: enc,
            terminator_strategy,
        } => {
            let mut p = Patch::new(target)?;
            p.list("roleAttributes", role_attributes);
            p.list("configs", configs);
            if let Some(e) = enc {
                p.set("encryptionRequired", Some(json!(encryption(e)?)));
            }
            p.set(
                "terminatorStrategy",
                terminator_strategy.as_ref().map(|s| json!(s)),
            );
            ("services", target, p)
        }
        UpdateCommand::ServicePolicy {
            target,
            identity_roles,
            service_roles,
            posture_check_roles,
            semantic,
        } => {
            let mut p = Patch::new(target)?;
            p.list("identityRoles", identity_roles);
            p.list("serviceRoles", service_roles);
            p.list("postureCheckRoles", posture_check_roles);
            p.semantic(semantic);
            ("service-policies", target, p)
        }
        UpdateCommand::EdgeRouter {
            target,
            role_attributes,
            tls,
            cost,
            no_traversal,
            disabled,
            tunneler_enabled,
        } => {
            let mut p = Patch::new(target)?;
            p.list("roleAttributes", role_attributes);
            if let Some(url) = tls {
                let (host, protocols) = tls_listener(url)?;
                p.set("hostname", Some(json!(host)));
                p.set("supportedProtocols", Some(protocols));
            }
            p.set("cost", cost.map(|c| json!(c)));
            p.set("noTraversal", no_traversal.map(|b| json!(b)));
            p.set("disabled", disabled.map(|b| json!(b)));
            p.set("isTunnelerEnabled", tunneler_enabled.map(|b| json!(b)));
            ("edge-routers", target, p)
        }
        UpdateCommand::EdgeRouterPolicy {
            target,
            edge_router_roles,
            identity_roles,
            semantic,
        } => {
            let mut p = Patch::new(target)?;
            p.list("edgeRouterRoles", edge_router_roles);
            p.list("identityRoles", identity_roles);
            p.semantic(semantic);
            ("edge-router-policies", target, p)
        }
        UpdateCommand::ServiceEdgeRouterPolicy {
            target,
            edge_router_roles,
            service_roles,
            semantic,
        } => {
            let mut p = Patch::new(target)?;
            p.list("edgeRouterRoles", edge_router_roles);
            p.list("serviceRoles", service_roles);
            p.semantic(semantic);
            ("service-edge-router-policies", target, p)
        }
        UpdateCommand::Ca {
            target,
            auth,
            autoca,
            ottca,
            role_attributes,
            identity_name_format,
        } => {
            let mut p = Patch::new(target)?;
            p.set("isAuthEnabled", auth.map(|b| json!(b)));
            p.set("isAutoCaEnrollmentEnabled", autoca.map(|b| json!(b)));
            p.set("isOttCaEnrollmentEnabled", ottca.map(|b| json!(b)));
            p.list("identityRoles", role_attributes);
            p.set(
                "identityNameFormat",
                identity_name_format.as_ref().map(|f| json!(f)),
            );
            ("cas", target, p)
        }
        UpdateCommand::PostureCheck {
            target,
            role_attributes,
            os,
            mac_addresses,
            domains,
            seconds,
        } => {
            let mut p = Patch::new(target)?;
            p.list("roleAttributes", role_attributes);
            if let Some(os) = os {
                p.set(
                    "operatingSystems",
                    Some(crate::create::operating_systems(os)),
                );
            }
            p.list("macAddresses", mac_addresses);
            p.list("domains", domains);
            p.set(
                "timeoutSeconds",
                seconds.map(|s| json!(if s > 0 { s } else { -1 })),
            );
            ("posture-checks", target, p)
        }
        UpdateCommand::Config {
            target,
            data,
            json_file,
        } => {
            let mut p = Patch::new(target)?;
            let text = match (data, json_file) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(f)) => Some(std::fs::read_to_string(f)?),
                (None, None) => None,
            };
            if let Some(text) = text {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("config data is not JSON: {e}")))?;
                p.set("data", Some(v));
            }
            ("configs", target, p)
        }
    };
    if patch.0.is_empty() {
        return Err(CliError::Usage(
            "nothing to update: give at least one flag".into(),
        ));
    }
    Ok((coll, target.name_or_id.as_str(), Value::Object(patch.0)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command, EdgeCommand};

    fn body(args: &[&str]) -> Result<(&'static str, String, Value), CliError> {
        let cli = Cli::try_parse_from(args).map_err(|e| CliError::Usage(e.to_string()))?;
        let Command::Edge {
            cmd: EdgeCommand::Update { what },
        } = cli.cmd
        else {
            panic!("not an update");
        };
        update_body(&what).map(|(c, n, v)| (c, n.to_owned(), v))
    }

    #[test]
    fn only_given_flags_are_sent() {
        let (coll, name, v) = body(&[
            "weft", "edge", "update", "identity", "alice", "-a", "x,y", "--name", "alice2",
        ])
        .unwrap();
        assert_eq!((coll, name.as_str()), ("identities", "alice"));
        assert_eq!(v, json!({"roleAttributes": ["x", "y"], "name": "alice2"}));
        let (_, _, v) = body(&[
            "weft",
            "edge",
            "update",
            "service",
            "s",
            "-a",
            "",
            "--encryption",
            "off",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({"roleAttributes": [], "encryptionRequired": false})
        );
        let (_, _, v) = body(&[
            "weft",
            "edge",
            "update",
            "service-policy",
            "p",
            "--identity-roles",
            "#a,@b",
            "--semantic",
            "AnyOf",
            "--tags",
            "k=v,x=y",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({"identityRoles": ["#a", "@b"], "semantic": "AnyOf", "tags": {"k": "v", "x": "y"}})
        );
        let (coll, _, v) = body(&[
            "weft",
            "edge",
            "update",
            "edge-router",
            "er",
            "--disabled",
            "true",
            "--tls",
            "tls://h:1",
        ])
        .unwrap();
        assert_eq!(coll, "edge-routers");
        assert_eq!(
            v,
            json!({"disabled": true, "hostname": "h", "supportedProtocols": {"tls": "tls://h:1"}})
        );
        let (_, _, v) = body(&[
            "weft",
            "edge",
            "update",
            "config",
            "c",
            "--data",
            "{\"a\":1}",
        ])
        .unwrap();
        assert_eq!(v, json!({"data": {"a": 1}}));
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(body(&["weft", "edge", "update", "identity", "alice"]).is_err());
        assert!(body(&["weft", "edge", "update", "service", "s", "-e", "maybe"]).is_err());
        assert!(body(&["weft", "edge", "update", "config", "c", "-d", "{"]).is_err());
        assert!(
            body(&[
                "weft", "edge", "update", "identity", "a", "--tags", "novalue"
            ])
            .is_err()
        );
        assert!(
            body(&[
                "weft",
                "edge",
                "update",
                "edge-router",
                "e",
                "--disabled",
                "yes"
            ])
            .is_err()
        );
    }
}
