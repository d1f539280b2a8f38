//! The store's test suite, run on both backends: every test is one async function
//! over a [`Store`], instantiated once on SQLite and once on a real PostgreSQL.

use serde_json::json;
use weft_testkit::postgres::Postgres;

use super::*;

/// A store on `backend`, with whatever keeps its database alive.
async fn open(backend: Backend) -> (Store, Box<dyn std::any::Any>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&sqlite_url(&dir.path().join("weft db?.sqlite")))
                .await
                .unwrap();
            (store, Box::new(dir))
        }
        Backend::Postgres => {
            let pg = Postgres::start().expect("PostgreSQL (Debian's postgresql package)");
            let store = Store::open(&pg.url("postgres")).await.unwrap();
            (store, Box::new(pg))
        }
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _keep) = super::open(super::Backend::Sqlite).await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _keep) = super::open(super::Backend::Postgres).await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    crud_and_listing,
    revisions_and_change_log,
    enrollment_redeems_once_under_concurrency,
    cascades_and_session_cap,
    reopen_keeps_data_and_refuses_newer_schema,
    mfa_codes_are_accepted_once_under_concurrency,
    ca_enrollments_keep_their_ca_and_go_with_it,
    integrity_check_finds_and_repairs_dangling_references,
    credentials_and_enrollment_methods_round_trip_and_corrupt_rows_are_refused,
);

fn entity(kind: &str, id: &str, data: serde_json::Value) -> EntityRow {
    EntityRow {
        kind: kind.into(),
        id: id.into(),
        name: format!("{kind}-{id}"),
        tags: json!({}),
        data,
        created_at: "t".into(),
        updated_at: "t".into(),
    }
}

/// The findings of a check (`fix`), committed when fixing. Checking only runs as the
/// controller runs it, in a read transaction; its findings are the write
/// transaction's, and a write commits while it runs.
async fn integrity(s: &Store, fix: bool) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    if fix {
        let mut tx = s.begin_write().await.unwrap();
        tx.check_integrity(true, &mut |f| found.push((f.description, f.fixed)))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    } else {
        let mut in_write = Vec::new();
        let mut tx = s.begin_write().await.unwrap();
        tx.check_integrity(false, &mut |f| in_write.push((f.description, f.fixed)))
            .await
            .unwrap();
        drop(tx);
        // A writer is not held up by a check in progress: one commits from inside the
        // check's report (the check's read transaction is open then).
        let (started, rx) = tokio::sync::oneshot::channel::<()>();
        let mut started = Some(started);
        let writer = async {
            let _ = rx.await;
            let mut tx = s.begin_write().await.unwrap();
            tx.meta_set("integrity-test", "x").await.unwrap();
            tx.commit().await.unwrap();
        };
        let mut report = |f: Finding| {
            if let Some(started) = started.take() {
                let _ = started.send(());
            }
            found.push((f.description, f.fixed));
        };
        let check = s.check_integrity(&mut report);
        let (checked, ()) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(check, writer)
        })
        .await
        .expect("a writer waited for the check, or the check for it");
        checked.unwrap();
        in_write.sort();
        found.sort();
        assert_eq!(
            found, in_write,
            "the read-only check finds what the write one does"
        );
    }
    found.sort();
    found
}

/// A store whose references were broken behind the API's back (rows inserted and
/// deleted directly): the check names every broken reference, changes nothing, and the
/// fixing check repairs what has a safe repair in one commit.
async fn integrity_check_finds_and_repairs_dangling_references(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    for e in [
        entity("identities", "i1", json!({})),
        entity("identities", "i2", json!({"authPolicyId": "p-gone"})),
        entity("auth-policies", "default", json!({})),
        entity(
            "auth-policies",
            "p1",
            json!({"primary": {"extJwt": {"allowedSigners": ["sig-gone"]}},
                   "secondary": {"requireExtJwtSigner": "sig-gone2"}}),
        ),
        entity("config-types", "ct1", json!({})),
        entity("configs", "c1", json!({"configTypeId": "ct1", "data": {}})),
        entity(
            "configs",
            "c2",
            json!({"configTypeId": "ct-gone", "data": {}}),
        ),
        // Not a service document (configs is no list): reported, left out of the rest.
        entity("services", "s-bad", json!({"configs": "c-gone"})),
        entity("services", "s1", json!({"configs": ["c1", "c-gone"]})),
        entity("edge-routers", "r1", json!({})),
        entity(
            "terminators",
            "t1",
            json!({"service": "s1", "router": "r1", "address": "a"}),
        ),
        entity(
            "terminators",
            "t2",
            json!({"service": "s1", "router": "r-gone", "address": "a"}),
        ),
    ] {
        tx.insert_entity(&e).await.unwrap();
    }
    for sql in [
        "INSERT INTO authenticators (id, identity_id, method, created_at, updated_at)
         VALUES ('a1', 'i1', 'cert', 't', 't'), ('a2', 'i-gone', 'cert', 't', 't')",
        "INSERT INTO api_sessions (id, token, identity_id, authenticator_id, config_types,
             ip_address, created_at, updated_at, last_activity)
         VALUES ('as1', 'tok1', 'i1', 'a1', '[]', '', 't', 't', 0),
                ('as2', 'tok2', 'i-gone', 'a2', '[]', '', 't', 't', 0)",
        "INSERT INTO sessions (id, token, api_session_id, identity_id, service_id,
             session_type, created_at, updated_at)
         VALUES ('se1', 'st1', 'as1', 'i1', 's1', 'Dial', 't', 't'),
                ('se2', 'st2', 'as-gone', 'i1', 's1', 'Dial', 't', 't'),
                ('se3', 'st3', 'as2', 'i-gone', 's1', 'Dial', 't', 't')",
        "INSERT INTO posture_data (identity_id, data, updated_at) VALUES ('i-gone', '{}', 0)",
        "INSERT INTO identity_service_configs (identity_id, service_id, config_type_id, config_id)
         VALUES ('i1', 's1', 'ct1', 'c1'), ('i1', 's1', 'ct2', 'c-gone')",
    ] {
        sqlx::query(sql).execute(&mut *tx.tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let bad_document = "services s-bad is not a valid document of its kind: stored data is \
         corrupt: a services document does not parse: invalid type: string \"c-gone\", \
         expected a sequence";
    let broken = [
        "api_sessions as2 references identity i-gone, which does not exist",
        "auth-policies p1 allows external JWT signer sig-gone, which does not exist",
        "auth-policies p1 requires external JWT signer sig-gone2, which does not exist",
        "authenticators a2 references identity or edge router i-gone, which does not exist",
        "configs c2 references config type ct-gone, which does not exist",
        "identities i2 references authentication policy p-gone, which does not exist",
        "identity service config (i1, s1, ct2) references config c-gone, which does not exist",
        "posture_data i-gone references identity i-gone, which does not exist",
        "services s1 references config c-gone, which does not exist",
        bad_document,
        "sessions se2 references API session as-gone, which does not exist",
        "terminators t2 references edge router r-gone, which does not exist",
    ];
    // Checking only: everything reported, nothing fixed, nothing changed. (se3 goes with
    // as2 when fixing; checking only, it is reported for its identity.)
    let found = integrity(s, false).await;
    let mut want: Vec<(String, bool)> = broken.iter().map(|d| ((*d).to_owned(), false)).collect();
    want.push((
        "sessions se3 references identity i-gone, which does not exist".into(),
        false,
    ));
    want.sort();
    assert_eq!(found, want);
    assert_eq!(integrity(s, false).await, want, "checking changes nothing");

    // Fixing: the same findings, all but the three without a safe repair fixed.
    let found = integrity(s, true).await;
    let unfixable = [
        "auth-policies p1 requires external JWT signer sig-gone2, which does not exist",
        "configs c2 references config type ct-gone, which does not exist",
        bad_document,
    ];
    for (d, fixed) in &found {
        assert_eq!(*fixed, !unfixable.contains(&d.as_str()), "{d}");
    }
    assert_eq!(found.len(), broken.len(), "{found:?}");
    // What is left is what has no repair; what was whole is untouched.
    let left: Vec<String> = integrity(s, true)
        .await
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(left, unfixable);
    let s1 = s.get_entity("services", "s1").await.unwrap().unwrap();
    assert_eq!(s1.data["configs"], json!(["c1"]));
    let i2 = s.get_entity("identities", "i2").await.unwrap().unwrap();
    assert_eq!(i2.data["authPolicyId"], "default");
    assert!(s.get_entity("terminators", "t1").await.unwrap().is_some());
    assert!(s.get_entity("terminators", "t2").await.unwrap().is_none());
    assert!(s.api_session_by_id("as1").await.unwrap().is_some());
    assert!(s.api_session_by_id("as2").await.unwrap().is_none());
    assert!(s.session_by_id("se1").await.unwrap().is_some());
    assert!(s.session_by_id("se3").await.unwrap().is_none());
    assert_eq!(
        s.service_configs_of("i1").await.unwrap().len(),
        1,
        "the whole one stays"
    );
}

/// `ottca` enrollments name their CA (migration 0008) and are deleted with it.
async fn ca_enrollments_keep_their_ca_and_go_with_it(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    for (id, ca) in [("e1", Some("ca-1")), ("e2", Some("ca-2")), ("e3", None)] {
        tx.insert_enrollment(&EnrollmentRow {
            id: id.into(),
            identity_id: "i1".into(),
            method: match ca {
                Some(ca) => EnrollmentMethod::Ottca {
                    ca_id: ca.to_owned(),
                },
                None => EnrollmentMethod::Ott,
            },
            jti: format!("jti-{id}"),
            jwt: "jwt".into(),
            expires_at: i64::MAX,
            used: false,
            created_at: id.into(),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let e1 = s.enrollment_by_jti("jti-e1").await.unwrap().unwrap();
    assert_eq!(
        e1.method,
        EnrollmentMethod::Ottca {
            ca_id: "ca-1".into()
        }
    );
    let mut tx = s.begin_write().await.unwrap();
    assert_eq!(tx.pending_enrollments_in("i1").await.unwrap().len(), 3);
    assert_eq!(tx.delete_ca_enrollments("ca-1").await.unwrap(), 1);
    assert_eq!(tx.delete_ca_enrollments("ca-1").await.unwrap(), 0);
    tx.commit().await.unwrap();
    let left: Vec<String> = s
        .pending_enrollments("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec!["e2".to_owned(), "e3".to_owned()]);
}

fn row(name: &str) -> EntityRow {
    EntityRow {
        kind: "services".into(),
        id: format!("id-{name}"),
        name: name.into(),
        tags: json!({}),
        data: json!({"roleAttributes": []}),
        created_at: "t".into(),
        updated_at: "t".into(),
    }
}

async fn crud_and_listing(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    for n in ["b", "a", "c_1"] {
        tx.insert_entity(&row(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = s.begin_write().await.unwrap();
    assert!(matches!(
        tx.insert_entity(&row("a")).await,
        Err(StoreError::Duplicate(_))
    ));
    drop(tx);
    let all = s.list_all("services").await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c_1"]
    );
    let mut tx = s.begin_write().await.unwrap();
    let mut b = s.get_entity("services", "id-b").await.unwrap().unwrap();
    b.data = json!({"roleAttributes": ["x"]});
    assert!(tx.update_entity(&b).await.unwrap());
    assert!(tx.delete_entity("services", "id-a").await.unwrap());
    assert!(!tx.delete_entity("services", "id-a").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.get_entity("services", "id-a").await.unwrap().is_none());
    let by_name = s
        .get_entity_by_id_or_name("services", "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, "id-b");
    assert_eq!(by_name.data["roleAttributes"][0], "x");
    // A rolled-back transaction leaves nothing.
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_entity(&row("d")).await.unwrap();
    drop(tx);
    assert!(s.get_entity("services", "id-d").await.unwrap().is_none());
}

async fn revisions_and_change_log(s: &Store) {
    let start = s.revision().await.unwrap();
    let mut committed = s.committed();
    // A transaction that records nothing uses no revision.
    assert_eq!(s.begin_write().await.unwrap().commit().await.unwrap(), None);
    assert_eq!(s.revision().await.unwrap(), start);

    let mut tx = s.begin_write().await.unwrap();
    tx.insert_entity(&row("a")).await.unwrap();
    tx.insert_entity(&row("b")).await.unwrap();
    let first = tx.commit().await.unwrap().unwrap();
    assert_eq!(first, start + 1);
    assert_eq!(*committed.borrow_and_update(), first);
    assert_eq!(s.entity_revision().await.unwrap(), first);

    // A change to a record, not an entity, leaves the entity revision alone.
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_session(&SessionRow {
        id: "s1".into(),
        token: "t1".into(),
        api_session_id: "a1".into(),
        identity_id: "i1".into(),
        service_id: "id-a".into(),
        session_type: crate::policy::PolicyType::Dial,
        created_at: "t".into(),
        updated_at: "t".into(),
    })
    .await
    .unwrap();
    let second = tx.commit().await.unwrap().unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(s.entity_revision().await.unwrap(), first);
    assert!(s.meta_get("last_change_at").await.unwrap().is_some());

    let log = s.changes_since(start, 100).await.unwrap();
    let seen: Vec<_> = log
        .iter()
        .map(|c| (c.seq, c.kind.as_str(), c.entity_id.as_str(), c.op))
        .collect();
    assert_eq!(
        seen,
        [
            (first, "services", "id-a", ChangeOp::Create),
            (first, "services", "id-b", ChangeOp::Create),
            (second, "sessions", "s1", ChangeOp::Create),
        ]
    );
    assert_eq!(s.changes_since(first, 100).await.unwrap().len(), 1);
    // The summary counts without reading rows: this process wrote all of it.
    assert_eq!(
        s.changes_summary(start).await.unwrap(),
        ChangesSummary {
            first: Some(first),
            rows: 3,
            remote: 0
        }
    );
    assert_eq!(
        s.changes_summary(second).await.unwrap(),
        ChangesSummary {
            first: None,
            rows: 0,
            remote: 0
        }
    );
    // Rows another process wrote (two of one revision) count as one remote revision.
    sqlx::query(
        "INSERT INTO changes (seq, n, kind, entity_id, op, at, origin)
         VALUES ($1, 0, 'services', 'x', 'update', 0, 'elsewhere'),
                ($1, 1, 'services', 'y', 'update', 0, 'elsewhere')",
    )
    .bind(second + 1)
    .execute(&s.write)
    .await
    .unwrap();
    assert_eq!(s.changes_summary(first).await.unwrap().remote, 1);
    sqlx::query("DELETE FROM changes WHERE origin = 'elsewhere'")
        .execute(&s.write)
        .await
        .unwrap();
    // Pruning keeps the latest revision's rows.
    s.prune_changes(i64::MAX).await.unwrap();
    let left = s.changes_since(start, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, second);

    // The same change twice in one transaction is one row; another op is another.
    let mut tx = s.begin_write().await.unwrap();
    for op in [ChangeOp::Update, ChangeOp::Update, ChangeOp::Delete] {
        tx.record("identity-service-configs", "i1", op)
            .await
            .unwrap();
    }
    let third = tx.commit().await.unwrap().unwrap();
    let ops: Vec<_> = s
        .changes_since(second, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| (c.seq, c.op))
        .collect();
    assert_eq!(ops, [(third, ChangeOp::Update), (third, ChangeOp::Delete)]);
}

async fn enrollment_redeems_once_under_concurrency(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_enrollment(&EnrollmentRow {
        id: "e1".into(),
        identity_id: "i1".into(),
        method: EnrollmentMethod::Ott,
        jti: "jti-1".into(),
        jwt: "jwt".into(),
        expires_at: i64::MAX,
        used: false,
        created_at: "t".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tries = (0..20).map(|i| async move {
        let mut tx = s.begin_write().await.unwrap();
        let Some(enr) = tx.redeem_enrollment("jti-1", 0).await.unwrap() else {
            return false;
        };
        tx.insert_authenticator(&AuthenticatorRow {
            id: format!("auth-{i}"),
            identity_id: enr.identity_id,
            credential: Credential::Cert {
                fingerprint: format!("fp-{i}"),
                pem: Some("pem".into()),
            },
            created_at: "t".into(),
            updated_at: "t".into(),
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        true
    });
    let won = weft_testkit::join_all(tries)
        .await
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1);
    assert_eq!(s.authenticators_of("i1").await.unwrap().len(), 1);
    assert!(s.pending_enrollments("i1").await.unwrap().is_empty());
    // An expired token never works.
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_enrollment(&EnrollmentRow {
        id: "e2".into(),
        identity_id: "i2".into(),
        method: EnrollmentMethod::Ott,
        jti: "jti-2".into(),
        jwt: "jwt".into(),
        expires_at: 10,
        used: false,
        created_at: "t".into(),
    })
    .await
    .unwrap();
    assert!(tx.redeem_enrollment("jti-2", 11).await.unwrap().is_none());
}

async fn cascades_and_session_cap(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    let auth = AuthenticatorRow {
        id: "auth-1".into(),
        identity_id: "i1".into(),
        credential: Credential::Updb {
            username: "alice".into(),
            password_hash: "hash".into(),
        },
        created_at: "t".into(),
        updated_at: "t".into(),
    };
    tx.insert_authenticator(&auth).await.unwrap();
    tx.commit().await.unwrap();
    // A failed statement ends a transaction (PostgreSQL aborts it): a new one follows.
    let mut tx = s.begin_write().await.unwrap();
    let taken = AuthenticatorRow {
        id: "auth-2".into(),
        identity_id: "i2".into(),
        ..auth.clone()
    };
    assert!(matches!(
        tx.insert_authenticator(&taken).await,
        Err(StoreError::Duplicate(name)) if name == "alice"
    ));
    drop(tx);

    let mut tx = s.begin_write().await.unwrap();
    tx.insert_api_session(&ApiSessionRow {
        id: "as1".into(),
        token: "tok".into(),
        identity_id: "i1".into(),
        authenticator_id: "auth-1".into(),
        config_types: vec!["intercept.v1".into()],
        ip_address: "127.0.0.1".into(),
        created_at: "t".into(),
        updated_at: "t".into(),
        last_activity: 100,
        mfa_required: true,
        mfa_complete: false,
    })
    .await
    .unwrap();
    let session = |n: u32| SessionRow {
        id: format!("s{n}"),
        token: format!("st{n}"),
        api_session_id: "as1".into(),
        identity_id: "i1".into(),
        service_id: "svc".into(),
        session_type: crate::policy::PolicyType::Dial,
        created_at: "t".into(),
        updated_at: "t".into(),
    };
    assert!(tx.insert_session_capped(&session(1), 2).await.unwrap());
    assert!(tx.insert_session_capped(&session(2), 2).await.unwrap());
    assert!(!tx.insert_session_capped(&session(3), 2).await.unwrap());
    tx.commit().await.unwrap();

    let api = s.api_session_by_token("tok").await.unwrap().unwrap();
    assert_eq!(api.config_types, ["intercept.v1"]);
    assert!(api.mfa_required && !api.mfa_complete);
    s.touch_api_session("as1", 200, "t2").await.unwrap();
    assert_eq!(
        s.api_session_by_id("as1")
            .await
            .unwrap()
            .unwrap()
            .last_activity,
        200
    );
    let (rows, total) = s.sessions_of("as1", 1, 1).await.unwrap();
    assert_eq!((rows.len(), total), (1, 2));
    let listed = s.list_api_sessions().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, None, "a password login has no fingerprint");

    // Deleting the authenticator ends the API sessions made with it, and their sessions.
    let mut tx = s.begin_write().await.unwrap();
    assert!(tx.delete_authenticator("auth-1").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.api_session_by_id("as1").await.unwrap().is_none());
    assert!(s.list_sessions().await.unwrap().is_empty());
}

async fn reopen_keeps_data_and_refuses_newer_schema(s: &Store) {
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_entity(&row("kept")).await.unwrap();
    tx.commit().await.unwrap();
    let again = Store::open(&s.url).await.unwrap();
    assert!(
        again
            .get_entity("services", "id-kept")
            .await
            .unwrap()
            .is_some()
    );
    again.close().await;
    // A migration this binary does not know: a newer binary migrated the database.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(&s.write)
    .await
    .unwrap();
    match Store::open(&s.url).await {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!(found, 99990101000000);
            let migrator = match s.backend() {
                Backend::Sqlite => &SQLITE_MIGRATIONS,
                Backend::Postgres => &POSTGRES_MIGRATIONS,
            };
            assert_eq!(Some(known), migrator.iter().map(|m| m.version).max());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// A TOTP step and a recovery code are each accepted once, however many requests (or
/// controllers) present them at the same time; wrong codes block after the limit; a
/// password failure count is shared through the database.
async fn mfa_codes_are_accepted_once_under_concurrency(s: &Store) {
    let codes: Vec<String> = vec!["AAAAAA".into(), "BBBBBB".into()];
    let mut tx = s.begin_write().await.unwrap();
    tx.insert_mfa(&MfaRow {
        id: "m1".into(),
        identity_id: "i1".into(),
        secret: "S".into(),
        verified: false,
        recovery_codes: codes.clone(),
        last_step: 0,
        failures: 0,
        blocked_until: 0,
        created_at: "t".into(),
        updated_at: "t".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // One enrollment per identity.
    let mut tx = s.begin_write().await.unwrap();
    let dup = tx
        .insert_mfa(&MfaRow {
            id: "m2".into(),
            ..s.mfa_of("i1").await.unwrap().unwrap()
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    drop(tx);

    let accepted = futures_join(16, |_| s.accept_totp_step("i1", 1000)).await;
    assert_eq!(accepted.iter().filter(|ok| **ok).count(), 1);
    assert!(
        !s.accept_totp_step("i1", 999).await.unwrap(),
        "an older step"
    );
    assert!(
        s.accept_totp_step("i1", 1001).await.unwrap(),
        "a later step"
    );

    let spent = futures_join(16, |_| s.spend_recovery_code("i1", &codes, "AAAAAA")).await;
    assert_eq!(spent.iter().filter(|ok| **ok).count(), 1);
    let left = s.mfa_of("i1").await.unwrap().unwrap().recovery_codes;
    assert_eq!(left, ["BBBBBB"]);
    assert!(!s.spend_recovery_code("i1", &left, "AAAAAA").await.unwrap());

    for n in 1..=4 {
        assert_eq!(s.record_mfa_failure("i1", 5, 100, 30).await.unwrap(), n);
    }
    assert_eq!(s.mfa_of("i1").await.unwrap().unwrap().blocked_until, 0);
    assert_eq!(s.record_mfa_failure("i1", 5, 100, 30).await.unwrap(), 5);
    let m = s.mfa_of("i1").await.unwrap().unwrap();
    assert_eq!((m.blocked_until, m.failures), (130, 0));

    let mut tx = s.begin_write().await.unwrap();
    tx.verify_mfa("i1", "t2").await.unwrap();
    assert!(tx.delete_mfa_of("i1").await.unwrap());
    assert!(!tx.delete_mfa_of("i1").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.mfa_of("i1").await.unwrap().is_none());

    let mut tx = s.begin_write().await.unwrap();
    tx.insert_authenticator(&AuthenticatorRow {
        id: "a1".into(),
        identity_id: "i1".into(),
        credential: Credential::Updb {
            username: "u".into(),
            password_hash: "h".into(),
        },
        created_at: "t".into(),
        updated_at: "t".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let counts = futures_join(8, |_| s.record_password_failure("a1")).await;
    let mut counts = counts;
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<i64>>(), "no lost increment");
    s.clear_password_failures("a1").await.unwrap();
    assert_eq!(s.record_password_failure("a1").await.unwrap(), 1);
}

/// Runs `n` calls of `f` concurrently and collects their results (unwrapped).
async fn futures_join<'a, T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + 'a,
{
    let futs: Vec<_> = (0..n).map(f).collect();
    let mut out = Vec::with_capacity(n);
    for r in weft_testkit::join_all(futs).await {
        out.push(r.unwrap());
    }
    out
}

/// Each authenticator and enrollment method reads back as stored; a row whose method
/// lacks a column it needs, or that names a method this controller does not know, is
/// corrupt (an error), never a credential with an empty field.
async fn credentials_and_enrollment_methods_round_trip_and_corrupt_rows_are_refused(s: &Store) {
    let credentials = [
        Credential::Cert {
            fingerprint: "fp-issued".into(),
            pem: Some("pem".into()),
        },
        Credential::Cert {
            fingerprint: "fp-3rd-party".into(),
            pem: None,
        },
        Credential::Updb {
            username: "carol".into(),
            password_hash: "$argon2id$h".into(),
        },
        Credential::Router {
            fingerprint: "fp-router".into(),
            pem: "router pem".into(),
        },
    ];
    let methods = [
        EnrollmentMethod::Ott,
        EnrollmentMethod::Ottca {
            ca_id: "ca-9".into(),
        },
        EnrollmentMethod::Updb {
            username: "dave".into(),
        },
        EnrollmentMethod::Erott,
    ];
    let mut tx = s.begin_write().await.unwrap();
    for (i, credential) in credentials.iter().enumerate() {
        tx.insert_authenticator(&AuthenticatorRow {
            id: format!("a{i}"),
            identity_id: format!("i{i}"),
            credential: credential.clone(),
            created_at: "t".into(),
            updated_at: "t".into(),
        })
        .await
        .unwrap();
    }
    for (i, method) in methods.iter().enumerate() {
        tx.insert_enrollment(&EnrollmentRow {
            id: format!("e{i}"),
            identity_id: "i0".into(),
            method: method.clone(),
            jti: format!("jti-{i}"),
            jwt: "jwt".into(),
            expires_at: i64::MAX,
            used: false,
            created_at: format!("t{i}"),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let read = security::fetch_all(
        &s.read,
        format!(
            "SELECT {} FROM authenticators ORDER BY id",
            security::AUTH_COLS
        ),
        &[],
        security::authenticator_from,
    )
    .await
    .unwrap();
    let read: Vec<_> = read.into_iter().map(|a| a.credential).collect();
    assert_eq!(read, credentials);
    assert_eq!(
        s.authenticator_by_fingerprint("fp-3rd-party")
            .await
            .unwrap()
            .unwrap()
            .credential,
        credentials[1]
    );
    assert_eq!(
        s.authenticator_by_username("carol")
            .await
            .unwrap()
            .unwrap()
            .credential,
        credentials[2]
    );
    let pending: Vec<_> = s
        .pending_enrollments("i0")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.method)
        .collect();
    assert_eq!(pending, methods);

    // Rows a bug or a hand edit could leave: a password without its hash, an enrollment
    // of a method nobody knows.
    for sql in [
        "UPDATE authenticators SET password_hash = NULL WHERE id = 'a2'",
        "UPDATE enrollments SET method = 'telepathy' WHERE id = 'e0'",
    ] {
        sqlx::query(sql).execute(&s.write).await.unwrap();
    }
    assert!(matches!(
        s.authenticator_by_username("carol").await,
        Err(StoreError::Corrupt(m)) if m.contains("updb") && m.contains("password hash")
    ));
    assert!(matches!(
        s.enrollment_by_jti("jti-0").await,
        Err(StoreError::Corrupt(m)) if m.contains("telepathy")
    ));
}
