//! Router enrollment (`erott`) and the router control channel, against a real
//! `weft-controller` process, with the router-side library of `weft-router`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use weft_router::control::{ControlConfig, ControlEvent};
use weft_testkit::{Ctl, jwt_claims, make_csr};
use weft_wire::ContentType;
use weft_wire::control::{ControlMessage, pb};

async fn erott(ctl: &Ctl, path: &str, body: &Value) -> (u16, Value) {
    let res = ctl
        .http()
        .post(ctl.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn control_addr(ctl: &Ctl) -> String {
    std::fs::read_to_string(ctl.dir.join("control.addr"))
        .unwrap()
        .trim()
        .to_string()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A TLS connection to the control listener with `client` (PEM chain, leaf first, and
/// key) that sent a hello as `router_id`; `None` when the handshake or the write fails.
async fn control_hello(
    ctl: &Ctl,
    client: Option<(&str, &str)>,
    router_id: &str,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    // With a client, every certificate of `cert`, in order: a chain to present.
    let cfg = weft_tls::client::verified_from_pem(
        ctl.ca_pem().as_bytes(),
        client.map(|(cert, key)| (cert.as_bytes(), key.as_bytes())),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(control_addr(ctl))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .ok()?;
    let mut hello = BytesMut::new();
    pb::RouterHello {
        router_id: router_id.into(),
        ..Default::default()
    }
    .encode_frame(1, None, &mut hello)
    .unwrap();
    tls.write_all(&hello).await.ok()?;
    Some(tls)
}

/// Connects to the control listener with `client` (cert PEM, key PEM) or no
/// certificate, sends a RouterHello and reports whether the controller answered.
/// Connects to the control listener with `client` (certificate and key PEM), says hello
/// as `router_id`: the content type of the first frame answered, `None` when the TLS
/// handshake fails or the connection closes without one.
async fn control_reply(
    ctl: &Ctl,
    client: Option<(&str, &str)>,
    router_id: &str,
) -> Option<ContentType> {
    let mut tls = control_hello(ctl, client, router_id).await?;
    let mut dec = weft_wire::Decoder::new(weft_wire::Limits::DEFAULT);
    let first = read_frame(&mut tls, &mut dec);
    let frame = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .ok()??;
    Some(frame.content_type())
}

/// Connects as router `router_id` with its certificate, says hello, reads up to the
/// StateSync, sends what `request` encodes, and returns the content type of the first
/// frame that answers it (`None` when the connection closes first).
async fn control_session(
    ctl: &Ctl,
    (cert, key): (&str, &str),
    router_id: &str,
    request: impl FnOnce(&mut BytesMut),
) -> Option<ContentType> {
    let mut tls = control_hello(ctl, Some((cert, key)), router_id)
        .await
        .expect("the control listener refused the router");
    let mut dec = weft_wire::Decoder::new(weft_wire::Limits::DEFAULT);
    let wait = Duration::from_secs(5);
    loop {
        let frame = tokio::time::timeout(wait, read_frame(&mut tls, &mut dec))
            .await
            .unwrap()?;
        if frame.content_type() == ContentType::CONTROL_STATE_SYNC {
            break;
        }
    }
    let mut out = BytesMut::new();
    request(&mut out);
    tls.write_all(&out).await.unwrap();
    loop {
        let frame = tokio::time::timeout(wait, read_frame(&mut tls, &mut dec))
            .await
            .unwrap()?;
        // Updates of the change feed, the peer list and the trusted 3rd-party CAs may
        // come first.
        if !matches!(
            frame.content_type(),
            ContentType::CONTROL_STATE_UPDATE
                | ContentType::CONTROL_PEERS
                | ContentType::CONTROL_TRUSTED_CAS
        ) {
            return Some(frame.content_type());
        }
    }
}

/// The next frame from `tls`, `None` when it closes.
async fn read_frame(
    tls: &mut (impl tokio::io::AsyncRead + Unpin),
    dec: &mut weft_wire::Decoder,
) -> Option<weft_wire::Frame> {
    loop {
        if let Ok(weft_wire::Decoded::Frame(frame)) = dec.decode() {
            return Some(frame);
        }
        match tls.read_buf(dec.buffer_mut()).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Whether the control listener accepts a router with this certificate and hello: it
/// answers with a HelloAck.
async fn control_answers(ctl: &Ctl, client: Option<(&str, &str)>, router_id: &str) -> bool {
    control_reply(ctl, client, router_id).await == Some(ContentType::CONTROL_HELLO_ACK)
}

#[tokio::test]
async fn erott_enrollment_single_use_and_control_listener_refusals() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    let (status, v) = ctl
        .create(
            &token,
            "edge-routers",
            json!({"name": "er1", "supportedProtocols": {"tls": "tls://er1.example:3022"},
                   "serverCertSans": ["10.1.2.3"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let router_id = v["data"]["id"].as_str().unwrap().to_string();
    let jwt = v["data"]["enrollmentJwt"].as_str().unwrap();
    let claims = jwt_claims(jwt);
    assert_eq!(claims["em"], "erott");
    assert_eq!(claims["sub"], router_id.as_str());
    let jti = claims["jti"].as_str().unwrap().to_string();
    let detail = ctl
        .get_ok(&token, &format!("/edge-routers/{router_id}"))
        .await;
    assert_eq!(detail["data"]["isVerified"], false);
    assert_eq!(detail["data"]["enrollmentToken"], jti.as_str());

    // A bad CSR does not burn the token.
    let (server_csr, _) = make_csr("srv");
    let (client_csr, client_key) = make_csr("cli");
    let (status, v) = erott(
        &ctl,
        &format!("/enroll?method=erott&token={jti}"),
        &json!({"serverCertCsr": "junk", "certCsr": client_csr}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let body = json!({"serverCertCsr": server_csr, "certCsr": client_csr});
    let (status, v) = erott(&ctl, &format!("/enroll?method=erott&token={jti}"), &body).await;
    assert_eq!(status, 200, "{v}");
    let server_pem = v["data"]["serverCert"].as_str().unwrap();
    let cert_pem = v["data"]["cert"].as_str().unwrap().to_string();
    assert!(
        v["data"]["ca"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // Server certificate: SANs from the advertised listener and the listed extras.
    let server_der = der(server_pem);
    let (_, server) = x509_parser::parse_x509_certificate(server_der.as_ref()).unwrap();
    let sans = format!(
        "{:?}",
        server.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(sans.contains("er1.example"), "{sans}");
    assert!(
        sans.contains("10.1.2.3") || sans.contains("[10, 1, 2, 3]"),
        "{sans}"
    );
    let cert_der = der(&cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der.as_ref()).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), router_id);

    let detail = ctl
        .get_ok(&token, &format!("/edge-routers/{router_id}"))
        .await;
    assert_eq!(detail["data"]["isVerified"], true);
    assert_eq!(
        detail["data"]["fingerprint"],
        weft_tls::fingerprint(cert_der.as_ref()).as_str()
    );
    assert_eq!(detail["data"]["enrollmentJwt"], Value::Null);

    // The token works once, on either path.
    for path in [
        format!("/enroll?method=erott&token={jti}"),
        format!("/edge/client/v1/enroll/erott?token={jti}"),
    ] {
        let (status, v) = erott(&ctl, &path, &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "INVALID_ENROLLMENT_TOKEN");
    }
    // … also under concurrency.
    let (_, v) = ctl
        .create(&token, "edge-routers", json!({"name": "er2"}))
        .await;
    let er2_id = v["data"]["id"].as_str().unwrap().to_string();
    let jti2 = jwt_claims(v["data"]["enrollmentJwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let url = ctl.url(&format!("/edge/client/v1/enroll/erott?token={jti2}"));
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let req = ctl.http().post(url.clone()).json(&body);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );

    // Control listener: the router's own certificate is answered …
    assert!(control_answers(&ctl, Some((&cert_pem, &client_key)), &router_id).await);
    // … but not when its hello claims to be another router: an ErrorReply, then the
    // connection closes (no state is sent).
    assert_eq!(
        control_reply(&ctl, Some((&cert_pem, &client_key)), &er2_id).await,
        Some(ContentType::CONTROL_ERROR)
    );
    // … but not no certificate, a foreign CA's, or an identity's.
    assert!(!control_answers(&ctl, None, &router_id).await);
    let foreign_key = rcgen::KeyPair::generate().unwrap();
    let foreign = rcgen::CertificateParams::new(vec!["er1".to_string()])
        .unwrap()
        .self_signed(&foreign_key)
        .unwrap();
    assert!(
        !control_answers(
            &ctl,
            Some((&foreign.pem(), &foreign_key.serialize_pem())),
            &router_id
        )
        .await
    );
    let (_, id_cert, id_key) = ctl.enrolled_identity(&token, "someone", &[]).await;
    assert!(!control_answers(&ctl, Some((&id_cert, &id_key)), &router_id).await);
    // Nor a self-signed leaf followed by the router's own certificate: only the leaf,
    // whose key the handshake proves, may name the router.
    let chain = format!("{}{cert_pem}", foreign.pem());
    assert!(
        !control_answers(
            &ctl,
            Some((&chain, &foreign_key.serialize_pem())),
            &router_id
        )
        .await
    );
}

/// Waits for the next event matching `pred`, checking that updates stay consecutive.
async fn wait_for(
    events: &mut mpsc::Receiver<ControlEvent>,
    revision: &mut u64,
    what: &str,
    mut pred: impl FnMut(&ControlEvent) -> bool,
) -> ControlEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("control client stopped");
        match &ev {
            ControlEvent::Sync(s) => *revision = s.revision,
            ControlEvent::Update(u) => {
                assert_eq!(u.revision, *revision + 1, "updates must be consecutive");
                *revision = u.revision;
            }
            _ => {}
        }
        if pred(&ev) {
            return ev;
        }
    }
}

fn update(ev: &ControlEvent) -> Option<&pb::StateUpdate> {
    match ev {
        ControlEvent::Update(u) => Some(u),
        _ => None,
    }
}

#[tokio::test]
async fn router_control_channel_end_to_end() {
    let ctl = Ctl::start();
    let token = ctl.admin_token().await;
    let tmp = tempfile::tempdir().unwrap();

    // Create and enroll the router with the router library.
    let (status, v) = ctl
        .create(
            &token,
            "edge-routers",
            json!({"name": "edge-1", "supportedProtocols": {"tls": "tls://localhost:3022"}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let router_id = v["data"]["id"].as_str().unwrap().to_string();
    let jwt_path = tmp.path().join("router.jwt");
    std::fs::write(&jwt_path, v["data"]["enrollmentJwt"].as_str().unwrap()).unwrap();
    let dir = tmp.path().join("router");
    let asked = ["er-a.example".to_string(), "10.1.2.3".to_string()];
    let enrolled = weft_router::enroll::enroll(&jwt_path, &dir, &asked)
        .await
        .unwrap();
    assert_eq!(enrolled.router_id, router_id);
    // The server certificate names what the CSR asked for.
    let sans = weft_testkit::certificate_names(&dir.join("server.cert"));
    for want in ["er-a.example", "10.1.2.3"] {
        assert!(sans.iter().any(|s| s == want), "{want} not in {sans:?}");
    }
    for (f, secret) in [
        ("router.cert", false),
        ("router.key", true),
        ("server.cert", false),
        ("server.key", true),
        ("ca.pem", false),
    ] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode == 0o600, secret, "{f}: {mode:o}");
    }
    // A second use of the JWT fails.
    let again = weft_router::enroll::enroll(&jwt_path, &tmp.path().join("again"), &[]).await;
    assert!(again.is_err());

    // Connect the control client.
    let hello = pb::RouterHello {
        router_id: router_id.clone(),
        version: "test".into(),
        edge_listeners: vec!["tls://localhost:3022".into()],
        ..Default::default()
    };
    let cfg = ControlConfig::from_dir(&dir, control_addr(&ctl), hello).unwrap();
    let (handle, mut events, task) = weft_router::control::spawn(cfg).unwrap();
    let mut rev = 0;
    wait_for(&mut events, &mut rev, "Connected", |e| {
        matches!(e, ControlEvent::Connected)
    })
    .await;
    wait_for(&mut events, &mut rev, "StateSync", |e| {
        matches!(e, ControlEvent::Sync(_))
    })
    .await;
    let detail = ctl
        .get_ok(&token, &format!("/edge-routers/{router_id}"))
        .await;
    assert_eq!(detail["data"]["isOnline"], true);

    // Model: a service hosted and dialled by one identity.
    let svc = ctl
        .create_ok(
            &token,
            "services",
            json!({"name": "svc", "roleAttributes": ["s"]}),
        )
        .await;
    wait_for(&mut events, &mut rev, "service", |e| {
        update(e).is_some_and(|u| u.services_upserted.iter().any(|s| s.id == svc))
    })
    .await;
    let mut dial_policy = String::new();
    for (name, ty) in [("bind", "Bind"), ("dial", "Dial")] {
        let id = ctl
            .create_ok(
                &token,
                "service-policies",
                json!({"name": name, "type": ty, "identityRoles": ["#app"], "serviceRoles": ["#s"]}),
            )
            .await;
        if ty == "Dial" {
            dial_policy = id;
        }
    }
    ctl.create_ok(
        &token,
        "edge-router-policies",
        json!({"name": "erp", "edgeRouterRoles": ["#all"], "identityRoles": ["#all"]}),
    )
    .await;
    ctl.create_ok(
        &token,
        "service-edge-router-policies",
        json!({"name": "serp", "edgeRouterRoles": ["#all"], "serviceRoles": ["#all"]}),
    )
    .await;

    // Authenticate: the API session arrives with its certificate fingerprint.
    let (_, cert, key) = ctl.enrolled_identity(&token, "app-1", &["app"]).await;
    let (http, zt) = ctl.cert_login(&cert, &key).await;
    let fp = weft_tls::fingerprint(der(&cert).as_ref());
    let ev = wait_for(&mut events, &mut rev, "API session", |e| {
        update(e).is_some_and(|u| u.api_sessions_added.iter().any(|a| a.token == zt))
    })
    .await;
    let api = update(&ev)
        .unwrap()
        .api_sessions_added
        .iter()
        .find(|a| a.token == zt)
        .unwrap()
        .clone();
    assert_eq!(api.cert_fingerprints, vec![fp]);
    assert_eq!(api.identity_name, "app-1");
    assert!(api.expires_at_unix_ms > 0);

    // Sessions arrive.
    let session = |ty: &'static str| {
        let http = http.clone();
        let zt = zt.clone();
        let url = ctl.client_url("/sessions");
        let svc = svc.clone();
        async move {
            let res = http
                .post(url)
                .header("zt-session", zt)
                .json(&json!({"serviceId": svc, "type": ty}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let v: Value = res.json().await.unwrap();
            v["data"]["id"].as_str().unwrap().to_string()
        }
    };
    let bind = session("Bind").await;
    let dial = session("Dial").await;
    for s in [&bind, &dial] {
        wait_for(&mut events, &mut rev, "session", |e| {
            update(e).is_some_and(|u| u.sessions_added.iter().any(|x| x.id == *s))
        })
        .await;
    }

    // Terminators: the Bind session works, the Dial session is refused.
    let req = |session_id: &str| pb::CreateTerminatorRequest {
        session_id: session_id.into(),
        address: "conn:7".into(),
        cost: 3,
        host_public_key: vec![1, 2, 3],
        ..Default::default()
    };
    let ok_id = handle.create_terminator(req(&bind)).await.unwrap();
    let ev = wait_for(
        &mut events,
        &mut rev,
        "terminator",
        |e| matches!(e, ControlEvent::TerminatorCreated { request_id, .. } if *request_id == ok_id),
    )
    .await;
    let ControlEvent::TerminatorCreated { terminator, .. } = ev else {
        unreachable!()
    };
    assert_eq!(terminator.service_id, svc);
    assert_eq!(terminator.router_id, router_id);
    assert_eq!(terminator.host_public_key, vec![1, 2, 3]);
    wait_for(&mut events, &mut rev, "terminator upsert", |e| {
        update(e).is_some_and(|u| u.terminators_upserted.iter().any(|t| t.id == terminator.id))
    })
    .await;
    let bad_id = handle.create_terminator(req(&dial)).await.unwrap();
    let ev = wait_for(
        &mut events,
        &mut rev,
        "terminator refusal",
        |e| matches!(e, ControlEvent::TerminatorFailed { request_id, .. } if *request_id == bad_id),
    )
    .await;
    assert!(matches!(ev, ControlEvent::TerminatorFailed { code, .. } if code == "INVALID_SESSION"));
    let terms = ctl.get_ok(&token, "/terminators").await;
    assert_eq!(terms["data"].as_array().unwrap().len(), 1);

    // Another enrolled router may not remove this router's terminator.
    let (_, v) = ctl
        .create(&token, "edge-routers", json!({"name": "edge-2"}))
        .await;
    let other_id = v["data"]["id"].as_str().unwrap().to_string();
    let other_jwt = tmp.path().join("other.jwt");
    std::fs::write(&other_jwt, v["data"]["enrollmentJwt"].as_str().unwrap()).unwrap();
    let other_dir = tmp.path().join("other");
    weft_router::enroll::enroll(&other_jwt, &other_dir, &[])
        .await
        .unwrap();
    let other_cert = std::fs::read_to_string(other_dir.join("router.cert")).unwrap();
    let other_key = std::fs::read_to_string(other_dir.join("router.key")).unwrap();
    let answer = control_session(&ctl, (&other_cert, &other_key), &other_id, |out| {
        pb::RemoveTerminatorRequest {
            terminator_id: terminator.id.clone(),
        }
        .encode_frame(2, None, out)
        .unwrap();
    })
    .await;
    assert_eq!(answer, Some(ContentType::CONTROL_ERROR));
    let terms = ctl.get_ok(&token, "/terminators").await;
    assert_eq!(
        terms["data"][0]["id"],
        terminator.id.as_str(),
        "another router removed the terminator"
    );

    // Deleting the Dial policy revokes the Dial session.
    let res = ctl
        .http()
        .delete(ctl.mgmt(&format!("/service-policies/{dial_policy}")))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_for(&mut events, &mut rev, "dial session removal", |e| {
        update(e).is_some_and(|u| u.sessions_removed.contains(&dial))
    })
    .await;

    // Deleting an identity pushes the removal of its API session, its sessions and the
    // terminators it hosts.
    let (app2, cert2, key2) = ctl.enrolled_identity(&token, "app-2", &["app"]).await;
    let (http2, zt2) = ctl.cert_login(&cert2, &key2).await;
    let ev = wait_for(&mut events, &mut rev, "second API session", |e| {
        update(e).is_some_and(|u| u.api_sessions_added.iter().any(|a| a.token == zt2))
    })
    .await;
    let api2 = update(&ev)
        .unwrap()
        .api_sessions_added
        .iter()
        .find(|a| a.token == zt2)
        .unwrap()
        .id
        .clone();
    let res = http2
        .post(ctl.client_url("/sessions"))
        .header("zt-session", &zt2)
        .json(&json!({"serviceId": svc, "type": "Bind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let bind2 = res.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&mut events, &mut rev, "second session", |e| {
        update(e).is_some_and(|u| u.sessions_added.iter().any(|x| x.id == bind2))
    })
    .await;
    let req2 = handle.create_terminator(req(&bind2)).await.unwrap();
    let ev = wait_for(
        &mut events,
        &mut rev,
        "second terminator",
        |e| matches!(e, ControlEvent::TerminatorCreated { request_id, .. } if *request_id == req2),
    )
    .await;
    let ControlEvent::TerminatorCreated {
        terminator: term2, ..
    } = ev
    else {
        unreachable!()
    };
    let res = ctl
        .http()
        .delete(ctl.mgmt(&format!("/identities/{app2}")))
        .header("zt-session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut pending = [
        ("api session", api2),
        ("session", bind2),
        ("terminator", term2.id),
    ]
    .map(|(what, id)| (what, id, false));
    wait_for(
        &mut events,
        &mut rev,
        "removals of the deleted identity",
        |e| {
            if let Some(u) = update(e) {
                for (what, id, seen) in &mut pending {
                    *seen |= match *what {
                        "api session" => u.api_sessions_removed.contains(id),
                        "session" => u.sessions_removed.contains(id),
                        _ => u.terminators_removed.contains(id),
                    };
                }
            }
            pending.iter().all(|(_, _, seen)| *seen)
        },
    )
    .await;

    // Logout removes the API session (and its sessions).
    let res = http
        .delete(ctl.client_url("/current-api-session"))
        .header("zt-session", &zt)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ev = wait_for(&mut events, &mut rev, "API session removal", |e| {
        update(e).is_some_and(|u| u.api_sessions_removed.contains(&api.id))
    })
    .await;
    assert!(update(&ev).unwrap().sessions_removed.contains(&bind));

    // The router disconnecting removes its terminators and takes it offline.
    handle.shutdown().await;
    task.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let detail = ctl
            .get_ok(&token, &format!("/edge-routers/{router_id}"))
            .await;
        let terms = ctl.get_ok(&token, "/terminators").await;
        if detail["data"]["isOnline"] == false && terms["data"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "router still online or terminators left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates and enrolls an edge router; returns its id, control certificate and key.
async fn enrolled_router(ctl: &Ctl, token: &str, name: &str) -> (String, String, String) {
    let (status, v) = ctl
        .create(
            token,
            "edge-routers",
            json!({"name": name, "supportedProtocols": {"tls": format!("tls://{name}.test:3022")}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let router_id = v["data"]["id"].as_str().unwrap().to_string();
    let jti = jwt_claims(v["data"]["enrollmentJwt"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let (server_csr, _) = make_csr("srv");
    let (client_csr, client_key) = make_csr("cli");
    let (status, v) = erott(
        ctl,
        &format!("/enroll?method=erott&token={jti}"),
        &json!({"serverCertCsr": server_csr, "certCsr": client_csr}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cert = v["data"]["cert"].as_str().unwrap().to_string();
    (router_id, cert, client_key)
}

/// A router that sends (here: resync hellos, each answered with a whole StateSync) but
/// never reads used to hold its control connection and the controller's replies
/// forever. Now the controller's writes have a deadline and its outbound queue a bound:
/// the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_never_reads_is_disconnected() {
    // The queue bound trips first with a small queue; the write deadline with a large one.
    for config in [
        "control.write_timeout_ms = 60000\ncontrol.max_outbound_bytes = 65536",
        "control.write_timeout_ms = 1000\ncontrol.max_outbound_bytes = 1000000000",
    ] {
        deaf_router_is_disconnected(config).await;
    }
}

async fn deaf_router_is_disconnected(config: &str) {
    let ctl = Ctl::start_with(config);
    let token = ctl.admin_token().await;
    let (router_id, cert, key) = enrolled_router(&ctl, &token, "deaf").await;
    let cfg = weft_tls::client::verified_from_pem(
        ctl.ca_pem().as_bytes(),
        Some((cert.as_bytes(), key.as_bytes())),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(control_addr(&ctl))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let mut hellos = BytesMut::new();
    for seq in 1..=1000 {
        pb::RouterHello {
            router_id: router_id.clone(),
            ..Default::default()
        }
        .encode_frame(seq, None, &mut hellos)
        .unwrap();
    }
    // Send until the controller stops taking our bytes (or closes), never reading.
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), wr.write_all(&hellos)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the controller kept reading"
        );
    }
    // Now read: the controller must have closed the connection (EOF after what it had
    // sent), rather than resuming once we read.
    let mut buf = vec![0u8; 64 * 1024];
    let eof = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the control connection stayed open ({config})");
    // The router is still welcome once it behaves.
    assert!(control_answers(&ctl, Some((&cert, &key)), &router_id).await);
}

/// A TCP connection to `addr` from the loopback address `src` (any of 127.0.0.0/8).
async fn connect_from(
    src: std::net::Ipv4Addr,
    addr: std::net::SocketAddr,
) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((src, 0).into()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Opens `n` idle connections (TCP, no TLS) from `src`.
async fn open_from(
    src: std::net::Ipv4Addr,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect_from(src, addr).await);
    }
    conns
}

/// How many of `conns` the listener has closed, once it has had time to look at them
/// all (the count no longer changes for a second).
async fn closed(conns: &[tokio::net::TcpStream]) -> usize {
    let count = || {
        conns
            .iter()
            .filter(|c| {
                let mut buf = [0u8; 1];
                !matches!(c.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Unauthenticated connections to the control port are bounded, per source address
/// (`MAX_PENDING_PER_SOURCE`) and in all (`MAX_PENDING_HANDSHAKES`): beyond either, a
/// new idle one (TCP connected, no TLS) is closed at once and counted in
/// `weft_controller_control_refused_pending_total`; one flooding host does not take the
/// slots of the others (the routers, which must be able to reconnect).
#[tokio::test]
async fn idle_control_connections_are_bounded() {
    use weft_controller::control::listener::{MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_SOURCE};
    let ctl = Ctl::start_with("metrics.listen = \"127.0.0.1:0\"");
    let addr: std::net::SocketAddr = control_addr(&ctl).parse().unwrap();
    // One host beyond its limit ...
    let flooder = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let flood = open_from(flooder, addr, MAX_PENDING_PER_SOURCE + 4).await;
    assert_eq!(closed(&flood).await, 4);
    // ... does not keep another from connecting.
    let router = open_from(std::net::Ipv4Addr::LOCALHOST, addr, 1).await;
    assert_eq!(closed(&router).await, 0, "another host was refused");
    drop(router);
    // Many hosts: the total is bounded too (the flooder holds its share of it).
    let hosts = MAX_PENDING_HANDSHAKES / MAX_PENDING_PER_SOURCE + 2;
    let mut many = Vec::new();
    for host in 0..hosts {
        let src = std::net::Ipv4Addr::new(127, 0, 1, u8::try_from(host).unwrap());
        many.extend(open_from(src, addr, MAX_PENDING_PER_SOURCE).await);
    }
    let kept = many.len() - closed(&many).await;
    assert_eq!(kept + MAX_PENDING_PER_SOURCE, MAX_PENDING_HANDSHAKES);
    assert!(ctl.metric("weft_controller_control_refused_pending_total") >= 4 + 16);
}
