//! The server-side request forgery guard of JWKS fetching: a `jwksEndpoint` is an
//! `https` URL, and its host may only resolve to public addresses unless the operator
//! allows the host by name in `[ext_jwt] allowed_hosts` (OpenZiti's advisory
//! GHSA-whjr-3j94-gw3c: its controller fetched any URL an administrator gave, reaching
//! internal services). The fetcher connects to the very address checked here.
//!
//! Pure functions: no I/O.

#![deny(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a JWKS URL or address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// Not `https`.
    #[error("the URL must use https, not {0:?}")]
    Scheme(String),
    /// No host, or credentials in the URL.
    #[error("{0}")]
    Shape(&'static str),
}

/// The class of a non-public address, or `None` for a public one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified (0.0.0.0/8)",
        (127, _) => "loopback",
        (10, _) => "private (RFC 1918)",
        (172, 16..=31) => "private (RFC 1918)",
        (192, 168) => "private (RFC 1918)",
        (169, 254) => "link-local",
        (100, 64..=127) => "shared address space (CGNAT, RFC 6598)",
        (198, 18 | 19) => "benchmarking (RFC 2544)",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast",
        (192, 0) if ip.octets()[2] == 0 => "IETF protocol assignments (192.0.0.0/24)",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let seg = ip.segments();
    // NAT64 (64:ff9b::/96) and IPv4-compatible (::/96) addresses reach an IPv4 address.
    if (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4]) || seg[0..6] == [0; 6] {
        let [_, _, _, _, _, _, hi, lo] = seg;
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return v4_class(v4);
    }
    Some(match seg[0] {
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// A checked JWKS URL: its host (lower case, IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksTarget {
    /// The parsed URL.
    pub url: reqwest::Url,
    /// The host as written, lower case, without IPv6 brackets.
    pub host: String,
    /// The host when it is an IP address literal.
    pub ip: Option<IpAddr>,
    /// The port (443 by default).
    pub port: u16,
}

/// Checks the shape of a `jwksEndpoint`: an absolute `https` URL with a host and no
/// user name or password.
pub fn check_jwks_url(url: &str) -> Result<JwksTarget, UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(UrlError::Scheme(parsed.scheme().to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Shape("the URL must not hold credentials"));
    }
    let (host, ip) = match parsed.host() {
        Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(v4)) => (v4.to_string(), Some(IpAddr::V4(v4))),
        Some(url::Host::Ipv6(v6)) => (v6.to_string(), Some(IpAddr::V6(v6))),
        None => return Err(UrlError::Shape("the URL has no host")),
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    Ok(JwksTarget {
        url: parsed,
        host,
        ip,
        port,
    })
}

/// Whether `host` (as [`JwksTarget::host`]) is in the operator's allow-list (compared
/// case-insensitively, IPv6 brackets ignored).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.trim().trim_start_matches('[').trim_end_matches(']');
        a.eq_ignore_ascii_case(host)
    })
}

/// The first of `candidates` the guard lets through: any, when the host is allowed;
/// otherwise the first public one. `Err` names the class of the first refused address
/// when none passes.
pub fn pick_address(host_is_allowed: bool, candidates: &[IpAddr]) -> Result<IpAddr, &'static str> {
    let mut refused = "no address";
    for ip in candidates {
        if host_is_allowed {
            return Ok(*ip);
        }
        match forbidden_class(*ip) {
            None => return Ok(*ip),
            Some(class) if refused == "no address" => refused = class,
            Some(_) => {}
        }
    }
    Err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        forbidden_class(s.parse().unwrap())
    }

    #[test]
    fn each_non_public_class_is_refused() {
        for (addr, expect) in [
            ("127.0.0.1", "loopback"),
            ("127.255.1.2", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.254", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("::7f00:1", "loopback"),
            ("fec0::1", "site-local"),
        ] {
            let got = class(addr).unwrap_or_else(|| panic!("{addr} passed"));
            assert!(got.contains(expect), "{addr}: {got}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(class(addr), None, "{addr}");
        }
    }

    #[test]
    fn urls_must_be_https_with_a_host_and_no_credentials() {
        let t = check_jwks_url("https://IdP.Example.com/keys").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.ip),
            ("idp.example.com", 443, None)
        );
        let t = check_jwks_url("https://[::1]:8443/k").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert!(t.ip.is_some());
        assert!(matches!(
            check_jwks_url("http://idp.example.com/keys"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_jwks_url("file:///etc/passwd"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_jwks_url("https://u:p@idp.example.com/"),
            Err(UrlError::Shape(_))
        ));
        assert!(matches!(
            check_jwks_url("not a url"),
            Err(UrlError::Invalid(_))
        ));
    }

    #[test]
    fn allow_list_lets_a_named_host_reach_private_addresses() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(pick_address(false, &[loopback]), Err("loopback"));
        assert_eq!(pick_address(false, &[loopback, public]), Ok(public));
        assert_eq!(pick_address(true, &[loopback]), Ok(loopback));
        assert_eq!(pick_address(false, &[]), Err("no address"));
        let allowed = vec![
            "127.0.0.1".to_owned(),
            "JWKS.internal".to_owned(),
            "[::1]".into(),
        ];
        assert!(host_allowed("127.0.0.1", &allowed));
        assert!(host_allowed("jwks.internal", &allowed));
        assert!(host_allowed("::1", &allowed));
        assert!(!host_allowed("localhost", &allowed));
    }
}
