//! Enrollments, authenticators, API sessions and sessions.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::StoreError;

/// A one-time enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRow {
    /// Enrollment id.
    pub id: String,
    /// Identity being enrolled.
    pub identity_id: String,
    /// Method, `ott`.
    pub method: String,
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

/// A credential bound to an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorRow {
    /// Authenticator id.
    pub id: String,
    /// Owner identity.
    pub identity_id: String,
    /// `cert` or `updb`.
    pub method: String,
    /// SHA-1 fingerprint of the certificate (cert method).
    pub fingerprint: Option<String>,
    /// Issued certificate PEM (cert method).
    pub cert_pem: Option<String>,
    /// User name (updb method).
    pub username: Option<String>,
    /// Argon2 PHC hash (updb method).
    pub password_hash: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
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
    pub session_type: String,
    /// Creation time.
    pub created_at: String,
    /// Update time.
    pub updated_at: String,
}

pub(super) fn enrollment_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentRow> {
    Ok(EnrollmentRow {
        id: r.get(0)?,
        identity_id: r.get(1)?,
        method: r.get(2)?,
        jti: r.get(3)?,
        jwt: r.get(4)?,
        expires_at: r.get(5)?,
        used: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
    })
}

pub(super) fn authenticator_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthenticatorRow> {
    Ok(AuthenticatorRow {
        id: r.get(0)?,
        identity_id: r.get(1)?,
        method: r.get(2)?,
        fingerprint: r.get(3)?,
        cert_pem: r.get(4)?,
        username: r.get(5)?,
        password_hash: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub(super) fn api_session_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApiSessionRow, String)> {
    Ok((
        ApiSessionRow {
            id: r.get(0)?,
            token: r.get(1)?,
            identity_id: r.get(2)?,
            authenticator_id: r.get(3)?,
            config_types: Vec::new(),
            ip_address: r.get(5)?,
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
            last_activity: r.get(8)?,
        },
        r.get(4)?,
    ))
}

pub(super) fn session_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        token: r.get(1)?,
        api_session_id: r.get(2)?,
        identity_id: r.get(3)?,
        service_id: r.get(4)?,
        session_type: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub(super) const ENR_COLS: &str = "id, identity_id, method, jti, jwt, expires_at, used, created_at";
pub(super) const AUTH_COLS: &str = "id, identity_id, method, fingerprint, cert_pem, username, password_hash, created_at, updated_at";
pub(super) const API_COLS: &str = "id, token, identity_id, authenticator_id, config_types, ip_address, created_at, updated_at, last_activity";
pub(super) const SES_COLS: &str =
    "id, token, api_session_id, identity_id, service_id, session_type, created_at, updated_at";

/// Why redeeming an enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Unknown, already used or expired token.
    #[error("enrollment token is unknown, used or expired")]
    Invalid,
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RedeemError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    /// Inserts an enrollment.
    pub fn insert_enrollment(&self, e: &EnrollmentRow) -> Result<(), StoreError> {
        let c = self.lock()?;
        c.execute(
            &format!(
                "INSERT INTO enrollments ({ENR_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                e.id,
                e.identity_id,
                e.method,
                e.jti,
                e.jwt,
                e.expires_at,
                e.used as i64,
                e.created_at
            ],
        )?;
        Ok(())
    }

    /// Looks an enrollment up by token.
    pub fn enrollment_by_jti(&self, jti: &str) -> Result<Option<EnrollmentRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!("SELECT {ENR_COLS} FROM enrollments WHERE jti = ?1"),
            [jti],
            enrollment_from,
        )
        .optional()?)
    }

    /// Unused enrollments of an identity.
    pub fn pending_enrollments(&self, identity_id: &str) -> Result<Vec<EnrollmentRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!(
            "SELECT {ENR_COLS} FROM enrollments WHERE identity_id = ?1 AND used = 0 ORDER BY created_at"
        ))?;
        let rows = st
            .query_map([identity_id], enrollment_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Marks the token used and stores the new authenticator in one transaction.
    /// The `UPDATE … WHERE used = 0 AND expires_at > now` must change exactly one
    /// row, so a token works once even under concurrency and never after expiry.
    pub fn redeem_enrollment(
        &self,
        jti: &str,
        now: i64,
        make_authenticator: impl FnOnce(&EnrollmentRow) -> Result<AuthenticatorRow, RedeemError>,
    ) -> Result<(EnrollmentRow, AuthenticatorRow), RedeemError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE enrollments SET used = 1 WHERE jti = ?1 AND used = 0 AND expires_at > ?2",
            params![jti, now],
        )?;
        if n != 1 {
            return Err(RedeemError::Invalid);
        }
        let enr = tx.query_row(
            &format!("SELECT {ENR_COLS} FROM enrollments WHERE jti = ?1"),
            [jti],
            enrollment_from,
        )?;
        let auth = make_authenticator(&enr)?;
        insert_authenticator_on(&tx, &auth)?;
        tx.commit()?;
        Ok((enr, auth))
    }

    /// Inserts an authenticator.
    pub fn insert_authenticator(&self, a: &AuthenticatorRow) -> Result<(), StoreError> {
        let c = self.lock()?;
        insert_authenticator_on(&c, a)?;
        Ok(())
    }

    /// Finds a certificate authenticator by fingerprint.
    pub fn authenticator_by_fingerprint(
        &self,
        fp: &str,
    ) -> Result<Option<AuthenticatorRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE method = 'cert' AND fingerprint = ?1"
            ),
            [fp],
            authenticator_from,
        )
        .optional()?)
    }

    /// Finds a password authenticator by user name.
    pub fn authenticator_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AuthenticatorRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!(
                "SELECT {AUTH_COLS} FROM authenticators WHERE method = 'updb' AND username = ?1"
            ),
            [username],
            authenticator_from,
        )
        .optional()?)
    }

    /// Deletes everything that belongs to an identity (enrollments,
    /// authenticators, API sessions, sessions).
    pub fn delete_identity_credentials(&self, identity_id: &str) -> Result<(), StoreError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        for table in ["enrollments", "authenticators", "api_sessions", "sessions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE identity_id = ?1"),
                [identity_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Inserts an API session.
    pub fn insert_api_session(&self, s: &ApiSessionRow) -> Result<(), StoreError> {
        let c = self.lock()?;
        c.execute(
            &format!(
                "INSERT INTO api_sessions ({API_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                s.id,
                s.token,
                s.identity_id,
                s.authenticator_id,
                serde_json::to_string(&s.config_types)?,
                s.ip_address,
                s.created_at,
                s.updated_at,
                s.last_activity
            ],
        )?;
        Ok(())
    }

    /// Finds an API session by token.
    pub fn api_session_by_token(&self, token: &str) -> Result<Option<ApiSessionRow>, StoreError> {
        self.api_session_where("token", token)
    }

    /// The API session whose `column` (a fixed column name, never input) equals `value`.
    fn api_session_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ApiSessionRow>, StoreError> {
        let c = self.lock()?;
        let row = c
            .query_row(
                &format!("SELECT {API_COLS} FROM api_sessions WHERE {column} = ?1"),
                [value],
                api_session_from,
            )
            .optional()?;
        row.map(|(mut s, types)| -> Result<ApiSessionRow, StoreError> {
            s.config_types = serde_json::from_str(&types)?;
            Ok(s)
        })
        .transpose()
    }

    /// Records activity on an API session.
    pub fn touch_api_session(&self, id: &str, now: i64, now_str: &str) -> Result<(), StoreError> {
        let c = self.lock()?;
        c.execute(
            "UPDATE api_sessions SET last_activity = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, now, now_str],
        )?;
        Ok(())
    }

    /// Deletes an API session and its sessions.
    pub fn delete_api_session(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        tx.execute("DELETE FROM sessions WHERE api_session_id = ?1", [id])?;
        tx.execute("DELETE FROM api_sessions WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes API sessions idle since before `cutoff` (Unix seconds) and their
    /// sessions; returns how many API sessions were removed.
    pub fn delete_idle_api_sessions(&self, cutoff: i64) -> Result<usize, StoreError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        tx.execute(
            "DELETE FROM sessions WHERE api_session_id IN (SELECT id FROM api_sessions WHERE last_activity <= ?1)",
            [cutoff],
        )?;
        let n = tx.execute(
            "DELETE FROM api_sessions WHERE last_activity <= ?1",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Inserts a session.
    pub fn insert_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        let c = self.lock()?;
        insert_session_row(&c, s)
    }

    /// Inserts a session unless its API session already holds `max` sessions; returns
    /// whether it was inserted. Count and insert happen under one lock.
    pub fn insert_session_capped(&self, s: &SessionRow, max: usize) -> Result<bool, StoreError> {
        let c = self.lock()?;
        let held: i64 = c.query_row(
            "SELECT COUNT(*) FROM sessions WHERE api_session_id = ?1",
            [&s.api_session_id],
            |r| r.get(0),
        )?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        insert_session_row(&c, s)?;
        Ok(true)
    }

    /// Sessions of an API session, ordered by creation, with total count.
    pub fn sessions_of(
        &self,
        api_session_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<SessionRow>, i64), StoreError> {
        let c = self.lock()?;
        let total: i64 = c.query_row(
            "SELECT COUNT(*) FROM sessions WHERE api_session_id = ?1",
            [api_session_id],
            |r| r.get(0),
        )?;
        let mut st = c.prepare(&format!(
            "SELECT {SES_COLS} FROM sessions WHERE api_session_id = ?1 ORDER BY created_at, id LIMIT {} OFFSET {}",
            limit.max(0),
            offset.max(0)
        ))?;
        let rows = st
            .query_map([api_session_id], session_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, total))
    }
}

/// Authenticator method of an edge router's control-channel certificate. Such
/// authenticators never log an identity in (`authenticate?method=cert` only looks at
/// `cert`).
pub const ROUTER_AUTH_METHOD: &str = "router";

impl Store {
    /// The edge router whose control-channel certificate has fingerprint `fp`.
    pub fn router_by_fingerprint(&self, fp: &str) -> Result<Option<String>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            "SELECT identity_id FROM authenticators WHERE method = ?1 AND fingerprint = ?2",
            params![ROUTER_AUTH_METHOD, fp],
            |r| r.get(0),
        )
        .optional()?)
    }

    /// The fingerprint of an enrolled edge router's control-channel certificate.
    pub fn router_fingerprint(&self, router_id: &str) -> Result<Option<String>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            "SELECT fingerprint FROM authenticators WHERE method = ?1 AND identity_id = ?2",
            params![ROUTER_AUTH_METHOD, router_id],
            |r| r.get(0),
        )
        .optional()?)
    }

    /// Every API session with the fingerprint of the certificate authenticator it was
    /// created with (`None` for password logins).
    pub fn list_api_sessions(&self) -> Result<Vec<(ApiSessionRow, Option<String>)>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(
            "SELECT s.id, s.token, s.identity_id, s.authenticator_id, s.config_types, s.ip_address,
                    s.created_at, s.updated_at, s.last_activity, a.fingerprint
             FROM api_sessions s LEFT JOIN authenticators a
               ON a.id = s.authenticator_id AND a.method = 'cert'
             ORDER BY s.id",
        )?;
        let rows = st
            .query_map([], |r| {
                let (row, types) = api_session_from(r)?;
                let fp: Option<String> = r.get(9)?;
                Ok((row, types, fp))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mut row, types, fp)| {
                row.config_types = serde_json::from_str(&types)?;
                Ok((row, fp))
            })
            .collect()
    }

    /// Every session.
    pub fn list_sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let c = self.lock()?;
        let mut st = c.prepare(&format!("SELECT {SES_COLS} FROM sessions ORDER BY id"))?;
        let rows = st
            .query_map([], session_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A session by id.
    pub fn session_by_id(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let c = self.lock()?;
        Ok(c.query_row(
            &format!("SELECT {SES_COLS} FROM sessions WHERE id = ?1"),
            [id],
            session_from,
        )
        .optional()?)
    }

    /// An API session by id.
    pub fn api_session_by_id(&self, id: &str) -> Result<Option<ApiSessionRow>, StoreError> {
        self.api_session_where("id", id)
    }

    /// Deletes these sessions; returns how many existed.
    pub fn delete_sessions(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut c = self.lock()?;
        let tx = c.transaction()?;
        let mut n = 0;
        for id in ids {
            n += tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Deletes a session of an API session; false when it has no such session.
    pub fn delete_session_of(&self, api_session_id: &str, id: &str) -> Result<bool, StoreError> {
        let c = self.lock()?;
        Ok(c.execute(
            "DELETE FROM sessions WHERE id = ?1 AND api_session_id = ?2",
            params![id, api_session_id],
        )? == 1)
    }
}

pub(super) fn insert_authenticator_on(
    c: &rusqlite::Connection,
    a: &AuthenticatorRow,
) -> Result<(), StoreError> {
    c.execute(
        &format!(
            "INSERT INTO authenticators ({AUTH_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            a.id,
            a.identity_id,
            a.method,
            a.fingerprint,
            a.cert_pem,
            a.username,
            a.password_hash,
            a.created_at,
            a.updated_at
        ],
    )?;
    Ok(())
}

/// Inserts one session row on a locked connection.
fn insert_session_row(c: &rusqlite::Connection, s: &SessionRow) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO sessions ({SES_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            s.id,
            s.token,
            s.api_session_id,
            s.identity_id,
            s.service_id,
            s.session_type,
            s.created_at,
            s.updated_at
        ],
    )?;
    Ok(())
}
