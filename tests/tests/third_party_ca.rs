//! 3rd-party CAs end to end, with real controller and router processes: a CA made with
//! rcgen is created and verified; a client certificate it signed enrolls itself
//! (`/enroll?method=ca`, the identity takes the CA's roles), logs in, and dials a
//! service through the router over an edge connection whose TLS chain ends at that CA
//! (the router learned the CA over the control channel). Once the CA is deleted, its
//! live API session and edge connection end, and the
//! router refuses new edge connections with that certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use weft_testkit::traffic::serve_echo;
use weft_testkit::{Network, ThirdPartyCa, hello_accepted, pattern, tls_with};
use weft_wire::ContentType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_a_verified_third_party_ca_enrolls_logs_in_and_dials_through_a_router() {
    let net = Network::start().await;
    net.service("ledger", &["ledger"], false).await;
    let host = net.context("ledger-h", &["ledger-host"]).await;
    serve_echo(&host, "ledger").await;
    let ctl = &net.controller;
    let admin = ctl.admin_token().await;
    let port = net.router.edge_port;
    let network_ca = ctl.ca_pem();

    // The CA, created and verified: its clients get the service's dial role.
    let ca = ThirdPartyCa::new("corp CA");
    let ca_id = ctl
        .create_ok(
            &admin,
            "cas",
            json!({"name": "corp", "certPem": ca.pem(), "isAutoCaEnrollmentEnabled": true,
                   "isOttCaEnrollmentEnabled": false, "isAuthEnabled": true,
                   "identityRoles": ["ledger-client"]}),
        )
        .await;
    let client = ca.client("laptop", &[], &[]);
    // Unverified, its certificates do not even pass the router's handshake.
    assert!(
        hello_accepted(
            port,
            tls_with(&network_ca, &client.cert_pem, &client.key_pem),
            "x"
        )
        .await
        .is_none()
    );
    let token = ctl.get_ok(&admin, &format!("/cas/{ca_id}")).await["data"]["verificationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = ctl
        .http()
        .post(ctl.mgmt(&format!("/cas/{ca_id}/verify")))
        .header("zt-session", &admin)
        .header("content-type", "text/plain")
        .body(ca.verification_cert(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Auto enrollment with the TLS client certificate, then a certificate login.
    let http = ctl.http_with_cert(&client.cert_pem, &client.key_pem);
    let res = http
        .post(ctl.url("/enroll?method=ca"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = ctl.cert_authenticate(&http).await;
    assert_eq!(res.status(), 200);
    let session = res.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The edge connection with the 3rd-party chain (the router learns the CA over the
    // control channel; allow it a moment).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut edge = loop {
        if let Some(c) = hello_accepted(
            port,
            tls_with(&network_ca, &client.cert_pem, &client.key_pem),
            &session,
        )
        .await
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the router never accepted the 3rd-party certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let service =
        net.admin.get("services?filter=name%3D%22ledger%22").await["data"][0]["id"].clone();
    let res = http
        .post(ctl.client_url("/sessions"))
        .header("zt-session", &session)
        .json(&json!({"serviceId": service, "type": "Dial"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let dial_token = res.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    edge.send_connect(1, &dial_token).await;
    edge.expect(ContentType::STATE_CONNECTED).await;
    let data = pattern(64 * 1024, 7);
    edge.w.data(1, &data).await;
    let (echoed, _) = edge.r.data(1, data.len()).await;
    assert_eq!(Sha256::digest(&echoed), Sha256::digest(&data));

    // The CA deleted: new edge connections with its certificate are refused.
    let (status, _) = ctl
        .call(
            reqwest::Method::DELETE,
            &format!("/cas/{ca_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    // The API session its certificate opened ends with it, and so does the live edge
    // connection (the router drops it when the controller removes the API session).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while edge.next().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the deleted CA's edge connection stayed open"
    );
    let (status, _) = ctl
        .call_client(reqwest::Method::GET, "/services", &session, None)
        .await;
    assert_eq!(status, 401, "the deleted CA's API session still works");
    let deadline = Instant::now() + Duration::from_secs(15);
    while hello_accepted(
        port,
        tls_with(&network_ca, &client.cert_pem, &client.key_pem),
        &session,
    )
    .await
    .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the router still accepts the deleted CA's certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ctl.cert_authenticate(&http).await.status(), 401);
}
