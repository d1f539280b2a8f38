//! The router runtime in-process, driven by real TLS clients speaking the edge protocol
//! and by the test as a fake controller on the `ShardCommand`/`ShardRequest` seam.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, RsaKeySize};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft_router::forward::{ControlRequest, ForwardConfig};
use weft_router::runtime::{
    IoBackend, IoSelection, Router, RouterSettings, ShardCommand, ShardRequest, probe_uring,
};
use weft_testkit::{EdgeClient as Client, pattern, state};
use weft_wire::control::pb;
use weft_wire::edge::{
    Bind, Connect, Data, Dial, DialSuccess, FLAG_FIN, Hello, HelloResult, LatencyProbe,
    StateClosed, StateConnected,
};
use weft_wire::{ContentType, Decoded, Decoder, Limits};

const WAIT: Duration = Duration::from_secs(10);

// ---- both backends ----

/// Runs a scenario `async fn NAME(io: IoBackend)` as two tests, `NAME::epoll` and
/// `NAME::uring`; the io_uring one is skipped, with the reason printed, on a host
/// where io_uring cannot be used.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn epoll() {
                super::$name(super::IoBackend::Epoll).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn uring() {
                if super::uring_available(stringify!($name)) {
                    super::$name(super::IoBackend::Uring).await;
                }
            }
        }
    )*};
}

on_both_backends!(
    dial_bind_relay_fin_close_and_revocation,
    client_without_certificate_is_refused,
    silent_client_is_closed_after_the_hello_timeout,
    silent_tcp_client_is_dropped_after_the_handshake_deadline,
    malformed_frame_closes_only_that_connection,
    ip_literal_sni_does_not_break_the_handshake,
    slow_reader_pauses_the_writer_and_resumes_it,
    shutdown_lets_circuits_run_for_the_grace_period_then_closes,
    several_shards_share_the_port_and_each_gets_the_sessions,
    hello_with_a_certificate_not_bound_to_the_session_is_answered_then_closed,
    connections_beyond_the_shard_cap_are_refused,
    circuits_cross_shards_with_data_close_and_revocation,
    a_peer_that_never_reads_its_answers_is_not_read_either,
);

/// Whether io_uring works here; prints why the test is skipped when it does not.
fn uring_available(test: &str) -> bool {
    match probe_uring() {
        Ok(()) => true,
        // CI must run what it claims to run.
        Err(e) if std::env::var_os("CI").is_some_and(|v| v == "true") => {
            panic!("{test}::uring: io_uring is not available under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}::uring: io_uring is not available on this host: {e}");
            false
        }
    }
}

// ---- PKI ----

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprint: String,
    cert_pem: String,
    key_pem: String,
}

struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    dialer: Identity,
    host: Identity,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    // RSA, as the controller issues router certificates for the C SDK.
    let server_key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let client = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Identity {
            fingerprint: weft_tls::fingerprint(cert.der()),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    };
    Pki {
        ca: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        dialer: client("dialer"),
        host: client("host"),
    }
}

// ---- the router and the fake controller ----

struct Harness {
    pki: Pki,
    router: Option<Router>,
    addr: SocketAddr,
    commands: mpsc::UnboundedSender<ShardCommand>,
    requests: mpsc::UnboundedReceiver<ShardRequest>,
}

impl Harness {
    fn start(io: IoBackend, hello_timeout: Duration) -> Self {
        Self::start_with(io, |s| s.forward.edge.hello_timeout = hello_timeout)
    }

    fn start_with(io: IoBackend, adjust: impl FnOnce(&mut RouterSettings)) -> Self {
        // `RUST_LOG=weft_router=debug` shows the router's logs of a failing test.
        weft_testkit::init_logs();
        let pki = pki();
        let tls = weft_tls::server::edge_from_pem(
            pki.server_cert_pem.as_bytes(),
            pki.server_key_pem.as_bytes(),
            pki.ca_pem.as_bytes(),
        )
        .unwrap();
        let mut settings = RouterSettings {
            edge_listen: "127.0.0.1:0".parse().unwrap(),
            shards: 1,
            forward: ForwardConfig::default(),
            tls: Arc::new(tls).into(),
            handshake_timeout: Duration::from_secs(5),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            max_conns_per_shard: 1024,
            io: match io {
                IoBackend::Uring => IoSelection::Uring,
                IoBackend::Epoll => IoSelection::Epoll,
            },
            link: None,
            control_stats: None,
        };
        adjust(&mut settings);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let router = Router::start(settings, commands_rx, requests_tx).unwrap();
        assert_eq!(router.backend(), io);
        let addr = router.local_addr();
        let harness = Self {
            pki,
            router: Some(router),
            addr,
            commands,
            requests,
        };
        harness.send(ShardCommand::Sync(harness.sync()));
        harness.wait_for_revision(1);
        harness
    }

    /// Waits until every shard holds state revision `revision`, so a client that
    /// connects next finds its session (the sync travels through the dispatcher thread,
    /// a client's hello does not).
    fn wait_for_revision(&self, revision: u64) {
        use std::io::{Read as _, Write as _};
        let addr = self.router.as_ref().unwrap().metrics_addr().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            let revisions: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("weft_router_state_revision{"))
                .collect();
            if !revisions.is_empty()
                && revisions
                    .iter()
                    .all(|l| l.ends_with(&format!(" {revision}")))
            {
                return;
            }
            assert!(Instant::now() < deadline, "state sync not applied: {text}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn send(&self, command: ShardCommand) {
        self.commands.send(command).unwrap();
    }

    /// API sessions "api-d" (dialer) and "api-h" (host) bound to the clients'
    /// fingerprints, a Dial session and a Bind session for service "svc".
    fn sync(&self) -> pb::StateSync {
        let api = |id: &str, fingerprint: &str| {
            state::api_session(
                id,
                &format!("token-{id}"),
                &format!("identity-{id}"),
                fingerprint,
            )
        };
        let session = |id: &str, api: &str, kind: pb::SessionType| {
            state::session(id, &format!("token-{id}"), api, "svc", kind)
        };
        state::sync(
            "",
            1,
            vec![
                api("api-d", &self.pki.dialer.fingerprint),
                api("api-h", &self.pki.host.fingerprint),
            ],
            vec![
                session("dial-1", "api-d", pb::SessionType::Dial),
                session("bind-1", "api-h", pb::SessionType::Bind),
            ],
        )
    }

    async fn request(&mut self) -> ShardRequest {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("no request from the router")
            .expect("request channel closed")
    }

    async fn connect(
        &self,
        identity: Option<&Identity>,
        tls12_only: bool,
    ) -> std::io::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.pki.ca.clone()).unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            weft_tls::VERSIONS
        };
        let identity =
            identity.map(|id| (id.chain.clone(), PrivateKeyDer::Pkcs8(id.key.clone_key())));
        let config = weft_tls::client::verified_with_versions(roots, identity, versions).unwrap();
        Client::connect(self.addr, Arc::new(config)).await
    }

    /// A client that said hello with `token` and got its Result.
    async fn authenticated(&self, identity: &Identity, token: &str, tls12_only: bool) -> Client {
        let mut c = self.connect(Some(identity), tls12_only).await.unwrap();
        c.hello_ok(token).await;
        c
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// The whole answer of the operations endpoint to `GET path`.
    async fn get(&self, path: &str) -> String {
        let addr = self.router.as_ref().unwrap().metrics_addr().unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text
    }

    /// Shuts the router down and waits for its threads.
    fn stop(mut self) {
        self.send(ShardCommand::Shutdown {
            grace: Duration::ZERO,
        });
        if let Some(router) = self.router.take() {
            router.join();
        }
    }
}

// ---- an edge client: weft_testkit::EdgeClient ----

/// Host binds "svc" as listener 7; the test answers the terminator request.
async fn bind_host(h: &mut Harness, host: &mut Client) {
    let seq = host
        .w
        .send(|s, out| {
            Bind {
                conn_id: 7,
                seq: 0,
                caller_id: None,
                public_key: None,
                terminator_identity: None,
                cost: None,
                precedence: None,
                session_token: b"token-bind-1",
            }
            .encode(s, out)
        })
        .await;
    let ShardRequest::Control(ControlRequest::CreateTerminator {
        conn,
        listener,
        service_id,
        request,
    }) = h.request().await
    else {
        panic!("expected CreateTerminator")
    };
    assert_eq!((listener, service_id.as_str()), (7, "svc"));
    assert_eq!(request.session_id, "bind-1");
    h.send(ShardCommand::TerminatorCreated {
        conn,
        listener,
        terminator_id: "term-1".into(),
    });
    let frame = host.r.expect(ContentType::STATE_CONNECTED).await;
    let connected = StateConnected::parse(&frame).unwrap();
    assert_eq!((connected.conn_id, connected.reply_for), (7, Some(seq)));
}

/// Dialer connects on `conn_id`; the host accepts as `host_conn`.
async fn open_circuit(dialer: &mut Client, host: &mut Client, conn_id: u32, host_conn: u32) {
    let connect_seq = dialer
        .w
        .send(|s, out| {
            Connect {
                conn_id,
                seq: 0,
                caller_id: Some(b"dialer"),
                public_key: None,
                terminator_identity: None,
                app_data: None,
                stickiness_token: None,
                session_token: b"token-dial-1",
            }
            .encode(s, out)
        })
        .await;
    let dial_frame = host.r.expect(ContentType::DIAL).await;
    let dial = Dial::parse(&dial_frame).unwrap();
    assert_eq!(dial.conn_id, 7);
    assert_eq!(dial.caller_id, b"dialer");
    let success_seq = host
        .w
        .send(|s, out| {
            DialSuccess {
                conn_id: 7,
                seq: 0,
                reply_for: dial_frame.sequence(),
                new_conn_id: host_conn,
            }
            .encode(s, out)
        })
        .await;
    let frame = host.r.expect(ContentType::STATE_CONNECTED).await;
    assert_eq!(
        StateConnected::parse(&frame).unwrap().reply_for,
        Some(success_seq)
    );
    let frame = dialer.r.expect(ContentType::STATE_CONNECTED).await;
    let connected = StateConnected::parse(&frame).unwrap();
    assert_eq!(
        (connected.conn_id, connected.reply_for),
        (conn_id, Some(connect_seq))
    );
}

async fn dial_bind_relay_fin_close_and_revocation(io: IoBackend) {
    let mut h = Harness::start(io, Duration::from_secs(5));
    let mut host = h.authenticated(&h.pki.host, "token-api-h", false).await;
    // The OpenZiti C SDK 0.29.3 speaks only TLS 1.2.
    let mut dialer = h.authenticated(&h.pki.dialer, "token-api-d", true).await;
    assert_eq!(dialer.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(host.version, Some(rustls::ProtocolVersion::TLSv1_3));

    bind_host(&mut h, &mut host).await;
    open_circuit(&mut dialer, &mut host, 1, 100).await;
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("weft_router_dial_setup_seconds_count{shard=\"0\"} 1\n"),
        "the dial's setup time is recorded: {metrics}"
    );

    // 1 MiB each way, at once, in Data frames of varying sizes.
    const MIB: usize = 1024 * 1024;
    let up = pattern(MIB, 1);
    let down = pattern(MIB, 2);
    let started = Instant::now();
    let (Client { r: dr, w: dw, .. }, Client { r: hr, w: hw, .. }) = (&mut dialer, &mut host);
    let ((), (), (at_host, _), (at_dialer, _)) = tokio::join!(
        dw.data(1, &up),
        hw.data(100, &down),
        hr.data(100, MIB),
        dr.data(1, MIB),
    );
    let elapsed = started.elapsed();
    assert_eq!(Sha256::digest(&at_host), Sha256::digest(&up));
    assert_eq!(Sha256::digest(&at_dialer), Sha256::digest(&down));
    assert_eq!(at_host, up);
    assert_eq!(at_dialer, down);
    eprintln!(
        "relayed 2 x 1 MiB through the router in {elapsed:?} ({:.1} MB/s aggregate)",
        2.0 * MIB as f64 / elapsed.as_secs_f64() / 1e6
    );

    // FIN from the dialer reaches the host as a FIN.
    dialer
        .w
        .send(|s, out| {
            Data {
                conn_id: 1,
                seq: 1000,
                flags: FLAG_FIN,
                payload: b"",
            }
            .encode(s, out)
        })
        .await;
    let (rest, fin) = host.r.data(100, 1).await;
    assert!(fin && rest.is_empty());

    // The dialer closes; the host is told.
    dialer
        .w
        .send(|s, out| {
            StateClosed {
                conn_id: 1,
                seq: 1001,
                reply_for: None,
                reason: b"done",
            }
            .encode(s, out)
        })
        .await;
    let frame = host.r.expect(ContentType::STATE_CLOSED).await;
    assert_eq!(StateClosed::parse(&frame).unwrap().conn_id, 100);

    let metrics = h.metrics().await;
    assert!(
        metrics.contains("weft_router_circuits_opened_total{shard=\"0\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "weft_router_bytes_relayed_total{{shard=\"0\"}} {}\n",
            2 * MIB
        )),
        "{metrics}"
    );

    // Revocation of the Dial session closes the dialer's circuit at once.
    open_circuit(&mut dialer, &mut host, 2, 101).await;
    let revoked = Instant::now();
    h.send(ShardCommand::Update(pb::StateUpdate {
        revision: 2,
        sessions_removed: vec!["dial-1".into()],
        ..Default::default()
    }));
    let frame = dialer.r.expect(ContentType::STATE_CLOSED).await;
    let latency = revoked.elapsed();
    let closed = StateClosed::parse(&frame).unwrap();
    assert_eq!(closed.conn_id, 2);
    assert_eq!(closed.reason, b"session closed");
    let frame = host.r.expect(ContentType::STATE_CLOSED).await;
    assert_eq!(StateClosed::parse(&frame).unwrap().conn_id, 101);
    eprintln!("dial session revoked -> StateClosed in {latency:?}");

    // Removing the host's API session closes its TLS connection, and its terminator goes.
    h.send(ShardCommand::Update(pb::StateUpdate {
        revision: 3,
        api_sessions_removed: vec!["api-h".into()],
        ..Default::default()
    }));
    let frames = host.r.until_closed().await;
    assert!(
        frames
            .iter()
            .all(|f| f.content_type() == ContentType::STATE_CLOSED),
        "{frames:?}"
    );
    assert_eq!(
        h.request().await,
        ShardRequest::Control(ControlRequest::RemoveTerminator {
            terminator_id: "term-1".into()
        })
    );
    // The dialer's connection stays up: a new Connect is answered (no terminator now).
    let seq = dialer
        .w
        .send(|s, out| {
            Connect {
                conn_id: 3,
                seq: 0,
                caller_id: None,
                public_key: None,
                terminator_identity: None,
                app_data: None,
                stickiness_token: None,
                session_token: b"token-dial-1",
            }
            .encode(s, out)
        })
        .await;
    let frame = dialer.r.expect(ContentType::STATE_CLOSED).await;
    let refused = StateClosed::parse(&frame).unwrap();
    assert_eq!(refused.reply_for, Some(seq));
    assert_eq!(refused.reason, b"Invalid Session");
    h.stop();
}

async fn client_without_certificate_is_refused(io: IoBackend) {
    let h = Harness::start(io, Duration::from_secs(5));
    // TLS 1.2: the server refuses during the handshake.
    assert!(h.connect(None, true).await.is_err());
    // TLS 1.3: the client may finish first; the server's alert then ends the stream
    // before any hello is answered.
    if let Ok(mut c) = h.connect(None, false).await {
        let _ =
            c.w.raw()
                .write_all(&{
                    let mut out = BytesMut::new();
                    Hello {
                        session_token: b"token-api-d",
                        client_info: b"",
                    }
                    .encode(0, &mut out)
                    .unwrap();
                    out
                })
                .await;
        assert!(c.r.until_closed().await.is_empty());
    }
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("weft_router_handshakes_failed_total{shard=\"0\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_router_connections_accepted_total{shard=\"0\"} 0\n"),
        "{metrics}"
    );
    h.stop();
}

async fn connections_beyond_the_shard_cap_are_refused(io: IoBackend) {
    let h = Harness::start_with(io, |s| s.max_conns_per_shard = 1);
    let first = h.authenticated(&h.pki.dialer, "token-api-d", false).await;
    // The second finishes its handshake and is closed before anything is read.
    let mut second = h.connect(Some(&h.pki.host), false).await.unwrap();
    assert!(second.r.until_closed().await.is_empty());
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("weft_router_connections_refused_total{shard=\"0\"} 1\n"),
        "{metrics}"
    );
    drop(first);
    h.stop();
}

async fn silent_client_is_closed_after_the_hello_timeout(io: IoBackend) {
    let h = Harness::start(io, Duration::from_millis(300));
    let mut c = h.connect(Some(&h.pki.dialer), true).await.unwrap();
    let started = Instant::now();
    assert!(c.r.until_closed().await.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // `until_closed` fails the test beyond WAIT: no upper bound that a loaded machine
    // could miss.
    h.stop();
}

async fn silent_tcp_client_is_dropped_after_the_handshake_deadline(io: IoBackend) {
    let h = Harness::start_with(io, |s| s.handshake_timeout = Duration::from_millis(300));
    // A TCP connection that never starts TLS: the read in flight is cut off by the
    // deadline and the socket closed (on io_uring the descriptor must not leak).
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    let waited = started.elapsed();
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // `until_closed` fails the test beyond WAIT: no upper bound that a loaded machine
    // could miss.
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("weft_router_handshakes_failed_total{shard=\"0\"} 1\n"),
        "{metrics}"
    );
    h.stop();
}

async fn malformed_frame_closes_only_that_connection(io: IoBackend) {
    let h = Harness::start(io, Duration::from_secs(5));
    let mut good = h.authenticated(&h.pki.host, "token-api-h", false).await;
    let mut bad = h.authenticated(&h.pki.dialer, "token-api-d", true).await;
    // A frame with a wrong magic.
    bad.w.raw().write_all(&[0xAB; 40]).await.unwrap();
    assert!(bad.r.until_closed().await.is_empty());
    // The other connection still answers: a Connect with an unknown session is refused.
    let seq = good
        .w
        .send(|s, out| {
            Connect {
                conn_id: 9,
                seq: 0,
                caller_id: None,
                public_key: None,
                terminator_identity: None,
                app_data: None,
                stickiness_token: None,
                session_token: b"no-such-session",
            }
            .encode(s, out)
        })
        .await;
    let frame = good.r.expect(ContentType::STATE_CLOSED).await;
    assert_eq!(StateClosed::parse(&frame).unwrap().reply_for, Some(seq));
    h.stop();
}

/// A TLS 1.2 ClientHello as mbedTLS sends it to a router addressed by IP: SNI
/// "127.0.0.1", ECDHE AEAD suites, P-256/X25519, RSA/ECDSA PKCS#1 signatures.
fn client_hello_with_ip_sni() -> Vec<u8> {
    fn u16be(v: usize) -> [u8; 2] {
        u16::try_from(v).unwrap().to_be_bytes()
    }
    let host = b"127.0.0.1";
    let mut sni = vec![0x00];
    sni.extend_from_slice(&u16be(host.len()));
    sni.extend_from_slice(host);
    let mut sni_list = u16be(sni.len()).to_vec();
    sni_list.extend_from_slice(&sni);
    let extensions: Vec<(u16, Vec<u8>)> = vec![
        (0x0000, sni_list),
        (0x000a, vec![0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]),
        (0x000b, vec![0x01, 0x00]),
        (0x000d, vec![0x00, 0x06, 0x04, 0x01, 0x04, 0x03, 0x05, 0x01]),
        (0xff01, vec![0x00]),
    ];
    let mut ext_bytes = Vec::new();
    for (kind, body) in extensions {
        ext_bytes.extend_from_slice(&kind.to_be_bytes());
        ext_bytes.extend_from_slice(&u16be(body.len()));
        ext_bytes.extend_from_slice(&body);
    }
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[0x5a; 32]);
    hello.push(0);
    let suites: [u16; 6] = [0xc02f, 0xc030, 0xcca8, 0xc02b, 0xc02c, 0xcca9];
    hello.extend_from_slice(&u16be(suites.len() * 2));
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[0x01, 0x00]);
    hello.extend_from_slice(&u16be(ext_bytes.len()));
    hello.extend_from_slice(&ext_bytes);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16be(hello.len()));
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16be(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

async fn ip_literal_sni_does_not_break_the_handshake(io: IoBackend) {
    let h = Harness::start(io, Duration::from_secs(5));
    // The server answers a ClientHello whose SNI is an IP literal with a ServerHello,
    // not an alert.
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(&client_hello_with_ip_sni()).await.unwrap();
    let mut head = [0u8; 6];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0], 0x16, "expected a handshake record, got {head:?}");
    assert_eq!(head[5], 0x02, "expected a ServerHello, got {head:?}");
    drop(tcp);

    // A whole handshake and hello with SNI "127.0.0.1", by OpenSSL (which sends an IP
    // literal as SNI as mbedTLS does) when it is installed.
    // A directory of this test's own (the epoll and uring variants may run at once).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cert = dir.join("c.pem");
    let key = dir.join("k.pem");
    let ca = dir.join("ca.pem");
    std::fs::write(&cert, &h.pki.dialer.cert_pem).unwrap();
    std::fs::write(&key, &h.pki.dialer.key_pem).unwrap();
    std::fs::write(&ca, &h.pki.ca_pem).unwrap();
    let addr = h.addr.to_string();
    let mut hello = BytesMut::new();
    Hello {
        session_token: b"token-api-d",
        client_info: b"openssl",
    }
    .encode(0, &mut hello)
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-servername",
                "127.0.0.1",
                "-tls1_2",
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .arg("-CAfile")
            .arg(&ca)
            .args(["-quiet", "-no_ign_eof"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            return None;
        };
        let mut stdin = child.stdin.take()?;
        stdin.write_all(&hello).ok()?;
        // Read what comes back until a whole frame is there (or 5 s), then close our
        // side: a fixed pause could close before a loaded machine answered.
        let mut stdout = child.stdout.take()?;
        let (chunks, received) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut chunk) {
                if chunks.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut frame = None;
        while frame.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(chunk) = received.recv_timeout(left) else {
                break;
            };
            decoder.extend_from_slice(&chunk);
            if let Ok(Decoded::Frame(f)) = decoder.decode() {
                frame = Some(f);
            }
        }
        drop(stdin);
        while child.try_wait().ok()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let output = child.wait_with_output().ok()?;
        let _ = reader.join();
        Some((frame, output.stderr))
    })
    .await
    .unwrap();
    match output {
        None => eprintln!("openssl not available: full IP-SNI handshake skipped"),
        Some((frame, stderr)) => {
            let Some(frame) = frame else {
                panic!(
                    "no hello Result through openssl: {}",
                    String::from_utf8_lossy(&stderr)
                )
            };
            assert!(HelloResult::parse(&frame).unwrap().success);
            eprintln!("openssl: TLS 1.2 handshake with SNI 127.0.0.1 and hello answered");
        }
    }
    h.stop();
}

async fn slow_reader_pauses_the_writer_and_resumes_it(io: IoBackend) {
    let mut h = Harness::start_with(io, |s| s.forward.window = 64 * 1024);
    let mut host = h.authenticated(&h.pki.host, "token-api-h", false).await;
    let mut dialer = h.authenticated(&h.pki.dialer, "token-api-d", true).await;
    bind_host(&mut h, &mut host).await;
    open_circuit(&mut dialer, &mut host, 1, 100).await;

    // 2 MiB toward a host that starts reading only after a while: the router pauses the
    // dialer (window 64 KiB) instead of buffering, and resumes it as the host drains.
    const LEN: usize = 2 * 1024 * 1024;
    let up = pattern(LEN, 3);
    let (Client { w: dw, .. }, Client { r: hr, .. }) = (&mut dialer, &mut host);
    let reader = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        hr.data(100, LEN).await
    };
    let ((), (at_host, _)) = tokio::join!(dw.data(1, &up), reader);
    assert_eq!(at_host, up);
    let metrics = h.metrics().await;
    let pauses: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weft_router_pauses_total{shard=\"0\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pauses > 0, "{metrics}");
    h.stop();
}

/// A peer that floods requests the router answers (latency probes, and Connects it
/// refuses) and reads nothing: once the router's answers fill
/// the connection's reply budget it stops reading that connection, so the flood stalls
/// after a bounded amount (socket buffers and one read's worth) instead of the router
/// reading on and queueing answers without limit; once the peer reads, every probe is
/// answered.
async fn a_peer_that_never_reads_its_answers_is_not_read_either(io: IoBackend) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const FLOOD: usize = 96 * 1024 * 1024;
    const PROBES: usize = 4096;
    let h = Harness::start(io, Duration::from_secs(5));
    let Client { mut r, mut w, .. } = h.authenticated(&h.pki.dialer, "token-api-d", false).await;
    // The router runs in this process: its memory is this process's.
    let rss_before = rss_kib();
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Writes batches of probes until told to stop (after the batch in progress).
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        tokio::spawn(async move {
            let mut batch = BytesMut::new();
            while !stop.load(Ordering::Relaxed) && written.load(Ordering::Relaxed) < FLOOD {
                batch.clear();
                for _ in 0..PROBES / 2 {
                    // A Connect with another API session's Bind session: refused at
                    // once with StateClosed, another answer to queue.
                    w.sequence += 1;
                    Connect {
                        conn_id: 1000,
                        seq: 0,
                        caller_id: None,
                        public_key: None,
                        terminator_identity: None,
                        app_data: None,
                        stickiness_token: None,
                        session_token: b"token-bind-1",
                    }
                    .encode(w.sequence, &mut batch)
                    .unwrap();
                    w.sequence += 1;
                    LatencyProbe {
                        probe_time: Some(&[1, 2, 3, 4, 5, 6, 7, 8]),
                    }
                    .encode(w.sequence, &mut batch)
                    .unwrap();
                }
                w.raw().write_all(&batch).await.unwrap();
                w.raw().flush().await.unwrap();
                written.fetch_add(batch.len(), Ordering::Relaxed);
            }
            w.sequence
        })
    };
    // Stalled: nothing more went in for two seconds and the router says it stopped
    // reading for the reply budget (a loaded machine may pause the writer without the
    // router having stopped: then the flood goes on).
    let reply_budget_pauses = async || -> u64 {
        let metrics = h.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("weft_router_reply_budget_pauses_total{shard=\"0\"} "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = written.load(Ordering::Relaxed);
        assert!(
            now < FLOOD,
            "the router read {now} B of probes from a peer that reads nothing"
        );
        if now == seen && reply_budget_pauses().await > 0 {
            break;
        }
        seen = now;
    }
    stop.store(true, Ordering::Relaxed);
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("the flood stalled after {seen} B; RSS grew by {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB under the flood");

    // The peer reads: the router reads again and answers every probe, those of the
    // batch still being written included.
    let mut last_answered = 0;
    let mut last_sent = None;
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        let mut writer = Some(writer);
        loop {
            if last_sent.is_some_and(|last| last_answered == last) {
                return;
            }
            tokio::select! {
                done = async { writer.as_mut().unwrap().await }, if writer.is_some() => {
                    last_sent = Some(done.unwrap());
                    writer = None;
                }
                frame = r.next() => {
                    let frame = frame.expect("connection closed");
                    if let Ok(reply) = weft_wire::edge::LatencyReply::parse(&frame) {
                        assert!(reply.reply_for > last_answered, "answers in order");
                        last_answered = reply.reply_for;
                    }
                }
            }
        }
    });
    assert!(
        answered.await.is_ok(),
        "probes answered up to {last_answered} of {last_sent:?}"
    );
    h.stop();
}

/// This process's resident memory, KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn shutdown_lets_circuits_run_for_the_grace_period_then_closes(io: IoBackend) {
    let mut h = Harness::start(io, Duration::from_secs(5));
    let mut host = h.authenticated(&h.pki.host, "token-api-h", false).await;
    let mut dialer = h.authenticated(&h.pki.dialer, "token-api-d", true).await;
    bind_host(&mut h, &mut host).await;
    open_circuit(&mut dialer, &mut host, 1, 100).await;

    const GRACE: Duration = Duration::from_secs(3);
    let started = Instant::now();
    h.send(ShardCommand::Shutdown { grace: GRACE });
    // New connections are refused as soon as the shards take the command...
    let deadline = Instant::now() + WAIT;
    // (A connection the kernel queued just before the listener closed gets no
    // handshake: a second without one counts as refused.)
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_secs(1), h.connect(Some(&h.pki.dialer), true)).await
    {
        assert!(
            Instant::now() < deadline,
            "still accepting after the shutdown"
        );
    }
    // ...while the open circuit still carries data during the grace period.
    dialer.w.data(1, b"still here").await;
    assert_eq!(host.r.data(100, 10).await.0, b"still here");
    // Then both connections are closed.
    dialer.r.until_closed().await;
    host.r.until_closed().await;
    let closed = started.elapsed();
    assert!(closed >= GRACE - Duration::from_millis(50), "{closed:?}");
    if let Some(router) = h.router.take() {
        router.join();
    }
}

async fn several_shards_share_the_port_and_each_gets_the_sessions(io: IoBackend) {
    let h = Harness::start_with(io, |s| s.shards = 3);
    let mut clients = Vec::new();
    for i in 0..12 {
        let (id, token) = if i % 2 == 0 {
            (&h.pki.host, "token-api-h")
        } else {
            (&h.pki.dialer, "token-api-d")
        };
        clients.push(h.authenticated(id, token, i % 3 == 0).await);
    }
    let metrics = h.metrics().await;
    let per_shard: Vec<u64> = (0..3)
        .map(|shard| {
            let prefix = format!("weft_router_connections{{shard=\"{shard}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(per_shard.iter().sum::<u64>(), 12, "{metrics}");
    h.stop();
}

/// The values of metric `name` per shard, by shard index.
fn per_shard(metrics: &str, name: &str, shards: usize) -> Vec<u64> {
    (0..shards)
        .map(|shard| {
            let prefix = format!("{name}{{shard=\"{shard}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {name} for shard {shard}: {metrics}"))
                .parse()
                .unwrap()
        })
        .collect()
}

async fn circuits_cross_shards_with_data_close_and_revocation(io: IoBackend) {
    const SHARDS: usize = 2;
    const KIB256: usize = 256 * 1024;
    let mut h = Harness::start_with(io, |s| s.shards = SHARDS);
    let mut host = h.authenticated(&h.pki.host, "token-api-h", false).await;
    bind_host(&mut h, &mut host).await;
    let conns = per_shard(&h.metrics().await, "weft_router_connections", SHARDS);
    let host_shard = conns.iter().position(|n| *n == 1).unwrap();
    // Dialers until the kernel put some on the host's shard and some on the other.
    let mut dialers = Vec::new();
    let mut shard_of = Vec::new();
    let mut before = conns;
    while dialers.len() < 64 {
        dialers.push(h.authenticated(&h.pki.dialer, "token-api-d", false).await);
        let now = per_shard(&h.metrics().await, "weft_router_connections", SHARDS);
        shard_of.push((0..SHARDS).find(|s| now[*s] > before[*s]).unwrap());
        before = now;
        let crossing = shard_of.iter().filter(|s| **s != host_shard).count();
        if crossing >= 2 && crossing < shard_of.len() {
            break;
        }
    }
    let crossing = shard_of.iter().filter(|s| **s != host_shard).count();
    assert!(
        crossing >= 2,
        "no dialer landed on another shard: {shard_of:?}"
    );

    for (i, dialer) in dialers.iter_mut().enumerate() {
        let host_conn = 100 + i as u32;
        open_circuit(dialer, &mut host, 1, host_conn).await;
        let up = pattern(KIB256, i as u32);
        let down = pattern(KIB256, 1000 + i as u32);
        let (Client { r: dr, w: dw, .. }, Client { r: hr, w: hw, .. }) = (dialer, &mut host);
        let ((), (), (at_host, _), (at_dialer, _)) = tokio::join!(
            dw.data(1, &up),
            hw.data(host_conn, &down),
            hr.data(host_conn, KIB256),
            dr.data(1, KIB256),
        );
        assert!(
            at_host == up && at_dialer == down,
            "circuit {i} corrupted data"
        );
    }
    let metrics = h.metrics().await;
    let cross = per_shard(&metrics, "weft_router_circuits_cross_shard_total", SHARDS);
    let opened = per_shard(&metrics, "weft_router_circuits_opened_total", SHARDS);
    assert_eq!(cross.iter().sum::<u64>(), crossing as u64, "{metrics}");
    assert_eq!(
        opened.iter().sum::<u64>(),
        dialers.len() as u64,
        "{metrics}"
    );
    assert_eq!(
        per_shard(&metrics, "weft_router_circuits", SHARDS)
            .iter()
            .sum::<u64>(),
        dialers.len() as u64,
        "each circuit is counted once"
    );

    // The first dialer closes its circuit: the host hears of it.
    dialers[0]
        .w
        .send(|s, out| {
            StateClosed {
                conn_id: 1,
                seq: 1000,
                reply_for: None,
                reason: b"",
            }
            .encode(s, out)
        })
        .await;
    let frame = host.r.expect(ContentType::STATE_CLOSED).await;
    let closed = StateClosed::parse(&frame).unwrap();
    assert_eq!(
        (closed.conn_id, closed.reason),
        (100, &b"closed by peer"[..])
    );

    // Revoking the Dial session ends every other circuit on both shards at once.
    h.send(ShardCommand::Update(pb::StateUpdate {
        revision: 2,
        sessions_removed: vec!["dial-1".into()],
        ..Default::default()
    }));
    for dialer in dialers.iter_mut().skip(1) {
        let frame = dialer.r.expect(ContentType::STATE_CLOSED).await;
        assert_eq!(
            StateClosed::parse(&frame).unwrap().reason,
            b"session closed"
        );
    }
    let mut host_closed: Vec<u32> = Vec::new();
    for _ in 1..dialers.len() {
        let frame = host.r.expect(ContentType::STATE_CLOSED).await;
        let closed = StateClosed::parse(&frame).unwrap();
        assert_eq!(closed.reason, b"peer session closed");
        host_closed.push(closed.conn_id);
    }
    host_closed.sort_unstable();
    let expected: Vec<u32> = (1..dialers.len() as u32).map(|i| 100 + i).collect();
    assert_eq!(host_closed, expected);
    h.stop();
}

async fn hello_with_a_certificate_not_bound_to_the_session_is_answered_then_closed(io: IoBackend) {
    let h = Harness::start(io, Duration::from_secs(5));
    // The dialer's certificate with the host's API session token.
    let mut c = h.connect(Some(&h.pki.dialer), true).await.unwrap();
    c.w.send(|s, out| {
        Hello {
            session_token: b"token-api-h",
            client_info: b"",
        }
        .encode(s, out)
    })
    .await;
    let frames = c.r.until_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].content_type(), ContentType::RESULT);
    h.stop();
}

/// CPU time the shard threads (`weft-shard-*`) of this process have used so far, from
/// `/proc/self/task/*/schedstat` (zero where that is not readable). Less sensitive to a
/// busy machine than wall time.
fn shard_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("weft-shard") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
            total += Duration::from_nanos(ns);
        }
    }
    total
}

/// Throughput of the two backends, for the record (`cargo test --release -p weft-router
/// --test edge_tls -- --ignored --nocapture relay_throughput`): `WEFT_RELAY_MIB` MiB
/// (default 64) each way through one circuit, in Data frames of 1 B to 48 KiB, with the
/// TLS clients in the same process; on one shard, and on two shards with the dialer and
/// the host on different shards (the circuit crosses). Prints MB/s, and MB per
/// CPU-second of the shard threads (the router's own cost, which a busy machine
/// disturbs less); asserts only that the bytes arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run it by hand"]
async fn relay_throughput_on_both_backends() {
    let mib: usize = std::env::var("WEFT_RELAY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let len = mib * 1024 * 1024;
    let up = pattern(len, 5);
    let down = pattern(len, 6);
    let mut backends = vec![IoBackend::Epoll];
    if uring_available("relay_throughput_on_both_backends") {
        backends.push(IoBackend::Uring);
    }
    let runs: Vec<(IoBackend, bool)> = backends
        .iter()
        .flat_map(|io| [(*io, false), (*io, true)])
        .collect();
    // Twice each, alternating, so a warm-up or a noisy neighbour shows.
    for (io, cross) in runs.iter().chain(runs.iter()).copied() {
        let shards = if cross { 2 } else { 1 };
        let mut h = Harness::start_with(io, |s| s.shards = shards);
        let mut host = h.authenticated(&h.pki.host, "token-api-h", false).await;
        bind_host(&mut h, &mut host).await;
        let mut dialer = h.authenticated(&h.pki.dialer, "token-api-d", false).await;
        if cross {
            // Keep the first dialer the kernel put on the other shard.
            let mut tries = 0;
            loop {
                let conns = per_shard(&h.metrics().await, "weft_router_connections", 2);
                let terms = per_shard(&h.metrics().await, "weft_router_terminators", 2);
                let host_shard = terms.iter().position(|t| *t == 1).unwrap();
                if conns[host_shard] == 1 {
                    break;
                }
                tries += 1;
                assert!(tries < 64, "no dialer landed on the other shard");
                drop(dialer);
                tokio::time::sleep(Duration::from_millis(20)).await;
                dialer = h.authenticated(&h.pki.dialer, "token-api-d", false).await;
            }
        }
        open_circuit(&mut dialer, &mut host, 1, 100).await;
        let cpu_before = shard_cpu();
        let started = Instant::now();
        let (Client { r: dr, w: dw, .. }, Client { r: hr, w: hw, .. }) = (&mut dialer, &mut host);
        let ((), (), (at_host, _), (at_dialer, _)) =
            tokio::time::timeout(Duration::from_secs(600), async {
                tokio::join!(
                    dw.data(1, &up),
                    hw.data(100, &down),
                    hr.data(100, len),
                    dr.data(1, len)
                )
            })
            .await
            .expect("relay did not finish");
        let elapsed = started.elapsed();
        let cpu = shard_cpu().saturating_sub(cpu_before);
        assert!(at_host == up && at_dialer == down);
        let placement = if cross { "across 2 shards" } else { "1 shard" };
        eprintln!(
            "{io}, {placement}: relayed 2 x {mib} MiB in {elapsed:?}: {:.1} MB/s aggregate; \
             shard threads on CPU {cpu:?}: {:.1} MB per shard CPU-second",
            2.0 * len as f64 / elapsed.as_secs_f64() / 1e6,
            2.0 * len as f64 / cpu.as_secs_f64().max(1e-9) / 1e6
        );
        h.stop();
    }
}

/// `io = "auto"` and `io = "uring"` on whatever this host is: where io_uring works, both
/// run on it; where it does not (run the test binary under a seccomp filter that refuses
/// `io_uring_setup` to see that side), `auto` falls back to epoll and `uring` is a
/// start error that says why, not a panic.
#[test]
fn backend_selection_at_start() {
    let pki = pki();
    let settings = |io| RouterSettings {
        edge_listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        forward: ForwardConfig::default(),
        tls: Arc::new(
            weft_tls::server::edge_from_pem(
                pki.server_cert_pem.as_bytes(),
                pki.server_key_pem.as_bytes(),
                pki.ca_pem.as_bytes(),
            )
            .unwrap(),
        )
        .into(),
        handshake_timeout: Duration::from_secs(5),
        metrics_listen: None,
        max_conns_per_shard: 1024,
        io,
        link: None,
        control_stats: None,
    };
    let start = |io| {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (requests_tx, _requests) = mpsc::unbounded_channel();
        Router::start(settings(io), commands_rx, requests_tx).map(|router| (router, commands))
    };
    let stop = |(router, commands): (Router, mpsc::UnboundedSender<ShardCommand>)| {
        let backend = router.backend();
        drop(commands);
        router.join();
        backend
    };
    let available = probe_uring();
    eprintln!("io_uring available here: {available:?}");
    assert_eq!(stop(start(IoSelection::Epoll).unwrap()), IoBackend::Epoll);
    match available {
        Ok(()) => {
            assert_eq!(stop(start(IoSelection::Auto).unwrap()), IoBackend::Uring);
            assert_eq!(stop(start(IoSelection::Uring).unwrap()), IoBackend::Uring);
        }
        Err(_) => {
            assert_eq!(stop(start(IoSelection::Auto).unwrap()), IoBackend::Epoll);
            let Err(e) = start(IoSelection::Uring) else {
                panic!("io = uring started without io_uring");
            };
            let text = e.to_string();
            eprintln!("io = uring here: {text}");
            assert!(
                matches!(e, weft_router::runtime::StartError::Uring(_)),
                "{e:?}"
            );
            assert!(text.contains("io_uring was requested"), "{text}");
        }
    }
}

/// The operations endpoint: liveness, readiness (every shard answers; this router has
/// no control channel to wait for), and the metrics with the dial-setup summary's sum,
/// the process series and the build information.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_endpoint_serves_health_readiness_and_process_metrics() {
    let h = Harness::start(IoBackend::Epoll, Duration::from_secs(5));
    let health = h.get("/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = h.get("/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let text = h.metrics().await;
    for series in [
        "weft_router_dial_setup_seconds_sum{shard=\"0\"} ",
        "weft_build_info{component=\"router\",version=\"",
        "\nprocess_resident_memory_bytes ",
        "\nprocess_open_fds ",
        "\nweft_ops_connections_refused_total 0",
    ] {
        assert!(text.contains(series), "no {series} in {text}");
    }
    assert!(h.get("/nothing").await.starts_with("HTTP/1.1 404"));
    h.stop();
}

/// The metrics listener closes a connection that sends nothing, or a request head
/// larger than it reads, within its deadline (5 s): idle clients hold nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_connections_that_say_nothing_or_too_much_are_closed() {
    let h = Harness::start(IoBackend::Epoll, Duration::from_secs(5));
    let addr = h.router.as_ref().unwrap().metrics_addr().unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut flood = TcpStream::connect(addr).await.unwrap();
    // An endless header line: the listener stops reading it and closes.
    let _ = flood.write_all(&vec![b'a'; 64 * 1024]).await;
    for (what, sock) in [("silent", &mut silent), ("oversized", &mut flood)] {
        let mut buf = [0u8; 256];
        let end = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the {what} metrics connection stayed open");
    }
    // The listener still answers.
    assert!(h.metrics().await.contains("weft_router_connections"));
    h.stop();
}
