//! Identity files in OpenZiti's JSON format, so one file works with both SDKs.
//!
//! ```json
//! {"ztAPI": "https://ctrl.example.com:1280",
//!  "id": {"cert": "pem:-----BEGIN CERTIFICATE-----…", "key": "file:///etc/weft/id.key", "ca": "pem:…"}}
//! ```
//!
//! Each of `cert`, `key` and `ca` may be `pem:<PEM>`, `file://<path>`, raw PEM or a bare
//! path, as the OpenZiti C SDK 0.29.3 reads them (`library/config.c`; tlsuv v0.14.9
//! `src/engine_mbedtls.c` tries PEM first, then a file). A
//! relative path is tried against the working directory first, then against the
//! identity file's directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An enrolled identity: the controller to talk to and the credentials to use.
#[derive(Clone)]
pub struct Identity {
    controller: String,
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Serialize)]
struct FileFormat {
    #[serde(rename = "ztAPI")]
    zt_api: String,
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
            controller: controller.into().trim_end_matches('/').to_string(),
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            ca_pem: ca_pem.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Loads an identity file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::identity(format!("cannot read identity file {}: {e}", path.display()))
        })?;
        Self::from_json(&text, path.parent()).map_err(|e| {
            Error::identity(format!("identity file {}: {}", path.display(), e.message()))
        })
    }

    /// Parses identity JSON; relative `file://` paths also resolve against `base`.
    pub fn from_json(json: &str, base: Option<&Path>) -> Result<Self> {
        let file: FileFormat = serde_json::from_str(json)
            .map_err(|e| Error::identity(format!("not an identity JSON document: {e}")))?;
        if !file.zt_api.starts_with("https://") {
            return Err(Error::identity(format!(
                "ztAPI {:?} is not an https URL",
                file.zt_api
            )));
        }
        let cert = resolve("id.cert", &file.id.cert, base)?;
        let key = resolve("id.key", &file.id.key, base)?;
        let ca = match &file.id.ca {
            Some(ca) => resolve("id.ca", ca, base)?,
            None => return Err(Error::identity("id.ca is missing")),
        };
        Self::from_pem(file.zt_api, cert, key, ca)
    }

    /// The identity as OpenZiti JSON, PEM values inline (`pem:` prefix).
    pub fn to_json(&self) -> String {
        let file = FileFormat {
            zt_api: self.controller.clone(),
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
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::identity(format!("cannot create {}: {e}", path.display())))?;
        f.write_all(self.to_json().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| Error::identity(format!("cannot write {}: {e}", path.display())))
    }

    /// The controller's base URL (`ztAPI`).
    pub fn controller(&self) -> &str {
        &self.controller
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
    pub(crate) fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::identity(format!("id.cert is not PEM certificates: {e}")))?;
        if chain.is_empty() {
            return Err(Error::identity("id.cert holds no certificate"));
        }
        Ok(chain)
    }

    /// The private key, DER.
    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| Error::identity(format!("id.key is not a PEM private key: {e}")))
    }

    /// The CA bundle, DER.
    pub(crate) fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(self.ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::identity(format!("id.ca is not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(Error::identity("id.ca holds no certificate"));
        }
        Ok(certs)
    }

    /// The identity's name: the common name of its certificate.
    pub fn name(&self) -> Result<String> {
        let chain = self.cert_chain()?;
        let (_, cert) = x509_parser::parse_x509_certificate(chain[0].as_ref())
            .map_err(|e| Error::identity(format!("id.cert does not parse: {e}")))?;
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Error::identity("id.cert has no common name"))
    }

    fn validate(&self) -> Result<()> {
        self.cert_chain()?;
        self.private_key()?;
        self.ca_certs()?;
        Ok(())
    }
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
        return Err(Error::identity(format!("{field} is empty")));
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
    Err(Error::identity(format!(
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
    fn bad_files_give_identity_errors() {
        let (cert, key, _) = sample();
        let cases = [
            "not json".to_string(),
            serde_json::json!({"ztAPI": "http://x", "id": {"cert": cert, "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": cert, "key": key}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": "pem:garbage", "key": key, "ca": cert}})
                .to_string(),
            serde_json::json!({"ztAPI": "https://x", "id": {"cert": cert, "key": "file:///nonexistent/key", "ca": cert}})
                .to_string(),
        ];
        for json in cases {
            let err = Identity::from_json(&json, None).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Identity, "{json}: {err}");
        }
        let err = Identity::load("/nonexistent/id.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/id.json"), "{err}");
    }
}
