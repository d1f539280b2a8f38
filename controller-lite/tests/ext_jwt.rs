//! External JWT signers against a real controller process and a real local HTTPS JWKS
//! server (tokio-rustls, certificate from an rcgen CA the controller is configured to
//! trust): logins with JWKS and certificate signers, key rotation by `kid`, and the
//! refusals (removed key, expired or missing token, disabled signer or identity,
//! redirecting or oversized JWKS, loopback JWKS host not allow-listed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use weft_testkit::Ctl;

const ISSUER: &str = "https://idp.weft.test";

/// The JWKS server's state: the set it serves and how often it was asked.
#[derive(Clone)]
struct Jwks {
    set: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(State(s): State<Jwks>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let body = s.set.lock().unwrap().to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn serve_redirect(State(s): State<Jwks>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::FOUND, [(header::LOCATION, "/jwks.json")]).into_response()
}

async fn serve_big(State(s): State<Jwks>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    // A valid-looking JWK set padded past the controller's 256 KiB limit.
    let pad = "x".repeat(300 * 1024);
    let body = json!({"keys": [], "pad": pad}).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

struct JwksServer {
    addr: SocketAddr,
    state: Jwks,
    ca_file: tempfile::NamedTempFile,
}

impl JwksServer {
    async fn start() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "JWKS test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        params.subject_alt_names = vec![
            rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
            rcgen::SanType::DnsName("localhost".try_into().unwrap()),
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(weft_tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                weft_tls::pem::private_key(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = Jwks {
            set: Arc::new(Mutex::new(json!({"keys": []}))),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .route("/redirect", get(serve_redirect))
            .route("/big.json", get(serve_big))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, ca.pem().as_bytes()).unwrap();
        Self {
            addr,
            state,
            ca_file,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The URL by host name (resolved by the controller, then pinned to the address it
    /// checked).
    fn named_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn serve(&self, keys: &[&Value]) {
        *self.state.set.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Controller config trusting the CA; `allow` lists 127.0.0.1 and localhost;
    /// refetching at once.
    fn config(&self, allow: bool) -> String {
        self.config_with(allow, 0)
    }

    /// [`Self::config`] with a refetch interval.
    fn config_with(&self, allow: bool, refetch_ms: u64) -> String {
        let allowed = if allow {
            r#"["127.0.0.1", "LocalHost"]"#
        } else {
            "[]"
        };
        format!(
            "metrics.listen = \"127.0.0.1:0\"\n[ext_jwt]\nallowed_hosts = {allowed}\nca_file = \"{}\"\nmin_refetch_interval_ms = {refetch_ms}\n",
            self.ca_file.path().display()
        )
    }
}

/// A signing key and its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    cert_pem: String,
}

fn spki_bits(kp: &rcgen::KeyPair) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let der = rcgen::PublicKeyData::subject_public_key_info(kp);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
    spki.subject_public_key.data.to_vec()
}

fn self_signed(kp: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::new(vec!["idp.weft.test".into()])
        .unwrap()
        .self_signed(kp)
        .unwrap()
        .pem()
}

fn p256_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = spki_bits(&kp);
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
        cert_pem: self_signed(&kp),
    }
}

fn ed25519_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(spki_bits(&kp))}),
        cert_pem: self_signed(&kp),
    }
}

fn rsa_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: Value::Null,
        cert_pem: self_signed(&kp),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(key: &SigningKey, issuer: &str, claims: Value) -> String {
    let mut c = json!({"iss": issuer, "aud": ["weft", "other"], "exp": now() + 300, "iat": now()});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, &c, &key.encoding).unwrap()
}

/// `POST /authenticate?method=ext-jwt` on the client API (or management with `mgmt`);
/// status, body and the `WWW-Authenticate` header.
async fn login(ctl: &Ctl, bearer: Option<&str>, mgmt: bool) -> (u16, Value, Option<String>) {
    let url = if mgmt {
        ctl.mgmt("/authenticate?method=ext-jwt")
    } else {
        ctl.client_url("/authenticate?method=ext-jwt")
    };
    let mut req = ctl.http().post(url).json(&json!({}));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap(), challenge)
}

async fn login_ok(ctl: &Ctl, bearer: &str) -> Value {
    let (status, v, _) = login(ctl, Some(bearer), false).await;
    assert_eq!(status, 200, "{v}");
    v["data"].clone()
}

async fn refused(ctl: &Ctl, bearer: Option<&str>, error: &str) {
    let (status, v, challenge) = login(ctl, bearer, false).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "UNAUTHORIZED", "{v}");
    let challenge = challenge.expect("WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"openziti-primary-ext-jwt\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
}

async fn current_identity_name(ctl: &Ctl, session: &str) -> String {
    let res = ctl
        .http()
        .get(ctl.client_url("/current-identity"))
        .header("zt-session", session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["data"]["name"].as_str().unwrap().to_owned()
}

fn signer(name: &str, issuer: &str, extra: Value) -> Value {
    let mut v = json!({"name": name, "issuer": issuer, "audience": "weft", "enabled": true});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[tokio::test]
async fn jwks_login_rotation_and_refusals() {
    let jwks = JwksServer::start().await;
    let ctl = Ctl::start_with(&jwks.config(true));
    let admin = ctl.admin_token().await;
    let alice = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "alice", "type": "User", "isAdmin": false, "externalId": "ext-alice"}),
        )
        .await;
    let v = ctl.get_ok(&admin, &format!("/identities/{alice}")).await;
    assert_eq!(v["data"]["externalId"], "ext-alice");
    // externalId is unique among identities.
    let (status, v) = ctl
        .create(
            &admin,
            "identities",
            json!({"name": "mallory", "type": "User", "isAdmin": false, "externalId": "ext-alice"}),
        )
        .await;
    assert_eq!(status, 409, "{v}");

    let a = p256_key("key-a");
    let b = ed25519_key("key-b");
    jwks.serve(&[&a.jwk]);
    let signer_id = ctl
        .create_ok(
            &admin,
            "external-jwt-signers",
            signer(
                "idp",
                ISSUER,
                json!({"jwksEndpoint": jwks.url("/jwks.json"), "useExternalId": true,
                       "clientId": "weft-cli", "scopes": ["openid"], "externalAuthUrl": "https://idp.weft.test/auth"}),
            ),
        )
        .await;
    let detail = ctl
        .get_ok(&admin, &format!("/external-jwt-signers/{signer_id}"))
        .await;
    assert_eq!(detail["data"]["claimsProperty"], "sub");
    assert_eq!(detail["data"]["useExternalId"], true);
    assert_eq!(detail["data"]["certPem"], Value::Null);

    // The client list needs no session and shows the enabled signers.
    let res = ctl
        .http()
        .get(ctl.client_url("/external-jwt-signers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["data"][0]["name"], "idp");
    assert_eq!(list["data"][0]["clientId"], "weft-cli");
    assert_eq!(
        list["data"][0]["externalAuthUrl"],
        "https://idp.weft.test/auth"
    );

    // Key A: login on both APIs, found by externalId.
    let ta = token(&a, ISSUER, json!({"sub": "ext-alice"}));
    let session = login_ok(&ctl, &ta).await;
    assert_eq!(session["identityId"], alice.as_str());
    assert_eq!(
        session["authenticatorId"],
        format!("extJwtId:{signer_id}").as_str()
    );
    assert_eq!(
        current_identity_name(&ctl, session["token"].as_str().unwrap()).await,
        "alice"
    );
    let (status, v, _) = login(&ctl, Some(&ta), true).await;
    assert_eq!(status, 200, "{v}");
    let hits_before_rotation = jwks.hits();
    assert!(hits_before_rotation >= 1);

    // Rotation: the provider now serves only key B; B's unknown kid makes a refetch.
    jwks.serve(&[&b.jwk]);
    let tb = token(&b, ISSUER, json!({"sub": "ext-alice"}));
    login_ok(&ctl, &tb).await;
    assert!(jwks.hits() > hits_before_rotation);
    // Key A was removed: its tokens are refused.
    refused(&ctl, Some(&ta), "invalid").await;

    // Refusals.
    refused(&ctl, None, "missing").await;
    refused(
        &ctl,
        Some(&token(
            &b,
            ISSUER,
            json!({"sub": "ext-alice", "exp": now() - 120}),
        )),
        "expired",
    )
    .await;
    refused(
        &ctl,
        Some(&token(
            &b,
            ISSUER,
            json!({"sub": "ext-alice", "nbf": now() + 600}),
        )),
        "invalid",
    )
    .await;
    refused(
        &ctl,
        Some(&token(
            &b,
            ISSUER,
            json!({"sub": "ext-alice", "aud": "other"}),
        )),
        "invalid",
    )
    .await;
    refused(
        &ctl,
        Some(&token(
            &b,
            "https://unknown.test",
            json!({"sub": "ext-alice"}),
        )),
        "invalid",
    )
    .await;
    refused(
        &ctl,
        Some(&token(&b, ISSUER, json!({"sub": "ext-nobody"}))),
        "invalid",
    )
    .await;
    refused(&ctl, Some("not.a.jwt"), "invalid").await;
    refused(&ctl, Some(&"x".repeat(20_000)), "invalid").await;
    // A token signed with a key the JWKS does not have, under B's kid.
    let impostor = ed25519_key("key-b");
    refused(
        &ctl,
        Some(&token(&impostor, ISSUER, json!({"sub": "ext-alice"}))),
        "invalid",
    )
    .await;

    // A disabled identity authenticates nobody.
    let (status, v) = ctl
        .call(
            Method::PATCH,
            &format!("/identities/{alice}"),
            &admin,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    refused(&ctl, Some(&tb), "invalid").await;
    ctl.call(
        Method::PATCH,
        &format!("/identities/{alice}"),
        &admin,
        Some(json!({"disabled": false})),
    )
    .await;
    login_ok(&ctl, &tb).await;

    // Login latency with a cached key (each login creates an API session).
    // Login latency with a cached key, against certificate logins on the same
    // controller as the baseline; one client each (one TLS connection), so the figures
    // are the controller's work. Each login creates an API session.
    let (_, cert, key) = ctl.enrolled_identity(&admin, "certy", &[]).await;
    let cert_http = ctl.http_with_cert(&cert, &key);
    let http = ctl.http();
    let mut figures = Vec::new();
    for method in ["ext-jwt", "cert"] {
        let mut times = Vec::with_capacity(200);
        for _ in 0..200 {
            let start = Instant::now();
            let req = if method == "cert" {
                cert_http.post(ctl.client_url("/authenticate?method=cert"))
            } else {
                http.post(ctl.client_url("/authenticate?method=ext-jwt"))
                    .bearer_auth(&tb)
            };
            let res = req.json(&json!({})).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        figures.push(format!(
            "{method}: p50 {:?}, p99 {:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        ));
    }
    println!(
        "login latency over 200 logins each (this build): {}",
        figures.join("; ")
    );

    // A disabled signer authenticates nobody and is not listed to clients.
    let (status, v) = ctl
        .call(
            Method::PATCH,
            &format!("/external-jwt-signers/{signer_id}"),
            &admin,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v, challenge) = login(&ctl, Some(&tb), false).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
    assert_eq!(
        challenge, None,
        "no signer is enabled: no challenge, as OpenZiti"
    );
    let list: Value = ctl
        .http()
        .get(ctl.client_url("/external-jwt-signers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));

    // Redirecting and oversized JWK sets are refused.
    let failures = ctl.metric("weft_controller_ext_jwt_jwks_fetch_failures_total");
    let c = p256_key("c");
    for (name, issuer, path) in [
        ("redirect", "https://redirect.test", "/redirect"),
        ("big", "https://big.test", "/big.json"),
    ] {
        ctl.create_ok(
            &admin,
            "external-jwt-signers",
            signer(name, issuer, json!({"jwksEndpoint": jwks.url(path)})),
        )
        .await;
        let hits = jwks.hits();
        refused(
            &ctl,
            Some(&token(&c, issuer, json!({"sub": alice}))),
            "invalid",
        )
        .await;
        assert_eq!(jwks.hits(), hits + 1, "{name}: fetched once");
    }
    assert_eq!(
        ctl.metric("weft_controller_ext_jwt_jwks_fetch_failures_total"),
        failures + 2
    );
    assert!(ctl.metric("weft_controller_ext_jwt_logins_total") >= 204);
    assert!(ctl.metric("weft_controller_ext_jwt_login_failures_total") >= 13);
}

#[tokio::test]
async fn cert_signer_login_by_identity_id_and_validation() {
    let jwks = JwksServer::start().await;
    let ctl = Ctl::start_with(&jwks.config(true));
    let admin = ctl.admin_token().await;
    let bob = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "bob", "type": "User", "isAdmin": false}),
        )
        .await;
    let r = rsa_key("rsa-1");
    let id = ctl
        .create_ok(
            &admin,
            "external-jwt-signers",
            signer(
                "cert-idp",
                "https://cert.idp.test",
                json!({"certPem": r.cert_pem, "kid": "rsa-1", "claimsProperty": "/weft/id"}),
            ),
        )
        .await;
    let detail = ctl
        .get_ok(&admin, &format!("/external-jwt-signers/{id}"))
        .await;
    assert_eq!(detail["data"]["fingerprint"].as_str().unwrap().len(), 40);
    assert_eq!(detail["data"]["kid"], "rsa-1");
    assert!(detail["data"]["notAfter"].as_str().unwrap().ends_with('Z'));
    let t = token(&r, "https://cert.idp.test", json!({"weft": {"id": bob}}));
    let session = login_ok(&ctl, &t).await;
    assert_eq!(session["identityId"], bob.as_str());
    // Another kid than the signer's, or a claim naming no identity.
    let other = SigningKey {
        kid: "rsa-2".into(),
        alg: r.alg,
        encoding: r.encoding.clone(),
        jwk: Value::Null,
        cert_pem: String::new(),
    };
    refused(
        &ctl,
        Some(&token(
            &other,
            "https://cert.idp.test",
            json!({"weft": {"id": bob}}),
        )),
        "invalid",
    )
    .await;
    refused(
        &ctl,
        Some(&token(&r, "https://cert.idp.test", json!({"sub": bob}))),
        "invalid",
    )
    .await;

    // Validation of signer documents.
    let pem = p256_key("x").cert_pem;
    for (body, status, code) in [
        (
            signer("dup", "https://cert.idp.test", json!({"certPem": pem})),
            409,
            "DUPLICATE_NAME",
        ),
        (
            signer(
                "both",
                "https://both.test",
                json!({"certPem": pem, "jwksEndpoint": "https://idp.test/k"}),
            ),
            400,
            "COULD_NOT_VALIDATE",
        ),
        (
            signer("neither", "https://neither.test", json!({})),
            400,
            "COULD_NOT_VALIDATE",
        ),
        (
            signer(
                "bad-pem",
                "https://bad.test",
                json!({"certPem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            ),
            400,
            "INVALID_CERT_PEM",
        ),
        (
            signer(
                "two-pem",
                "https://two.test",
                json!({"certPem": format!("{pem}{pem}")}),
            ),
            400,
            "INVALID_CERT_PEM",
        ),
        (
            signer(
                "http",
                "https://http.test",
                json!({"jwksEndpoint": "http://idp.test/k"}),
            ),
            400,
            "COULD_NOT_VALIDATE",
        ),
        (
            json!({"name": "no-issuer", "audience": "weft", "enabled": true, "certPem": pem}),
            400,
            "COULD_NOT_VALIDATE",
        ),
        (
            signer(
                "bad-target",
                "https://t.test",
                json!({"certPem": pem, "targetToken": "REFRESH"}),
            ),
            400,
            "COULD_NOT_VALIDATE",
        ),
    ] {
        let (s, v) = ctl
            .create(&admin, "external-jwt-signers", body.clone())
            .await;
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
}

#[tokio::test]
async fn loopback_jwks_host_is_refused_unless_allow_listed() {
    let jwks = JwksServer::start().await;
    let ctl = Ctl::start_with(&jwks.config(false));
    let admin = ctl.admin_token().await;
    let alice = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "alice", "type": "User", "isAdmin": false}),
        )
        .await;
    let a = p256_key("key-a");
    jwks.serve(&[&a.jwk]);
    ctl.create_ok(
        &admin,
        "external-jwt-signers",
        signer(
            "idp",
            ISSUER,
            json!({"jwksEndpoint": jwks.url("/jwks.json")}),
        ),
    )
    .await;
    refused(
        &ctl,
        Some(&token(&a, ISSUER, json!({"sub": alice}))),
        "invalid",
    )
    .await;
    // By name too: localhost resolves to loopback.
    ctl.create_ok(
        &admin,
        "external-jwt-signers",
        signer(
            "idp-named",
            "https://named.test",
            json!({"jwksEndpoint": jwks.named_url("/jwks.json")}),
        ),
    )
    .await;
    refused(
        &ctl,
        Some(&token(&a, "https://named.test", json!({"sub": alice}))),
        "invalid",
    )
    .await;
    assert_eq!(jwks.hits(), 0, "the guard refused before connecting");
    assert_eq!(
        ctl.metric("weft_controller_ext_jwt_jwks_fetches_refused_total"),
        2
    );
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let jwks = JwksServer::start().await;
    let ctl = Ctl::start_with(&jwks.config_with(true, 60_000));
    let admin = ctl.admin_token().await;
    let alice = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "alice", "type": "User", "isAdmin": false}),
        )
        .await;
    let a = p256_key("key-a");
    jwks.serve(&[&a.jwk]);
    ctl.create_ok(
        &admin,
        "external-jwt-signers",
        signer(
            "idp",
            ISSUER,
            json!({"jwksEndpoint": jwks.named_url("/jwks.json")}),
        ),
    )
    .await;
    login_ok(&ctl, &token(&a, ISSUER, json!({"sub": alice}))).await;
    assert_eq!(jwks.hits(), 1);
    // A stream of tokens with kids the set does not have, at once and one by one: no
    // further fetch within the interval.
    let hostile: Vec<String> = (0..10)
        .map(|i| token(&p256_key(&format!("k{i}")), ISSUER, json!({"sub": alice})))
        .collect();
    let answers = weft_testkit::join_all(hostile.iter().map(|t| login(&ctl, Some(t), false))).await;
    assert!(answers.iter().all(|(s, _, _)| *s == 401));
    assert_eq!(
        jwks.hits(),
        1,
        "the unknown kids made no fetch within the interval"
    );
    // The known key still logs in meanwhile.
    login_ok(&ctl, &token(&a, ISSUER, json!({"sub": alice}))).await;
    assert_eq!(ctl.metric("weft_controller_ext_jwt_jwks_fetches_total"), 1);
}

/// Authentication policies decide whether an external JWT may log an identity in
/// (`primary.extJwt.allowed`, `allowedSigners`), and keep the signers they name.
#[tokio::test]
async fn auth_policies_choose_the_signers_an_identity_may_log_in_with() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let key_a = p256_key("a");
    let key_b = p256_key("b");
    let a = ctl
        .create_ok(
            &admin,
            "external-jwt-signers",
            signer(
                "idp-a",
                "https://a.idp.test",
                json!({"certPem": key_a.cert_pem, "kid": "a"}),
            ),
        )
        .await;
    ctl.create_ok(
        &admin,
        "external-jwt-signers",
        signer(
            "idp-b",
            "https://b.idp.test",
            json!({"certPem": key_b.cert_pem, "kid": "b"}),
        ),
    )
    .await;
    // An unknown signer in a policy is 404 and changes nothing.
    let (s, v) = ctl
        .create(
            &admin,
            "auth-policies",
            json!({"name": "bad", "primary": {"extJwt": {"allowedSigners": ["nope"]}}}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    // Named by name, stored by id.
    let only_a = ctl
        .create_ok(
            &admin,
            "auth-policies",
            json!({"name": "only-a", "primary": {"extJwt": {"allowedSigners": ["idp-a"]}}}),
        )
        .await;
    let detail = ctl
        .get_ok(&admin, &format!("/auth-policies/{only_a}"))
        .await;
    assert_eq!(
        detail["data"]["primary"]["extJwt"]["allowedSigners"],
        json!([a])
    );
    ctl.create_ok(
        &admin,
        "auth-policies",
        json!({"name": "no-jwt", "primary": {"extJwt": {"allowed": false}}}),
    )
    .await;
    let carl = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "carl", "type": "User", "isAdmin": false, "authPolicyId": "only-a"}),
        )
        .await;
    let dora = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "dora", "type": "User", "isAdmin": false, "authPolicyId": "no-jwt"}),
        )
        .await;
    login_ok(
        &ctl,
        &token(&key_a, "https://a.idp.test", json!({"sub": carl})),
    )
    .await;
    refused(
        &ctl,
        Some(&token(&key_b, "https://b.idp.test", json!({"sub": carl}))),
        "invalid",
    )
    .await;
    refused(
        &ctl,
        Some(&token(&key_a, "https://a.idp.test", json!({"sub": dora}))),
        "invalid",
    )
    .await;
    // A signer a policy names cannot be deleted.
    let (s, v) = ctl
        .call(
            Method::DELETE,
            &format!("/external-jwt-signers/{a}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("CAN_NOT_DELETE_REFERENCED_ENTITY")),
        "{v}"
    );
}

/// `secondary.requireExtJwtSigner`: every request of the identity carries a token of
/// that signer naming it; without one only the API session itself can be read, and it
/// lists the EXT-JWT query.
#[tokio::test]
async fn a_policy_can_require_an_external_jwt_on_every_request() {
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let key_a = p256_key("a");
    let key_b = p256_key("b");
    let a = ctl
        .create_ok(&admin, "external-jwt-signers", signer("idp-a", "https://a.idp.test", json!({"certPem": key_a.cert_pem, "kid": "a", "externalAuthUrl": "https://a.idp.test/auth", "clientId": "weft"})))
        .await;
    ctl.create_ok(
        &admin,
        "external-jwt-signers",
        signer(
            "idp-b",
            "https://b.idp.test",
            json!({"certPem": key_b.cert_pem, "kid": "b"}),
        ),
    )
    .await;
    ctl.create_ok(
        &admin,
        "auth-policies",
        json!({"name": "jwt-too", "secondary": {"requireExtJwtSigner": "idp-a"}}),
    )
    .await;
    let eve = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "eve", "type": "User", "isAdmin": false, "authPolicyId": "jwt-too"}),
        )
        .await;
    let other = ctl
        .create_ok(
            &admin,
            "identities",
            json!({"name": "other", "type": "User", "isAdmin": false}),
        )
        .await;
    let (s, v) = ctl
        .create(&admin, "authenticators", json!({"method": "updb", "identityId": eve, "username": "eve", "password": "eve-password"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let res = ctl
        .http()
        .post(ctl.client_url("/authenticate?method=password"))
        .json(&json!({"username": "eve", "password": "eve-password"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let q = &v["data"]["authQueries"][0];
    assert_eq!(
        (q["typeId"].as_str(), q["provider"].as_str()),
        (Some("EXT-JWT"), Some("url")),
        "{v}"
    );
    assert_eq!(q["id"], a.as_str());
    assert_eq!(q["httpUrl"], "https://a.idp.test/auth");
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let get = |path: &'static str, bearer: Option<String>| {
        let mut req = ctl
            .http()
            .get(ctl.client_url(path))
            .header("zt-session", &token);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move {
            let res = req.send().await.unwrap();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .map(|h| h.to_str().unwrap().to_owned());
            (res.status().as_u16(), challenge)
        }
    };
    let (s, challenge) = get("/services", None).await;
    assert_eq!(s, 401);
    assert!(challenge.unwrap().contains("openziti-secondary-ext-jwt"));
    assert_eq!(get("/current-api-session", None).await.0, 200);
    let good = token_for(&key_a, "https://a.idp.test", &eve);
    assert_eq!(get("/services", Some(good)).await.0, 200);
    assert_eq!(
        get(
            "/services",
            Some(token_for(&key_b, "https://b.idp.test", &eve))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        get(
            "/services",
            Some(token_for(&key_a, "https://a.idp.test", &other))
        )
        .await
        .0,
        401
    );
}

fn token_for(key: &SigningKey, issuer: &str, identity: &str) -> String {
    token(key, issuer, json!({"sub": identity}))
}
