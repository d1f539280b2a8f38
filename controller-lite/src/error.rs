//! Typed errors of the controller and their one mapping to OpenZiti error codes
//! and HTTP statuses.
//!
//! Codes and statuses follow the real controller (openziti/edge v0.22.39,
//! `controller/apierror/messages.go`; `UNAUTHORIZED` from `controller/env/appenv.go`).

use axum::http::StatusCode;

/// Errors of the persistent store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (SQLite or PostgreSQL) reported an error.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The database was migrated by a newer Weft: this binary must not touch it.
    #[error(
        "the database schema is at migration {found}, newer than this binary knows (up to {known}); run a newer weft-controller"
    )]
    SchemaTooNew {
        /// The newest migration applied to the database.
        found: i64,
        /// The newest migration this binary has.
        known: i64,
    },
    /// The store URL or settings are unusable.
    #[error("store configuration: {0}")]
    Config(String),
    /// A stored row is not what the schema promises.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A stored JSON document could not be (de)serialised.
    #[error("stored document is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// A row with the same unique name already exists.
    #[error("an entity named {0:?} already exists")]
    Duplicate(String),
}

/// Errors of the certificate authority and TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Certificate or key generation/signing failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM file could not be parsed.
    #[error("invalid PEM data: {0}")]
    Pem(String),
    /// A file of the PKI could not be read or written.
    #[error("PKI file error: {0}")]
    Io(#[from] std::io::Error),
    /// A certificate did not parse, or a TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] weft_tls::TlsError),
    /// JWT signing failed.
    #[error("JWT signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// An error answered to an API client as an OpenZiti error envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, unknown or expired `zt-session` (401 `UNAUTHORIZED`).
    #[error(
        "the request could not be completed. The session is not authorized or the credentials are invalid"
    )]
    Unauthorized,
    /// Authentication failed (401 `INVALID_AUTH`).
    #[error("the authentication request failed")]
    InvalidAuth,
    /// The caller is authenticated but not an administrator (403 `UNAUTHORIZED`).
    #[error("access denied: administrator rights required")]
    Forbidden,
    /// Unknown entity or route (404 `NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// Body is not valid JSON (400 `COULD_NOT_PARSE_BODY`).
    #[error("the body could not be parsed: {0}")]
    CouldNotParseBody(String),
    /// A field failed validation (400 `COULD_NOT_VALIDATE`).
    #[error("{0}")]
    CouldNotValidate(String),
    /// Bad or missing query parameter (400 `INVALID_PARAMETER`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The `filter` parameter cannot be used (400 `INVALID_FILTER`; OpenZiti answers
    /// this code with its non-standard status 480, 400 is what clients expect).
    #[error("the filter query supplied is invalid: {0}")]
    InvalidFilter(String),
    /// A sort key names no sortable field (400 `INVALID_SORT_IDENTIFIER`).
    #[error("the sort order supplied is invalid: {0}")]
    InvalidSort(String),
    /// The paging asked for cannot be served (400 `INVALID_PAGINATION`).
    #[error("the pagination properties provided are invalid: {0}")]
    InvalidPagination(String),
    /// The entity cannot be deleted, e.g. others still reference it
    /// (400 `ENTITY_CAN_NOT_BE_DELETED`).
    #[error("the entity requested for delete can not be deleted: {0}")]
    EntityCanNotBeDeleted(String),
    /// Only `updb` authenticators can be updated (409 `CAN_NOT_UPDATE_AUTHENTICATOR`).
    #[error("the authenticator cannot be updated in this fashion: {0}")]
    CanNotUpdateAuthenticator(String),
    /// The identity already has an authenticator of that method
    /// (409 `MAX_AUTHENTICATOR_METHODS_REACHED`).
    #[error("{0}")]
    MaxAuthenticators(String),
    /// Unique name already taken (409 `DUPLICATE_NAME`; the real controller
    /// reports this as a field error, a distinct code is clearer for clients).
    #[error("{0}")]
    Conflict(String),
    /// Enrollment token unknown, used, expired or the CSR is bad (400 `INVALID_ENROLLMENT_TOKEN`).
    #[error("{0}")]
    InvalidEnrollmentToken(String),
    /// No edge router can serve this session (400 `NO_EDGE_ROUTERS_AVAILABLE`).
    #[error("no edge routers are available for this service")]
    NoEdgeRoutersAvailable,
    /// Request body too large (413 `REQUEST_TOO_LARGE`).
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// Method not allowed on this path (405 `METHOD_NOT_ALLOWED`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many attempts or too busy to serve this now (429 `RATE_LIMITED`;
    /// openziti/ziti `controller/apierror/messages.go` `RateLimitedCode`, with its message).
    #[error(
        "The requested operation is rate limited and the rate limit has been exceeded. Please try again later"
    )]
    RateLimited,
    /// The API session holds the most sessions allowed (429 `RATE_LIMITED`).
    #[error(
        "the API session already holds {0} sessions, the most allowed; delete sessions or start a new API session"
    )]
    SessionLimit(usize),
    /// The body's content type is not one the endpoint consumes (415
    /// `INVALID_CONTENT_TYPE`: openziti/ziti `controller/apierror/messages.go`
    /// `InvalidContentTypeCode` and message; its go-openapi runtime answers an
    /// undeclared content type with 415).
    #[error("The content type supplied is not acceptable: {0}")]
    UnsupportedMediaType(String),
    /// The request ran past `http_request_timeout_ms` (503 `TIMEOUT`; openziti/ziti
    /// `controller/apierror/messages.go` `TimeoutCode`, with its message and status).
    #[error("The requested operation took too much time to reply")]
    Timeout,
    /// Other entities still refer to it (409 `CAN_NOT_DELETE_REFERENCED_ENTITY`;
    /// openziti/ziti `controller/apierror/messages.go`).
    #[error("the entity is referenced by others and cannot be deleted: {0}")]
    ReferencedEntity(String),
    /// The identity already has an MFA enrollment (409 `MFA_EXISTS`).
    #[error("an MFA enrollment already exists")]
    MfaExists,
    /// The identity has no (verified) MFA enrollment (409 `MFA_NOT_ENROLLED`).
    #[error("the identity is not enrolled in MFA")]
    MfaNotEnrolled,
    /// A TOTP or recovery code was missing, wrong or already used
    /// (400 `MFA_INVALID_TOKEN`).
    #[error("the token provided was invalid")]
    MfaInvalidToken,
    /// The operation needs a session kind this one is not (400
    /// `INVALID_BACKING_TOKEN_TYPE`: TOTP tokens are for OIDC sessions only).
    #[error("{0}")]
    InvalidBackingTokenType(String),
    /// A presented client certificate is not the one expected (400 `INVALID_CLIENT_CERT`).
    #[error("{0}")]
    InvalidClientCert(String),
    /// A certificate signing request that cannot be used (400 `COULD_NOT_PROCESS_CSR`).
    #[error("could not process the certificate signing request: {0}")]
    CouldNotProcessCsr(String),
    /// `certPem` is not exactly one PEM certificate (400 `INVALID_CERT_PEM`; openziti/ziti
    /// `controller/apierror/messages.go` `InvalidCertPemCode`).
    #[error("the certificate PEM is invalid: {0}")]
    InvalidCertPem(String),
    /// An external-JWT login failed (401 `UNAUTHORIZED` with the challenge's
    /// `WWW-Authenticate` header, as openziti/ziti `controller/model/authenticator_mod_ext_jwt.go`
    /// answers).
    #[error("{0}")]
    ExtJwt(Box<crate::extjwt::Challenge>),
    /// A session request whose posture fails every granting policy (409
    /// `INVALID_POSTURE`, openziti/ziti `controller/apierror/messages.go`
    /// `InvalidPostureCode`); the cause names the failing policies and checks.
    #[error("Posture response data is missing or wrong")]
    InvalidPosture(Box<serde_json::Value>),
    /// A refusal of the 3rd-party CA endpoints or of CA enrollment, with its own code.
    #[error(transparent)]
    Ca(crate::thirdparty_ca::CaError),
    /// Any internal failure (500 `UNHANDLED`). The message never contains secrets.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The OpenZiti error code string.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::Forbidden | Self::ExtJwt(_) => "UNAUTHORIZED",
            Self::InvalidAuth => "INVALID_AUTH",
            Self::NotFound(_) => "NOT_FOUND",
            Self::CouldNotParseBody(_) => "COULD_NOT_PARSE_BODY",
            Self::CouldNotValidate(_) => "COULD_NOT_VALIDATE",
            Self::InvalidParameter(_) => "INVALID_PARAMETER",
            Self::InvalidFilter(_) => "INVALID_FILTER",
            Self::InvalidSort(_) => "INVALID_SORT_IDENTIFIER",
            Self::InvalidPagination(_) => "INVALID_PAGINATION",
            Self::EntityCanNotBeDeleted(_) => "ENTITY_CAN_NOT_BE_DELETED",
            Self::CanNotUpdateAuthenticator(_) => "CAN_NOT_UPDATE_AUTHENTICATOR",
            Self::MaxAuthenticators(_) => "MAX_AUTHENTICATOR_METHODS_REACHED",
            Self::Conflict(_) => "DUPLICATE_NAME",
            Self::InvalidEnrollmentToken(_) => "INVALID_ENROLLMENT_TOKEN",
            Self::NoEdgeRoutersAvailable => "NO_EDGE_ROUTERS_AVAILABLE",
            Self::PayloadTooLarge(_) => "REQUEST_TOO_LARGE",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RateLimited | Self::SessionLimit(_) => "RATE_LIMITED",
            Self::UnsupportedMediaType(_) => "INVALID_CONTENT_TYPE",
            Self::Timeout => "TIMEOUT",
            Self::ReferencedEntity(_) => "CAN_NOT_DELETE_REFERENCED_ENTITY",
            Self::MfaExists => "MFA_EXISTS",
            Self::MfaNotEnrolled => "MFA_NOT_ENROLLED",
            Self::MfaInvalidToken => "MFA_INVALID_TOKEN",
            Self::InvalidBackingTokenType(_) => "INVALID_BACKING_TOKEN_TYPE",
            Self::CouldNotProcessCsr(_) => "COULD_NOT_PROCESS_CSR",
            Self::InvalidClientCert(_) => "INVALID_CLIENT_CERT",
            Self::InvalidCertPem(_) => "INVALID_CERT_PEM",
            Self::InvalidPosture(_) => "INVALID_POSTURE",
            Self::Ca(e) => e.code(),
            Self::Internal(_) => "UNHANDLED",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::InvalidAuth | Self::ExtJwt(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::CouldNotParseBody(_)
            | Self::CouldNotValidate(_)
            | Self::InvalidParameter(_)
            | Self::InvalidFilter(_)
            | Self::InvalidSort(_)
            | Self::InvalidPagination(_)
            | Self::EntityCanNotBeDeleted(_)
            | Self::InvalidEnrollmentToken(_)
            | Self::NoEdgeRoutersAvailable
            | Self::MfaInvalidToken
            | Self::InvalidBackingTokenType(_)
            | Self::CouldNotProcessCsr(_)
            | Self::InvalidClientCert(_)
            | Self::InvalidCertPem(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_)
            | Self::CanNotUpdateAuthenticator(_)
            | Self::MaxAuthenticators(_)
            | Self::ReferencedEntity(_)
            | Self::MfaExists
            | Self::MfaNotEnrolled
            | Self::InvalidPosture(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited | Self::SessionLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Ca(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Duplicate(name) => {
                Self::Conflict(format!("name {name:?} is already in use"))
            }
            // The database is unreachable or saturated: a retry may succeed.
            StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                tracing::error!(error = %e, "store unavailable");
                Self::Timeout
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::Internal("store failure".into())
            }
        }
    }
}

impl From<PkiError> for ApiError {
    fn from(e: PkiError) -> Self {
        tracing::error!(error = %e, "pki failure");
        Self::Internal("certificate authority failure".into())
    }
}

/// One line for a user: the error and each cause its message does not already contain
/// ([`weft_ops::report::one_line`]).
pub use weft_ops::report::one_line as report;
