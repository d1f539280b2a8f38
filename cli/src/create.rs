//! `weft edge create …`: the flags of `ziti edge create` and the documents they make.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;

/// Role and semantic flags shared by the policy commands.
#[derive(Debug, Args)]
pub struct SemanticArg {
    /// `AllOf` or `AnyOf`.
    #[arg(long, default_value = "AllOf")]
    pub semantic: String,
}

/// `weft edge create auth-policy`: the flags of `ziti edge create auth-policy`.
#[derive(Debug, Args)]
pub struct AuthPolicyArgs {
    /// Name.
    pub name: String,
    /// Certificate login allowed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub primary_cert_allowed: bool,
    /// Certificates outside their validity still log in (to be extended).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub primary_cert_expired_allowed: bool,
    /// Password login allowed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub primary_updb_allowed: bool,
    /// Shortest password accepted.
    #[arg(long, default_value_t = 5)]
    pub primary_updb_min_length: u32,
    /// Passwords need a character that is neither a letter nor a digit.
    #[arg(long)]
    pub primary_updb_req_special: bool,
    /// Passwords need a digit.
    #[arg(long)]
    pub primary_updb_req_numbers: bool,
    /// Passwords need upper and lower case letters.
    #[arg(long)]
    pub primary_updb_req_mixed_case: bool,
    /// Wrong passwords in a row that lock the identity out; 0: never.
    #[arg(long, default_value_t = 5)]
    pub primary_updb_max_attempts: i64,
    /// Minutes a lockout lasts; 0: until an administrator enables the identity.
    #[arg(long, default_value_t = 0)]
    pub primary_updb_lockout_min: i64,
    /// External JWT login allowed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub primary_ext_jwt_allowed: bool,
    /// External JWT signers allowed (ids, comma separated); none: every one.
    #[arg(long, value_delimiter = ',')]
    pub primary_ext_jwt_allowed_signers: Vec<String>,
    /// Every login answers a TOTP query.
    #[arg(long)]
    pub secondary_req_totp: bool,
    /// Every request carries a JWT of this external JWT signer (id).
    #[arg(long)]
    pub secondary_req_ext_jwt_signer: Option<String>,
}

impl AuthPolicyArgs {
    /// The `authPolicyCreate` document.
    pub fn body(&self) -> Value {
        json!({
            "name": self.name,
            "primary": {
                "cert": {"allowed": self.primary_cert_allowed,
                         "allowExpiredCerts": self.primary_cert_expired_allowed},
                "updb": {"allowed": self.primary_updb_allowed,
                         "minPasswordLength": self.primary_updb_min_length,
                         "requireSpecialChar": self.primary_updb_req_special,
                         "requireNumberChar": self.primary_updb_req_numbers,
                         "requireMixedCase": self.primary_updb_req_mixed_case,
                         "maxAttempts": self.primary_updb_max_attempts,
                         "lockoutDurationMinutes": self.primary_updb_lockout_min},
                "extJwt": {"allowed": self.primary_ext_jwt_allowed,
                           "allowedSigners": self.primary_ext_jwt_allowed_signers},
            },
            "secondary": {"requireTotp": self.secondary_req_totp,
                          "requireExtJwtSigner": self.secondary_req_ext_jwt_signer},
        })
    }
}

/// `weft edge create posture-check TYPE …`: the types and flags of
/// `ziti edge create posture-check`.
#[derive(Debug, Subcommand)]
pub enum PostureCheckCommand {
    /// The endpoint runs one of these operating systems: `--os Linux:>=5.10.0` (a type,
    /// then version ranges separated by `:`; no range: any version). Repeatable.
    Os {
        /// Name.
        name: String,
        /// `TYPE[:RANGE[:RANGE…]]`; types: Windows, WindowsServer, Android, iOS, Linux, macOS.
        #[arg(short = 'o', long = "os", required = true)]
        os: Vec<String>,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
    /// The endpoint has one of these MAC addresses.
    Mac {
        /// Name.
        name: String,
        /// MAC addresses, comma separated (any separators within an address).
        #[arg(
            short = 'm',
            long = "mac-addresses",
            value_delimiter = ',',
            required = true
        )]
        mac_addresses: Vec<String>,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
    /// The endpoint is joined to one of these Windows domains.
    Domain {
        /// Name.
        name: String,
        /// Domains, comma separated.
        #[arg(short = 'd', long = "domains", value_delimiter = ',', required = true)]
        domains: Vec<String>,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
    /// A process runs on the endpoint.
    Process {
        /// Name.
        name: String,
        /// Operating system type of the endpoint (e.g. `Linux`).
        os_type: String,
        /// Path of the executable.
        path: String,
        /// Accepted SHA-512 hashes of the executable, comma separated; none: any.
        #[arg(long, value_delimiter = ',')]
        hashes: Vec<String>,
        /// Fingerprint of the certificate that must have signed the executable.
        #[arg(long)]
        signer_fingerprint: Option<String>,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
    /// All (or any) of several processes run on the endpoint.
    ProcessMulti {
        /// Name.
        name: String,
        /// `AllOf` or `AnyOf`.
        #[arg(long, default_value = "AllOf")]
        semantic: String,
        /// Operating system type of each path (one, or one per path), comma separated.
        #[arg(long = "os-types", value_delimiter = ',', required = true)]
        os_types: Vec<String>,
        /// Executable paths, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        paths: Vec<String>,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
    /// The API session answered a TOTP query (within `--seconds`; again after a wake or
    /// unlock with `--wake`/`--unlock`).
    Mfa {
        /// Name.
        name: String,
        /// Seconds a TOTP answer counts; 0: for the whole API session.
        #[arg(short = 's', long, default_value_t = 0)]
        seconds: i64,
        /// Ask again after the endpoint wakes.
        #[arg(short = 'w', long)]
        wake: bool,
        /// Ask again after the endpoint is unlocked.
        #[arg(short = 'u', long)]
        unlock: bool,
        /// Report no timeout to endpoints too old to prompt.
        #[arg(short = 'i', long = "ignore-legacy")]
        ignore_legacy: bool,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
    },
}

/// `operatingSystems` from `--os TYPE[:RANGE[:RANGE…]]` flags.
pub fn operating_systems(specs: &[String]) -> Value {
    specs
        .iter()
        .map(|spec| {
            let mut parts = spec.split(':');
            let os_type = parts.next().unwrap_or_default();
            let versions: Vec<&str> = parts.filter(|v| !v.is_empty()).collect();
            json!({"type": os_type, "versions": versions})
        })
        .collect()
}

impl PostureCheckCommand {
    /// The `postureCheckCreate` document.
    pub fn body(&self) -> Result<Value, CliError> {
        Ok(match self {
            Self::Os {
                name,
                os,
                role_attributes,
            } => json!({"name": name, "typeId": "OS", "roleAttributes": role_attributes,
                        "operatingSystems": operating_systems(os)}),
            Self::Mac {
                name,
                mac_addresses,
                role_attributes,
            } => json!({"name": name, "typeId": "MAC", "roleAttributes": role_attributes,
                        "macAddresses": mac_addresses}),
            Self::Domain {
                name,
                domains,
                role_attributes,
            } => json!({"name": name, "typeId": "DOMAIN", "roleAttributes": role_attributes,
                        "domains": domains}),
            Self::Process {
                name,
                os_type,
                path,
                hashes,
                signer_fingerprint,
                role_attributes,
            } => {
                let mut process = json!({"osType": os_type, "path": path, "hashes": hashes});
                if let Some(f) = signer_fingerprint {
                    process["signerFingerprint"] = json!(f);
                }
                json!({"name": name, "typeId": "PROCESS", "roleAttributes": role_attributes,
                       "process": process})
            }
            Self::ProcessMulti {
                name,
                semantic,
                os_types,
                paths,
                role_attributes,
            } => {
                if os_types.len() != 1 && os_types.len() != paths.len() {
                    return Err(CliError::Usage(format!(
                        "--os-types: give one type, or one per path ({} paths)",
                        paths.len()
                    )));
                }
                let processes: Vec<Value> = paths
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let os_type = os_types.get(i).or_else(|| os_types.first());
                        json!({"osType": os_type, "path": p})
                    })
                    .collect();
                json!({"name": name, "typeId": "PROCESS_MULTI", "roleAttributes": role_attributes,
                       "semantic": semantic, "processes": processes})
            }
            Self::Mfa {
                name,
                seconds,
                wake,
                unlock,
                ignore_legacy,
                role_attributes,
            } => json!({"name": name, "typeId": "MFA", "roleAttributes": role_attributes,
                        "timeoutSeconds": if *seconds > 0 { *seconds } else { -1 },
                        "promptOnWake": wake, "promptOnUnlock": unlock,
                        "ignoreLegacyEndpoints": ignore_legacy}),
        })
    }
}

/// `weft edge create …`.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a posture check (`os`, `mac`, `domain`, `process`, `process-multi`, `mfa`);
    /// service policies select checks with `--posture-check-roles`.
    #[command(subcommand)]
    PostureCheck(PostureCheckCommand),
    /// Create an authentication policy (allowed login methods, password rules and
    /// lockout, secondary factors).
    AuthPolicy(AuthPolicyArgs),
    /// Create an identity with a one-time enrollment token (or, with `--updb`, a
    /// password enrollment for that user name).
    Identity {
        /// Name.
        name: String,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Authentication policy (name or id); the `default` policy when absent.
        #[arg(short = 'P', long = "auth-policy")]
        auth_policy: Option<String>,
        /// Enroll a password for this user name instead of a certificate.
        #[arg(short = 'u', long = "updb")]
        updb: Option<String>,
        /// Write the enrollment JWT to this file (owner-only).
        #[arg(short = 'o', long = "jwt-output-file")]
        output: Option<PathBuf>,
        /// Overwrite the `-o` file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
        /// Administrator.
        #[arg(short = 'A', long)]
        admin: bool,
        /// Id of the identity at an external identity provider (external JWT signers
        /// with `--external-id` find it by this).
        #[arg(long = "external-id")]
        external_id: Option<String>,
    },
    /// Create an external JWT signer: bearer tokens it issued log identities in
    /// (`POST /authenticate?method=ext-jwt`).
    ExtJwtSigner {
        /// Name.
        name: String,
        /// The tokens' `iss`.
        #[arg(long)]
        issuer: String,
        /// The value the tokens' `aud` must hold.
        #[arg(short = 'a', long)]
        audience: String,
        /// An `https` URL serving the signer's JWK set.
        #[arg(
            short = 'u',
            long = "jwks-endpoint",
            conflicts_with = "cert_file",
            required_unless_present = "cert_file"
        )]
        jwks_endpoint: Option<String>,
        /// A PEM file with the one certificate whose key signs the tokens.
        #[arg(short = 'c', long = "cert-file")]
        cert_file: Option<PathBuf>,
        /// Key id of the certificate (tokens name it in their header).
        #[arg(short = 'k', long, requires = "cert_file")]
        kid: Option<String>,
        /// The claim naming the identity (default `sub`; `/a/b` is a JSON pointer).
        #[arg(long = "claims-property")]
        claims_property: Option<String>,
        /// The claim is the identity's external id (else its id).
        #[arg(long = "external-id")]
        external_id: bool,
        /// Whether the signer authenticates anyone: `true` or `false`.
        #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
        enabled: bool,
        /// OAuth client id clients use at the identity provider.
        #[arg(long = "client-id")]
        client_id: Option<String>,
        /// OAuth scopes clients ask for, comma separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Where clients obtain tokens.
        #[arg(long = "external-auth-url")]
        external_auth_url: Option<String>,
    },
    /// Create a 3rd-party CA (`ziti edge create ca`): its client certificates may enroll
    /// and log in once it is verified (`weft edge verify ca`).
    Ca {
        /// Name.
        name: String,
        /// PEM file of the CA certificate.
        cert_pem_file: PathBuf,
        /// Its certificates log in (once verified).
        #[arg(short = 'e', long = "auth")]
        auth: bool,
        /// Its certificates enroll new identities (`/enroll?method=ca`).
        #[arg(short = 'a', long = "autoca")]
        autoca: bool,
        /// `ottca` enrollments may name it.
        #[arg(short = 'o', long = "ottca")]
        ottca: bool,
        /// Role attributes of the identities it enrolls, comma separated.
        #[arg(short = 'r', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Names of the identities it enrolls (`[caName]`, `[commonName]`,
        /// `[requestedName]`, `[caId]`, `[identityId]`).
        #[arg(short = 'f', long = "identity-name-format")]
        identity_name_format: Option<String>,
        /// Where certificates carry the external id: `COMMON_NAME`, `SAN_URI`, `SAN_EMAIL`.
        #[arg(short = 'l', long = "external-id-claim-loc")]
        claim_location: Option<String>,
        /// `ALL`, `PREFIX`, `SUFFIX` or `SCHEME`.
        #[arg(
            short = 'm',
            long = "external-id-claim-matcher",
            requires = "claim_location"
        )]
        claim_matcher: Option<String>,
        /// The matcher's prefix, suffix or scheme.
        #[arg(
            short = 'x',
            long = "external-id-claim-matcher-criteria",
            requires = "claim_location"
        )]
        claim_matcher_criteria: Option<String>,
        /// `NONE` or `SPLIT`.
        #[arg(
            short = 'p',
            long = "external-id-claim-parser",
            requires = "claim_location"
        )]
        claim_parser: Option<String>,
        /// The separator `SPLIT` splits on.
        #[arg(
            short = 'c',
            long = "external-id-claim-parser-criteria",
            requires = "claim_location"
        )]
        claim_parser_criteria: Option<String>,
        /// Which value is the external id (0 is the first).
        #[arg(
            short = 'i',
            long = "external-id-claim-index",
            requires = "claim_location"
        )]
        claim_index: Option<i64>,
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
    /// Create a config type (`ziti edge create config-type`): configs of this type hold
    /// data its JSON schema accepts, and SDKs ask for services' configs by its name.
    ConfigType {
        /// Name, e.g. `my-app.v1`.
        name: String,
        /// A file holding the type's JSON schema (a JSON object); none: any data.
        #[arg(short = 's', long)]
        schema: Option<PathBuf>,
    },
    /// Create an enrollment for an existing identity (`ott`, `ottca`, `updb`).
    #[command(subcommand)]
    Enrollment(crate::enrollments::EnrollmentCommand),
    /// Create an edge router record with its advertised edge listener.
    EdgeRouter {
        /// Name.
        name: String,
        /// Role attributes, comma separated.
        #[arg(short = 'a', long = "role-attributes", value_delimiter = ',')]
        role_attributes: Vec<String>,
        /// Edge listener SDKs are told to dial, e.g. `tls://er1.example:3022`, instead of
        /// the one the router reports when it connects (a proxy or NAT in front of it).
        #[arg(long)]
        tls: Option<String>,
        /// Write the router's enrollment JWT (`erott`) to this file (owner-only).
        #[arg(short = 'o', long = "jwt-output-file")]
        output: Option<PathBuf>,
        /// Overwrite the `-o` file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

impl CreateCommand {
    /// The `-o` file the command writes, and whether it may overwrite it.
    pub fn output(&self) -> Option<(&std::path::Path, bool)> {
        match self {
            Self::Identity {
                output: Some(path),
                force,
                ..
            }
            | Self::EdgeRouter {
                output: Some(path),
                force,
                ..
            } => Some((path, *force)),
            _ => None,
        }
    }
}

/// The collection and the create document of a command (not for enrollments, which
/// [`crate::enrollments::create`] makes in more than one request).
pub fn create_body(what: &CreateCommand) -> Result<(&'static str, Value), CliError> {
    Ok(match what {
        CreateCommand::Enrollment(_) => {
            return Err(CliError::Usage(
                "an enrollment is not one create request (enrollments::create)".into(),
            ));
        }
        CreateCommand::Identity {
            name,
            role_attributes,
            admin,
            auth_policy,
            updb,
            external_id,
            ..
        } => {
            let enrollment = match updb {
                Some(user) => json!({"updb": user}),
                None => json!({"ott": true}),
            };
            let mut body = json!({"name": name, "type": "User", "isAdmin": admin,
                                  "roleAttributes": role_attributes, "enrollment": enrollment});
            if let Some(p) = auth_policy {
                body["authPolicyId"] = json!(p);
            }
            if let Some(x) = external_id {
                body["externalId"] = json!(x);
            }
            ("identities", body)
        }
        CreateCommand::AuthPolicy(a) => ("auth-policies", a.body()),
        CreateCommand::PostureCheck(c) => ("posture-checks", c.body()?),
        CreateCommand::ExtJwtSigner {
            name,
            issuer,
            audience,
            jwks_endpoint,
            cert_file,
            kid,
            claims_property,
            external_id,
            enabled,
            client_id,
            scopes,
            external_auth_url,
        } => {
            let mut body = json!({"name": name, "issuer": issuer, "audience": audience,
                                  "useExternalId": external_id, "enabled": enabled, "scopes": scopes});
            if let Some(url) = jwks_endpoint {
                body["jwksEndpoint"] = json!(url);
            }
            if let Some(path) = cert_file {
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
                body["certPem"] = json!(pem);
            }
            for (key, value) in [
                ("kid", kid),
                ("claimsProperty", claims_property),
                ("clientId", client_id),
                ("externalAuthUrl", external_auth_url),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            ("external-jwt-signers", body)
        }
        CreateCommand::Ca {
            name,
            cert_pem_file,
            auth,
            autoca,
            ottca,
            role_attributes,
            identity_name_format,
            claim_location,
            claim_matcher,
            claim_matcher_criteria,
            claim_parser,
            claim_parser_criteria,
            claim_index,
        } => {
            let pem = std::fs::read_to_string(cert_pem_file).map_err(|e| {
                CliError::Usage(format!("cannot read {}: {e}", cert_pem_file.display()))
            })?;
            let mut body = json!({"name": name, "certPem": pem, "isAuthEnabled": auth,
                "isAutoCaEnrollmentEnabled": autoca, "isOttCaEnrollmentEnabled": ottca,
                "identityRoles": role_attributes});
            if let Some(f) = identity_name_format {
                body["identityNameFormat"] = json!(f);
            }
            if let Some(location) = claim_location {
                body["externalIdClaim"] = json!({
                    "location": location,
                    "matcher": claim_matcher.as_deref().unwrap_or("ALL"),
                    "matcherCriteria": claim_matcher_criteria,
                    "parser": claim_parser.as_deref().unwrap_or("NONE"),
                    "parserCriteria": claim_parser_criteria,
                    "index": claim_index.unwrap_or(0),
                });
            }
            ("cas", body)
        }
        CreateCommand::Service {
            name,
            role_attributes,
            configs,
            encryption: encryption_flag,
        } => {
            let enc = encryption(encryption_flag)?;
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
        CreateCommand::ConfigType { name, schema } => {
            let mut body = json!({"name": name});
            if let Some(path) = schema {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::Usage(format!("reading the schema {}: {e}", path.display()))
                })?;
                let schema: Value = serde_json::from_str(&text).map_err(|e| {
                    CliError::Usage(format!("the schema {} is not JSON: {e}", path.display()))
                })?;
                if !schema.is_object() {
                    return Err(CliError::Usage(format!(
                        "the schema {} is not a JSON object",
                        path.display()
                    )));
                }
                body["schema"] = schema;
            }
            ("config-types", body)
        }
        CreateCommand::EdgeRouter {
            name,
            role_attributes,
            tls,
            ..
        } => {
            let mut body = json!({"name": name, "roleAttributes": role_attributes});
            if let Some(url) = tls {
                let (host, protocols) = tls_listener(url)?;
                body["hostname"] = json!(host);
                body["supportedProtocols"] = protocols;
            }
            ("edge-routers", body)
        }
    })
}

/// Parses `--encryption on|off`.
pub(super) fn encryption(value: &str) -> Result<bool, CliError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(CliError::Usage(format!(
            "--encryption must be on or off, not {other:?}"
        ))),
    }
}

/// `hostname` and `supportedProtocols` from `--tls tls://host:port`.
pub(super) fn tls_listener(url: &str) -> Result<(String, Value), CliError> {
    let endpoint = url
        .starts_with("tls://")
        .then(|| weft_identity::endpoint::parse(url))
        .flatten()
        .ok_or_else(|| CliError::Usage("--tls must look like tls://host:port".into()))?;
    Ok((endpoint.host, json!({"tls": url})))
}
