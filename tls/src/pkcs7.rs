//! Certs-only PKCS#7 (CMS `SignedData` without signers, RFC 5652 / RFC 2315): the
//! format of `/.well-known/est/cacerts` (EST, RFC 7030 §4.1.3), read and written with
//! the RustCrypto `cms` crate.
//!
//! The shape the controller writes is the one the OpenZiti C SDK 0.29.3's strict parser
//! accepts: version 1, no digest algorithms, `id-data` without content, the
//! certificates, no signers.

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};

use crate::TlsError;

fn err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Pkcs7(e.to_string())
}

/// The DER of a certs-only PKCS#7 holding `certs` (each a DER certificate). DER orders
/// the members of a SET, so the certificates come out sorted by their encoding.
pub fn certs_only(certs: &[&[u8]]) -> Result<Vec<u8>, TlsError> {
    let mut set = SetOfVec::new();
    for der in certs {
        let cert = x509_cert::Certificate::from_der(der).map_err(err)?;
        set.insert(CertificateChoices::Certificate(cert))
            .map_err(err)?;
    }
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(set)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}

/// The DER certificates of a certs-only PKCS#7 (in DER's SET order, which for a CA
/// bundle carries no meaning); an error if it is not a `SignedData` or holds no
/// certificate.
pub fn certificates(der: &[u8]) -> Result<Vec<Vec<u8>>, TlsError> {
    let info = ContentInfo::from_der(der).map_err(err)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(err(format!("content type {}", info.content_type)));
    }
    let signed: SignedData = info.content.decode_as().map_err(err)?;
    let mut out = Vec::new();
    for choice in signed.certificates.iter().flat_map(|set| set.0.iter()) {
        if let CertificateChoices::Certificate(cert) = choice {
            out.push(cert.to_der().map_err(err)?);
        }
    }
    if out.is_empty() {
        return Err(err("no certificate"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn a_bundle_round_trips() {
        let (a, b) = (cert("a"), cert("b"));
        let der = certs_only(&[&a, &b]).unwrap();
        let mut back = certificates(&der).unwrap();
        back.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn the_written_shape_is_the_one_the_c_sdk_reads() {
        let a = cert("a");
        let der = certs_only(&[&a]).unwrap();
        // ContentInfo { id-signedData, [0] { SignedData { INTEGER 1, SET {}, SEQUENCE {
        // id-data }, [0] certs, SET {} } } }
        let signed_data_oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
        ];
        let data_oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
        ];
        let find = |needle: &[u8]| der.windows(needle.len()).position(|w| w == needle);
        assert!(find(&signed_data_oid).is_some());
        let version_and_digests = [0x02, 0x01, 0x01, 0x31, 0x00];
        let v = find(&version_and_digests).unwrap();
        assert_eq!(&der[v + 5..v + 7], &[0x30, 0x0b]);
        assert_eq!(&der[v + 7..v + 18], &data_oid);
        assert_eq!(&der[der.len() - 2..], &[0x31, 0x00], "no signers");
    }

    /// A bundle whose certificates are not in DER's SET order (other encoders, such as
    /// Go's, keep the order they were given) is read, not refused.
    #[test]
    fn an_unsorted_bundle_is_read() {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = content.len();
            if len < 0x80 {
                out.push(len as u8);
            } else {
                let bytes = len.to_be_bytes();
                let skip = bytes.iter().take_while(|b| **b == 0).count();
                out.push(0x80 | (bytes.len() - skip) as u8);
                out.extend_from_slice(&bytes[skip..]);
            }
            out.extend_from_slice(content);
            out
        }
        let (mut a, mut b) = (cert("a"), cert("b"));
        if a < b {
            std::mem::swap(&mut a, &mut b);
        }
        // a sorts after b: write a first.
        let oid = |arc: u8| tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, arc]);
        let mut signed = tlv(0x02, &[0x01]);
        signed.extend(tlv(0x31, &[]));
        signed.extend(tlv(0x30, &oid(1)));
        signed.extend(tlv(0xa0, &[a.clone(), b.clone()].concat()));
        signed.extend(tlv(0x31, &[]));
        let mut info = oid(2);
        info.extend(tlv(0xa0, &tlv(0x30, &signed)));
        let der = tlv(0x30, &info);
        let mut read = certificates(&der).unwrap();
        read.sort();
        assert_eq!(read, vec![b, a]);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let a = cert("a");
        let der = certs_only(&[&a]).unwrap();
        for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
            assert!(certificates(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(certificates(b"\x30\x00").is_err());
        assert!(certs_only(&[b"not a certificate"]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = certificates(&bytes);
        }
    }
}
