//! `weft-benches`: criterion micro-benchmarks (`cargo bench -p weft-benches`).
//!
//! - `codec`: decode and encode of 16 KiB Data frames and of streams of small frames.
//! - `tls_record`: TLS 1.3 record seal/open through a rustls client/server pair in
//!   memory (16 KiB records) beside raw aws-lc-rs AES-256-GCM seal/open of 16 KiB, in
//!   the same run.
//! - `e2e`: the SDK's end-to-end secretstream seal/open (16 KiB and 64 B messages).
//! - `policy`: policy evaluation at 10,000 identities and 1,000 services
//!   ([`PolicyIndex`](weft_controller::policy::PolicyIndex) queries and rebuild, the
//!   [`NaiveEvaluator`](weft_controller::policy::NaiveEvaluator) for comparison).
//!
//! Shared inputs for the benches are built here so that tests can check them too.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConnection, ServerConnection};
use weft_controller::policy::{
    EdgeRouter, EdgeRouterPolicy, Identity, Model, PolicyType, PostureCheck, RoleSet, Semantic,
    Service, ServiceEdgeRouterPolicy, ServicePolicy,
};
use weft_wire::edge::Data;

/// A byte stream of `count` Data frames with `payload_len`-byte payloads on conn 1.
pub fn data_stream(count: usize, payload_len: usize) -> BytesMut {
    let payload = vec![0xA5u8; payload_len];
    let mut out = BytesMut::with_capacity(count * (payload_len + 64));
    for i in 0..count {
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let data = Data {
            conn_id: 1,
            seq,
            flags: 0,
            payload: &payload,
        };
        // Encoding into a growable buffer of small frames cannot fail.
        if data
            .encode(i32::try_from(i).unwrap_or(i32::MAX), &mut out)
            .is_err()
        {
            break;
        }
    }
    out
}

/// Errors building the benches' inputs.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SetupError + '_ {
    move |e| SetupError(format!("{what}: {e}"))
}

/// A rustls client and server (aws-lc-rs, TLS 1.3, self-signed certificate for
/// `localhost`) with the handshake completed in memory.
pub fn tls_pair() -> Result<(ClientConnection, ServerConnection), SetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(setup("certificate"))?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup("server versions"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(setup("server certificate"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(setup("trust anchor"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup("client versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(setup("name"))?;
    let mut c = ClientConnection::new(Arc::new(client), name).map_err(setup("client"))?;
    let mut s = ServerConnection::new(Arc::new(server)).map_err(setup("server"))?;
    let mut buf = Vec::new();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        buf.clear();
        c.write_tls(&mut buf).map_err(setup("client write"))?;
        s.read_tls(&mut buf.as_slice())
            .map_err(setup("server read"))?;
        s.process_new_packets().map_err(setup("server process"))?;
        buf.clear();
        s.write_tls(&mut buf).map_err(setup("server write"))?;
        c.read_tls(&mut buf.as_slice())
            .map_err(setup("client read"))?;
        c.process_new_packets().map_err(setup("client process"))?;
    }
    if c.is_handshaking() || s.is_handshaking() {
        return Err(SetupError("the in-memory handshake did not finish".into()));
    }
    // Drain the server's session tickets so the client's next read is data only.
    buf.clear();
    s.write_tls(&mut buf).map_err(setup("server write"))?;
    c.read_tls(&mut buf.as_slice())
        .map_err(setup("client read"))?;
    c.process_new_packets().map_err(setup("client process"))?;
    Ok((c, s))
}

/// xorshift64*: deterministic and dependency-free.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn attr(&mut self, prefix: &str, n: usize) -> String {
        format!("{prefix}{}", self.below(n))
    }
}

fn roles<I: IntoIterator<Item = String>>(entries: I) -> RoleSet {
    // Entries built here are `#attr` / `@ref` strings, always valid; an empty set
    // (selecting nothing) would only make the bench cheaper, never wrong.
    RoleSet::parse(entries).unwrap_or_default()
}

/// A policy model at controller scale: `identities` identities, `services` services,
/// 100 edge routers, 20 posture checks, 200 service policies, 50 edge router and 50
/// service edge router policies; `all_percent` of service policies name `#all`.
/// The same shape as the controller's ignored `policy::scale` timing test.
pub fn policy_model(identities: usize, services: usize, all_percent: usize) -> Model {
    let rng = &mut Rng(0x5eed_1234_abcd_ef01);
    let identities = (0..identities)
        .map(|k| {
            let mut a = vec![rng.attr("dept", 20), rng.attr("region", 10)];
            for _ in 0..rng.below(3) {
                a.push(rng.attr("team", 30));
            }
            Identity {
                id: format!("identity-{k:05}"),
                name: format!("user{k}"),
                role_attributes: a,
                disabled: rng.below(100) < 2,
            }
        })
        .collect::<Vec<_>>();
    let n_identities = identities.len();
    let services = (0..services)
        .map(|k| Service {
            id: format!("service-{k:04}"),
            name: format!("svc{k}"),
            role_attributes: vec![rng.attr("group", 50), rng.attr("tier", 20)],
        })
        .collect();
    let edge_routers = (0..100)
        .map(|k| EdgeRouter {
            id: format!("router-{k:03}"),
            name: format!("er{k}"),
            role_attributes: vec![rng.attr("region", 10), rng.attr("class", 3)],
        })
        .collect();
    let posture_checks = (0..20)
        .map(|k| PostureCheck {
            id: format!("check-{k:02}"),
            name: format!("pc{k}"),
            role_attributes: vec![rng.attr("posture", 5)],
        })
        .collect();
    let service_policies = (0..200)
        .map(|k| {
            let semantic = if rng.below(2) == 0 {
                Semantic::AnyOf
            } else {
                Semantic::AllOf
            };
            let identity_roles = if rng.below(100) < all_percent {
                RoleSet::all()
            } else {
                match rng.below(10) {
                    0 | 1 => {
                        roles((0..5).map(|_| format!("@identity-{:05}", rng.below(n_identities))))
                    }
                    2..=5 => roles([
                        format!("#{}", rng.attr("dept", 20)),
                        format!("#{}", rng.attr("team", 30)),
                    ]),
                    _ => roles([
                        format!("#{}", rng.attr("dept", 20)),
                        format!("#{}", rng.attr("region", 10)),
                    ]),
                }
            };
            let group = format!("#{}", rng.attr("group", 50));
            let tier = format!("#{}", rng.attr("tier", 20));
            let service_roles = if rng.below(100) < all_percent {
                RoleSet::all()
            } else if rng.below(10) <= 5 {
                roles([group])
            } else {
                roles([group, tier])
            };
            let posture_check_roles = if rng.below(100) < 30 {
                roles([format!("#{}", rng.attr("posture", 5))])
            } else {
                RoleSet::new()
            };
            ServicePolicy {
                id: format!("sp-{k:03}"),
                policy_type: if rng.below(100) < 70 {
                    PolicyType::Dial
                } else {
                    PolicyType::Bind
                },
                semantic,
                identity_roles,
                service_roles,
                posture_check_roles,
            }
        })
        .collect();
    let edge_router_policies = (0..50)
        .map(|k| {
            let region = format!("#{}", rng.attr("region", 10));
            EdgeRouterPolicy {
                id: format!("erp-{k:02}"),
                semantic: Semantic::AnyOf,
                identity_roles: if k == 0 {
                    RoleSet::all()
                } else {
                    roles([region.clone()])
                },
                edge_router_roles: roles([region]),
            }
        })
        .collect();
    let service_edge_router_policies = (0..50)
        .map(|k| ServiceEdgeRouterPolicy {
            id: format!("serp-{k:02}"),
            semantic: Semantic::AnyOf,
            service_roles: roles([format!("#{}", rng.attr("group", 50))]),
            edge_router_roles: if k % 10 == 0 {
                RoleSet::all()
            } else {
                roles([format!("#{}", rng.attr("region", 10))])
            },
        })
        .collect();
    Model {
        identities,
        services,
        edge_routers,
        posture_checks,
        service_policies,
        edge_router_policies,
        service_edge_router_policies,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_controller::policy::{NaiveEvaluator, PolicyEvaluator, PolicyIndex};
    use weft_wire::{Decoded, Decoder, Limits};

    #[test]
    fn tls_pair_moves_a_record_each_way() {
        use std::io::{Read, Write};
        let (mut c, mut s) = tls_pair().unwrap();
        c.writer().write_all(&[7u8; 16 * 1024]).unwrap();
        let mut wire = Vec::new();
        c.write_tls(&mut wire).unwrap();
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut got = vec![0u8; 16 * 1024];
        s.reader().read_exact(&mut got).unwrap();
        assert!(got.iter().all(|b| *b == 7));
    }

    #[test]
    fn policy_model_is_valid_and_the_evaluators_agree() {
        let model = policy_model(500, 100, 1);
        assert!(model.validate().is_empty());
        let index = PolicyIndex::new(&model);
        let naive = NaiveEvaluator::new(&model);
        for m in model.identities.iter().step_by(50) {
            assert_eq!(
                index.services_for(&m.id, PolicyType::Dial),
                naive.services_for(&m.id, PolicyType::Dial)
            );
        }
    }

    #[test]
    fn data_stream_decodes_to_count_frames() {
        let stream = data_stream(10, 100);
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(&stream);
        let mut n = 0;
        while let Ok(Decoded::Frame(f)) = d.decode() {
            assert_eq!(f.body().len(), 100);
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
