//! JWK sets of `jwksEndpoint` signers: a cache of each signer's keys by `kid`, and the
//! fetcher that fills it.
//!
//! - A token with an unknown `kid` makes a fetch, at most once per
//!   `min_refetch_interval_ms` per signer, so hostile tokens cannot make the controller
//!   hammer the JWKS host; keys older than `jwks_max_age_secs` are fetched again when
//!   used (the old ones serve while that fails). Each fetch replaces the signer's keys
//!   with the set served: a key the provider removed stops verifying (OpenZiti merges
//!   and keeps removed keys until restart, `token_provider_cache.go`).
//! - A fetch is `https` only, never follows redirects, ignores proxy settings, has a
//!   connect and total time limit, reads at most `max_jwks_bytes`, keeps at most
//!   [`MAX_KEYS`](super::keys::MAX_KEYS) keys, and at most `max_concurrent_fetches`
//!   run at once.
//! - Server-side request forgery guard ([`super::ssrf`]): the host is resolved once,
//!   non-public addresses are refused unless the host is allow-listed, and the
//!   connection goes to the address that was checked (the client's resolver is
//!   overridden, no second lookup).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::keys::{KeyError, VerifyKey, parse_jwks};
use super::ssrf::{UrlError, check_jwks_url, host_allowed, pick_address};
use crate::config::ExtJwtConfig;
use crate::limits::Metrics;

/// Most signers whose keys are cached (more only when signers are created faster than
/// they are used; the least recently fetched go first).
const MAX_CACHED_SIGNERS: usize = 1024;
/// Most addresses of a host considered.
const MAX_ADDRESSES: usize = 16;

/// Why the controller could not set up JWKS fetching.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `[ext_jwt] ca_file` could not be read or holds no certificate.
    #[error("[ext_jwt] ca_file {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        source: weft_tls::TlsError,
    },
    /// The TLS client configuration failed.
    #[error("JWKS TLS client: {0}")]
    Tls(#[from] weft_tls::TlsError),
}

/// Why a JWK set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The endpoint is not an acceptable URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The host resolves only to addresses the guard refuses.
    #[error(
        "refused to fetch from {host}: it resolves to a {class} address and is not in [ext_jwt] allowed_hosts"
    )]
    Refused {
        /// The host.
        host: String,
        /// The class of the refused address.
        class: &'static str,
    },
    /// Name resolution failed or timed out.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Too many fetches in flight.
    #[error("too many JWKS fetches in flight")]
    Busy,
    /// Connecting, TLS or reading failed, or time ran out.
    #[error("JWKS request failed: {0}")]
    Http(String),
    /// The server answered a redirect, which is never followed.
    #[error("the JWKS endpoint answered a redirect ({0}), which is not followed")]
    Redirect(u16),
    /// The server answered another non-success status.
    #[error("the JWKS endpoint answered status {0}")]
    Status(u16),
    /// The body exceeded the size limit.
    #[error("the JWK set exceeds {0} bytes")]
    TooLarge(usize),
    /// The body is not a JWK set.
    #[error(transparent)]
    Jwks(#[from] KeyError),
}

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The signer's JWK set has no key with that `kid` (a fetch was not due or did not
    /// bring one).
    #[error("no key with that kid")]
    UnknownKid,
    /// The JWK set could not be fetched and no cached key has that `kid`.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// What is known of one signer's JWK set.
#[derive(Debug, Default)]
struct State {
    endpoint: String,
    keys: HashMap<String, VerifyKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// One signer's cache: the state (held only to read or replace it, never across a
/// fetch, so logins with a known key never wait for one) and the lock one fetch at a
/// time holds.
#[derive(Debug, Default)]
struct Entry {
    state: std::sync::Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

/// What a look at the state decided.
enum Next {
    Found(VerifyKey),
    Missing,
    Fetch,
}

impl Entry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key when it is cached and fresh; else whether a fetch is due.
    fn look(
        &self,
        endpoint: &str,
        kid: &str,
        now: Instant,
        max_age: Duration,
        interval: Duration,
    ) -> Next {
        let mut s = self.state();
        if s.endpoint != endpoint {
            *s = State {
                endpoint: endpoint.to_owned(),
                ..State::default()
            };
        }
        let fresh = s.fetched_at.is_some_and(|t| now - t < max_age);
        match s.keys.get(kid) {
            Some(k) if fresh => return Next::Found(k.clone()),
            _ => {}
        }
        if s.last_attempt.is_none_or(|t| now - t >= interval) {
            return Next::Fetch;
        }
        // Not due: a stale key still serves; an unknown kid waits for the interval.
        s.keys.get(kid).cloned().map_or(Next::Missing, Next::Found)
    }
}

/// The JWK sets of all `jwksEndpoint` signers, and their fetcher.
#[derive(Debug)]
pub struct Jwks {
    config: ExtJwtConfig,
    tls: Arc<rustls::ClientConfig>,
    entries: std::sync::Mutex<HashMap<String, Arc<Entry>>>,
    slots: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
}

impl Jwks {
    /// The cache for `config`, trusting the public web roots and `ca_file`.
    pub fn new(config: &ExtJwtConfig, metrics: Arc<Metrics>) -> Result<Self, SetupError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &config.ca_file {
            let ca_err = |source| SetupError::CaFile {
                path: path.display().to_string(),
                source,
            };
            let pem = weft_tls::pem::read(path).map_err(ca_err)?;
            for cert in weft_tls::pem::certificates(&pem).map_err(ca_err)? {
                roots
                    .add(cert)
                    .map_err(|e| ca_err(weft_tls::TlsError::Certificate(e.to_string())))?;
            }
        }
        let tls = weft_tls::client::verified(roots, None)?;
        Ok(Self {
            config: config.clone(),
            tls: Arc::new(tls),
            entries: std::sync::Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(config.max_concurrent_fetches.max(1)),
            metrics,
        })
    }

    fn entry(&self, signer_id: &str) -> Arc<Entry> {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(signer_id) && map.len() >= MAX_CACHED_SIGNERS {
            // Drop an entry no request holds; signers come from the store, so this only
            // forgets keys that will be fetched again.
            if let Some(k) = map
                .iter()
                .find(|(_, e)| Arc::strong_count(e) == 1)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.entry(signer_id.to_owned()).or_default().clone()
    }

    /// Forgets a signer's keys (after it changed or was deleted).
    pub fn forget(&self, signer_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(signer_id);
    }

    /// The key `kid` of the signer `signer_id` whose JWK set is at `endpoint`, fetching
    /// the set when it is not cached, too old, or lacks `kid` (within the refetch limit).
    pub async fn key(
        &self,
        signer_id: &str,
        endpoint: &str,
        kid: &str,
    ) -> Result<VerifyKey, LookupError> {
        let entry = self.entry(signer_id);
        let max_age = Duration::from_secs(self.config.jwks_max_age_secs);
        let interval = Duration::from_millis(self.config.min_refetch_interval_ms);
        match entry.look(endpoint, kid, Instant::now(), max_age, interval) {
            Next::Found(k) => return Ok(k),
            Next::Missing => return Err(LookupError::UnknownKid),
            Next::Fetch => {}
        }
        // One fetch per signer at a time; whoever waited for it looks again, and finds
        // the new keys or that no fetch is due any more.
        let _fetching = entry.fetching.lock().await;
        let now = Instant::now();
        match entry.look(endpoint, kid, now, max_age, interval) {
            Next::Found(k) => return Ok(k),
            Next::Missing => return Err(LookupError::UnknownKid),
            Next::Fetch => entry.state().last_attempt = Some(now),
        }
        let fetched = self.fetch(endpoint).await;
        let mut s = entry.state();
        if s.endpoint != endpoint {
            // The signer changed meanwhile: these keys are not its keys.
            return Err(LookupError::UnknownKid);
        }
        match fetched {
            Ok(keys) => {
                s.keys = keys.into_iter().collect();
                s.fetched_at = Some(now);
                s.keys.get(kid).cloned().ok_or(LookupError::UnknownKid)
            }
            Err(err) => {
                tracing::warn!(signer = signer_id, error = %err, "JWKS fetch failed");
                s.keys.get(kid).cloned().ok_or(LookupError::Fetch(err))
            }
        }
    }

    /// Fetches and parses the JWK set at `endpoint` (counted in the metrics).
    pub async fn fetch(&self, endpoint: &str) -> Result<Vec<(String, VerifyKey)>, FetchError> {
        self.metrics.ext_jwt_fetches.fetch_add(1, Ordering::Relaxed);
        let res = self.fetch_uncounted(endpoint).await;
        if let Err(e) = &res {
            self.metrics
                .ext_jwt_fetch_failures
                .fetch_add(1, Ordering::Relaxed);
            if matches!(e, FetchError::Refused { .. }) {
                self.metrics
                    .ext_jwt_fetches_refused
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        res
    }

    async fn fetch_uncounted(
        &self,
        endpoint: &str,
    ) -> Result<Vec<(String, VerifyKey)>, FetchError> {
        let target = check_jwks_url(endpoint)?;
        let timeout = Duration::from_millis(self.config.fetch_timeout_ms);
        let candidates: Vec<IpAddr> = match target.ip {
            Some(ip) => vec![ip],
            None => tokio::time::timeout(
                timeout,
                tokio::net::lookup_host((target.host.as_str(), target.port)),
            )
            .await
            .map_err(|_| FetchError::Resolve(target.host.clone()))?
            .map_err(|_| FetchError::Resolve(target.host.clone()))?
            .map(|a| a.ip())
            .take(MAX_ADDRESSES)
            .collect(),
        };
        let allowed = host_allowed(&target.host, &self.config.allowed_hosts);
        let ip = pick_address(allowed, &candidates).map_err(|class| FetchError::Refused {
            host: target.host.clone(),
            class,
        })?;
        let _permit = tokio::time::timeout(timeout, self.slots.acquire())
            .await
            .map_err(|_| FetchError::Busy)?
            .map_err(|_| FetchError::Busy)?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(0);
        if target.ip.is_none() {
            // Connect to the address checked above, not to a second lookup's answer.
            builder = builder.resolve(&target.host, SocketAddr::new(ip, target.port));
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let mut res = client
            .get(target.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Http(weft_error_text(&e)))?;
        let status = res.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let max = self.config.max_jwks_bytes;
        if res.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| FetchError::Http(weft_error_text(&e)))?
        {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(parse_jwks(&body)?)
    }
}

fn weft_error_text(e: &reqwest::Error) -> String {
    crate::error::report(e)
}
