//! A real `weft-controller` process and a whole `weft-router` (control client, shards
//! and bridge, in-process through `weft_router::node`), driven by two TLS edge clients
//! that enrolled and logged in at the controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_router::config::RouterConfig;
use weft_router::node::Node;
use weft_testkit::{Ctl, EdgeClient as Client, free_port, init_logs, init_logs_or, pattern};
use weft_wire::edge::{Bind, Data, Dial, DialSuccess, HelloResult, StateClosed, StateConnected};
use weft_wire::{ContentType, Frame};

const WAIT: Duration = Duration::from_secs(5);
/// Longer than the router's longest reconnect backoff (10 s, `weft_router::node`), so a
/// router whose control connection was refused for a while is given time to retry.
const RECONNECT_WAIT: Duration = Duration::from_secs(15);

// ---- an edge client: weft_testkit::EdgeClient ----

/// Connects with the identity's certificate, trusting the controller CA, and says
/// hello with the API session token.
async fn connect(port: u16, ca_pem: &str, cert: &str, key: &str, token: &str) -> Client {
    try_connect(port, ca_pem, cert, key, token)
        .await
        .expect("hello refused: the router closed the connection")
}

/// Connects and says hello; None when the router refuses the TLS handshake or
/// closes the connection instead of answering. `cert` is the PEM chain presented,
/// leaf first; `key` the leaf's key. (Like OpenZiti's router, it answers a hello with
/// an unknown token with success and then closes the connection, so a Some is not yet
/// proof of acceptance.)
async fn try_connect(
    port: u16,
    ca_pem: &str,
    cert: &str,
    key: &str,
    token: &str,
) -> Option<Client> {
    let config = weft_tls::client::verified_from_pem(
        ca_pem.as_bytes(),
        Some((cert.as_bytes(), key.as_bytes())),
    )
    .unwrap();
    // A handshake the router refuses (a client certificate it does not accept) is a
    // refused hello too.
    let mut c = Client::connect(([127, 0, 0, 1], port).into(), Arc::new(config))
        .await
        .ok()?;
    let (seq, frame) = c.hello(token).await?;
    assert_eq!(frame.content_type(), ContentType::RESULT, "{frame:?}");
    let result = HelloResult::parse(&frame).unwrap();
    assert!(result.success, "hello refused");
    assert_eq!(result.reply_for, seq);
    Some(c)
}

fn control_addr(ctl: &Ctl) -> String {
    std::fs::read_to_string(ctl.dir.join("control.addr"))
        .unwrap()
        .trim()
        .to_string()
}

/// Runs a scenario `async fn NAME(io: &str)` as two tests, `NAME::epoll` and
/// `NAME::uring` (the router's `io` backend); the io_uring one is skipped, with the
/// reason printed, on a host where io_uring cannot be used.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn epoll() {
                super::$name("epoll").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn uring() {
                match weft_router::runtime::probe_uring() {
                    Ok(()) => super::$name("uring").await,
                        // CI must run what it claims to run.
                    Err(e) if std::env::var_os("CI").is_some_and(|v| v == "true") => panic!(
                        "{}::uring: io_uring is not available under CI=true: {e}",
                        stringify!($name)
                    ),
                    Err(e) => eprintln!(
                        "SKIPPED {}::uring: io_uring is not available on this host: {e}",
                        stringify!($name)
                    ),
                }
            }
        }
    )*};
}

on_both_backends!(
    router_serves_sessions_pushed_by_the_controller,
    only_the_tls_leaf_identifies_an_edge_client,
    an_sdk_reader_tells_a_clean_close_from_an_abrupt_one,
    the_router_enforces_edge_router_and_service_edge_router_policies,
    router_resynchronises_after_losing_the_control_connection,
    a_killed_router_restarts_at_once_on_the_same_ports,
);

/// A router killed (SIGKILL) and started again at once, as a supervisor does, binds its
/// edge, link and metrics ports again every time: nothing of the dead process (an
/// io_uring operation the kernel cancels after the process is gone, say) keeps one of
/// them listening.
async fn a_killed_router_restarts_at_once_on_the_same_ports(io: &str) {
    let ctl = Ctl::start();
    let admin = ctl.admin().await;
    admin.open_routers().await;
    let (link, metrics) = (free_port(), free_port());
    let extra = format!(
        "metrics.listen = \"127.0.0.1:{metrics}\"\n[link]\nlisten = \"127.0.0.1:{link}\"\n"
    );
    let mut router = weft_testkit::Router::start_configured(
        &admin,
        "restarted",
        &ctl.control_addr(),
        &extra,
        &["--io", io],
    )
    .await;
    // Each restart failed about one time in two when the shards accepted on the ring.
    for _ in 0..6 {
        router.restart(&admin).await;
    }
    // The last process is up (its edge port answered); its other listeners come up
    // beside it. A port that stays refused means the process could not bind it.
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [router.edge_port, link, metrics] {
        while let Err(e) = TcpStream::connect(("127.0.0.1", port)).await {
            assert!(
                Instant::now() < deadline,
                "port {port} refused after the last restart: {e}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Creates an edge router listening on a free port, enrolls it through its
/// `router.toml` (controller at `controller`, I/O backend `io`), and starts it; returns
/// the node, the router id and the edge port.
async fn start_router(
    ctl: &Ctl,
    admin: &str,
    tmp: &tempfile::TempDir,
    controller: &str,
    io: &str,
) -> (Node, String, u16) {
    let port = free_port();
    let (status, v) = ctl
        .create(
            admin,
            "edge-routers",
            json!({"name": "edge-e2e", "supportedProtocols": {"tls": format!("tls://localhost:{port}")}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let router_id = v["data"]["id"].as_str().unwrap().to_string();
    let jwt_path = tmp.path().join("router.jwt");
    std::fs::write(&jwt_path, v["data"]["enrollmentJwt"].as_str().unwrap()).unwrap();
    let config_path = tmp.path().join("router.toml");
    std::fs::write(
        &config_path,
        format!(
            "[identity]\ncert = \"certs/server.cert\"\nkey = \"certs/server.key\"\n\
             [edge]\nlisten = \"127.0.0.1:{port}\"\nadvertised_host = \"localhost\"\n\
             [control]\ncontrollers = [\"{controller}\"]\n\
             [runtime]\nshutdown_grace_ms = 100\nio = \"{io}\"\n"
        ),
    )
    .unwrap();
    let config = RouterConfig::load(&config_path).unwrap();
    let enrolled =
        weft_router::enroll::enroll(&jwt_path, &config.cert_dir(), &config.server_cert_names())
            .await
            .unwrap();
    assert_eq!(enrolled.router_id, router_id);
    let node = Node::start(&config).unwrap();
    assert_eq!(node.local_addr().port(), port);
    assert_eq!(node.backend().name(), io);
    (node, router_id, port)
}

/// A controller and an enrolled router (backend `io`) that the controller sees online.
struct Net {
    ctl: Ctl,
    admin: String,
    node: Node,
    port: u16,
    /// The router's directory.
    _tmp: tempfile::TempDir,
}

impl Net {
    async fn start(io: &str) -> Self {
        // The router runs in this process: its connection events go with a failure.
        init_logs_or("warn,weft_router=debug");
        let ctl = Ctl::start();
        let admin = ctl.admin_token().await;
        let tmp = tempfile::tempdir().unwrap();
        let (node, router_id, port) =
            start_router(&ctl, &admin, &tmp, &control_addr(&ctl), io).await;
        wait_online(&ctl, &admin, &router_id, true).await;
        Self {
            ctl,
            admin,
            node,
            port,
            _tmp: tmp,
        }
    }
}

/// The model of [`model`] and an established circuit: "dialer" on conn 1, "host"
/// bound as listener 7 and accepted as conn 100.
struct Circuit {
    svc: String,
    d: Login,
    dial_token: String,
    host: Client,
    dialer: Client,
    ca: String,
}

impl Circuit {
    async fn open(ctl: &Ctl, admin: &str, port: u16) -> Self {
        let (svc, _) = model(ctl, admin).await;
        let d = login(ctl, admin, "dialer").await;
        let h = login(ctl, admin, "host").await;
        let dial_token = session(ctl, &d, &svc, "Dial").await;
        let bind_token = session(ctl, &h, &svc, "Bind").await;
        let ca = ctl.ca_pem();
        let mut host = bound_host(port, &ca, &h, &bind_token).await;
        let mut dialer = connect(port, &ca, &d.cert, &d.key, &d.token).await;
        dial(&mut dialer, &mut host, &dial_token).await;
        Self {
            svc,
            d,
            dial_token,
            host,
            dialer,
            ca,
        }
    }
}

/// Waits until the controller reports the router online (or offline).
async fn wait_online(ctl: &Ctl, admin: &str, router_id: &str, online: bool) {
    let deadline = Instant::now() + RECONNECT_WAIT;
    while ctl
        .get_ok(admin, &format!("/edge-routers/{router_id}"))
        .await["data"]["isOnline"]
        != online
    {
        assert!(Instant::now() < deadline, "router online is not {online}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The model: service "echo" (no end-to-end encryption), "#dialer" may dial it,
/// "#host" may bind it, every identity and service may use every router; returns the
/// service id and the Dial policy id.
async fn model(ctl: &Ctl, admin: &str) -> (String, String) {
    let svc = ctl
        .create_ok(
            admin,
            "services",
            json!({"name": "echo", "roleAttributes": ["echo"], "encryptionRequired": false}),
        )
        .await;
    let mut dial_policy = String::new();
    for (name, ty, role) in [("bind", "Bind", "#host"), ("dial", "Dial", "#dialer")] {
        let id = ctl
            .create_ok(
                admin,
                "service-policies",
                json!({"name": name, "type": ty, "identityRoles": [role], "serviceRoles": ["#echo"]}),
            )
            .await;
        if ty == "Dial" {
            dial_policy = id;
        }
    }
    ctl.create_ok(
        admin,
        "edge-router-policies",
        json!({"name": "erp", "edgeRouterRoles": ["#all"], "identityRoles": ["#all"]}),
    )
    .await;
    ctl.create_ok(
        admin,
        "service-edge-router-policies",
        json!({"name": "serp", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
    )
    .await;
    (svc, dial_policy)
}

/// An enrolled identity logged in with its certificate.
struct Login {
    cert: String,
    key: String,
    http: reqwest::Client,
    token: String,
}

async fn login(ctl: &Ctl, admin: &str, name: &str) -> Login {
    let (_, cert, key) = ctl.enrolled_identity(admin, name, &[name]).await;
    let (http, token) = ctl.cert_login(&cert, &key).await;
    Login {
        cert,
        key,
        http,
        token,
    }
}

/// POST /sessions; returns the session token.
async fn session(ctl: &Ctl, who: &Login, svc: &str, ty: &str) -> String {
    let res = who
        .http
        .post(ctl.client_url("/sessions"))
        .header("zt-session", &who.token)
        .json(&json!({"serviceId": svc, "type": ty}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["data"]["token"].as_str().unwrap().to_string()
}

/// The host binds as listener 7 and gets StateConnected (the router registered the
/// terminator at the controller); false when the connection closes instead.
async fn try_bind(host: &mut Client, bind_token: &str) -> bool {
    host.w.sequence += 1;
    let bind_seq = host.w.sequence;
    let mut out = BytesMut::new();
    Bind {
        conn_id: 7,
        seq: 0,
        caller_id: None,
        public_key: None,
        terminator_identity: None,
        cost: None,
        precedence: None,
        session_token: bind_token.as_bytes(),
    }
    .encode(bind_seq, &mut out)
    .unwrap();
    if host.w.raw().write_all(&out).await.is_err() {
        return false;
    }
    let Some(frame) = tokio::time::timeout(WAIT, host.next())
        .await
        .expect("no answer to the Bind in time")
    else {
        return false;
    };
    assert_eq!(
        frame.content_type(),
        ContentType::STATE_CONNECTED,
        "{frame:?}"
    );
    let connected = StateConnected::parse(&frame).unwrap();
    assert_eq!(
        (connected.conn_id, connected.reply_for),
        (7, Some(bind_seq))
    );
    true
}

/// Connects the host and binds, retrying until the router knows its API session and
/// Bind session (the change feed may trail the REST answers a little).
async fn bound_host(port: u16, ca: &str, h: &Login, bind_token: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(mut host) = try_connect(port, ca, &h.cert, &h.key, &h.token).await {
            if try_bind(&mut host, bind_token).await {
                return host;
            }
        }
        assert!(Instant::now() < deadline, "the router never knew the host");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dialer connects on conn 1; the host accepts the Dial as conn 100.
async fn dial(dialer: &mut Client, host: &mut Client, dial_token: &str) {
    let deadline = Instant::now() + WAIT;
    let (connect_seq, dial_frame) = loop {
        let connect_seq = dialer.send_connect(1, dial_token).await;
        // Watch the dialer too: a refusal names its reason instead of a bare timeout.
        let refused = tokio::select! {
            frame = host.expect(ContentType::DIAL) => break (connect_seq, frame),
            answer = dialer.frame_or_close() => match answer {
                Some(frame) => match StateClosed::parse(&frame) {
                    Ok(closed) => String::from_utf8_lossy(closed.reason).into_owned(),
                    Err(_) => panic!("the dialer got {frame:?} before the host got a Dial"),
                },
                None => panic!("the router closed the dialer's connection instead of dialing"),
            },
        };
        // The host's shard confirms its terminator to the host first and announces it
        // to the other shards meanwhile: a dialer on another shard may come a moment
        // early.
        assert!(
            refused.contains("no terminators") && Instant::now() < deadline,
            "the router refused the dial: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(Dial::parse(&dial_frame).unwrap().conn_id, 7);
    let (success_seq, frame) = accept_dial(host, &dial_frame, 100).await;
    assert_eq!(
        StateConnected::parse(&frame).unwrap().reply_for,
        Some(success_seq)
    );
    let frame = dialer.expect(ContentType::STATE_CONNECTED).await;
    let connected = StateConnected::parse(&frame).unwrap();
    assert_eq!(
        (connected.conn_id, connected.reply_for),
        (1, Some(connect_seq))
    );
}

async fn router_serves_sessions_pushed_by_the_controller(io: &str) {
    init_logs();
    let started = Instant::now();
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let tmp = tempfile::tempdir().unwrap();
    let control_addr = control_addr(&ctl);
    let (node, router_id, port) = start_router(&ctl, &admin, &tmp, &control_addr, io).await;
    wait_online(&ctl, &admin, &router_id, true).await;

    let (svc, dial_policy) = model(&ctl, &admin).await;
    let d = login(&ctl, &admin, "dialer").await;
    let h = login(&ctl, &admin, "host").await;
    let dial_token = session(&ctl, &d, &svc, "Dial").await;
    let bind_token = session(&ctl, &h, &svc, "Bind").await;

    // Edge clients; Bind: the router registers the terminator at the controller.
    let ca = ctl.ca_pem();
    let mut host = bound_host(port, &ca, &h, &bind_token).await;
    let mut dialer = connect(port, &ca, &d.cert, &d.key, &d.token).await;

    let terms = ctl.get_ok(&admin, "/terminators").await;
    let terms = terms["data"].as_array().unwrap();
    assert_eq!(terms.len(), 1, "{terms:?}");
    assert_eq!(terms[0]["serviceId"], svc.as_str(), "{terms:?}");
    assert_eq!(terms[0]["routerId"], router_id.as_str(), "{terms:?}");

    // Dial: the host accepts.
    dial(&mut dialer, &mut host, &dial_token).await;

    // 256 KiB each way.
    const LEN: usize = 256 * 1024;
    let up = pattern(LEN, 1);
    let down = pattern(LEN, 2);
    let (Client { r: dr, w: dw, .. }, Client { r: hr, w: hw, .. }) = (&mut dialer, &mut host);
    let ((), (), (at_host, _), (at_dialer, _)) = tokio::join!(
        dw.data(1, &up),
        hw.data(100, &down),
        hr.data(100, LEN),
        dr.data(1, LEN),
    );
    assert!(at_host == up, "host received different bytes");
    assert!(at_dialer == down, "dialer received different bytes");

    // Deleting the Dial policy revokes the Dial session: the dialer's circuit closes.
    let res = ctl
        .http()
        .delete(ctl.mgmt(&format!("/service-policies/{dial_policy}")))
        .header("zt-session", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t0 = Instant::now();
    let frame = dialer.expect(ContentType::STATE_CLOSED).await;
    assert_eq!(StateClosed::parse(&frame).unwrap().conn_id, 1);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // Logging the host out closes its edge connection.
    let res = h
        .http
        .delete(ctl.client_url("/current-api-session"))
        .header("zt-session", &h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t0 = Instant::now();
    tokio::time::timeout(WAIT, async { while host.next().await.is_some() {} })
        .await
        .expect("host connection not closed after logout");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    node.shutdown().await;
    wait_online(&ctl, &admin, &router_id, false).await;
    eprintln!("router end-to-end took {:?}", started.elapsed());
}

/// A client that holds the key of its own certificate but not of a victim's, and
/// presents the victim's certificate after its own leaf with the victim's API session
/// token, must not get the victim's identity (GHSA-mrpr-756c-xm47): neither with a leaf
/// the controller's CA issued (the hello is refused and a Connect on the victim's Dial
/// session is never connected) nor with a self-signed leaf (the TLS handshake fails).
async fn only_the_tls_leaf_identifies_an_edge_client(io: &str) {
    let Net {
        ctl,
        admin,
        node,
        port,
        _tmp,
    } = Net::start(io).await;
    let mallory = login(&ctl, &admin, "mallory").await;
    // The victim itself gets through: the router knows its API and Dial sessions.
    let Circuit {
        d: victim,
        dial_token,
        mut host,
        dialer: _genuine,
        ca,
        ..
    } = Circuit::open(&ctl, &admin, port).await;

    // Mallory's CA-issued leaf (and key), then the victim's certificate.
    let chain = format!("{}\n{}", mallory.cert, victim.cert);
    if let Some(mut forged) = try_connect(port, &ca, &chain, &mallory.key, &victim.token).await {
        let sent = forged.send_connect(9, &dial_token).await;
        // The host is never asked to accept a circuit for the forged client.
        let at_host = tokio::time::timeout(Duration::from_secs(1), host.next()).await;
        assert!(
            at_host.is_err(),
            "the host got a frame for the forged client: {at_host:?}"
        );
        let answer = tokio::time::timeout(WAIT, forged.next())
            .await
            .expect("the router neither answered nor closed");
        assert!(
            answer
                .as_ref()
                .is_none_or(|f| f.content_type() != ContentType::STATE_CONNECTED),
            "Connect {sent} as the victim was connected: {answer:?}"
        );
    }

    // A self-signed leaf of its own, then the victim's certificate: the chain does not
    // verify against the controller's CA.
    let own_key = rcgen::KeyPair::generate().unwrap();
    let own = rcgen::CertificateParams::new(vec!["dialer".to_owned()])
        .unwrap()
        .self_signed(&own_key)
        .unwrap();
    let chain = format!("{}\n{}", own.pem(), victim.cert);
    assert!(
        try_connect(port, &ca, &chain, &own_key.serialize_pem(), &victim.token)
            .await
            .is_none(),
        "a self-signed leaf got through"
    );
    assert!(
        try_connect(
            port,
            &ca,
            &own.pem(),
            &own_key.serialize_pem(),
            &victim.token
        )
        .await
        .is_none(),
        "a self-signed certificate got through"
    );
    node.shutdown().await;
}

/// The raw host accepts the Dial it was sent as `child`.
async fn accept_raw(host: &mut Client, child: u32) {
    let dial = host.expect(ContentType::DIAL).await;
    accept_dial(host, &dial, child).await;
}

/// The host answers the Dial frame `dial` with DialSuccess, the new conn being
/// `child`; returns the DialSuccess sequence and the StateConnected that answers it.
async fn accept_dial(host: &mut Client, dial: &Frame, child: u32) -> (i32, Frame) {
    let listener = Dial::parse(dial).unwrap().conn_id;
    let seq = host
        .send(|s, out| {
            DialSuccess {
                conn_id: listener,
                seq: 0,
                reply_for: dial.sequence(),
                new_conn_id: child,
            }
            .encode(s, out)
        })
        .await;
    (seq, host.expect(ContentType::STATE_CONNECTED).await)
}

/// The raw host sends `payload` on `conn_id`, then StateClosed without a FIN.
async fn close_without_fin(host: &mut Client, conn_id: u32, payload: &[u8]) {
    host.w.data(conn_id, payload).await;
    host.send(|s, out| {
        StateClosed {
            conn_id,
            seq: 99,
            reply_for: None,
            reason: b"",
        }
        .encode(s, out)
    })
    .await;
}

/// A Weft SDK dialer reads a peer's close that came without a FIN while it could
/// still write as an error (the peer went away mid-stream), never as end-of-stream;
/// the same close after the dialer's own FIN is the peer's full close (how the C SDK
/// closes once it has read the FIN) and ends the stream cleanly.
async fn an_sdk_reader_tells_a_clean_close_from_an_abrupt_one(io: &str) {
    let Net {
        ctl,
        admin,
        node,
        port,
        _tmp,
    } = Net::start(io).await;
    let (svc, _) = model(&ctl, &admin).await;
    let h = login(&ctl, &admin, "host").await;
    let bind_token = session(&ctl, &h, &svc, "Bind").await;
    let ca = ctl.ca_pem();
    let mut host = bound_host(port, &ca, &h, &bind_token).await;
    let (_, cert, key) = ctl
        .enrolled_identity(&admin, "sdk-dialer", &["dialer"])
        .await;
    let identity = weft_sdk::Identity::from_pem(ctl.url(""), cert, key, ca.clone()).unwrap();
    let client = weft_sdk::Context::new(identity).await.unwrap();

    // Abrupt: the host closes while the dialer could still write.
    let (stream, ()) = tokio::join!(client.dial("echo"), accept_raw(&mut host, 100));
    let mut stream = stream.unwrap();
    close_without_fin(&mut host, 100, b"partial").await;
    let mut got = [0u8; 7];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"partial", "what came before the close is delivered");
    let end = stream.read(&mut [0u8; 16]).await;
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "an abrupt close is not end-of-stream"
    );

    // Clean: the dialer half-closes first; the host answers and closes.
    let (stream, ()) = tokio::join!(client.dial("echo"), accept_raw(&mut host, 101));
    let mut stream = stream.unwrap();
    stream.write_all(b"request").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut fin = false;
    while !fin {
        let frame = host.expect(ContentType::DATA).await;
        fin = Data::parse(&frame).unwrap().is_fin();
    }
    close_without_fin(&mut host, 101, b"answer").await;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"answer");
    node.shutdown().await;
}

/// Deletes the management entity at `path`.
async fn delete(ctl: &Ctl, admin: &str, path: &str) {
    let res = ctl
        .http()
        .delete(ctl.mgmt(path))
        .header("zt-session", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "DELETE {path}");
}

/// The id of the policy named `name` in `collection`.
async fn policy_id(ctl: &Ctl, admin: &str, collection: &str, name: &str) -> String {
    let list = ctl.get_ok(admin, &format!("/{collection}")).await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {collection} named {name}: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A Connect on `conn_id` with `token`: whether the router put it through to the host
/// (which accepts as `child`) rather than refusing it with StateClosed.
async fn connects(
    dialer: &mut Client,
    host: &mut Client,
    token: &str,
    conn_id: u32,
    child: u32,
) -> bool {
    dialer.send_connect(conn_id, token).await;
    let dial_at_host = tokio::time::timeout(Duration::from_secs(1), host.next()).await;
    if let Ok(Some(dial)) = dial_at_host {
        assert_eq!(dial.content_type(), ContentType::DIAL, "{dial:?}");
        accept_dial(host, &dial, child).await;
    }
    let answer = dialer.frame_or_close().await;
    answer.is_some_and(|f| f.content_type() == ContentType::STATE_CONNECTED)
}

/// Edge router policies and service edge router policies are enforced by the router,
/// not only in the controller's answers: taking the router away from the service
/// closes its live circuit and refuses new dials (old and new Dial sessions); taking it
/// away from the identity closes the identity's edge connection and refuses its hello;
/// each at once, by push.
async fn the_router_enforces_edge_router_and_service_edge_router_policies(io: &str) {
    let Net {
        ctl,
        admin,
        node,
        port,
        _tmp,
    } = Net::start(io).await;
    let Circuit {
        svc,
        d,
        dial_token,
        mut host,
        mut dialer,
        ca,
    } = Circuit::open(&ctl, &admin, port).await;

    // A second Dial session, made while the router still serves the service (the
    // controller refuses to make one for a service no router serves).
    let new_token = session(&ctl, &d, &svc, "Dial").await;
    // The service loses the router (its only service edge router policy goes): the live
    // circuit closes at once, on both sides.
    let serp = policy_id(&ctl, &admin, "service-edge-router-policies", "serp").await;
    delete(
        &ctl,
        &admin,
        &format!("/service-edge-router-policies/{serp}"),
    )
    .await;
    // Pushed: closed within `WAIT` (no poll or expiry would do it that soon).
    let t0 = Instant::now();
    let frame = dialer.expect(ContentType::STATE_CLOSED).await;
    assert_eq!(StateClosed::parse(&frame).unwrap().conn_id, 1);
    eprintln!("circuit closed {:?} after the policy delete", t0.elapsed());
    // The host's listener (its Bind session) ends too, and so does its circuit leg.
    let mut host_closed = Vec::new();
    while host_closed.len() < 2 {
        let frame = host.expect(ContentType::STATE_CLOSED).await;
        host_closed.push(StateClosed::parse(&frame).unwrap().conn_id);
    }
    host_closed.sort_unstable();
    assert_eq!(host_closed, [7, 100]);
    // A new dial, with either Dial session, is refused on this router.
    for (token, conn_id) in [(&dial_token, 2), (&new_token, 3)] {
        assert!(
            !connects(&mut dialer, &mut host, token, conn_id, 101).await,
            "dial {conn_id} connected without a service edge router policy"
        );
    }

    // The service gets the router back; then the identity loses it (its only edge
    // router policy goes): its edge connection closes at once and a hello is refused.
    ctl.create_ok(
        &admin,
        "service-edge-router-policies",
        json!({"name": "serp2", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
    )
    .await;
    let erp = policy_id(&ctl, &admin, "edge-router-policies", "erp").await;
    delete(&ctl, &admin, &format!("/edge-router-policies/{erp}")).await;
    let t0 = Instant::now();
    tokio::time::timeout(WAIT, async { while dialer.next().await.is_some() {} })
        .await
        .expect("the dialer's connection stayed open without an edge router policy");
    eprintln!(
        "edge connection closed {:?} after the policy delete",
        t0.elapsed()
    );
    if let Some(mut again) = try_connect(port, &ca, &d.cert, &d.key, &d.token).await {
        assert!(
            !connects(&mut again, &mut host, &new_token, 4, 102).await,
            "a dial connected without an edge router policy"
        );
    }
    node.shutdown().await;
}

/// A TCP proxy in front of the control listener whose connections the test can cut,
/// and which can refuse new ones for a while.
struct Proxy {
    addr: std::net::SocketAddr,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (refuse, accepted, conns) = (refuse.clone(), accepted.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                        continue;
                    }
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let target = target.clone();
                    conns.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            })
        };
        Self {
            addr,
            refuse,
            accepted,
            conns,
            task,
        }
    }

    /// Cuts every proxied connection.
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn router_resynchronises_after_losing_the_control_connection(io: &str) {
    init_logs();
    let ctl = Ctl::start();
    let admin = ctl.admin_token().await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(control_addr(&ctl)).await;
    let (node, router_id, port) =
        start_router(&ctl, &admin, &tmp, &proxy.addr.to_string(), io).await;
    wait_online(&ctl, &admin, &router_id, true).await;
    assert_eq!(proxy.accepted(), 1);
    let (svc, _) = model(&ctl, &admin).await;

    // The control connection drops and stays down while the identities log in and get
    // their sessions: the router misses those updates.
    proxy
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    proxy.cut();
    wait_online(&ctl, &admin, &router_id, false).await;
    let d = login(&ctl, &admin, "dialer").await;
    let h = login(&ctl, &admin, "host").await;
    let dial_token = session(&ctl, &d, &svc, "Dial").await;
    let bind_token = session(&ctl, &h, &svc, "Bind").await;

    // The router reconnects by itself; the full sync brings what it missed.
    proxy
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_online(&ctl, &admin, &router_id, true).await;
    assert!(proxy.accepted() >= 2);
    let ca = ctl.ca_pem();
    // The controller reports the router online at its hello, just before the sync
    // goes out: retry until the router knows the host's sessions.
    let mut host = bound_host(port, &ca, &h, &bind_token).await;
    let mut dialer = connect(port, &ca, &d.cert, &d.key, &d.token).await;
    dial(&mut dialer, &mut host, &dial_token).await;
    let payload = pattern(4096, 3);
    dialer.w.data(1, &payload).await;
    let (got, _) = host.r.data(100, payload.len()).await;
    assert!(got == payload, "host received different bytes");

    // Another loss: the controller drops the router's terminators; the router
    // registers the host's Bind again after reconnecting, and dials reach it.
    let terms = ctl.get_ok(&admin, "/terminators").await;
    let old = terms["data"][0]["id"].as_str().unwrap().to_string();
    let accepted = proxy.accepted();
    proxy.cut();
    let deadline = Instant::now() + RECONNECT_WAIT;
    loop {
        let terms = ctl.get_ok(&admin, "/terminators").await;
        let terms = terms["data"].as_array().unwrap();
        if proxy.accepted() > accepted
            && terms.len() == 1
            && terms[0]["id"] != old.as_str()
            && terms[0]["routerId"] == router_id.as_str()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "terminator not registered again: {terms:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seq = dialer.send_connect(2, &dial_token).await;
    let dial_frame = host.expect(ContentType::DIAL).await;
    assert_eq!(Dial::parse(&dial_frame).unwrap().conn_id, 7);
    accept_dial(&mut host, &dial_frame, 101).await;
    let frame = dialer.expect(ContentType::STATE_CONNECTED).await;
    assert_eq!(
        StateConnected::parse(&frame).unwrap().reply_for,
        Some(connect_seq)
    );

    // Updates flow again on the new connection: logging the dialer out closes it.
    let res = d
        .http
        .delete(ctl.client_url("/current-api-session"))
        .header("zt-session", &d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::timeout(WAIT, async { while dialer.next().await.is_some() {} })
        .await
        .expect("dialer connection not closed after logout");

    node.shutdown().await;
    wait_online(&ctl, &admin, &router_id, false).await;
}

/// What an operator sees from `weft-router check`: a config error names the file, the
/// key and the reason on one line; a config in the flat keys of earlier versions is
/// read, each key logged as deprecated with its new place, and a missing certificate is
/// said once.
#[test]
fn router_check_reports_config_errors_and_deprecated_keys_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = weft_testkit::bin_dir().join("weft-router");
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(&bin)
            .args(["check", "--config"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            path,
        )
    };
    let (code, stderr, path) = check(
        "bad.toml",
        "[identity]\ncert = \"c\"\nkey = \"k\"\n[edge]\nlisten = \"127.0.0.1:1\"\n\
         advertised_host = \"localhost\"\n[control]\ncontrollers = [\"localhost:1\"]\n\
         [runtime]\nshards = 0\n",
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim_end(),
        format!(
            "weft-router: {}: [runtime] shards: must be between 1 and 1024",
            path.display()
        )
    );

    let (code, stderr, _) = check(
        "flat.toml",
        "edge_listen = \"127.0.0.1:1\"\nadvertised_host = \"localhost\"\n\
         controller = \"localhost:1\"\ncert = \"certs/server.cert\"\nkey = \"certs/server.key\"\n",
    );
    assert_eq!(code, Some(1));
    for (old, new) in [
        ("edge_listen", "[edge] listen"),
        ("controller", "[control] controllers"),
        ("cert", "[identity] cert"),
    ] {
        assert!(
            stderr.contains(&format!(
                "config key `{old}` is deprecated; write it as {new}"
            )),
            "{stderr}"
        );
    }
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("weft-router: edge TLS: cannot read ")
            && last.matches("cannot read").count() == 1,
        "{last}"
    );

    // Without NO_COLOR, a log going to a pipe (not a terminal) still has no colour.
    let out = std::process::Command::new(&bin)
        .args(["check", "--config"])
        .arg(dir.path().join("flat.toml"))
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is deprecated"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "ANSI escapes on a pipe: {stderr:?}"
    );
}

/// The stderr of `cmd` once it exits, or a failure when it still runs after `limit`
/// (it is killed then).
fn exit_within(mut cmd: std::process::Command, limit: Duration) -> (Option<i32>, String) {
    use std::io::Read as _;
    let mut child = cmd
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// A second router process started on the edge port a first one listens on fails at
/// once, naming the address, instead of taking half its connections (the shards bind
/// with `SO_REUSEPORT`); the first goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_router_on_the_same_edge_port_fails_naming_the_address() {
    let ctl = Ctl::start();
    let admin = ctl.admin().await;
    let first = weft_testkit::Router::start(&ctl, &admin, "er1", &[]).await;
    let cmd = weft_testkit::boot::router_command(
        &weft_testkit::bin_dir().join("weft-router"),
        &first.dir.path().join("router.toml"),
        None,
    );
    let (code, stderr) = exit_within(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    let addr = format!("cannot listen on 127.0.0.1:{}", first.edge_port);
    assert!(stderr.contains(&addr), "no {addr:?} in {stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    // The first still takes connections on it.
    assert!(
        TcpStream::connect(("127.0.0.1", first.edge_port))
            .await
            .is_ok()
    );
}

/// A controller whose HTTP port is taken fails at once naming the address and the
/// config key.
#[test]
fn a_controller_on_a_taken_port_fails_naming_the_address_and_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!("[http]\nlisten = \"{addr}\"\n[control]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(weft_testkit::bin_dir().join("weft-controller"));
    cmd.args(["run", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config);
    let (code, stderr) = exit_within(cmd, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{stderr}");
    let want = format!("cannot listen on {addr} ([http] listen)");
    assert!(stderr.contains(&want), "no {want:?} in {stderr}");
}
