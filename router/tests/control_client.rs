//! The router's control client (`weft_router::control`) against the test kit's fake
//! controller: the hello, the state it applies, a revision gap and its resync,
//! terminator requests and their answers, reconnecting after the controller drops it,
//! garbage from the controller, a controller whose certificate the router's CA did
//! not issue, and failing over between several controller addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::sync::mpsc;
use weft_router::control::{ControlConfig, ControlEvent, ControlHandle, spawn};
use weft_testkit::control::{FakeController, RouterConn};
use weft_testkit::state;
use weft_tls::test_pki::TestPki;
use weft_wire::control::pb;

const WAIT: Duration = Duration::from_secs(30);

fn config(pki: &TestPki, address: String) -> ControlConfig {
    ControlConfig {
        addresses: vec![address],
        ca_pem: pki.ca_pem(),
        cert_pem: pki.client_cert_pem(),
        key_pem: pki.client_key_pem(),
        hello: pb::RouterHello {
            router_id: "r1".into(),
            version: "test".into(),
            ..Default::default()
        },
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        event_capacity: 64,
        stats: Default::default(),
    }
}

async fn event(events: &mut mpsc::Receiver<ControlEvent>) -> ControlEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no control event in time")
        .expect("the control client stopped")
}

fn sync(revision: u64) -> pb::StateSync {
    state::sync(
        "r1",
        revision,
        vec![state::api_session("api-1", "tok", "id-1", "fp")],
        vec![],
    )
}

/// A client connected to the fake: hello acknowledged and `sync(1)` applied.
async fn connected(
    pki: &TestPki,
    ctl: &FakeController,
) -> (ControlHandle, mpsc::Receiver<ControlEvent>, RouterConn) {
    let (handle, mut events, _task) = spawn(config(pki, ctl.address())).unwrap();
    let mut router = ctl.accept().await;
    let (seq, hello) = router.hello().await;
    assert_eq!((hello.router_id.as_str(), hello.resync), ("r1", false));
    router.ack(seq).await;
    router.send(&sync(1), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(s) if s.revision == 1));
    (handle, events, router)
}

#[tokio::test]
async fn hello_sync_updates_and_a_gap_resynchronises() {
    let pki = TestPki::new().unwrap();
    let ctl = FakeController::start(&pki).await;
    let (handle, mut events, mut router) = connected(&pki, &ctl).await;
    // The router proved the key of the certificate it was given.
    assert_eq!(
        router.leaf_fingerprint,
        Some(weft_tls::fingerprint(pki.client_leaf_der()))
    );

    let update = |revision| pb::StateUpdate {
        revision,
        sessions_removed: vec![format!("gone-{revision}")],
        ..Default::default()
    };
    router.send(&update(2), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Update(u) if u.revision == 2));

    // Revision 3 is lost: 4 does not follow 2. The client drops it and asks again.
    router.send(&update(4), None).await;
    let (seq, again) = router.hello().await;
    assert!(again.resync, "a gap is answered with a resync hello");
    router.ack(seq).await;
    // Updates before the fresh state are dropped, not applied on a stale base.
    router.send(&update(5), None).await;
    router.send(&sync(5), None).await;
    match event(&mut events).await {
        ControlEvent::Sync(s) => assert_eq!(s.revision, 5),
        other => panic!("expected the fresh StateSync, got {other:?}"),
    }
    router.send(&update(6), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Update(u) if u.revision == 6));

    handle.shutdown().await;
    assert!(
        router.closed_within(WAIT).await,
        "shutdown closes the connection"
    );
}

#[tokio::test]
async fn terminator_requests_are_answered_by_their_request_id() {
    let pki = TestPki::new().unwrap();
    let ctl = FakeController::start(&pki).await;
    let (handle, mut events, mut router) = connected(&pki, &ctl).await;

    let id = handle
        .create_terminator(pb::CreateTerminatorRequest {
            session_id: "bind-1".into(),
            cost: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    let (seq, request) = router.expect::<pb::CreateTerminatorRequest>().await;
    assert_eq!(
        (seq, request.session_id.as_str(), request.cost),
        (id, "bind-1", 7)
    );
    let terminator = pb::Terminator {
        id: "t-1".into(),
        service_id: "svc".into(),
        router_id: "r1".into(),
        ..Default::default()
    };
    router
        .send(
            &pb::CreateTerminatorResponse {
                terminator: Some(terminator.clone()),
            },
            Some(seq),
        )
        .await;
    match event(&mut events).await {
        ControlEvent::TerminatorCreated {
            request_id,
            terminator: t,
        } => assert_eq!((request_id, t), (id, terminator)),
        other => panic!("expected TerminatorCreated, got {other:?}"),
    }

    let id = handle.remove_terminator("t-1").await.unwrap();
    let (seq, request) = router.expect::<pb::RemoveTerminatorRequest>().await;
    assert_eq!((seq, request.terminator_id.as_str()), (id, "t-1"));
    router
        .send(
            &pb::ErrorReply {
                code: "NOT_FOUND".into(),
                message: "no such terminator".into(),
            },
            Some(seq),
        )
        .await;
    match event(&mut events).await {
        ControlEvent::TerminatorFailed {
            request_id, code, ..
        } => assert_eq!((request_id, code.as_str()), (id, "NOT_FOUND")),
        other => panic!("expected TerminatorFailed, got {other:?}"),
    }
}

/// The controller goes away with a request outstanding: the request fails with
/// `DISCONNECTED`, the consumer hears `Disconnected`, and the client dials again and
/// says hello afresh (not a resync: the new connection starts from a full state).
#[tokio::test]
async fn a_dropped_connection_fails_pending_requests_and_reconnects() {
    let pki = TestPki::new().unwrap();
    let ctl = FakeController::start(&pki).await;
    let (handle, mut events, mut router) = connected(&pki, &ctl).await;
    let id = handle
        .create_terminator(pb::CreateTerminatorRequest::default())
        .await
        .unwrap();
    router.expect::<pb::CreateTerminatorRequest>().await;
    drop(router);

    let mut saw = (false, false);
    while saw != (true, true) {
        match event(&mut events).await {
            ControlEvent::TerminatorFailed {
                request_id, code, ..
            } => {
                assert_eq!((request_id, code.as_str()), (id, "DISCONNECTED"));
                saw.0 = true;
            }
            ControlEvent::Disconnected => saw.1 = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut router = ctl.accept().await;
    let (seq, hello) = router.hello().await;
    assert!(!hello.resync);
    router.ack(seq).await;
    router.send(&sync(9), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(s) if s.revision == 9));
}

/// Bytes that are not control frames end that connection (the client does not
/// guess), and the client comes back.
#[tokio::test]
async fn garbage_from_the_controller_ends_the_connection_and_the_client_comes_back() {
    let pki = TestPki::new().unwrap();
    let ctl = FakeController::start(&pki).await;
    let (_handle, mut events, mut router) = connected(&pki, &ctl).await;
    router.send_raw(&[0xde; 64]).await;
    assert!(router.closed_within(WAIT).await, "the client hangs up");
    assert!(matches!(
        event(&mut events).await,
        ControlEvent::Disconnected
    ));
    let mut router = ctl.accept().await;
    let (seq, _) = router.hello().await;
    router.ack(seq).await;
    router.send(&sync(1), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
}

/// A controller presenting a certificate of another CA is never talked to: no
/// handshake completes, and the client keeps trying without a Connected event.
#[tokio::test]
async fn a_controller_of_another_ca_is_refused() {
    let router_pki = TestPki::new().unwrap();
    let impostor_pki = TestPki::new().unwrap();
    let impostor = FakeController::start(&impostor_pki).await;
    let (handle, mut events, _task) = spawn(config(&router_pki, impostor.address())).unwrap();
    let (tries, completed) = impostor.handshakes_within(Duration::from_secs(1)).await;
    assert!(tries >= 2, "the client keeps trying ({tries} tries)");
    assert!(
        !completed,
        "the router completed a handshake with a controller its CA did not issue"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err(),
        "no event: the client never connected"
    );
    handle.shutdown().await;
}

/// With several controller addresses the client connects to every one; the first that
/// is up, in the order given (a dead one skipped), is promoted to primary by a second
/// hello and takes the state; when that controller drops it, the next connection up
/// is promoted at once (the backoff, a minute here, does not delay it) and the switch
/// is counted.
#[tokio::test]
async fn several_controllers_a_dead_one_is_skipped_and_a_lost_one_fails_over() {
    let pki = TestPki::new().unwrap();
    let a = FakeController::start(&pki).await;
    let b = FakeController::start(&pki).await;
    let dead = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("localhost:{}", closed.local_addr().unwrap().port())
    };
    let mut cfg = config(&pki, dead);
    cfg.addresses.extend([a.address(), b.address()]);
    cfg.backoff_min = Duration::from_secs(60);
    cfg.backoff_max = Duration::from_secs(60);
    let stats = std::sync::Arc::clone(&cfg.stats);
    let (_handle, mut events, _task) = spawn(cfg).unwrap();

    // Both live controllers are connected, mesh-only at first.
    let mut on_b = b.accept().await;
    let (seq, hello) = on_b.hello().await;
    assert!(hello.mesh_only && !hello.resync, "{hello:?}");
    on_b.ack(seq).await;
    let mut on_a = a.accept().await;
    let (seq, hello) = on_a.hello().await;
    assert!(hello.mesh_only && !hello.resync, "{hello:?}");
    on_a.ack(seq).await;
    // a, listed before b, is promoted: it gets the hello again, in full.
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    let (seq, hello) = on_a.hello().await;
    assert!(!hello.mesh_only && hello.resync, "{hello:?}");
    on_a.ack(seq).await;
    on_a.send(&sync(1), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(s) if s.revision == 1));
    assert_eq!(stats.connected(), Some(a.address()));
    assert_eq!((stats.failovers(), stats.connections()), (0, 2));
    assert_eq!(stats.channels_up(), 2);

    drop(on_a);
    assert!(matches!(
        event(&mut events).await,
        ControlEvent::Disconnected
    ));
    // b, already connected, is promoted at once.
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    let (seq, hello) = on_b.hello().await;
    assert!(!hello.mesh_only && hello.resync, "{hello:?}");
    on_b.ack(seq).await;
    on_b.send(&sync(7), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(s) if s.revision == 7));
    assert_eq!(stats.connected(), Some(b.address()));
    assert_eq!((stats.failovers(), stats.connections()), (1, 2));
    assert_eq!(stats.channels_up(), 1);
}

/// A mesh-only connection carries its controller's share of the mesh: its Routes are
/// answered on it (under the client's own request ids), the reroute requests and the
/// end of a circuit it routed go back to it, link reports go to every controller (and
/// the links up to one that connects later), and the peer lists of all are merged.
#[tokio::test]
async fn a_mesh_only_connection_carries_its_controllers_routes_reroutes_and_links() {
    let pki = TestPki::new().unwrap();
    let a = FakeController::start(&pki).await;
    let b = FakeController::start(&pki).await;
    let mut cfg = config(&pki, a.address());
    cfg.addresses.push(b.address());
    let (handle, mut events, _task) = spawn(cfg).unwrap();
    let mut on_a = a.accept().await;
    let (seq, _) = on_a.hello().await;
    on_a.ack(seq).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    let (seq, _) = on_a.hello().await;
    on_a.ack(seq).await;
    on_a.send(&sync(1), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(_)));
    let mut on_b = b.accept().await;
    let (seq, hello) = on_b.hello().await;
    assert!(hello.mesh_only);
    on_b.ack(seq).await;

    // Peers of both controllers, merged.
    let peer = |id: &str| pb::Peer {
        router_id: id.into(),
        ..Default::default()
    };
    on_a.send(
        &pb::Peers {
            peers: vec![peer("p1")],
        },
        None,
    )
    .await;
    let ids = |ev: ControlEvent| match ev {
        ControlEvent::Peers(p) => p.peers.into_iter().map(|p| p.router_id).collect::<Vec<_>>(),
        other => panic!("expected peers, got {other:?}"),
    };
    assert_eq!(ids(event(&mut events).await), ["p1"]);
    on_b.send(
        &pb::Peers {
            peers: vec![peer("p2"), peer("p1")],
        },
        None,
    )
    .await;
    assert_eq!(ids(event(&mut events).await), ["p1", "p2"]);

    // A Route from b (egress of circuit 9) is answered on b, under b's sequence.
    let route = pb::Route {
        circuit_id: 9,
        previous_router_id: "p1".into(),
        ..Default::default()
    };
    let route_seq = on_b.send(&route, None).await;
    let request_id = match event(&mut events).await {
        ControlEvent::Route { request_id, route } => {
            assert_eq!(route.circuit_id, 9);
            request_id
        }
        other => panic!("expected a route, got {other:?}"),
    };
    handle.route_reply(request_id, 9, None).await.unwrap();
    let frame = on_b.frame_or_close().await.unwrap();
    assert_eq!(
        frame.content_type(),
        weft_wire::ContentType::CONTROL_ROUTE_RESPONSE
    );
    assert_eq!(
        frame
            .header(weft_wire::HeaderId::REPLY_FOR)
            .and_then(|v| v.as_i32().ok()),
        Some(route_seq)
    );
    // An id answered once is not answered again.
    assert!(handle.route_reply(request_id, 9, None).await.is_err());
    // Circuit 9's reroute request and end go to b, which routed it; others to a.
    handle
        .reroute_request(pb::RerouteRequest {
            circuit_id: 9,
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, reroute) = on_b.expect::<pb::RerouteRequest>().await;
    assert_eq!(reroute.circuit_id, 9);
    for circuit_id in [9, 10] {
        handle
            .circuit_closed(pb::CircuitClosed {
                circuit_id,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (_, closed) = on_b.expect::<pb::CircuitClosed>().await;
    assert_eq!(closed.circuit_id, 9);
    let (_, closed) = on_a.expect::<pb::CircuitClosed>().await;
    assert_eq!(closed.circuit_id, 10);

    // A link report reaches both; when b reconnects it is told of the link again.
    let link = pb::LinkStatus {
        peer_router_id: "p1".into(),
        dialed: true,
        up: true,
        latency_us: 250,
        reason: String::new(),
    };
    handle.link_status(link.clone()).await.unwrap();
    assert_eq!(on_a.expect::<pb::LinkStatus>().await.1, link);
    assert_eq!(on_b.expect::<pb::LinkStatus>().await.1, link);
    drop(on_b);
    // b's peers are gone with it.
    assert_eq!(ids(event(&mut events).await), ["p1"]);
    let mut on_b = b.accept().await;
    let (seq, hello) = on_b.hello().await;
    assert!(hello.mesh_only);
    on_b.ack(seq).await;
    assert_eq!(on_b.expect::<pb::LinkStatus>().await.1, link);
    // Still on a: no failover, no second Connected.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err()
    );
}

/// A controller that completes the TLS handshake but never answers the hello does not
/// hold the router: after the hello deadline the next address, connected meanwhile, is
/// promoted.
#[tokio::test]
async fn a_controller_that_never_answers_the_hello_is_left_for_the_next() {
    let pki = TestPki::new().unwrap();
    let silent = FakeController::start(&pki).await;
    let b = FakeController::start(&pki).await;
    let mut cfg = config(&pki, silent.address());
    cfg.addresses.push(b.address());
    let (_handle, mut events, _task) = spawn(cfg).unwrap();
    let mut held = silent.accept().await;
    let _ = held.hello().await;
    let mut on_b = b.accept().await;
    let (seq, _) = on_b.hello().await;
    on_b.ack(seq).await;
    // b waits for the first address to answer or fail: the hello deadline (10 s).
    assert!(matches!(event(&mut events).await, ControlEvent::Connected));
    let (seq, hello) = on_b.hello().await;
    assert!(!hello.mesh_only);
    on_b.ack(seq).await;
    on_b.send(&sync(2), None).await;
    assert!(matches!(event(&mut events).await, ControlEvent::Sync(s) if s.revision == 2));
    drop(held);
}
