//! Requests and values tests need: the C SDK's login body, JWT claims, CSRs, byte
//! patterns.

use serde_json::Value;

/// A pretty-printed body like the C SDK 0.29.3 sends (spec §4.2).
pub const SDK_AUTH_BODY: &str = "{\n\t\"sdkInfo\":\t{\n\t\t\"type\":\t\"ziti-sdk-c\",\n\t\t\"version\":\t\"0.29.3-126\",\n\t\t\"revision\":\t\"8a2af64\",\n\t\t\"branch\":\t\"HEAD\"\n\t},\n\t\"envInfo\":\t{\n\t\t\"os\":\t\"Linux\",\n\t\t\"arch\":\t\"x86_64\"\n\t},\n\t\"configTypes\":\t[\"intercept.v1\", \"ziti-tunneler-client.v1\"]\n}";

/// Decodes the claims of a JWT without verifying it.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A P-256 key and a PEM CSR whose subject the controller must ignore.
pub fn make_csr(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("requested-{cn}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "OpenZiti");
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key.serialize_pem())
}

/// A deterministic byte pattern for transfer checks.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// Sends all of `upload` on `stream` and half-closes it while reading what the other
/// side sends until it half-closes; returns what arrived (panics on an I/O error: a
/// failed transfer is a failed test).
pub async fn exchange<S>(stream: &mut S, upload: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async {
        wr.write_all(upload).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let reader = async {
        let mut got = Vec::with_capacity(upload.len());
        rd.read_to_end(&mut got).await.unwrap();
        got
    };
    tokio::join!(writer, reader).1
}

/// Polls every future to completion concurrently on the calling task (for futures that
/// borrow, which spawned tasks cannot); their outputs in order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The DNS names and IP addresses (as text) that the first certificate of the PEM
/// file at `path` names as subject alternative names.
pub fn certificate_names(path: &std::path::Path) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let pem = std::fs::read(path).unwrap();
    let der = weft_tls::pem::certificates(&pem).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    san.general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => (*d).to_string(),
            GeneralName::IPAddress(b) => match b.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
            },
            other => other.to_string(),
        })
        .collect()
}
