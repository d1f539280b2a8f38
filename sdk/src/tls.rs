//! TLS client configuration from an identity.

use std::sync::Arc;

use crate::Identity;
use crate::error::Result;

/// A rustls client configuration that trusts the identity's CA bundle and presents its
/// certificate (TLS 1.2 and 1.3; `weft_tls::client::verified`).
pub(crate) fn client_config(identity: &Identity) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(identity.client_tls()?))
}

/// [`client_config`] for the controller: a server presenting a router's certificate is
/// refused (`weft_tls::client::controller`).
pub(crate) fn controller_config(identity: &Identity) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(identity.controller_tls()?))
}
