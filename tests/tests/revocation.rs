//! Revocation at scale: deleting the Dial policy closes every live circuit that used it.
//! Prints the close-time distribution (delete request → each stream's close seen by
//! the dialer); asserts only that all of them close and report the revocation.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::Network;

/// Live circuits (each a dialer stream and a host stream on one router).
const CIRCUITS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_dial_policy_closes_a_thousand_live_circuits() {
    let net = Network::start().await;
    let (_, dial_policy, _) = net.service("many", &["many"], false).await;
    let host = net.context("many-h", &["many-host"]).await;
    let client = net.context("many-c", &["many-client"]).await;
    let listener = host.bind("many").await.unwrap();
    let accepted = tokio::spawn(async move {
        let mut streams = Vec::with_capacity(CIRCUITS);
        while streams.len() < CIRCUITS {
            let mut s = listener.accept().await.unwrap();
            // Echo one byte so the dialer knows the circuit is up.
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
            streams.push(s);
        }
        (listener, streams)
    });

    let mut streams = Vec::with_capacity(CIRCUITS);
    for i in 0..CIRCUITS {
        let mut s = client.dial("many").await.unwrap();
        s.write_all(&[i as u8]).await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        streams.push(s);
    }
    let (_listener, _hosted) = accepted.await.unwrap();

    // Each dialer stream waits for its close and reports when it saw it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for mut s in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut b = [0u8; 1];
            let r = s.read(&mut b).await;
            let _ = tx.send((Instant::now(), r.map_err(|e| e.kind())));
        });
    }
    drop(tx);

    let deleted_at = Instant::now();
    net.admin.delete("service-policies", &dial_policy).await;
    let answered = deleted_at.elapsed();
    let mut closes = Vec::with_capacity(CIRCUITS);
    while let Ok(Some((at, result))) =
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await
    {
        assert_eq!(
            result,
            Err(std::io::ErrorKind::ConnectionReset),
            "a revoked stream fails"
        );
        closes.push(at.saturating_duration_since(deleted_at));
    }
    assert_eq!(closes.len(), CIRCUITS, "every circuit closed");
    closes.sort_unstable();
    let pct = |p: f64| closes[((closes.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "revocation of {CIRCUITS} circuits: delete answered after {answered:?}; closes p50 {:?}, p99 {:?}, last {:?} after the delete request",
        pct(0.5),
        pct(0.99),
        closes[closes.len() - 1]
    );
}
