//! The management model: entity kinds, their create/update documents with
//! validation, and role selectors.
//!
//! Field names follow the Edge Management API (openziti/edge `specs/management.yml`,
//! e.g. `identityCreate`, `serviceCreate`, `servicePolicyCreate`).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, schema_for};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::filter::Fields;

pub mod entity;

pub use entity::{CaRecord, Document, Entity, StoredPostureCheck};

/// The strings of a JSON array (anything else in it, or a value that is no array,
/// counts as none).
pub fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Kinds of management entities (also the management API collection names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `identities`
    Identities,
    /// `services`
    Services,
    /// `configs`
    Configs,
    /// `config-types`
    ConfigTypes,
    /// `service-policies`
    ServicePolicies,
    /// `edge-router-policies`
    EdgeRouterPolicies,
    /// `service-edge-router-policies`
    ServiceEdgeRouterPolicies,
    /// `edge-routers`
    EdgeRouters,
    /// `terminators`
    Terminators,
    /// `auth-policies`
    AuthPolicies,
    /// `external-jwt-signers`
    ExternalJwtSigners,
    /// `posture-checks`
    PostureChecks,
    /// `cas` (3rd-party CAs, [`crate::thirdparty_ca`])
    Cas,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 13] = [
        Self::Identities,
        Self::Services,
        Self::Configs,
        Self::ConfigTypes,
        Self::ServicePolicies,
        Self::EdgeRouterPolicies,
        Self::ServiceEdgeRouterPolicies,
        Self::EdgeRouters,
        Self::Terminators,
        Self::AuthPolicies,
        Self::ExternalJwtSigners,
        Self::PostureChecks,
        Self::Cas,
    ];

    /// Collection (and store kind) name.
    pub fn collection(self) -> &'static str {
        match self {
            Self::Identities => "identities",
            Self::Services => "services",
            Self::Configs => "configs",
            Self::ConfigTypes => "config-types",
            Self::ServicePolicies => "service-policies",
            Self::EdgeRouterPolicies => "edge-router-policies",
            Self::ServiceEdgeRouterPolicies => "service-edge-router-policies",
            Self::EdgeRouters => "edge-routers",
            Self::Terminators => "terminators",
            Self::AuthPolicies => "auth-policies",
            Self::ExternalJwtSigners => "external-jwt-signers",
            Self::PostureChecks => "posture-checks",
            Self::Cas => "cas",
        }
    }

    /// Parses a collection name.
    pub fn from_collection(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.collection() == s)
    }

    /// The singular and plural type names (`Identity`, `Identities`), as OpenZiti's
    /// operation ids spell them (`listIdentities`, `detailIdentity`).
    pub fn type_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Identities => ("Identity", "Identities"),
            Self::Services => ("Service", "Services"),
            Self::Configs => ("Config", "Configs"),
            Self::ConfigTypes => ("ConfigType", "ConfigTypes"),
            Self::ServicePolicies => ("ServicePolicy", "ServicePolicies"),
            Self::EdgeRouterPolicies => ("EdgeRouterPolicy", "EdgeRouterPolicies"),
            Self::ServiceEdgeRouterPolicies => {
                ("ServiceEdgeRouterPolicy", "ServiceEdgeRouterPolicies")
            }
            Self::EdgeRouters => ("EdgeRouter", "EdgeRouters"),
            Self::Terminators => ("Terminator", "Terminators"),
            Self::AuthPolicies => ("AuthPolicy", "AuthPolicies"),
            Self::ExternalJwtSigners => ("ExternalJwtSigner", "ExternalJwtSigners"),
            Self::PostureChecks => ("PostureCheck", "PostureChecks"),
            Self::Cas => ("Ca", "Cas"),
        }
    }

    /// Registers the kind's document schema with `generator`; returns the reference.
    pub fn document_subschema(self, generator: &mut SchemaGenerator) -> Schema {
        match self {
            Self::Identities => generator.subschema_for::<Identity>(),
            Self::Services => generator.subschema_for::<Service>(),
            Self::Configs => generator.subschema_for::<Config>(),
            Self::ConfigTypes => generator.subschema_for::<ConfigType>(),
            Self::ServicePolicies => generator.subschema_for::<ServicePolicy>(),
            Self::EdgeRouterPolicies => generator.subschema_for::<EdgeRouterPolicy>(),
            Self::ServiceEdgeRouterPolicies => generator.subschema_for::<ServiceEdgeRouterPolicy>(),
            Self::EdgeRouters => generator.subschema_for::<EdgeRouter>(),
            Self::Terminators => generator.subschema_for::<Terminator>(),
            Self::AuthPolicies => generator.subschema_for::<AuthPolicy>(),
            Self::ExternalJwtSigners => generator.subschema_for::<ExternalJwtSigner>(),
            Self::PostureChecks => generator.subschema_for::<PostureCheck>(),
            Self::Cas => generator.subschema_for::<crate::thirdparty_ca::CaDocument>(),
        }
    }

    /// JSON schema of the kind's document: the create body without `name` and `tags`.
    pub fn document_schema(self) -> Schema {
        match self {
            Self::Identities => schema_for!(Identity),
            Self::Services => schema_for!(Service),
            Self::Configs => schema_for!(Config),
            Self::ConfigTypes => schema_for!(ConfigType),
            Self::ServicePolicies => schema_for!(ServicePolicy),
            Self::EdgeRouterPolicies => schema_for!(EdgeRouterPolicy),
            Self::ServiceEdgeRouterPolicies => schema_for!(ServiceEdgeRouterPolicy),
            Self::EdgeRouters => schema_for!(EdgeRouter),
            Self::Terminators => schema_for!(Terminator),
            Self::AuthPolicies => schema_for!(AuthPolicy),
            Self::ExternalJwtSigners => schema_for!(ExternalJwtSigner),
            Self::PostureChecks => schema_for!(PostureCheck),
            Self::Cas => schema_for!(crate::thirdparty_ca::CaDocument),
        }
    }

    /// The fields list filters and sorts of the collection may name: the base fields
    /// and the stored document's fields.
    pub fn fields(self) -> Fields {
        let mut schema = self.document_schema().to_value();
        // Create-only input, never stored.
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("enrollment");
        }
        let fields = Fields::base().with_schema(&schema);
        match self {
            // Set by the controller, outside the document schema.
            Self::Cas => fields
                .with("isVerified", crate::filter::FieldType::Bool)
                .with("fingerprint", crate::filter::FieldType::String),
            _ => fields,
        }
    }
}

pub use crate::policy::{PolicyType, Semantic};
pub use crate::posture::PostureCheck;

fn default_true() -> bool {
    true
}
fn default_identity_type() -> String {
    "Default".into()
}
fn default_strategy() -> String {
    "smartrouting".into()
}
fn default_binding() -> String {
    "edge".into()
}

/// Enrollment requested when an identity is created.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    /// One-time-token enrollment (a certificate).
    #[serde(default)]
    pub ott: bool,
    /// Password enrollment for this user name (`ott`, then `ottca`, win when several
    /// are given, as in OpenZiti).
    #[serde(default)]
    pub updb: Option<String>,
    /// Enrollment with a certificate of this 3rd-party CA (id or name).
    #[serde(default)]
    pub ottca: Option<String>,
}

/// Identity document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    /// `User`, `Device`, `Service`, `Router` or `Default`.
    #[serde(rename = "type", default = "default_identity_type")]
    pub identity_type: String,
    /// Administrator rights on the management API.
    #[serde(default)]
    pub is_admin: bool,
    /// Role attributes (without `#`).
    #[serde(default)]
    pub role_attributes: Vec<String>,
    /// Input only: `true` disables the identity until it is enabled again, `false`
    /// enables it; absent leaves the state as it is. The state itself is
    /// `disabledAt`/`disabledUntil` ([`Identity::is_disabled`]).
    #[serde(default, skip_serializing)]
    pub disabled: Option<bool>,
    /// When the identity was disabled (by `/disable`, a lockout or `disabled: true`);
    /// set by the controller only.
    #[serde(default)]
    pub disabled_at: Option<String>,
    /// When a timed disable ends; `None` with `disabledAt` set: until enabled.
    #[serde(default)]
    pub disabled_until: Option<String>,
    /// Application data.
    #[serde(default)]
    pub app_data: Map<String, Value>,
    /// Default hosting cost.
    #[serde(default)]
    pub default_hosting_cost: u16,
    /// Authentication policy (id); `None` or blank: the `default` policy.
    #[serde(default)]
    pub auth_policy_id: Option<String>,
    /// Id of the identity at an external identity provider: external JWT signers with
    /// `useExternalId` find the identity by it. Unique among identities when set.
    #[serde(default, rename = "externalId")]
    pub external_id: Option<String>,
    /// Create-only: requested enrollment.
    #[serde(default, skip_serializing)]
    pub enrollment: Option<EnrollmentRequest>,
}

/// Service document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Role attributes.
    #[serde(default)]
    pub role_attributes: Vec<String>,
    /// Config ids attached to the service.
    #[serde(default)]
    pub configs: Vec<String>,
    /// End-to-end encryption required.
    #[serde(default = "default_true")]
    pub encryption_required: bool,
    /// Terminator strategy.
    #[serde(default = "default_strategy")]
    pub terminator_strategy: String,
}

/// Config type document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigType {
    /// JSON schema the data of configs of this type must match ([`crate::schema_check`];
    /// empty: anything).
    #[serde(default)]
    pub schema: Map<String, Value>,
}

/// Config document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Id of the config type.
    pub config_type_id: String,
    /// The config data (an object).
    pub data: Map<String, Value>,
}

/// Service policy document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePolicy {
    /// Dial or Bind.
    #[serde(rename = "type")]
    pub policy_type: PolicyType,
    /// Selector semantic.
    #[serde(default)]
    pub semantic: Semantic,
    /// Identity selectors.
    #[serde(default)]
    pub identity_roles: Vec<String>,
    /// Service selectors.
    #[serde(default)]
    pub service_roles: Vec<String>,
    /// Posture check selectors: every check they select must pass for this policy to
    /// grant access ([`crate::posture`]).
    #[serde(default)]
    pub posture_check_roles: Vec<String>,
}

/// Edge router policy document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeRouterPolicy {
    /// Selector semantic.
    #[serde(default)]
    pub semantic: Semantic,
    /// Edge router selectors.
    #[serde(default)]
    pub edge_router_roles: Vec<String>,
    /// Identity selectors.
    #[serde(default)]
    pub identity_roles: Vec<String>,
}

/// Service edge router policy document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEdgeRouterPolicy {
    /// Selector semantic.
    #[serde(default)]
    pub semantic: Semantic,
    /// Edge router selectors.
    #[serde(default)]
    pub edge_router_roles: Vec<String>,
    /// Service selectors.
    #[serde(default)]
    pub service_roles: Vec<String>,
}

/// Edge router document. `hostname` and `supportedProtocols`, when set, override the
/// edge listener the router reports in its control hello (docs/operations.md).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeRouter {
    /// Role attributes.
    #[serde(default)]
    pub role_attributes: Vec<String>,
    /// Advertised host name of the edge listener.
    #[serde(default)]
    pub hostname: String,
    /// Protocol → URL of the edge listeners, e.g. `tls` → `tls://host:3022`.
    #[serde(default)]
    pub supported_protocols: BTreeMap<String, String>,
    /// Whether the router also runs a tunneler.
    #[serde(default)]
    pub is_tunneler_enabled: bool,
    /// Routing cost.
    #[serde(default)]
    pub cost: u16,
    /// Never use for traversal.
    #[serde(default)]
    pub no_traversal: bool,
    /// Disabled routers are never handed out.
    #[serde(default)]
    pub disabled: bool,
    /// Application data.
    #[serde(default)]
    pub app_data: Map<String, Value>,
    /// Extra DNS names or IP addresses for the server certificate issued at
    /// enrollment, besides the host of `hostname` and of each `supportedProtocols` URL.
    #[serde(default)]
    pub server_cert_sans: Vec<String>,
}

/// Terminator document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Terminator {
    /// Service id.
    pub service: String,
    /// Router id.
    pub router: String,
    /// Binding, `edge` by default.
    #[serde(default = "default_binding")]
    pub binding: String,
    /// Address on the router.
    pub address: String,
    /// Cost.
    #[serde(default)]
    pub cost: u16,
    /// Precedence: `default`, `required` or `failed`.
    #[serde(default)]
    pub precedence: Option<String>,
    /// Hosting identity (terminators created by a router for an SDK).
    #[serde(default)]
    pub identity: String,
    /// Terminator instance id (edge header 1006), empty when none.
    #[serde(default)]
    pub instance_id: String,
    /// Host's crypto_kx public key, standard base64; empty when unencrypted.
    #[serde(default)]
    pub host_public_key: String,
    /// The Bind session the terminator was created with.
    #[serde(default)]
    pub session_id: String,
}

/// Authentication policy document (`authPolicyCreate`, openziti/edge-api
/// `source/management/auth-policies.yml`). Absent fields take OpenZiti's store defaults
/// (openziti/ziti `controller/db/auth_policy_store.go`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicy {
    /// Primary authentication methods.
    #[serde(default)]
    pub primary: AuthPolicyPrimary,
    /// Secondary factors, asked as authentication queries.
    #[serde(default)]
    pub secondary: AuthPolicySecondary,
}

/// Primary methods of an [`AuthPolicy`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicyPrimary {
    /// Certificate login.
    #[serde(default)]
    pub cert: AuthPolicyCert,
    /// Password (`updb`) login.
    #[serde(default)]
    pub updb: AuthPolicyUpdb,
    /// External JWT login.
    #[serde(default)]
    pub ext_jwt: AuthPolicyExtJwt,
}

/// `primary.cert`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicyCert {
    /// Certificate login allowed.
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// Whether a certificate outside its validity window still logs in (so that it
    /// can be extended).
    #[serde(default = "default_true")]
    pub allow_expired_certs: bool,
}

impl Default for AuthPolicyCert {
    fn default() -> Self {
        Self {
            allowed: true,
            allow_expired_certs: true,
        }
    }
}

/// Shortest password any policy may ask for (OpenZiti persists at least 5).
pub const MIN_PASSWORD_LENGTH: u32 = 5;

fn default_min_password_length() -> u32 {
    MIN_PASSWORD_LENGTH
}
fn default_max_attempts() -> i64 {
    5
}

/// `primary.updb`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicyUpdb {
    /// Password login allowed.
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// Shortest password accepted when a password is set (OpenZiti stores but does
    /// not enforce the password rules; Weft enforces them).
    #[serde(default = "default_min_password_length")]
    pub min_password_length: u32,
    /// A password must hold a character that is neither a letter nor a digit.
    #[serde(default)]
    pub require_special_char: bool,
    /// A password must hold a digit.
    #[serde(default)]
    pub require_number_char: bool,
    /// A password must hold an upper and a lower case letter.
    #[serde(default)]
    pub require_mixed_case: bool,
    /// Failed passwords in a row that disable the identity; 0: unlimited.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    /// How long a lockout lasts; 0: until an administrator enables the identity.
    #[serde(default)]
    pub lockout_duration_minutes: i64,
}

impl Default for AuthPolicyUpdb {
    fn default() -> Self {
        Self {
            allowed: true,
            min_password_length: MIN_PASSWORD_LENGTH,
            require_special_char: false,
            require_number_char: false,
            require_mixed_case: false,
            max_attempts: default_max_attempts(),
            lockout_duration_minutes: 0,
        }
    }
}

impl AuthPolicyUpdb {
    /// Checks a new password against the policy's rules; the error says which rule.
    pub fn check_password(&self, password: &str) -> Result<(), ApiError> {
        let len = password.chars().count();
        let mut broken = Vec::new();
        if len < self.min_password_length as usize {
            broken.push(format!("at least {} characters", self.min_password_length));
        }
        if self.require_number_char && !password.chars().any(|c| c.is_ascii_digit()) {
            broken.push("a digit".into());
        }
        if self.require_special_char && password.chars().all(char::is_alphanumeric) {
            broken.push("a character that is neither a letter nor a digit".into());
        }
        if self.require_mixed_case
            && !(password.chars().any(char::is_uppercase)
                && password.chars().any(char::is_lowercase))
        {
            broken.push("upper and lower case letters".into());
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(ApiError::CouldNotValidate(format!(
                "password: the authentication policy asks for {}",
                broken.join(", ")
            )))
        }
    }
}

/// `primary.extJwt`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicyExtJwt {
    /// External JWT login allowed.
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// Signer ids allowed; empty: every enabled signer.
    #[serde(default)]
    pub allowed_signers: Vec<String>,
}

impl Default for AuthPolicyExtJwt {
    fn default() -> Self {
        Self {
            allowed: true,
            allowed_signers: Vec::new(),
        }
    }
}

/// `secondary`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthPolicySecondary {
    /// Every login must answer a TOTP query.
    #[serde(default)]
    pub require_totp: bool,
    /// Every request must carry a JWT from this signer (id).
    #[serde(default)]
    pub require_ext_jwt_signer: Option<String>,
}

/// Id of the built-in policy identities without `authPolicyId` follow.
pub const DEFAULT_AUTH_POLICY_ID: &str = "default";

impl AuthPolicy {
    /// The built-in `default` policy: every primary method, no lockout, no secondary
    /// factor (openziti/ziti `controller/db/migration_v25.go`).
    pub fn builtin_default() -> Self {
        Self {
            primary: AuthPolicyPrimary {
                updb: AuthPolicyUpdb {
                    max_attempts: 0,
                    ..AuthPolicyUpdb::default()
                },
                ..AuthPolicyPrimary::default()
            },
            secondary: AuthPolicySecondary::default(),
        }
    }

    /// Parses a stored document (falling back to the default policy's rules for a
    /// document that does not parse, which validation on write rules out).
    pub fn from_stored(data: &Value) -> Self {
        serde_json::from_value(data.clone()).unwrap_or_else(|_| Self::builtin_default())
    }
}

impl Identity {
    /// Whether the identity is disabled at `now` (Unix seconds): `disabledAt` set and
    /// `disabledUntil` absent or later than `now`. Documents written before timed
    /// disables carry `disabled: true` instead.
    pub fn is_disabled(&self, now: i64) -> bool {
        match (&self.disabled_at, &self.disabled_until) {
            (Some(_), None) => true,
            (Some(_), Some(until)) => crate::clock::parse_unix(until).is_none_or(|u| u > now),
            (None, _) => self.disabled == Some(true),
        }
    }

    /// Disables the identity from `now` (`Some(until)`: until `until`, Unix seconds, or
    /// until enabled when `None`) or enables it (`None`).
    pub fn set_disabled(&mut self, now: i64, state: Option<Option<i64>>) {
        let fmt = crate::clock::fmt_unix;
        (self.disabled_at, self.disabled_until) = match state {
            Some(until) => (Some(fmt(now)), until.map(fmt)),
            None => (None, None),
        };
        self.disabled = None;
    }

    /// Settles the disable state of a document about to be stored: the previous
    /// document's (`prev`; none on create) unless `request` (the body's `disabled`)
    /// changes it. Clients cannot write `disabledAt`/`disabledUntil` themselves.
    pub fn settle_disable(&mut self, prev: Option<&Self>, request: Option<bool>, now: i64) {
        let fmt = crate::clock::fmt_unix;
        let (mut at, mut until) = prev
            .map(|p| (p.disabled_at.clone(), p.disabled_until.clone()))
            .unwrap_or_default();
        if at.is_none() && prev.is_some_and(|p| p.disabled == Some(true)) {
            // A document from before timed disables.
            at = Some(fmt(now));
        }
        match request {
            Some(true) if !prev.is_some_and(|p| p.is_disabled(now)) => {
                at = Some(fmt(now));
                until = None;
            }
            Some(false) => {
                at = None;
                until = None;
            }
            _ => {}
        }
        (self.disabled_at, self.disabled_until) = (at, until);
        self.disabled = None;
    }

    /// The id of the authentication policy the identity follows (`default` when it
    /// names none).
    pub fn auth_policy(&self) -> &str {
        self.auth_policy_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_AUTH_POLICY_ID)
    }
}

fn default_claims_property() -> String {
    "sub".into()
}
fn default_target_token() -> String {
    "ACCESS".into()
}

/// External JWT signer document (openziti/edge-api `source/management/external-jwt-signers.yml`
/// `externalJwtSignerCreate`): who may issue the bearer tokens `POST /authenticate?method=ext-jwt`
/// accepts, and how a token names its identity. Exactly one of `certPem` and
/// `jwksEndpoint` gives the verification keys.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalJwtSigner {
    /// One PEM certificate whose public key verifies the tokens.
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// An `https` URL serving a JWK set with the verification keys, by `kid`.
    #[serde(default)]
    pub jwks_endpoint: Option<String>,
    /// Key id of `certPem` (tokens name it in their header); its SHA-1 fingerprint when
    /// absent.
    #[serde(default)]
    pub kid: Option<String>,
    /// The tokens' `iss`; unique among signers.
    pub issuer: String,
    /// The value the tokens' `aud` (a string or an array) must hold.
    pub audience: String,
    /// The claim naming the identity (a name, or a JSON pointer such as `/user/id`).
    #[serde(default = "default_claims_property")]
    pub claims_property: String,
    /// Whether that claim is the identity's `externalId` (else its id).
    #[serde(default)]
    pub use_external_id: bool,
    /// Disabled signers authenticate nobody.
    pub enabled: bool,
    /// OAuth client id clients use at the identity provider.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth scopes clients ask the identity provider for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where clients obtain tokens (the identity provider's authorization URL).
    #[serde(default)]
    pub external_auth_url: Option<String>,
    /// Which token clients present: `ACCESS` or `ID`.
    #[serde(default = "default_target_token")]
    pub target_token: String,
    /// Enrolment to a certificate by token: not supported, only `false` is accepted.
    #[serde(default)]
    pub enroll_to_cert_enabled: bool,
    /// Enrolment to a token authenticator: not supported, only `false` is accepted.
    #[serde(default)]
    pub enroll_to_token_enabled: bool,
    /// Claim selector for enrolled identities' names (stored, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_name_claims_selector: Option<String>,
    /// Claim selector for enrolled identities' attributes (stored, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_attribute_claims_selector: Option<String>,
    /// Auth policy of enrolled identities (stored, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_auth_policy_id: Option<String>,
}

fn blank_to_none(v: &mut Option<String>) {
    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
        *v = None;
    }
}

fn validate_signer(d: &mut ExternalJwtSigner) -> Result<(), ApiError> {
    for v in [
        &mut d.cert_pem,
        &mut d.jwks_endpoint,
        &mut d.kid,
        &mut d.client_id,
        &mut d.external_auth_url,
    ] {
        blank_to_none(v);
    }
    match (&d.cert_pem, &d.jwks_endpoint) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::CouldNotValidate(
                "exactly one of certPem and jwksEndpoint must be given".into(),
            ));
        }
        (Some(pem), None) => {
            crate::extjwt::keys::parse_cert_pem(pem)
                .map_err(|e| ApiError::InvalidCertPem(e.to_string()))?;
        }
        (None, Some(url)) => {
            crate::extjwt::ssrf::check_jwks_url(url)
                .map_err(|e| ApiError::CouldNotValidate(format!("jwksEndpoint: {e}")))?;
        }
    }
    if d.jwks_endpoint.is_some() && d.kid.is_some() {
        return Err(ApiError::CouldNotValidate(
            "kid names the key of certPem; a JWKS names its own keys".into(),
        ));
    }
    for (field, value) in [
        ("issuer", &d.issuer),
        ("audience", &d.audience),
        ("claimsProperty", &d.claims_property),
    ] {
        check_text(field, value)?;
        if value.trim().is_empty() {
            return Err(ApiError::CouldNotValidate(format!(
                "{field} must not be empty"
            )));
        }
        if value.len() > 1024 {
            return Err(ApiError::CouldNotValidate(format!("{field} is too long")));
        }
    }
    if let Some(kid) = &d.kid {
        check_text("kid", kid)?;
    }
    if !["ACCESS", "ID"].contains(&d.target_token.as_str()) {
        return Err(ApiError::CouldNotValidate(format!(
            "targetToken: must be ACCESS or ID, not {:?}",
            d.target_token
        )));
    }
    if d.enroll_to_cert_enabled || d.enroll_to_token_enabled {
        return Err(ApiError::CouldNotValidate(
            "enrollToCertEnabled and enrollToTokenEnabled are not supported by Weft".into(),
        ));
    }
    Ok(())
}

/// A validated document ready to store.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// Entity name.
    pub name: String,
    /// Tags object.
    pub tags: Value,
    /// Kind-specific fields.
    pub data: Value,
    /// Enrollment requested at creation (identities only).
    pub enrollment: Option<EnrollmentRequest>,
    /// Identities: the body's `disabled` ([`settle_disable`] applies it).
    pub disable: Option<bool>,
}

fn parse<T: DeserializeOwned>(obj: &Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| ApiError::CouldNotValidate(format!("invalid body: {e}")))
}

fn to_value<T: Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t).map_err(|e| ApiError::Internal(format!("serialize: {e}")))
}

/// Checks a role selector list with the policy module's parser: each entry is `#attr`,
/// `@id` or `#all`, and `#all` stands alone.
pub fn validate_roles(field: &str, roles: &[String]) -> Result<(), ApiError> {
    for r in roles {
        check_text(field, r)?;
    }
    crate::policy::RoleSet::parse(roles)
        .map(drop)
        .map_err(|e| ApiError::CouldNotValidate(format!("{field}: {e}")))
}

/// Refuses text with NUL or any other control character (Unicode category Cc) in a
/// field used as a name, attribute or selector: such values cannot be shown, typed or
/// matched reliably, and NUL truncates them in C clients. 400 `COULD_NOT_VALIDATE`, the
/// code OpenZiti answers invalid documents with (openziti/ziti
/// `controller/apierror/messages.go` `CouldNotValidateCode`).
pub fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::CouldNotValidate(format!(
            "{field}: control characters are not allowed in {value:?}"
        )));
    }
    Ok(())
}

pub(crate) fn validate_attributes(attrs: &[String]) -> Result<(), ApiError> {
    for a in attrs {
        check_text("roleAttributes", a)?;
        if a.is_empty()
            || a.starts_with('#')
            || a.starts_with('@')
            || a.chars().any(char::is_whitespace)
        {
            return Err(ApiError::CouldNotValidate(format!(
                "roleAttributes: invalid attribute {a:?}"
            )));
        }
    }
    Ok(())
}

/// Validates a create (or merged update) document of `kind`. `name` and `tags`
/// are taken out; the rest must match the kind's document exactly.
pub fn normalize(kind: Kind, mut obj: Map<String, Value>) -> Result<Normalized, ApiError> {
    let tags = match obj.remove("tags") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m),
        Some(_) => return Err(ApiError::CouldNotValidate("tags must be an object".into())),
    };
    let name = match obj.remove("name") {
        Some(Value::String(s)) => s,
        None if kind == Kind::Terminators => String::new(),
        _ => {
            return Err(ApiError::CouldNotValidate(
                "name is required and must be a string".into(),
            ));
        }
    };
    if kind != Kind::Terminators && name.trim().is_empty() {
        return Err(ApiError::CouldNotValidate("name must not be empty".into()));
    }
    if name.len() > 255 {
        return Err(ApiError::CouldNotValidate("name is too long".into()));
    }
    check_text("name", &name)?;
    if let Value::Object(t) = &tags {
        for key in t.keys() {
            check_text("tags", key)?;
        }
    }
    let mut enrollment = None;
    let mut disable = None;
    let data = match kind {
        Kind::Identities => {
            let mut d: Identity = parse(&obj)?;
            // OpenZiti stores two identity types; `User`, `Device` and `Service` are
            // kept as `Default` (openziti/ziti `controller/model/identity_manager.go`).
            d.identity_type = match d.identity_type.as_str() {
                "User" | "Device" | "Service" | "Default" => "Default".into(),
                "Router" => "Router".into(),
                other => {
                    return Err(ApiError::CouldNotValidate(format!(
                        "type: invalid identity type {other:?}"
                    )));
                }
            };
            validate_attributes(&d.role_attributes)?;
            if let Some(s) = d.auth_policy_id.as_deref() {
                check_text("authPolicyId", s)?;
                if s.trim().is_empty() {
                    d.auth_policy_id = None;
                }
            }
            blank_to_none(&mut d.external_id);
            if let Some(x) = &d.external_id {
                check_text("externalId", x)?;
                if x.len() > 1024 {
                    return Err(ApiError::CouldNotValidate("externalId is too long".into()));
                }
            }
            enrollment = d.enrollment.take();
            disable = d.disabled.take();
            to_value(&d)?
        }
        Kind::Services => {
            let d: Service = parse(&obj)?;
            validate_attributes(&d.role_attributes)?;
            to_value(&d)?
        }
        Kind::ConfigTypes => to_value(&parse::<ConfigType>(&obj)?)?,
        Kind::Configs => to_value(&parse::<Config>(&obj)?)?,
        Kind::ServicePolicies => {
            let d: ServicePolicy = parse(&obj)?;
            validate_roles("identityRoles", &d.identity_roles)?;
            validate_roles("serviceRoles", &d.service_roles)?;
            validate_roles("postureCheckRoles", &d.posture_check_roles)?;
            to_value(&d)?
        }
        Kind::EdgeRouterPolicies => {
            let d: EdgeRouterPolicy = parse(&obj)?;
            validate_roles("edgeRouterRoles", &d.edge_router_roles)?;
            validate_roles("identityRoles", &d.identity_roles)?;
            to_value(&d)?
        }
        Kind::ServiceEdgeRouterPolicies => {
            let d: ServiceEdgeRouterPolicy = parse(&obj)?;
            validate_roles("edgeRouterRoles", &d.edge_router_roles)?;
            validate_roles("serviceRoles", &d.service_roles)?;
            to_value(&d)?
        }
        Kind::EdgeRouters => {
            let d: EdgeRouter = parse(&obj)?;
            validate_attributes(&d.role_attributes)?;
            for (proto, url) in &d.supported_protocols {
                if !url.starts_with(&format!("{proto}://")) {
                    return Err(ApiError::CouldNotValidate(format!(
                        "supportedProtocols: {url:?} does not start with {proto}://"
                    )));
                }
            }
            to_value(&d)?
        }
        Kind::Terminators => to_value(&parse::<Terminator>(&obj)?)?,
        Kind::AuthPolicies => {
            let mut d: AuthPolicy = parse(&obj)?;
            let updb = &mut d.primary.updb;
            if updb.min_password_length < MIN_PASSWORD_LENGTH || updb.min_password_length > 1024 {
                return Err(ApiError::CouldNotValidate(format!(
                    "primary.updb.minPasswordLength must be between {MIN_PASSWORD_LENGTH} and 1024"
                )));
            }
            // Negative counts mean "none", as in OpenZiti.
            updb.max_attempts = updb.max_attempts.max(0);
            updb.lockout_duration_minutes = updb.lockout_duration_minutes.max(0);
            for s in &d.primary.ext_jwt.allowed_signers {
                check_text("primary.extJwt.allowedSigners", s)?;
            }
            if let Some(s) = &d.secondary.require_ext_jwt_signer {
                check_text("secondary.requireExtJwtSigner", s)?;
            }
            to_value(&d)?
        }
        Kind::ExternalJwtSigners => {
            let mut d: ExternalJwtSigner = parse(&obj)?;
            validate_signer(&mut d)?;
            to_value(&d)?
        }
        Kind::PostureChecks => {
            // `version` counts updates; the controller keeps it, clients' copies are
            // ignored (a detail read back and sent as an update carries it).
            obj.remove("version");
            let mut d: PostureCheck = parse(&obj)?;
            validate_attributes(d.role_attributes())?;
            d.normalize()?;
            to_value(&d)?
        }
        Kind::Cas => crate::thirdparty_ca::normalize_document(obj)?,
    };
    Ok(Normalized {
        name,
        tags,
        data,
        enrollment,
        disable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn identity(v: Value) -> Identity {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn disable_states_are_kept_changed_and_expire() {
        let now = 1_000_000;
        let at = crate::clock::fmt_unix(now);
        // Created: enabled unless the body disables it.
        let mut new = identity(json!({}));
        new.settle_disable(None, None, now);
        assert!(!new.is_disabled(now));
        new.settle_disable(None, Some(true), now);
        assert_eq!(new.disabled_at.as_deref(), Some(at.as_str()));
        assert!(new.is_disabled(now + 10_000));
        // Updated without `disabled`: the stored state stays, a timed one included.
        let mut stored = identity(json!({}));
        stored.set_disabled(now, Some(Some(now + 60)));
        let mut update = identity(json!({}));
        update.settle_disable(Some(&stored), None, now + 1);
        assert_eq!(update.disabled_until, stored.disabled_until);
        assert!(update.is_disabled(now + 59) && !update.is_disabled(now + 60));
        // `disabled: true` on a disabled identity keeps when it was disabled;
        // `disabled: false` enables.
        update.settle_disable(Some(&stored), Some(true), now + 5);
        assert_eq!(update.disabled_at, stored.disabled_at);
        update.settle_disable(Some(&stored), Some(false), now + 5);
        assert!(!update.is_disabled(now + 5) && update.disabled_at.is_none());
        // A document from before timed disables (`disabled: true`) is disabled, and
        // keeps being so, now as `disabledAt`, when stored again.
        let legacy = identity(json!({"disabled": true}));
        assert!(legacy.is_disabled(now));
        let mut again = identity(json!({}));
        again.settle_disable(Some(&legacy), None, now);
        assert_eq!(again.disabled_at.as_deref(), Some(at.as_str()));
        let stored_again = serde_json::to_value(&again).unwrap();
        assert!(stored_again.get("disabled").is_none());
        assert!(identity(stored_again).is_disabled(now + 1));
        // Enabled by the `enable` operation.
        again.set_disabled(now, None);
        assert!(!again.is_disabled(now));
    }

    #[test]
    fn control_characters_are_refused_in_names_attributes_and_selectors() {
        for body in [
            json!({"name": "a\u{0}b"}),
            json!({"name": "tab\there"}),
            json!({"name": "del\u{7f}"}),
            json!({"name": "ok", "roleAttributes": ["x\u{0}"]}),
            json!({"name": "ok", "tags": {"k\u{1b}": "v"}}),
        ] {
            let e = normalize(Kind::Services, obj(body.clone())).unwrap_err();
            assert_eq!(e.code(), "COULD_NOT_VALIDATE", "{body}");
            assert_eq!(e.status(), 400);
        }
        let e = normalize(
            Kind::ServicePolicies,
            obj(json!({"name": "p", "type": "Dial", "identityRoles": ["#a\u{0}"]})),
        )
        .unwrap_err();
        assert_eq!(e.code(), "COULD_NOT_VALIDATE");
        // Non-ASCII printable text is fine.
        assert!(normalize(Kind::Services, obj(json!({"name": "café ☕"}))).is_ok());
    }

    #[test]
    fn unknown_fields_and_bad_selectors_are_rejected() {
        let e = normalize(Kind::Services, obj(json!({"name": "s", "bogus": 1}))).unwrap_err();
        assert_eq!(e.code(), "COULD_NOT_VALIDATE");
        let e = normalize(
            Kind::ServicePolicies,
            obj(json!({"name": "p", "type": "Dial", "identityRoles": ["attr"]})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("identityRoles"));
        let e = normalize(
            Kind::ServicePolicies,
            obj(json!({"name": "p", "type": "dial"})),
        )
        .unwrap_err();
        assert_eq!(e.code(), "COULD_NOT_VALIDATE");
    }

    #[test]
    fn identity_enrollment_is_not_stored() {
        let n = normalize(
            Kind::Identities,
            obj(
                json!({"name": "i", "type": "User", "isAdmin": false, "enrollment": {"ott": true}}),
            ),
        )
        .unwrap();
        assert!(n.enrollment.unwrap().ott);
        assert!(n.data.get("enrollment").is_none());
        assert_eq!(n.data["roleAttributes"], json!([]));
    }
}
