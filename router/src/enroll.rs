//! Router enrollment (`erott`): redeem the one-time JWT the controller issued for this
//! edge router, receiving a server certificate for the edge listener and a client
//! certificate for the control channel.
//!
//! The controller is authenticated the way OpenZiti's SDKs and router do it (facts
//! from openziti/sdk-golang `ziti/enroll` and openziti/edge `router/enroll`): the JWT
//! is RS256-signed by the key of the controller's TLS server certificate, so the
//! router first fetches that certificate (accepting it unverified), checks the JWT
//! signature with its key, then — trusting only that exact certificate — fetches the
//! CA bundle from `/.well-known/est/cacerts` (trust on first use), and from then on
//! verifies the controller against that bundle. The request body and response follow
//! OpenZiti's router enroller: `{"serverCertCsr", "certCsr"}` →
//! `{"data": {"serverCert", "cert", "ca"}}`. `server.cert` holds the server certificate
//! followed by the bundle's intermediate CA certificates (the chain the edge listener
//! serves).

use std::path::{Path, PathBuf};

use weft_identity::claims::unverified_claims;
use weft_identity::{IdentityError, bootstrap, csr};

/// The control-channel client certificate.
pub const ROUTER_CERT_FILE: &str = "router.cert";
/// Its private key (mode 0600).
pub const ROUTER_KEY_FILE: &str = "router.key";
/// The edge listener's server certificate.
pub const SERVER_CERT_FILE: &str = "server.cert";
/// Its private key (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// The controller's CA bundle.
pub const CA_FILE: &str = "ca.pem";

/// Errors of enrollment.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token is not a router enrollment token, is expired or not signed by the
    /// controller, the controller could not be reached, or keys could not be made.
    #[error(transparent)]
    Bootstrap(#[from] IdentityError),
    /// The enrollment request could not be sent or its answer read.
    #[error("cannot reach the controller at {url}: {source}")]
    Connect {
        /// The enrollment URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The controller answered with an error or an unexpected body.
    #[error("enrollment refused by the controller ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// A file enrollment writes is already there (found before the token was sent).
    #[error("{0} already exists; move it away to enroll again (the token was not used)")]
    Exists(PathBuf),
}

/// What enrollment wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The router's id (JWT `sub`, the certificates' common name).
    pub router_id: String,
    /// The controller's base URL (JWT `iss`).
    pub controller_url: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EnrollError + '_ {
    move |source| EnrollError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Enrolls the router whose `erott` JWT is in `jwt_path`, writing `router.cert`,
/// `router.key`, `server.cert`, `server.key` and `ca.pem` into `dir` (created if
/// missing; keys mode 0600, existing files are not overwritten). The server
/// certificate's CSR asks for `names` (DNS names or IP addresses,
/// [`crate::config::RouterConfig::server_cert_names`]) besides those the controller
/// gives the router.
pub async fn enroll(
    jwt_path: &Path,
    dir: &Path,
    names: &[String],
) -> Result<Enrolled, EnrollError> {
    let jwt = std::fs::read_to_string(jwt_path).map_err(io_err(jwt_path))?;
    let jwt = jwt.trim();
    let claims = unverified_claims(jwt)?;
    claims.expect_method("erott", "an edge router's enrollment token")?;
    // Everything local first: a failure after the request would waste the one-time token.
    preflight(dir)?;
    // The controller's certificate must have signed the JWT; its CA bundle is read
    // over a connection pinned to that certificate (trust on first use), and from
    // here on the controller is verified against the bundle.
    let ca_pem = bootstrap::controller_ca_bundle(jwt, &claims).await?;
    let verified = bootstrap::http_client(bootstrap::verified_tls(&ca_pem)?)?;

    let (router_key, router_csr) = csr::key_and_csr(&claims.sub)?;
    let (server_key, server_csr) = csr::server_key_and_csr(&claims.sub, names)?;
    let url = format!(
        "{}/edge/client/v1/enroll?method=erott&token={}",
        claims.iss.trim_end_matches('/'),
        claims.jti
    );
    let connect = |source| EnrollError::Connect {
        url: url.clone(),
        source,
    };
    let res = verified
        .post(&url)
        .json(&serde_json::json!({"serverCertCsr": server_csr, "certCsr": router_csr}))
        .send()
        .await
        .map_err(connect)?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(connect)?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let field = |k: &str| v["data"][k].as_str().map(str::to_owned);
    let (Some(server_cert), Some(cert), Some(ca)) =
        (field("serverCert"), field("cert"), field("ca"))
    else {
        return Err(EnrollError::Refused { status, body });
    };
    if status != 200 {
        return Err(EnrollError::Refused { status, body });
    }

    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_file(
        &dir.join(ROUTER_KEY_FILE),
        &router_key.serialize_pem(),
        true,
    )?;
    write_file(
        &dir.join(SERVER_KEY_FILE),
        &server_key.serialize_pem(),
        true,
    )?;
    write_file(&dir.join(ROUTER_CERT_FILE), &cert, false)?;
    write_file(
        &dir.join(SERVER_CERT_FILE),
        &server_chain(&server_cert, &ca),
        false,
    )?;
    write_file(&dir.join(CA_FILE), &ca, false)?;
    Ok(Enrolled {
        router_id: claims.sub,
        controller_url: claims.iss,
    })
}

/// Checks, before the token is sent, that `dir` exists (creating it) and takes new
/// files, and that none of the files enrollment writes is there yet.
fn preflight(dir: &Path) -> Result<(), EnrollError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for name in [
        ROUTER_CERT_FILE,
        ROUTER_KEY_FILE,
        SERVER_CERT_FILE,
        SERVER_KEY_FILE,
        CA_FILE,
    ] {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(EnrollError::Exists(path));
        }
    }
    let probe = dir.join(format!(".weft-enroll-probe-{}", std::process::id()));
    write_file(&probe, "", true)?;
    std::fs::remove_file(&probe).map_err(io_err(&probe))
}

/// The edge listener's chain: the server certificate followed by the intermediate
/// (not self-signed) certificates of the CA bundle, so SDKs that trust only the root
/// can build the path to it.
fn server_chain(server_cert: &str, ca_bundle: &str) -> String {
    let mut chain = server_cert.trim_end().to_string();
    chain.push('\n');
    for der in weft_tls::pem::certificates(ca_bundle.as_bytes()).unwrap_or_default() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            continue;
        };
        if cert.subject() == cert.issuer() {
            continue;
        }
        chain.push_str(&weft_tls::pem::certificate_pem(der.as_ref()));
    }
    chain
}

fn write_file(path: &Path, content: &str, secret: bool) -> Result<(), EnrollError> {
    weft_identity::secret::write_new(path, content.as_bytes(), secret).map_err(io_err(path))?;
    take_directory_owner(path)
}

/// Gives `path`, written by root, the owner and group of its directory: `sudo
/// weft-router enroll` into the service user's directory (the package's
/// `/var/lib/weft-router/certs`, owned by `weft`) leaves keys the service can read,
/// and nobody else (they stay mode 0600). Files written by anyone else keep their
/// owner (only root may give a file away).
fn take_directory_owner(path: &Path) -> Result<(), EnrollError> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let dir_meta = std::fs::metadata(dir).map_err(io_err(dir))?;
    let file_meta = std::fs::metadata(path).map_err(io_err(path))?;
    let owner = (dir_meta.uid(), dir_meta.gid());
    if file_meta.uid() == 0 && (file_meta.uid(), file_meta.gid()) != owner {
        std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).map_err(io_err(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root's files take the directory's owner (the package's service user); anyone
    /// else's stay theirs.
    #[test]
    fn files_written_by_root_take_the_owner_of_their_directory() {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        let me = std::fs::metadata(&dir).unwrap();
        if me.uid() == 0 {
            // 65534: `nobody` on Debian; any uid works for chown as root.
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        }
        write_file(&dir.join(SERVER_KEY_FILE), "key", true).unwrap();
        let file = std::fs::metadata(dir.join(SERVER_KEY_FILE)).unwrap();
        if me.uid() == 0 {
            assert_eq!((file.uid(), file.gid()), (65534, 65534));
        } else {
            assert_eq!(file.uid(), me.uid());
        }
        assert_eq!(file.mode() & 0o777, 0o600);
    }

    /// A failed enrollment used to spend the one-time token before finding the files
    /// already there: now nothing is sent (the issuer here is unreachable, so reaching
    /// the network would fail with `Connect` instead).
    #[test]
    fn existing_files_fail_before_the_token_is_sent() {
        let scratch = tempfile::tempdir().unwrap();
        let tmp = scratch.path();
        // {"em":"erott","iss":"https://127.0.0.1:1","sub":"r1","jti":"t","exp":9999999999}
        let body = "eyJlbSI6ImVyb3R0IiwiaXNzIjoiaHR0cHM6Ly8xMjcuMC4wLjE6MSIsInN1YiI6InIxIiwianRpIjoidCIsImV4cCI6OTk5OTk5OTk5OX0";
        let jwt = tmp.join("router.jwt");
        std::fs::write(&jwt, format!("e30.{body}.sig")).unwrap();
        let dir = tmp.join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ROUTER_CERT_FILE), "old").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(enroll(&jwt, &dir, &[])) {
            Err(EnrollError::Exists(path)) => assert_eq!(path, dir.join(ROUTER_CERT_FILE)),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(dir.join(ROUTER_CERT_FILE)).unwrap(),
            "old"
        );
        // With the directory clear, the same call gets as far as the network.
        std::fs::remove_file(dir.join(ROUTER_CERT_FILE)).unwrap();
        assert!(matches!(
            rt.block_on(enroll(&jwt, &dir, &[])),
            Err(EnrollError::Bootstrap(
                IdentityError::Connect { .. }
                    | IdentityError::Signature(_)
                    | IdentityError::Answer(_)
            ))
        ));
        // The probe left nothing behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn the_server_chain_carries_intermediates_but_not_the_root() {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(root_params, root_key);
        let mid_key = rcgen::KeyPair::generate().unwrap();
        let mut mid_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        mid_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        mid_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "signing");
        let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let bundle = format!("{}{}", root.pem(), mid.pem());
        let chain = server_chain("LEAF", &bundle);
        assert!(chain.starts_with("LEAF\n"));
        let certs = weft_tls::pem::certificates(chain.as_bytes()).unwrap();
        assert_eq!(certs.len(), 1, "only the intermediate follows the leaf");
        assert_eq!(certs[0].as_ref(), mid.der().as_ref());
    }
}
