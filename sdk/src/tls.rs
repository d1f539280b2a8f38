//! TLS client configuration from an identity.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::identity::Identity;

/// A rustls client configuration that trusts the identity's CA bundle and presents its
/// certificate (TLS 1.2 and 1.3, aws-lc-rs).
pub(crate) fn client_config(identity: &Identity) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in identity.ca_certs()? {
        roots
            .add(cert)
            .map_err(|e| Error::identity(format!("id.ca: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| Error::identity(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.cert_chain()?, identity.private_key()?)
        .map_err(|e| Error::identity(format!("id.cert and id.key do not match: {e}")))?;
    Ok(Arc::new(config))
}
