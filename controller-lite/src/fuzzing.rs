//! Entry points shared by the controller's fuzz targets in `fuzz/` (`filter`,
//! `unauth_bodies`) and the test that replays their committed corpus in ordinary test
//! runs (`controller-lite/tests/fuzz_corpus.rs`). Each panics only on a broken
//! invariant, never on bad input.

use std::cmp::Ordering;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::api::extract::parse_json;
use crate::enroll::ErottRequest;
use crate::filter::{compare_docs, parse, parse_sort};
use crate::model::Kind;
use crate::pki::{CertProfile, Pki};

/// Documents shaped like identities, for evaluating parsed filters.
fn sample_docs() -> Vec<Value> {
    vec![
        json!({"id": "1", "name": "alpha", "isAdmin": true, "type": "User",
               "roleAttributes": ["a", "b"], "tags": {"env": "prod"},
               "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z"}),
        json!({"id": "2", "name": "Beta\u{e9}", "isAdmin": false, "type": "Device",
               "roleAttributes": [], "tags": {},
               "createdAt": "2024-02-01T00:00:00.000Z", "updatedAt": "2024-02-01T00:00:00.000Z"}),
        json!({"id": "3"}),
    ]
}

/// A ZitiQL `filter` (and `sort`) parameter of the management API's identity list:
/// parsing never panics; a parsed query evaluates and sorts the sample documents, and
/// its sort order is reflexive.
pub fn filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fields = Kind::Identities.fields();
    if let Ok(query) = parse(text, &fields) {
        let mut docs: Vec<Value> = sample_docs()
            .into_iter()
            .filter(|d| query.matches(d))
            .collect();
        for d in &docs {
            assert_eq!(compare_docs(&query.sort, d, d), Ordering::Equal);
        }
        docs.sort_by(|a, b| compare_docs(&query.sort, a, b));
    }
    if let Ok(keys) = parse_sort(text, &fields) {
        let mut docs = sample_docs();
        docs.sort_by(|a, b| compare_docs(&keys, a, b));
    }
}

/// A throwaway PKI for CSR signing (created once per process, its files removed).
fn fuzz_pki() -> Option<&'static Pki> {
    static PKI: OnceLock<Option<Pki>> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("weft-fuzz-pki-{}", std::process::id()));
        let pki = Pki::load_or_create(&dir, &["localhost".into()]).ok();
        // Everything is in memory now.
        let _ = std::fs::remove_dir_all(&dir);
        pki
    })
    .as_ref()
}

fn sign(csr: &str, profile: &CertProfile) {
    if let Some(pki) = fuzz_pki() {
        let _ = pki.sign_csr(csr, "fuzz", 1, profile);
    }
}

/// A fixed P-256 public key (RFC 7515 appendix A.3) for verifying fuzzed tokens.
fn fuzz_jwk() -> Option<&'static crate::extjwt::keys::VerifyKey> {
    static KEY: OnceLock<Option<crate::extjwt::keys::VerifyKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        crate::extjwt::keys::key_from_jwk(&json!({
            "kty": "EC", "crv": "P-256", "kid": "fuzz", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        }))
        .ok()
    })
    .as_ref()
}

/// The bodies the controller parses before authentication (or, for the TOTP answer,
/// before a login completes); the first byte picks which: `POST /authenticate` JSON,
/// `POST /enroll?method=erott` JSON (and both CSRs in it), `POST /enroll?method=ott` PEM
/// CSR, an external JWT (`Authorization: Bearer` of `method=ext-jwt`), a JWK set a
/// signer's `jwksEndpoint` answers, a `updb` enrollment body, a TOTP answer, a `ca` or
/// `ottca` enrollment body, or a TLS client certificate (DER) as CA enrollment and
/// certificate login read it (names, `externalIdClaim`, chain to a 3rd-party CA).
pub fn unauth_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 9 {
        7 => {
            let _ = crate::api::client::enrollment::parse_ca_enroll(body);
            let _ = parse_json::<crate::api::client::enrollment::OttCaEnroll>(body);
        }
        8 => third_party_client_cert(body),
        3 => {
            if let Ok(token) = std::str::from_utf8(body) {
                let _ = crate::extjwt::verify::peek(token);
                if let Some(key) = fuzz_jwk() {
                    let expected = crate::extjwt::verify::Expected {
                        issuer: "https://idp.test",
                        audience: "weft",
                        claims_property: "/a/b",
                    };
                    let _ = crate::extjwt::verify::verify(token, key, &expected, 1_700_000_000);
                }
            }
        }
        4 => {
            if let Ok(keys) = crate::extjwt::keys::parse_jwks(body) {
                assert!(
                    keys.len() <= crate::extjwt::keys::MAX_KEYS,
                    "a JWK set is bounded"
                );
            }
        }
        5 => {
            let _ = parse_json::<crate::api::client::enrollment::UpdbEnroll>(body);
        }
        6 => {
            if let Ok(code) = parse_json::<crate::api::client::mfa::MfaCode>(body) {
                let _ = crate::auth::totp::check(
                    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                    &code.code,
                    1_700_000_000,
                );
            }
        }
        0 => {
            if let Ok(v) = crate::api::client::current::auth_body(body) {
                assert!(v.is_object());
                let _ = v.get("username").and_then(Value::as_str);
                let _ = v.get("configTypes").and_then(Value::as_array);
            }
        }
        1 => {
            if let Ok(req) = parse_json::<ErottRequest>(body) {
                sign(
                    &req.server_cert_csr,
                    &CertProfile::RouterServer {
                        names: vec!["er.test".into()],
                    },
                );
                sign(&req.cert_csr, &CertProfile::RouterClient);
            }
        }
        _ => {
            if let Ok(pem) = std::str::from_utf8(body) {
                sign(pem, &CertProfile::Client);
            }
        }
    }
}

/// A fixed 3rd-party CA (DER) for chains the fuzzer presents.
fn fuzz_ca() -> Option<&'static [u8]> {
    static CA: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().ok()?;
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Some(p.self_signed(&key).ok()?.der().to_vec())
    })
    .as_deref()
}

/// What the controller reads of a TLS client certificate before any login: its names,
/// a claim over them, its start of validity and whether it chains to a CA.
fn third_party_client_cert(der: &[u8]) {
    use crate::thirdparty_ca::{cert, claim};
    if let Some(names) = cert::names(der) {
        for location in ["COMMON_NAME", "SAN_URI", "SAN_EMAIL"] {
            let c = claim::ExternalIdClaim {
                location: Some(location.into()),
                matcher: Some("ALL".into()),
                parser: Some("SPLIT".into()),
                parser_criteria: Some("/".into()),
                index: Some(1),
                ..claim::ExternalIdClaim::default()
            };
            if let Ok(Some(rule)) = c.rule() {
                if let Ok(Some(v)) = rule.extract(&names) {
                    assert!(!v.is_empty(), "a claim value is never empty");
                }
            }
        }
    }
    let _ = cert::not_before(der);
    if let Some(ca) = fuzz_ca() {
        let leaf = rustls::pki_types::CertificateDer::from(der.to_vec());
        assert!(
            !cert::chains_to(ca, &leaf, &[], 1_700_000_000),
            "nothing the fuzzer makes is signed by the fuzz CA's key"
        );
    }
}

/// Replays the committed corpora of `filter` and `unauth_bodies` (fuzz/corpus/) through
/// the same entry points, so every input the fuzzer found interesting stays a regression
/// test in ordinary test runs.
#[cfg(test)]
mod corpus {

    use std::path::PathBuf;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            run(&data);
            inputs += 1;
        }
        assert!(
            inputs >= 10,
            "corpus at {} has only {inputs} inputs",
            dir.display()
        );
    }

    #[test]
    fn filter_corpus() {
        replay("filter", super::filter);
    }

    #[test]
    fn unauth_bodies_corpus() {
        replay("unauth_bodies", super::unauth_bodies);
    }
}
