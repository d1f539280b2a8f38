//! Endpoint addresses as OpenZiti writes them: an edge router's listener
//! `tls://host:port` (`supportedProtocols`), a control address `host:port`. Parsed with
//! the `url` crate, IPv6 literals in brackets included.

/// A host and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A DNS name or an IP address (an IPv6 address without its brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port` as a socket address string (IPv6 in brackets again).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The host and port of `text`: `scheme://host:port` (any scheme, a path ignored) or a
/// bare `host:port`; `None` without a host or a port.
pub fn parse(text: &str) -> Option<Endpoint> {
    let (url, host) = url_and_host(text)?;
    Some(Endpoint {
        host,
        port: url.port_or_known_default()?,
    })
}

/// The host of `text` as [`parse`] reads it, with or without a port.
pub fn host(text: &str) -> Option<String> {
    url_and_host(text).map(|(_, host)| host)
}

fn url_and_host(text: &str) -> Option<(url::Url, String)> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("tcp://{text}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    let host = match url.host()? {
        url::Host::Domain(d) if !d.is_empty() => d.to_owned(),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some((url, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Option<Endpoint> {
        Some(Endpoint {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn listener_urls_and_bare_addresses() {
        assert_eq!(parse("tls://er1.example:3022"), ep("er1.example", 3022));
        assert_eq!(parse("tls://10.0.0.1:443"), ep("10.0.0.1", 443));
        assert_eq!(parse("tls://[::1]:3022"), ep("::1", 3022));
        assert_eq!(parse("localhost:6262"), ep("localhost", 6262));
        assert_eq!(parse("[fe80::1]:1"), ep("fe80::1", 1));
        assert_eq!(parse("https://ctl:1280/edge"), ep("ctl", 1280));
        assert_eq!(parse("https://ctl"), ep("ctl", 443));
        assert_eq!(parse("tls://host"), None, "no port, no known default");
        assert_eq!(host("tls://host").as_deref(), Some("host"));
        assert_eq!(host("tls://[::1]:1").as_deref(), Some("::1"));
        assert_eq!(parse("tls://:3022"), None);
        assert_eq!(parse("tls://h:99999"), None);
        assert_eq!(parse("garbage"), None);
        assert_eq!(ep("::1", 3022).unwrap().address(), "[::1]:3022");
        assert_eq!(ep("h", 1).unwrap().address(), "h:1");
    }
}
