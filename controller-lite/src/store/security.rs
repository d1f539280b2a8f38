//! Enrollments, authenticators, API sessions and sessions.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use super::{ChangeOp, Store, WriteTx, is_unique_violation};
use crate::error::StoreError;
use crate::policy::PolicyType;

/// A one-time enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRow {
    /// Enrollment id.
    pub id: String,
    /// Identity (or edge router, for `erott`) being enrolled.
    pub identity_id: String,
    /// The method, with what it alone carries.
    pub method: EnrollmentMethod,
    /// Token (JWT `jti`).
    pub jti: String,
    /// The signed enrollment JWT.
    pub jwt: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Whether the token was redeemed.
    pub used: bool,
    /// Creation time.
    pub created_at: String,
}

/// How an enrollment is redeemed (the `method` column, with the columns only that
/// method uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentMethod {
    /// `ott`: a certificate signing request, answered with a certificate.
    Ott,
    /// `ottca`: a certificate of the 3rd-party CA `ca_id`.
    Ottca {
        /// The CA whose certificate redeems it.
        ca_id: String,
    },
    /// `updb`: a password for `username`.
    Updb {
        /// The user name the enrolled password belongs to.
        username: String,
    },
    /// `erott`: an edge router's enrollment (server and client certificates).
    Erott,
}

impl EnrollmentMethod {
    /// The method's name, as the API and the `method` column spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ott => "ott",
            Self::Ottca { .. } => "ottca",
            Self::Updb { .. } => "updb",
            Self::Erott => "erott",
        }
    }

    /// The `username` and `ca_id` columns.
    fn columns(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Updb { username } => (Some(username), None),
            Self::Ottca { ca_id } => (None, Some(ca_id)),
            Self::Ott | Self::Erott => (None, None),
        }
    }

    /// From the `method`, `username` and `ca_id` columns; a method without the column
    /// it needs, or one this controller does not know, is corrupt.
    fn from_columns(
        method: &str,
        username: Option<String>,
        ca_id: Option<String>,
    ) -> Result<Self, StoreError> {
        let missing =
            |col: &str| StoreError::Corrupt(format!("a {method} enrollment has no {col}"));
        match method {
            "ott" => Ok(Self::Ott),
            "erott" => Ok(Self::Erott),
            "updb" => Ok(Self::Updb {
                username: username.ok_or_else(|| missing("user name"))?,
            }),
            "ottca" => Ok(Self::Ottca {
                ca_id: ca_id.ok_or_else(|| missing("CA"))?,
            }),
            other => Err(StoreError::Corrupt(format!(
                "unknown enrollment method {other:?}"
            ))),
        }
    }
}

/// A credential bound to an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorRow {
    /// Authenticator id.
    pub id: String,
    /// Owner identity (or edge router, for [`Credential::Router`]).
    pub identity_id: String,
    /// What proves the identity.
    pub credential: Credential,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
}

/// What an authenticator holds: one variant per method (the `method` column, with the
/// columns only that method uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `cert`: a client certificate, known by its SHA-1 fingerprint.
    Cert {
        /// SHA-1 fingerprint of the certificate (lowercase hex).
        fingerprint: String,
        /// The certificate, when this controller issued it (a 3rd-party CA's
        /// certificate is known by its fingerprint only).
        pem: Option<String>,
    },
    /// `updb`: a user name and password.
    Updb {
        /// User name, unique among authenticators.
        username: String,
        /// Argon2 PHC hash of the password.
        password_hash: String,
    },
    /// `router`: an edge router's control-channel client certificate; never logs an
    /// identity in (`authenticate?method=cert` looks at `cert` only).
    Router {
        /// SHA-1 fingerprint of the certificate.
        fingerprint: String,
        /// The certificate this controller issued at the router's enrollment.
        pem: String,
    },
}

impl Credential {
    /// The method's name, as the API and the `method` column spell it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Cert { .. } => CERT_METHOD,
            Self::Updb { .. } => UPDB_METHOD,
            Self::Router { .. } => ROUTER_AUTH_METHOD,
        }
    }

    /// The certificate's fingerprint (certificate methods).
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            Self::Cert { fingerprint, .. } | Self::Router { fingerprint, .. } => Some(fingerprint),
            Self::Updb { .. } => None,
        }
    }

    /// The certificate this controller issued, if it did (certificate methods).
    pub fn cert_pem(&self) -> Option<&str> {
        match self {
            Self::Cert { pem, .. } => pem.as_deref(),
            Self::Router { pem, .. } => Some(pem),
            Self::Updb { .. } => None,
        }
    }

    /// The user name (`updb`).
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Updb { username, .. } => Some(username),
            _ => None,
        }
    }

    /// The `fingerprint`, `cert_pem`, `username` and `password_hash` columns.
    fn columns(&self) -> [Option<&str>; 4] {
        match self {
            Self::Cert { fingerprint, pem } => [Some(fingerprint), pem.as_deref(), None, None],
            Self::Router { fingerprint, pem } => [Some(fingerprint), Some(pem), None, None],
            Self::Updb {
                username,
                password_hash,
            } => [None, None, Some(username), Some(password_hash)],
        }
    }

    /// From the `method` column and the four of [`Self::columns`]; a method without a
    /// column it needs, or one this controller does not know, is corrupt.
    fn from_columns(method: &str, cols: [Option<String>; 4]) -> Result<Self, StoreError> {
        let [fingerprint, pem, username, hash] = cols;
        let missing =
            |col: &str| StoreError::Corrupt(format!("a {method} authenticator has no {col}"));
        match method {
            CERT_METHOD => Ok(Self::Cert {
                fingerprint: fingerprint.ok_or_else(|| missing("fingerprint"))?,
                pem,
            }),
            ROUTER_AUTH_METHOD => Ok(Self::Router {
                fingerprint: fingerprint.ok_or_else(|| missing("fingerprint"))?,
                pem: pem.ok_or_else(|| missing("certificate"))?,
            }),
            UPDB_METHOD => Ok(Self::Updb {
                username: username.ok_or_else(|| missing("user name"))?,
                password_hash: hash.ok_or_else(|| missing("password hash"))?,
            }),
            other => Err(StoreError::Corrupt(format!(
                "unknown authenticator method {other:?}"
            ))),
        }
    }
}

/// An API session (login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSessionRow {
    /// Session id.
    pub id: String,
    /// Bearer token sent as `zt-session`.
    pub token: String,
    /// Authenticated identity.
    pub identity_id: String,
    /// Authenticator used.
    pub authenticator_id: String,
    /// Requested config types (JSON array of strings).
    pub config_types: Vec<String>,
    /// Client IP address.
    pub ip_address: String,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
    /// Last activity, Unix seconds.
    pub last_activity: i64,
    /// The identity had a verified MFA enrollment at login (OpenZiti `isMfaRequired`).
    pub mfa_required: bool,
    /// The session answered its TOTP query (OpenZiti `isMfaComplete`).
    pub mfa_complete: bool,
}

/// A network session for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id.
    pub id: String,
    /// Token given to edge routers.
    pub token: String,
    /// Owning API session.
    pub api_session_id: String,
    /// Identity.
    pub identity_id: String,
    /// Service.
    pub service_id: String,
    /// `Dial` or `Bind`.
    pub session_type: PolicyType,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
}

pub(super) fn enrollment_from(r: &AnyRow) -> Result<EnrollmentRow, StoreError> {
    Ok(EnrollmentRow {
        id: r.try_get(0)?,
        identity_id: r.try_get(1)?,
        method: EnrollmentMethod::from_columns(
            &r.try_get::<String, _>(2)?,
            r.try_get(8)?,
            r.try_get(9)?,
        )?,
        jti: r.try_get(3)?,
        jwt: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        used: r.try_get::<i64, _>(6)? != 0,
        created_at: r.try_get(7)?,
    })
}

pub(super) fn authenticator_from(r: &AnyRow) -> Result<AuthenticatorRow, StoreError> {
    Ok(AuthenticatorRow {
        id: r.try_get(0)?,
        identity_id: r.try_get(1)?,
        credential: Credential::from_columns(
            &r.try_get::<String, _>(2)?,
            [r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?],
        )?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

/// The `session_type` column (`Dial` or `Bind`); anything else is corrupt.
pub(super) fn session_type_from(t: &str) -> Result<PolicyType, StoreError> {
    t.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown session type {t:?}")))
}

pub(super) fn api_session_from(r: &AnyRow) -> Result<ApiSessionRow, StoreError> {
    Ok(ApiSessionRow {
        id: r.try_get(0)?,
        token: r.try_get(1)?,
        identity_id: r.try_get(2)?,
        authenticator_id: r.try_get(3)?,
        config_types: serde_json::from_str(&r.try_get::<String, _>(4)?)?,
        ip_address: r.try_get(5)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
        last_activity: r.try_get(8)?,
        mfa_required: r.try_get::<i64, _>(9)? != 0,
        mfa_complete: r.try_get::<i64, _>(10)? != 0,
    })
}

pub(super) fn session_from(r: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.try_get(0)?,
        token: r.try_get(1)?,
        api_session_id: r.try_get(2)?,
        identity_id: r.try_get(3)?,
        service_id: r.try_get(4)?,
        session_type: session_type_from(&r.try_get::<String, _>(5)?)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
    })
}

pub(super) const ENR_COLS: &str =
    "id, identity_id, method, jti, jwt, expires_at, used, created_at, username, ca_id";
pub(super) const AUTH_COLS: &str = "id, identity_id, method, fingerprint, cert_pem, username, password_hash, created_at, updated_at";
pub(super) const API_COLS: &str = "id, token, identity_id, authenticator_id, config_types, ip_address, created_at, updated_at, last_activity, mfa_required, mfa_complete";
pub(super) const SES_COLS: &str =
    "id, token, api_session_id, identity_id, service_id, session_type, created_at, updated_at";

/// Runs `sql` (built from the fixed column lists above and fixed conditions, never
/// from input) with `args` bound in order and decodes every row with `decode`.
pub(super) async fn fetch_all<'e, T>(
    ex: impl Executor<'e, Database = Any>,
    sql: String,
    args: &[&str],
    decode: fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for a in args {
        q = q.bind(a.to_string());
    }
    q.fetch_all(ex).await?.iter().map(decode).collect()
}

/// Like [`fetch_all`], at most one row.
pub(super) async fn fetch_optional<'e, T>(
    ex: impl Executor<'e, Database = Any>,
    sql: String,
    args: &[&str],
    decode: fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for a in args {
        q = q.bind(a.to_string());
    }
    q.fetch_optional(ex).await?.as_ref().map(decode).transpose()
}

/// Authenticator method of an edge router's control-channel certificate. Such
/// authenticators never log an identity in (`authenticate?method=cert` only looks at
/// `cert`).
pub const ROUTER_AUTH_METHOD: &str = "router";
/// Authenticator method of a client certificate ([`Credential::Cert`]).
pub const CERT_METHOD: &str = "cert";
/// Authenticator method of a user name and password ([`Credential::Updb`]).
pub const UPDB_METHOD: &str = "updb";

impl Store {
    /// Looks an enrollment up by token.
    pub async fn enrollment_by_jti(&self, jti: &str) -> Result<Option<EnrollmentRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {ENR_COLS} FROM enrollments WHERE jti = $1"),
            &[jti],
            enrollment_from,
        )
        .await
    }

    /// Unused enrollments of an identity.
    pub async fn pending_enrollments(
        &self,
        identity_id: &str,
    ) -> Result<Vec<EnrollmentRow>, StoreError> {
        fetch_all(
            &self.read,
            format!(
                "SELECT {ENR_COLS} FROM enrollments WHERE identity_id = $1 AND used = 0 ORDER BY created_at"
            ),
            &[identity_id],
            enrollment_from,
        )
        .await
    }

    /// Finds a certificate authenticator by fingerprint.
    pub async fn authenticator_by_fingerprint(
        &self,
        fp: &str,
    ) -> Result<Option<AuthenticatorRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE method = 'cert' AND fingerprint = $1"
            ),
            &[fp],
            authenticator_from,
        )
        .await
    }

    /// Finds a password authenticator by user name.
    pub async fn authenticator_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AuthenticatorRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE method = 'updb' AND username = $1"
            ),
            &[username],
            authenticator_from,
        )
        .await
    }

    /// Finds an API session by token.
    pub async fn api_session_by_token(
        &self,
        token: &str,
    ) -> Result<Option<ApiSessionRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {API_COLS} FROM api_sessions WHERE token = $1"),
            &[token],
            api_session_from,
        )
        .await
    }

    /// Whether `identity_id` holds an API session (one indexed lookup, not a scan of
    /// every API session per identity rendered).
    pub async fn has_api_session(&self, identity_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM api_sessions WHERE identity_id = $1 LIMIT 1")
                .bind(identity_id)
                .fetch_optional(&self.read)
                .await?;
        Ok(found.is_some())
    }

    /// An API session by id.
    pub async fn api_session_by_id(&self, id: &str) -> Result<Option<ApiSessionRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {API_COLS} FROM api_sessions WHERE id = $1"),
            &[id],
            api_session_from,
        )
        .await
    }

    /// Records activity on an API session. Not a revision: activity is bookkeeping
    /// that routers learn of by the periodic resync (the expiry they hold moves only
    /// after half the idle timeout), so it takes no part in the writers' order.
    pub async fn touch_api_session(
        &self,
        id: &str,
        now: i64,
        now_str: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_sessions SET last_activity = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(now_str)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Sessions of an API session, ordered by creation, with total count.
    pub async fn sessions_of(
        &self,
        api_session_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<SessionRow>, i64), StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE api_session_id = $1")
                .bind(api_session_id)
                .fetch_one(&self.read)
                .await?;
        let rows = fetch_all(
            &self.read,
            format!(
                "SELECT {SES_COLS} FROM sessions WHERE api_session_id = $1 ORDER BY created_at, id LIMIT {} OFFSET {}",
                limit.max(0),
                offset.max(0)
            ),
            &[api_session_id],
            session_from,
        )
        .await?;
        Ok((rows, total))
    }

    /// The edge router whose control-channel certificate has fingerprint `fp`.
    pub async fn router_by_fingerprint(&self, fp: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT identity_id FROM authenticators WHERE method = $1 AND fingerprint = $2",
        )
        .bind(ROUTER_AUTH_METHOD)
        .bind(fp)
        .fetch_optional(&self.read)
        .await?)
    }

    /// The fingerprint of an enrolled edge router's control-channel certificate.
    pub async fn router_fingerprint(&self, router_id: &str) -> Result<Option<String>, StoreError> {
        let fp: Option<Option<String>> = sqlx::query_scalar(
            "SELECT fingerprint FROM authenticators WHERE method = $1 AND identity_id = $2",
        )
        .bind(ROUTER_AUTH_METHOD)
        .bind(router_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(fp.flatten())
    }

    /// A session by id.
    pub async fn session_by_id(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        fetch_optional(
            &self.read,
            format!("SELECT {SES_COLS} FROM sessions WHERE id = $1"),
            &[id],
            session_from,
        )
        .await
    }
}

impl WriteTx<'_> {
    /// Whether a password authenticator or a pending `updb` enrollment holds `username`.
    pub async fn username_taken(&mut self, username: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM authenticators WHERE method = 'updb' AND username = $1)
                  + (SELECT COUNT(*) FROM enrollments WHERE method = 'updb' AND used = 0 AND username = $1)",
        )
        .bind(username)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n > 0)
    }

    /// Whether `identity_id` has an authenticator of `method`.
    pub async fn has_authenticator_method(
        &mut self,
        identity_id: &str,
        method: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM authenticators WHERE identity_id = $1 AND method = $2",
        )
        .bind(identity_id)
        .bind(method)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n > 0)
    }

    /// Inserts an enrollment.
    pub async fn insert_enrollment(&mut self, e: &EnrollmentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollments (id, identity_id, method, jti, jwt, expires_at, used, created_at,
                                      username, ca_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.id)
        .bind(&e.identity_id)
        .bind(e.method.name())
        .bind(&e.jti)
        .bind(&e.jwt)
        .bind(e.expires_at)
        .bind(i64::from(e.used))
        .bind(&e.created_at)
        .bind(e.method.columns().0)
        .bind(e.method.columns().1)
        .execute(&mut *self.tx)
        .await?;
        self.record("enrollments", &e.id, ChangeOp::Create).await
    }

    /// Unused enrollments of an identity, read inside the transaction.
    pub async fn pending_enrollments_in(
        &mut self,
        identity_id: &str,
    ) -> Result<Vec<EnrollmentRow>, StoreError> {
        fetch_all(
            &mut *self.tx,
            format!(
                "SELECT {ENR_COLS} FROM enrollments WHERE identity_id = $1 AND used = 0 ORDER BY created_at"
            ),
            &[identity_id],
            enrollment_from,
        )
        .await
    }

    /// Records that the cert authenticator `id` holds a certificate of the 3rd-party CA
    /// `ca_id`.
    pub async fn set_authenticator_ca(&mut self, id: &str, ca_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE authenticators SET ca_id = $2 WHERE id = $1")
            .bind(id)
            .bind(ca_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Ends every API session opened with a certificate of the 3rd-party CA `ca_id`
    /// (the CA was deleted or no longer authenticates); returns how many.
    pub async fn end_api_sessions_of_ca(&mut self, ca_id: &str) -> Result<usize, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT s.id FROM api_sessions s LEFT JOIN authenticators a ON a.id = s.authenticator_id
             WHERE a.ca_id = $1 OR s.ca_id = $1",
        )
        .bind(ca_id)
        .fetch_all(&mut *self.tx)
        .await?;
        for id in &ids {
            self.delete_api_session(id).await?;
        }
        Ok(ids.len())
    }

    /// Binds an API session that a 3rd-party CA's `externalIdClaim` logged in to the
    /// certificate `fingerprint` that proved it and to the CA `ca_id`.
    pub async fn set_api_session_claim(
        &mut self,
        id: &str,
        fingerprint: &str,
        ca_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_sessions SET cert_fingerprint = $2, ca_id = $3 WHERE id = $1")
            .bind(id)
            .bind(fingerprint)
            .bind(ca_id)
            .execute(&mut *self.tx)
            .await?;
        self.record("api_sessions", id, ChangeOp::Update).await
    }

    /// Deletes the enrollments (used or not) that name the 3rd-party CA `ca_id`;
    /// returns how many.
    pub async fn delete_ca_enrollments(&mut self, ca_id: &str) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM enrollments WHERE ca_id = $1")
            .bind(ca_id)
            .fetch_all(&mut *self.tx)
            .await?;
        for id in &ids {
            sqlx::query("DELETE FROM enrollments WHERE id = $1")
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            self.record("enrollments", id, ChangeOp::Delete).await?;
        }
        Ok(ids.len() as u64)
    }

    /// Marks the token used, if it is unused and unexpired, and returns its
    /// enrollment; `None` otherwise. The `UPDATE … WHERE used = 0 AND expires_at > now`
    /// must change exactly one row, so a token works once even when controllers race
    /// for it, and never after expiry. The caller stores the new authenticator in the
    /// same transaction.
    pub async fn redeem_enrollment(
        &mut self,
        jti: &str,
        now: i64,
    ) -> Result<Option<EnrollmentRow>, StoreError> {
        let n = sqlx::query(
            "UPDATE enrollments SET used = 1 WHERE jti = $1 AND used = 0 AND expires_at > $2",
        )
        .bind(jti)
        .bind(now)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(None);
        }
        let enr = fetch_optional(
            &mut *self.tx,
            format!("SELECT {ENR_COLS} FROM enrollments WHERE jti = $1"),
            &[jti],
            enrollment_from,
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("redeemed enrollment {jti:?} vanished")))?;
        self.record("enrollments", &enr.id, ChangeOp::Update)
            .await?;
        Ok(Some(enr))
    }

    /// Inserts an authenticator; a taken fingerprint or user name gives
    /// [`StoreError::Duplicate`].
    pub async fn insert_authenticator(&mut self, a: &AuthenticatorRow) -> Result<(), StoreError> {
        let [fingerprint, cert_pem, username, password_hash] = a.credential.columns();
        let res = sqlx::query(
            "INSERT INTO authenticators (id, identity_id, method, fingerprint, cert_pem, username,
                                         password_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(&a.identity_id)
        .bind(a.credential.method())
        .bind(fingerprint)
        .bind(cert_pem)
        .bind(username)
        .bind(password_hash)
        .bind(&a.created_at)
        .bind(&a.updated_at)
        .execute(&mut *self.tx)
        .await;
        match res {
            Ok(_) => self.record("authenticators", &a.id, ChangeOp::Create).await,
            Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(
                username.or(fingerprint).unwrap_or_default().to_owned(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes everything that belongs to an identity (enrollments,
    /// authenticators, API sessions, sessions).
    pub async fn delete_identity_credentials(
        &mut self,
        identity_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM cert_extensions WHERE authenticator_id IN
               (SELECT id FROM authenticators WHERE identity_id = $1)",
        )
        .bind(identity_id)
        .execute(&mut *self.tx)
        .await?;
        // API sessions (with their sessions and certificates) and authenticators are
        // logged one by one: routers are told of each.
        self.delete_api_sessions_of(identity_id).await?;
        let authenticators: Vec<String> =
            sqlx::query_scalar("SELECT id FROM authenticators WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_all(&mut *self.tx)
                .await?;
        for id in &authenticators {
            sqlx::query("DELETE FROM authenticators WHERE id = $1")
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            self.record("authenticators", id, ChangeOp::Delete).await?;
        }
        for table in ["enrollments", "mfa"] {
            let n = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE identity_id = $1"
            )))
            .bind(identity_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if n > 0 {
                self.record(table, identity_id, ChangeOp::Delete).await?;
            }
        }
        Ok(())
    }

    /// Inserts an API session.
    pub async fn insert_api_session(&mut self, s: &ApiSessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_sessions (id, token, identity_id, authenticator_id, config_types,
                                       ip_address, created_at, updated_at, last_activity,
                                       mfa_required, mfa_complete)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&s.id)
        .bind(&s.token)
        .bind(&s.identity_id)
        .bind(&s.authenticator_id)
        .bind(serde_json::to_string(&s.config_types)?)
        .bind(&s.ip_address)
        .bind(&s.created_at)
        .bind(&s.updated_at)
        .bind(s.last_activity)
        .bind(i64::from(s.mfa_required))
        .bind(i64::from(s.mfa_complete))
        .execute(&mut *self.tx)
        .await?;
        self.record("api_sessions", &s.id, ChangeOp::Create).await
    }

    /// Deletes an API session, its sessions and certificates; false when it did not
    /// exist.
    pub async fn delete_api_session(&mut self, id: &str) -> Result<bool, StoreError> {
        for table in ["sessions", "api_session_certs"] {
            let gone = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE api_session_id = $1"
            )))
            .bind(id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if table == "sessions" {
                self.ended.sessions += gone;
            }
        }
        let n = sqlx::query("DELETE FROM api_sessions WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        self.ended.api_sessions += n;
        if n == 1 {
            self.record("api_sessions", id, ChangeOp::Delete).await?;
        }
        Ok(n == 1)
    }

    /// Deletes API sessions idle since before `cutoff` (Unix seconds) and their
    /// sessions; returns how many API sessions were removed.
    pub async fn delete_idle_api_sessions(&mut self, cutoff: i64) -> Result<u64, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM api_sessions WHERE last_activity <= $1")
                .bind(cutoff)
                .fetch_all(&mut *self.tx)
                .await?;
        let mut n = 0;
        for id in ids {
            n += u64::from(self.delete_api_session(&id).await?);
        }
        Ok(n)
    }

    /// Inserts a session unless its API session already holds `max` sessions; returns
    /// whether it was inserted. Count and insert are one transaction, and writers are
    /// serialised, so the cap holds across controllers.
    pub async fn insert_session_capped(
        &mut self,
        s: &SessionRow,
        max: usize,
    ) -> Result<bool, StoreError> {
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE api_session_id = $1")
                .bind(&s.api_session_id)
                .fetch_one(&mut *self.tx)
                .await?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        self.insert_session(s).await?;
        Ok(true)
    }

    /// Inserts a session.
    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, token, api_session_id, identity_id, service_id,
                                   session_type, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.token)
        .bind(&s.api_session_id)
        .bind(&s.identity_id)
        .bind(&s.service_id)
        .bind(s.session_type.as_str())
        .bind(&s.created_at)
        .bind(&s.updated_at)
        .execute(&mut *self.tx)
        .await?;
        self.record("sessions", &s.id, ChangeOp::Create).await
    }

    /// Deletes these sessions; returns how many existed.
    pub async fn delete_sessions(&mut self, ids: &[String]) -> Result<u64, StoreError> {
        let mut n = 0;
        for id in ids {
            let gone = sqlx::query("DELETE FROM sessions WHERE id = $1")
                .bind(id)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if gone > 0 {
                self.record("sessions", id, ChangeOp::Delete).await?;
            }
            n += gone;
        }
        self.ended.sessions += n;
        Ok(n)
    }

    /// Deletes a session of an API session; false when it has no such session.
    pub async fn delete_session_of(
        &mut self,
        api_session_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM sessions WHERE id = $1 AND api_session_id = $2")
            .bind(id)
            .bind(api_session_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 1 {
            self.record("sessions", id, ChangeOp::Delete).await?;
        }
        Ok(n == 1)
    }
}
