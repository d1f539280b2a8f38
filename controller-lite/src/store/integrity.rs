//! The store's data integrity check (`POST /database/check-data-integrity`, and
//! `fix-data-integrity`): every reference from one stored thing to another is checked,
//! and what can be repaired without guessing is repaired in the same transaction.
//! Checking only reads in a read transaction (one snapshot of the store), so writers go
//! on meanwhile; fixing runs in a write transaction, repairing as it finds.
//!
//! The writes of the API keep these references whole (deletes cascade in the deleting
//! transaction, [`crate::domain::cascade`]); what the check finds comes from
//! outside them: a database edited by hand, restored from an inconsistent backup, or a
//! defect. OpenZiti's check (openziti/ziti `controller/db/stores.go`, `CheckIntegrity`)
//! walks its bbolt indexes the same way and reports each problem with whether it was
//! fixed.
//!
//! What is checked, and the repair:
//!
//! | stored | must name an existing | repair |
//! |---|---|---|
//! | authenticator, enrollment | identity or edge router | delete the row |
//! | enrollment of a 3rd-party CA (`ca_id`) | CA | delete the row |
//! | API session | identity | delete it (its sessions and certificates with it) |
//! | session | identity, service, API session | delete the row |
//! | API session certificate | API session | delete the row |
//! | MFA enrolment, posture data, failed service request | identity | delete the row |
//! | pending certificate extension | authenticator | delete the row |
//! | identity service config | identity, service, config | delete the row |
//! | service `configs` | configs | drop the missing ids from the list |
//! | config | config type | none: the data would lose its meaning |
//! | terminator | service, edge router, hosting identity (when it names one) | delete it |
//! | identity `authPolicyId` | authentication policy | the `default` policy |
//! | authentication policy `primary.extJwt.allowedSigners` | external JWT signers | drop the missing ids |
//! | authentication policy `secondary.requireExtJwtSigner` | external JWT signer | none: dropping it would drop a required factor |
//! | every entity's document | valid JSON of its kind's document type | none (it is left out of the checks above) |
//!
//! Router presence is not checked: it is bookkeeping that expires by itself.

use std::collections::HashSet;

use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, ChangeOp, EntityRow, Store, WriteTx};
use crate::error::StoreError;
use crate::model::entity::check_document;
use crate::model::{AuthPolicy, Config, Document, Identity, Kind, Service, Terminator};

/// What a check reads through: a read transaction (checking only, writers go on), or
/// the fixing run's write transaction (repairs made as problems are found, so that a
/// repair's cascade is seen by the checks after it).
enum Target<'a, 's> {
    Read(&'a mut AnyConnection),
    Write(&'a mut WriteTx<'s>),
}

impl<'s> Target<'_, 's> {
    fn conn(&mut self) -> &mut AnyConnection {
        match self {
            Target::Read(conn) => conn,
            Target::Write(tx) => &mut tx.tx,
        }
    }

    /// The write transaction, for a repair (a read-only check never asks for one).
    fn write(&mut self) -> Result<&mut WriteTx<'s>, StoreError> {
        match self {
            Target::Write(tx) => Ok(tx),
            Target::Read(_) => Err(StoreError::Config(
                "a repair was asked of a read-only integrity check".into(),
            )),
        }
    }
}

/// One run of the check over `target`, repairing when `fix`.
struct Checker<'a, 's> {
    target: Target<'a, 's>,
    fix: bool,
}

/// One problem found, and whether this run repaired it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong, naming the things involved by kind and id.
    pub description: String,
    /// Repaired in this run's transaction (false when checking only, when there is no
    /// safe repair, or when the run failed and rolled back).
    pub fixed: bool,
}

/// A reference from rows of a record table to an entity kind or another table.
struct RowReference {
    /// The table holding the reference.
    table: &'static str,
    /// Its key column.
    key: &'static str,
    /// The column holding the reference.
    column: &'static str,
    /// Entity kinds one of which the value must name, or (when empty) `target_table`.
    kinds: &'static [&'static str],
    /// A table whose `id` the value must be.
    target_table: &'static str,
    /// What the value names, for the description.
    what: &'static str,
    /// NULL is no reference.
    nullable: bool,
}

const fn to_entity(
    table: &'static str,
    key: &'static str,
    column: &'static str,
    kinds: &'static [&'static str],
    what: &'static str,
) -> RowReference {
    RowReference {
        table,
        key,
        column,
        kinds,
        target_table: "",
        what,
        nullable: false,
    }
}

const fn to_table(
    table: &'static str,
    key: &'static str,
    column: &'static str,
    target_table: &'static str,
    what: &'static str,
) -> RowReference {
    RowReference {
        table,
        key,
        column,
        kinds: &[],
        target_table,
        what,
        nullable: false,
    }
}

const IDENTITY: &[&str] = &["identities"];
const IDENTITY_OR_ROUTER: &[&str] = &["identities", "edge-routers"];

/// In repair order: an API session deleted here leaves no session or certificate to
/// find later.
const ROW_REFERENCES: &[RowReference] = &[
    to_entity(
        "authenticators",
        "id",
        "identity_id",
        IDENTITY_OR_ROUTER,
        "identity or edge router",
    ),
    to_entity(
        "enrollments",
        "id",
        "identity_id",
        IDENTITY_OR_ROUTER,
        "identity or edge router",
    ),
    RowReference {
        nullable: true,
        ..to_entity("enrollments", "id", "ca_id", &["cas"], "CA")
    },
    to_entity("api_sessions", "id", "identity_id", IDENTITY, "identity"),
    to_entity("sessions", "id", "identity_id", IDENTITY, "identity"),
    to_entity("sessions", "id", "service_id", &["services"], "service"),
    to_table(
        "sessions",
        "id",
        "api_session_id",
        "api_sessions",
        "API session",
    ),
    to_table(
        "api_session_certs",
        "id",
        "api_session_id",
        "api_sessions",
        "API session",
    ),
    to_entity("mfa", "id", "identity_id", IDENTITY, "identity"),
    to_entity(
        "posture_data",
        "identity_id",
        "identity_id",
        IDENTITY,
        "identity",
    ),
    to_entity(
        "failed_service_requests",
        "id",
        "identity_id",
        IDENTITY,
        "identity",
    ),
    to_table(
        "cert_extensions",
        "authenticator_id",
        "authenticator_id",
        "authenticators",
        "authenticator",
    ),
];

/// The rows of `r.table` whose reference names nothing: (key, value).
async fn dangling_rows(
    conn: &mut AnyConnection,
    r: &RowReference,
) -> Result<Vec<(String, String)>, StoreError> {
    let exists = if r.kinds.is_empty() {
        format!(
            "SELECT 1 FROM {} t WHERE t.id = r.{}",
            r.target_table, r.column
        )
    } else {
        let kinds = r
            .kinds
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT 1 FROM entities e WHERE e.id = r.{} AND e.kind IN ({kinds})",
            r.column
        )
    };
    let null = if r.nullable {
        format!("r.{} IS NOT NULL AND ", r.column)
    } else {
        String::new()
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT r.{key}, r.{column} FROM {table} r WHERE {null}NOT EXISTS ({exists}) ORDER BY r.{key}",
        key = r.key,
        column = r.column,
        table = r.table,
    )))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

impl WriteTx<'_> {
    /// Checks every reference of the store (the table in the module's documentation)
    /// and, with `fix`, repairs what has a safe repair, in this transaction (commit to
    /// keep the repairs). Each finding goes to `report` as it is found.
    pub async fn check_integrity(
        &mut self,
        fix: bool,
        report: &mut (dyn FnMut(Finding) + Send),
    ) -> Result<(), StoreError> {
        Checker {
            target: Target::Write(self),
            fix,
        }
        .run(report)
        .await
    }
}

impl Store {
    /// [`WriteTx::check_integrity`] without repairing, in a read transaction (one
    /// snapshot of the store: PostgreSQL's repeatable read), so that writers go on
    /// meanwhile.
    pub async fn check_integrity(
        &self,
        report: &mut (dyn FnMut(Finding) + Send),
    ) -> Result<(), StoreError> {
        let mut tx = self.read.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Checker {
            target: Target::Read(&mut tx),
            fix: false,
        }
        .run(report)
        .await?;
        tx.rollback().await?;
        Ok(())
    }
}

impl Checker<'_, '_> {
    async fn run(&mut self, report: &mut (dyn FnMut(Finding) + Send)) -> Result<(), StoreError> {
        let fix = self.fix;
        for r in ROW_REFERENCES {
            for (key, value) in dangling_rows(self.target.conn(), r).await? {
                let fixed = fix && self.delete_dangling(r, &key).await?;
                report(Finding {
                    description: format!(
                        "{} {key} references {} {value}, which does not exist",
                        r.table, r.what
                    ),
                    fixed,
                });
            }
        }
        self.check_service_configs(fix, report).await?;
        self.check_entities(fix, report).await
    }

    /// Deletes the row `key` of `r.table` (an API session with its sessions and
    /// certificates) and logs the change.
    async fn delete_dangling(&mut self, r: &RowReference, key: &str) -> Result<bool, StoreError> {
        let tx = self.target.write()?;
        if r.table == "api_sessions" {
            return tx.delete_api_session(key).await;
        }
        let n = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE {} = $1",
            r.table, r.key
        )))
        .bind(key)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if n > 0 {
            tx.record(r.table, key, ChangeOp::Delete).await?;
        }
        Ok(n > 0)
    }

    /// Identity service configs naming an identity, service or config that is gone.
    async fn check_service_configs(
        &mut self,
        fix: bool,
        report: &mut (dyn FnMut(Finding) + Send),
    ) -> Result<(), StoreError> {
        let identities = self.ids_of("identities").await?;
        let services = self.ids_of("services").await?;
        let configs = self.ids_of("configs").await?;
        for row in super::service_configs::all(self.target.conn()).await? {
            let missing = [
                ("identity", &row.identity_id, &identities),
                ("service", &row.service_id, &services),
                ("config", &row.config_id, &configs),
            ]
            .into_iter()
            .find(|(_, id, ids)| !ids.contains(id.as_str()));
            let Some((what, id, _)) = missing else {
                continue;
            };
            let fixed = fix
                && self
                    .target
                    .write()?
                    .remove_service_config(&row.identity_id, &row.service_id, &row.config_type_id)
                    .await?;
            report(Finding {
                description: format!(
                    "identity service config ({}, {}, {}) references {what} {id}, which does not exist",
                    row.identity_id, row.service_id, row.config_type_id
                ),
                fixed,
            });
        }
        Ok(())
    }

    /// The ids of every entity of `kind` (documents not read).
    async fn ids_of(&mut self, kind: &str) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM entities WHERE kind = $1")
            .bind(kind)
            .fetch_all(self.target.conn())
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The references inside entity documents, and the documents themselves.
    async fn check_entities(
        &mut self,
        fix: bool,
        report: &mut (dyn FnMut(Finding) + Send),
    ) -> Result<(), StoreError> {
        // Documents first: one that is not JSON is reported, and left out below.
        let rows = sqlx::query(
            "SELECT kind, id, name, tags, data, created_at, updated_at FROM entities ORDER BY kind, id",
        )
        .fetch_all(self.target.conn())
        .await?;
        let mut all: Vec<EntityRow> = Vec::with_capacity(rows.len());
        for r in &rows {
            match Store::entity_from(r) {
                Ok(e) => {
                    // A document of a kind this controller does not know is left alone.
                    let parsed = Kind::from_collection(&e.kind)
                        .map_or(Ok(()), |k| check_document(k, &e.data));
                    match parsed {
                        Ok(()) => all.push(e),
                        Err(err) => report(Finding {
                            description: format!(
                                "{} {} is not a valid document of its kind: {err}",
                                e.kind, e.id
                            ),
                            fixed: false,
                        }),
                    }
                }
                Err(_) => {
                    let kind: String = r.try_get(0)?;
                    let id: String = r.try_get(1)?;
                    report(Finding {
                        description: format!("{kind} {id} is not stored as valid JSON"),
                        fixed: false,
                    });
                }
            }
        }
        drop(rows); // the documents are held once, parsed
        let ids = |kind: &str| -> HashSet<String> {
            all.iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.id.clone())
                .collect()
        };
        let (configs, config_types, services, routers, identities, auth_policies, signers) = (
            ids("configs"),
            ids("config-types"),
            ids("services"),
            ids("edge-routers"),
            ids("identities"),
            ids("auth-policies"),
            ids("external-jwt-signers"),
        );
        for e in all {
            match e.kind.as_str() {
                "services" => {
                    let configs_of: fn(&mut Service) -> &mut Vec<String> = |s| &mut s.configs;
                    self.prune_list(&e, configs_of, &configs, fix, "references config", report)
                        .await?;
                }
                "configs" => {
                    let t = e.doc::<Config>()?.config_type_id;
                    if !config_types.contains(&t) {
                        report(Finding {
                            description: format!(
                                "configs {} references config type {t}, which does not exist",
                                e.id
                            ),
                            fixed: false,
                        });
                    }
                }
                "terminators" => {
                    let t = e.doc::<Terminator>()?;
                    let missing = [
                        ("service", &t.service, &services),
                        ("router", &t.router, &routers),
                        ("identity", &t.identity, &identities),
                    ]
                    .into_iter()
                    .find(|(_, id, ids)| !id.is_empty() && !ids.contains(*id))
                    .map(|(field, id, _)| (field, id.clone()));
                    if let Some((field, id)) = missing {
                        let what = if field == "router" {
                            "edge router"
                        } else {
                            field
                        };
                        let fixed = fix
                            && self
                                .target
                                .write()?
                                .delete_entity("terminators", &e.id)
                                .await?;
                        report(Finding {
                            description: format!(
                                "terminators {} references {what} {id}, which does not exist",
                                e.id
                            ),
                            fixed,
                        });
                    }
                }
                "identities" => {
                    let identity = e.doc::<Identity>()?;
                    let Some(p) = identity.auth_policy_id.as_deref().filter(|p| !p.is_empty())
                    else {
                        continue;
                    };
                    if auth_policies.contains(p) {
                        continue;
                    }
                    let description = format!(
                        "identities {} references authentication policy {p}, which does not exist",
                        e.id
                    );
                    let mut fixed = false;
                    if fix {
                        let mut e = crate::model::Entity::<Identity>::from_row(e)?;
                        e.updated_at = crate::clock::now_string();
                        e.doc.auth_policy_id = Some(crate::model::DEFAULT_AUTH_POLICY_ID.into());
                        fixed = self.target.write()?.update_typed(e).await?;
                    }
                    report(Finding { description, fixed });
                }
                "auth-policies" => {
                    let policy = e.doc::<AuthPolicy>()?;
                    let required = policy.secondary.require_ext_jwt_signer.as_deref();
                    if let Some(s) = required.filter(|s| !s.is_empty() && !signers.contains(*s)) {
                        report(Finding {
                            description: format!(
                                "auth-policies {} requires external JWT signer {s}, which does not exist",
                                e.id
                            ),
                            fixed: false,
                        });
                    }
                    let allowed_of: fn(&mut AuthPolicy) -> &mut Vec<String> =
                        |p| &mut p.primary.ext_jwt.allowed_signers;
                    self.prune_list(
                        &e,
                        allowed_of,
                        &signers,
                        fix,
                        "allows external JWT signer",
                        report,
                    )
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reports each id of the list `list` picks out of `e`'s document that `existing`
    /// lacks (`"{kind} {id} {relation} {missing}, which does not exist"`) and, with
    /// `fix`, keeps only the existing ones in the stored document.
    async fn prune_list<D: Document>(
        &mut self,
        e: &EntityRow,
        list: fn(&mut D) -> &mut Vec<String>,
        existing: &HashSet<String>,
        fix: bool,
        relation: &str,
        report: &mut (dyn FnMut(Finding) + Send),
    ) -> Result<(), StoreError> {
        let mut typed = crate::model::Entity::<D>::from_row(e.clone())?;
        let (kept, gone): (Vec<String>, Vec<String>) = std::mem::take(list(&mut typed.doc))
            .into_iter()
            .partition(|id| existing.contains(id));
        if gone.is_empty() {
            return Ok(());
        }
        let mut fixed = false;
        if fix {
            *list(&mut typed.doc) = kept;
            typed.updated_at = crate::clock::now_string();
            fixed = self.target.write()?.update_typed(typed).await?;
        }
        for id in gone {
            report(Finding {
                description: format!("{} {} {relation} {id}, which does not exist", e.kind, e.id),
                fixed,
            });
        }
        Ok(())
    }
}
