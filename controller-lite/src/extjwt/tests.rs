//! Unit and property tests of token verification and key loading (real keys, real
//! signatures; the time is fixed).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::keys::{KeyType, VerifyKey, parse_cert_pem, parse_jwks};
use super::verify::{Expected, VerifyError, peek, verify};

const NOW: i64 = 1_800_000_000;
const EXPECTED: Expected<'static> = Expected {
    issuer: "https://idp.example",
    audience: "weft",
    claims_property: "sub",
};

struct TestKey {
    encoding: EncodingKey,
    verify: VerifyKey,
    spki_der: Vec<u8>,
}

fn test_key(alg: &'static rcgen::SignatureAlgorithm) -> TestKey {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    let pem = kp.serialize_pem();
    let encoding = if alg == &rcgen::PKCS_RSA_SHA256 {
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    } else if alg == &rcgen::PKCS_ED25519 {
        EncodingKey::from_ed_pem(pem.as_bytes()).unwrap()
    } else {
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
    };
    let mut params = rcgen::CertificateParams::new(vec!["signer".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test signer");
    let cert = params.self_signed(&kp).unwrap();
    let info = parse_cert_pem(&cert.pem()).unwrap();
    assert_eq!(info.common_name, "test signer");
    TestKey {
        encoding,
        verify: info.key,
        spki_der: rcgen::PublicKeyData::subject_public_key_info(&kp),
    }
}

fn rsa() -> TestKey {
    test_key(&rcgen::PKCS_RSA_SHA256)
}
fn p256() -> TestKey {
    test_key(&rcgen::PKCS_ECDSA_P256_SHA256)
}

fn claims() -> Value {
    json!({"iss": EXPECTED.issuer, "aud": "weft", "sub": "alice", "exp": NOW + 300, "iat": NOW})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn raw_token(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

#[test]
fn each_key_type_verifies_its_algorithms() {
    let k = rsa();
    assert_eq!(k.verify.key_type, KeyType::Rsa);
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
        let t = sign(alg, Some("k"), &claims(), &k.encoding);
        let v = verify(&t, &k.verify, &EXPECTED, NOW).unwrap();
        assert_eq!((v.alg, v.identity_claim.as_str()), (alg, "alice"));
    }
    let k = p256();
    assert_eq!(k.verify.key_type, KeyType::EcP256);
    let t = sign(Algorithm::ES256, None, &claims(), &k.encoding);
    assert!(verify(&t, &k.verify, &EXPECTED, NOW).is_ok());
    let k = test_key(&rcgen::PKCS_ECDSA_P384_SHA384);
    assert_eq!(k.verify.key_type, KeyType::EcP384);
    let t = sign(Algorithm::ES384, None, &claims(), &k.encoding);
    assert!(verify(&t, &k.verify, &EXPECTED, NOW).is_ok());
    let k = test_key(&rcgen::PKCS_ED25519);
    assert_eq!(k.verify.key_type, KeyType::Ed25519);
    let t = sign(Algorithm::EdDSA, None, &claims(), &k.encoding);
    assert!(verify(&t, &k.verify, &EXPECTED, NOW).is_ok());
}

#[test]
fn an_algorithm_of_another_key_type_is_refused() {
    let r = rsa();
    let e = p256();
    // An ES256 token checked with an RSA key, and RS256 with an EC key.
    let t = sign(Algorithm::ES256, None, &claims(), &e.encoding);
    assert_eq!(
        verify(&t, &r.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::Algorithm("ES256".into())
    );
    let t = sign(Algorithm::RS256, None, &claims(), &r.encoding);
    assert_eq!(
        verify(&t, &e.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::Algorithm("RS256".into())
    );
    // ES384 claimed with a P-256 key.
    let forged = raw_token(&json!({"alg": "ES384"}), &claims(), &[0; 96]);
    assert!(matches!(
        verify(&forged, &e.verify, &EXPECTED, NOW),
        Err(VerifyError::Algorithm(_))
    ));
}

#[test]
fn alg_none_is_refused() {
    let k = rsa();
    for alg in ["none", "None", "NONE", ""] {
        let t = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims(), b"");
        assert!(
            matches!(
                verify(&t, &k.verify, &EXPECTED, NOW),
                Err(VerifyError::Algorithm(_))
            ),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_as_secret_is_refused() {
    let k = rsa();
    let pem = weft_tls::pem::certificate_pem(&k.spki_der);
    for secret in [k.spki_der.as_slice(), pem.as_bytes()] {
        let t = sign(
            Algorithm::HS256,
            None,
            &claims(),
            &EncodingKey::from_secret(secret),
        );
        assert_eq!(
            verify(&t, &k.verify, &EXPECTED, NOW).unwrap_err(),
            VerifyError::Algorithm("HS256".into())
        );
    }
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let k = p256();
    let at = |exp: i64, nbf: Option<i64>| {
        let mut c = claims();
        c["exp"] = json!(exp);
        if let Some(n) = nbf {
            c["nbf"] = json!(n);
        }
        verify(
            &sign(Algorithm::ES256, None, &c, &k.encoding),
            &k.verify,
            &EXPECTED,
            NOW,
        )
    };
    assert_eq!(at(NOW - 100, None).unwrap_err(), VerifyError::Expired);
    assert!(at(NOW - 10, None).is_ok(), "within the leeway");
    assert_eq!(
        at(NOW + 300, Some(NOW + 100)).unwrap_err(),
        VerifyError::NotYetValid
    );
    assert!(at(NOW + 300, Some(NOW + 10)).is_ok(), "within the leeway");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let t = sign(Algorithm::ES256, None, &c, &k.encoding);
    assert_eq!(
        verify(&t, &k.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::MissingExp
    );
    c["exp"] = json!("tomorrow");
    let t = sign(Algorithm::ES256, None, &c, &k.encoding);
    assert_eq!(
        verify(&t, &k.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::MissingExp
    );
}

#[test]
fn issuer_audience_and_claim_are_checked() {
    let k = p256();
    let with = |patch: Value| {
        let mut c = claims();
        for (key, v) in patch.as_object().unwrap() {
            c[key] = v.clone();
        }
        verify(
            &sign(Algorithm::ES256, None, &c, &k.encoding),
            &k.verify,
            &EXPECTED,
            NOW,
        )
    };
    assert_eq!(
        with(json!({"iss": "https://evil"})).unwrap_err(),
        VerifyError::Issuer
    );
    assert_eq!(with(json!({"iss": null})).unwrap_err(), VerifyError::Issuer);
    assert_eq!(
        with(json!({"aud": "other"})).unwrap_err(),
        VerifyError::Audience
    );
    assert_eq!(
        with(json!({"aud": ["a", "b"]})).unwrap_err(),
        VerifyError::Audience
    );
    assert_eq!(
        with(json!({"aud": null})).unwrap_err(),
        VerifyError::Audience
    );
    assert!(with(json!({"aud": ["other", "weft"]})).is_ok());
    assert!(matches!(
        with(json!({"sub": 42})).unwrap_err(),
        VerifyError::MissingClaim(_)
    ));
    assert!(matches!(
        with(json!({"sub": ""})).unwrap_err(),
        VerifyError::MissingClaim(_)
    ));
    // A JSON pointer claims property.
    let mut c = claims();
    c["user"] = json!({"ids": ["x", "ext-7"]});
    let t = sign(Algorithm::ES256, None, &c, &k.encoding);
    let v = verify(
        &t,
        &k.verify,
        &Expected {
            claims_property: "/user/ids/1",
            ..EXPECTED
        },
        NOW,
    )
    .unwrap();
    assert_eq!(v.identity_claim, "ext-7");
}

#[test]
fn a_bad_signature_or_another_key_is_refused() {
    let k = p256();
    let other = p256();
    let t = sign(Algorithm::ES256, None, &claims(), &other.encoding);
    assert_eq!(
        verify(&t, &k.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::Signature
    );
    // Claims changed after signing.
    let t = sign(Algorithm::ES256, None, &claims(), &k.encoding);
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(
        verify(&forged, &k.verify, &EXPECTED, NOW).unwrap_err(),
        VerifyError::Signature
    );
}

#[test]
fn malformed_and_oversized_tokens_are_refused() {
    let k = p256();
    for t in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.###",
        "e30.e30.",
        "W10.e30.e30",
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln",
    ] {
        assert!(
            matches!(
                verify(t, &k.verify, &EXPECTED, NOW),
                Err(VerifyError::Malformed(_) | VerifyError::Algorithm(_))
            ),
            "{t:?}"
        );
    }
    let big = "a".repeat(super::verify::MAX_TOKEN_LEN + 1);
    assert_eq!(peek(&big).unwrap_err(), VerifyError::TooLarge);
    let big_header = raw_token(
        &json!({"alg": "ES256", "pad": "x".repeat(4000)}),
        &claims(),
        b"s",
    );
    assert_eq!(peek(&big_header).unwrap_err(), VerifyError::TooLarge);
    let long_kid = raw_token(
        &json!({"alg": "ES256", "kid": "k".repeat(300)}),
        &claims(),
        b"s",
    );
    assert!(matches!(peek(&long_kid), Err(VerifyError::Malformed(_))));
}

#[test]
fn peek_reads_alg_kid_and_issuer() {
    let k = p256();
    let t = sign(Algorithm::ES256, Some("key-1"), &claims(), &k.encoding);
    let h = peek(&t).unwrap();
    assert_eq!(h.alg, "ES256");
    assert_eq!(h.kid.as_deref(), Some("key-1"));
    assert_eq!(h.issuer.as_deref(), Some(EXPECTED.issuer));
}

#[test]
fn jwks_keeps_signature_keys_that_fit_their_alg() {
    let r = rsa();
    let e = p256();
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&r.spki_der).unwrap();
    let (n, ex) = match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(k) => (k.modulus.to_vec(), k.exponent.to_vec()),
        _ => panic!("not RSA"),
    };
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&e.spki_der).unwrap();
    let point = spki.subject_public_key.data.to_vec();
    let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
    let set = json!({"keys": [
        {"kty": "RSA", "kid": "r", "use": "sig", "alg": "RS256", "n": b(&n), "e": b(&ex)},
        {"kty": "EC", "kid": "e", "crv": "P-256", "x": b(&point[1..33]), "y": b(&point[33..])},
        {"kty": "oct", "kid": "h", "k": b(b"secret")},
        {"kty": "EC", "kid": "bad-alg", "crv": "P-256", "alg": "HS256", "x": b(&point[1..33]), "y": b(&point[33..])},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": b(&n), "e": b(&ex)},
        {"kty": "RSA", "n": b(&n), "e": b(&ex)},
        {"kty": "RSA", "kid": "short", "n": b(&[0xff; 64]), "e": b(&[1, 0, 1])},
    ]});
    let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
    let kids: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kids, ["r", "e"]);
    let t = sign(Algorithm::RS256, Some("r"), &claims(), &r.encoding);
    assert!(verify(&t, &keys[0].1, &EXPECTED, NOW).is_ok());
    let t = sign(Algorithm::ES256, Some("e"), &claims(), &e.encoding);
    assert!(verify(&t, &keys[1].1, &EXPECTED, NOW).is_ok());
    assert!(parse_jwks(b"[]").is_err());
    assert!(parse_jwks(b"{\"keys\": 1}").is_err());
    // More than MAX_KEYS keys: the first MAX_KEYS are kept.
    let many: Vec<Value> = (0..100)
        .map(|i| json!({"kty": "EC", "kid": format!("k{i}"), "crv": "P-256", "x": b(&point[1..33]), "y": b(&point[33..])}))
        .collect();
    let keys = parse_jwks(json!({"keys": many}).to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), super::keys::MAX_KEYS);
}

#[test]
fn cert_pem_must_hold_exactly_one_certificate() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let one = cert.pem();
    let info = parse_cert_pem(&one).unwrap();
    assert_eq!(info.fingerprint.len(), 40);
    assert!(info.not_after > info.not_before);
    assert!(parse_cert_pem(&format!("{one}{one}")).is_err());
    assert!(parse_cert_pem("not a pem").is_err());
    assert!(parse_cert_pem(&kp.serialize_pem()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_verifier(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let key = p256_key();
        let token = String::from_utf8_lossy(&bytes);
        let _ = peek(&token);
        prop_assert!(verify(&token, &key, &EXPECTED, NOW).is_err());
    }

    #[test]
    fn arbitrary_three_part_tokens_never_panic(
        h in proptest::collection::vec(any::<u8>(), 0..120),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        s in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let key = p256_key();
        let token = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(h), URL_SAFE_NO_PAD.encode(p), URL_SAFE_NO_PAD.encode(s));
        prop_assert!(verify(&token, &key, &EXPECTED, NOW).is_err());
    }
}

fn p256_key() -> VerifyKey {
    use std::sync::OnceLock;
    static KEY: OnceLock<VerifyKey> = OnceLock::new();
    KEY.get_or_init(|| p256().verify).clone()
}
