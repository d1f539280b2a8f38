//! Identity files in OpenZiti's JSON format, so one file works with both SDKs.
//!
//! ```json
//! {"ztAPI": "https://ctrl.example.com:1280",
//!  "id": {"cert": "pem:-----BEGIN CERTIFICATE-----…", "key": "file:///etc/weft/id.key", "ca": "pem:…"}}
//! ```
//!
//! `ztAPIs` (optional, as in openziti/sdk-golang `ziti/config.go`, where it supersedes
//! `ztAPI`) lists several controllers' URLs: controllers sharing one database, any of
//! which serves the identity. Weft reads `ztAPI` first and then the `ztAPIs` entries
//! not already named (a file with only `ztAPIs` starts at its first), and writes
//! `ztAPIs` back whenever the identity has more than one controller, `ztAPI` always
//! (the first), so single-controller readers such as the C SDK 0.29.3 still find one.
//! A URL may end in `/edge/client/v1`, as the Go SDK writes it; Weft keeps the base.
//!
//! Each of `cert`, `key` and `ca` may be `pem:<PEM>`, `file://<path>`, raw PEM or a bare
//! path, as the OpenZiti C SDK 0.29.3 reads them (`library/config.c`; tlsuv v0.14.9
//! `src/engine_mbedtls.c` tries PEM first, then a file). A
//! relative path is tried against the working directory first, then against the
//! identity file's directory.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::IdentityError;

type Result<T> = std::result::Result<T, IdentityError>;

/// An enrolled identity: the controllers to talk to and the credentials to use.
#[derive(Clone)]
pub struct Identity {
    /// The controllers' base URLs, the default first; never empty.
    controllers: Vec<String>,
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("controllers", &self.controllers)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Serialize)]
struct FileFormat {
    #[serde(rename = "ztAPI", default, skip_serializing_if = "Option::is_none")]
    zt_api: Option<String>,
    #[serde(rename = "ztAPIs", default, skip_serializing_if = "Option::is_none")]
    zt_apis: Option<Vec<String>>,
    id: FileId,
    #[serde(
        rename = "configTypes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    config_types: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize)]
struct FileId {
    cert: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
}

impl Identity {
    /// An identity from its parts (PEM strings). Checks that they parse.
    pub fn from_pem(
        controller: impl Into<String>,
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
        ca_pem: impl Into<String>,
    ) -> Result<Self> {
        let id = Self {
            controllers: vec![controller_base(&controller.into())],
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            ca_pem: ca_pem.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// This identity with a new certificate chain (PEM) and, when the key was rolled,
    /// a new private key (PEM): what certificate extension gives back.
    pub fn renewed(&self, cert_pem: impl Into<String>, key_pem: Option<String>) -> Result<Self> {
        let id = Self {
            controllers: self.controllers.clone(),
            cert_pem: cert_pem.into(),
            key_pem: key_pem.unwrap_or_else(|| self.key_pem.clone()),
            ca_pem: self.ca_pem.clone(),
        };
        id.validate()?;
        Ok(id)
    }

    /// A PEM CSR for this identity's own key (to extend its certificate without a new
    /// key).
    pub fn csr_for_own_key(&self, common_name: &str) -> Result<String> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem)?;
        crate::csr::csr(common_name, &key)
    }

    /// Loads an identity file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path.parent())
            .map_err(|e| IdentityError::Invalid(format!("identity file {}: {e}", path.display())))
    }

    /// Parses identity JSON; relative `file://` paths also resolve against `base`.
    pub fn from_json(json: &str, base: Option<&Path>) -> Result<Self> {
        let file: FileFormat = serde_json::from_str(json)
            .map_err(|e| IdentityError::Invalid(format!("not an identity JSON document: {e}")))?;
        for url in file.zt_api.iter() {
            check_url("ztAPI", url)?;
        }
        for url in file.zt_apis.iter().flatten() {
            check_url("ztAPIs", url)?;
        }
        let urls: Vec<String> = file
            .zt_api
            .iter()
            .chain(file.zt_apis.iter().flatten())
            .cloned()
            .collect();
        let Some(first) = urls.first().cloned() else {
            return Err(IdentityError::Invalid(
                "ztAPI is missing (and ztAPIs names no controller)".into(),
            ));
        };
        let cert = resolve("id.cert", &file.id.cert, base)?;
        let key = resolve("id.key", &file.id.key, base)?;
        let ca = match &file.id.ca {
            Some(ca) => resolve("id.ca", ca, base)?,
            None => return Err(IdentityError::Invalid("id.ca is missing".into())),
        };
        Self::from_pem(first, cert, key, ca)?.with_controllers(urls)
    }

    /// The same identity with these controllers (base URLs, `https://`), the default
    /// first: controllers sharing one database, any of which serves it. Duplicates are
    /// dropped; the list must not be empty.
    pub fn with_controllers<S: AsRef<str>>(
        mut self,
        urls: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let mut controllers: Vec<String> = Vec::new();
        for url in urls {
            let url = url.as_ref();
            check_url("controller URL", url)?;
            let base = controller_base(url);
            if !controllers.contains(&base) {
                controllers.push(base);
            }
        }
        if controllers.is_empty() {
            return Err(IdentityError::Invalid(
                "an identity needs at least one controller URL".into(),
            ));
        }
        self.controllers = controllers;
        Ok(self)
    }

    /// The identity as OpenZiti JSON, PEM values inline (`pem:` prefix).
    pub fn to_json(&self) -> String {
        let file = FileFormat {
            zt_api: Some(self.controller().to_owned()),
            zt_apis: (self.controllers.len() > 1).then(|| self.controllers.clone()),
            id: FileId {
                cert: format!("pem:{}", self.cert_pem),
                key: format!("pem:{}", self.key_pem),
                ca: Some(format!("pem:{}", self.ca_pem)),
            },
            config_types: None,
        };
        // Serializing a struct of strings cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Writes the identity file (mode 0600: it holds the private key). Refuses to
    /// overwrite an existing file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut text = self.to_json();
        text.push('\n');
        crate::secret::write_secret(path, text.as_bytes()).map_err(|source| IdentityError::File {
            path: path.to_owned(),
            source,
        })
    }

    /// The default controller's base URL (`ztAPI`).
    pub fn controller(&self) -> &str {
        self.controllers.first().map_or("", String::as_str)
    }

    /// Every controller's base URL, the default first (`ztAPI`, then `ztAPIs`).
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// The client certificate chain, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA bundle that the controller and edge routers chain to, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The client certificate chain, DER.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        weft_tls::pem::certificates(self.cert_pem.as_bytes()).map_err(|source| IdentityError::Tls {
            what: "id.cert",
            source,
        })
    }

    /// The private key, DER.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        weft_tls::pem::private_key(self.key_pem.as_bytes()).map_err(|source| IdentityError::Tls {
            what: "id.key",
            source,
        })
    }

    /// The CA bundle, DER.
    pub fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>> {
        weft_tls::pem::certificates(self.ca_pem.as_bytes()).map_err(|source| IdentityError::Tls {
            what: "id.ca",
            source,
        })
    }

    /// A TLS client configuration that trusts the identity's CA bundle and presents its
    /// certificate (what the SDK uses towards the controller and edge routers).
    pub fn client_tls(&self) -> Result<rustls::ClientConfig> {
        self.tls_with(weft_tls::client::verified)
    }

    /// [`Self::client_tls`] for the controller: a server presenting a router's
    /// certificate is refused (`weft_tls::client::controller`).
    pub fn controller_tls(&self) -> Result<rustls::ClientConfig> {
        self.tls_with(weft_tls::client::controller)
    }

    /// A client configuration `build` makes from the identity's CA bundle, certificate
    /// chain and key.
    fn tls_with(
        &self,
        build: fn(
            rustls::RootCertStore,
            Option<weft_tls::client::ClientIdentity>,
        ) -> std::result::Result<rustls::ClientConfig, weft_tls::TlsError>,
    ) -> Result<rustls::ClientConfig> {
        let tls = |what| move |source| IdentityError::Tls { what, source };
        let roots = weft_tls::pem::roots(self.ca_pem.as_bytes()).map_err(tls("id.ca"))?;
        build(roots, Some((self.cert_chain()?, self.private_key()?)))
            .map_err(tls("id.cert and id.key"))
    }

    /// The identity's name: the common name of its certificate.
    pub fn name(&self) -> Result<String> {
        let chain = self.cert_chain()?;
        let (_, cert) = x509_parser::parse_x509_certificate(chain[0].as_ref())
            .map_err(|e| IdentityError::Invalid(format!("id.cert does not parse: {e}")))?;
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| IdentityError::Invalid("id.cert has no common name".into()))
    }

    fn validate(&self) -> Result<()> {
        self.cert_chain()?;
        self.private_key()?;
        self.ca_certs()?;
        Ok(())
    }
}

/// Refuses a controller URL that is not `https://`.
fn check_url(field: &str, url: &str) -> Result<()> {
    if url.starts_with("https://") {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "{field} {url:?} is not an https URL"
        )))
    }
}

/// A controller URL as a base: no trailing `/`, no `/edge/client/v1` (the Go SDK's
/// form of `ztAPI`).
fn controller_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    url.strip_suffix("/edge/client/v1")
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_owned()
}

/// Reads one `id.*` value: `pem:`, `file://`, raw PEM or a bare path.
fn resolve(field: &str, value: &str, base: Option<&Path>) -> Result<String> {
    if let Some(pem) = value.strip_prefix("pem:") {
        return Ok(pem.to_string());
    }
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.to_string());
    }
    let path = value.strip_prefix("file://").unwrap_or(value);
    if path.is_empty() {
        return Err(IdentityError::Invalid(format!("{field} is empty")));
    }
    let mut candidates = vec![PathBuf::from(path)];
    if let Some(base) = base.filter(|_| Path::new(path).is_relative()) {
        candidates.push(base.join(path));
    }
    let mut last = None;
    for candidate in &candidates {
        match std::fs::read_to_string(candidate) {
            Ok(text) => return Ok(text),
            Err(e) => last = Some(e),
        }
    }
    Err(IdentityError::Invalid(format!(
        "{field}: cannot read {path}: {}",
        last.map_or_else(|| "not found".to_string(), |e| e.to_string())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let ca_pem = ca.pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), ca_pem)
    }

    #[test]
    fn round_trips_through_json_and_reads_every_value_form() {
        let (cert, key, ca) = sample();
        let id = Identity::from_pem("https://ctrl:1280/", &cert, &key, &ca).unwrap();
        assert_eq!(id.controller(), "https://ctrl:1280");
        assert_eq!(id.name().unwrap(), "alice");
        let back = Identity::from_json(&id.to_json(), None).unwrap();
        assert_eq!(back.cert_pem(), cert);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id.key"), &key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        let json = serde_json::json!({
            "ztAPI": "https://ctrl:1280",
            "id": {"cert": cert, "key": "file://id.key", "ca": dir.path().join("ca.pem")}
        });
        let id = Identity::from_json(&json.to_string(), Some(dir.path())).unwrap();
        assert_eq!(id.ca_pem(), ca);

        let path = dir.path().join("id.json");
        id.save(&path).unwrap();
        assert!(id.save(&path).is_err(), "save must not overwrite");
        let loaded = Identity::load(&path).unwrap();
        assert_eq!(loaded.name().unwrap(), "alice");
    }

    #[test]
    fn zt_apis_are_read_after_zt_api_and_written_back_when_there_are_several() {
        let (cert, key, ca) = sample();
        let json = serde_json::json!({
            "ztAPI": "https://a:1280",
            "ztAPIs": ["https://a:1280/", "https://b:1280/edge/client/v1", "https://c:1280"],
            "id": {"cert": cert, "key": key, "ca": ca}
        });
        let id = Identity::from_json(&json.to_string(), None).unwrap();
        assert_eq!(id.controller(), "https://a:1280");
        assert_eq!(
            id.controllers(),
            ["https://a:1280", "https://b:1280", "https://c:1280"]
        );
        let written: serde_json::Value = serde_json::from_str(&id.to_json()).unwrap();
        assert_eq!(written["ztAPI"], "https://a:1280");
        assert_eq!(
            written["ztAPIs"],
            serde_json::json!(["https://a:1280", "https://b:1280", "https://c:1280"])
        );
        let back = Identity::from_json(&id.to_json(), None).unwrap();
        assert_eq!(back.controllers(), id.controllers());

        // Only ztAPIs (as the Go SDK may write it): its first is the default.
        let json = serde_json::json!({
            "ztAPIs": ["https://b:1280", "https://a:1280"],
            "id": {"cert": cert, "key": key, "ca": ca}
        });
        let id = Identity::from_json(&json.to_string(), None).unwrap();
        assert_eq!(id.controllers(), ["https://b:1280", "https://a:1280"]);

        // One controller: no ztAPIs in the file, as before.
        let one = Identity::from_pem("https://a:1280", &cert, &key, &ca).unwrap();
        let written: serde_json::Value = serde_json::from_str(&one.to_json()).unwrap();
        assert_eq!(written["ztAPI"], "https://a:1280");
        assert!(written.get("ztAPIs").is_none(), "{written}");

        // In code: the list replaces the controller, duplicates dropped.
        let several = one
            .clone()
            .with_controllers(["https://x:1", "https://y:2/", "https://x:1"])
            .unwrap();
        assert_eq!(several.controllers(), ["https://x:1", "https://y:2"]);
        assert_eq!(several.controller(), "https://x:1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("several.json");
        several.save(&path).unwrap();
        assert_eq!(
            Identity::load(&path).unwrap().controllers(),
            ["https://x:1", "https://y:2"]
        );
        assert!(one.clone().with_controllers(Vec::<String>::new()).is_err());
        assert!(one.with_controllers(["http://x:1"]).is_err());
    }

    #[test]
    fn bad_files_give_identity_errors() {
        let (cert, key, _) = sample();
        let cases = [
            "not json".to_string(),
            serde_json::json!({"ztAPI": "http://x", "id": {"cert": cert, "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": cert, "key": key}})
                .to_string(),
            serde_json::json!({"ztAPIs": [], "id": {"cert": cert, "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "ztAPIs": ["https://y", "http://z"], "id": {"cert": cert, "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPIs": "https://x", "id": {"cert": cert, "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": "pem:garbage", "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": cert, "key": "file:///nonexistent/key", "ca": cert}})
                .to_string(),
        ];
        for json in cases {
            let err = Identity::from_json(&json, None).unwrap_err();
            assert!(
                matches!(err, IdentityError::Invalid(_) | IdentityError::Tls { .. }),
                "{json}: {err}"
            );
        }
        let err = Identity::load("/nonexistent/id.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/id.json"), "{err}");
    }
}
