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

/// The bodies the controller parses before authentication; the first byte picks which:
/// `POST /authenticate` JSON, `POST /enroll?method=erott` JSON (and both CSRs in it), or
/// `POST /enroll?method=ott` PEM CSR.
pub fn unauth_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
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
