//! Where fetches may connect: public addresses only, unless the operator allowed a
//! `host:port` (a private object store, the test bed's servers on loopback).
//!
//! A URI a tenant writes (a contribution, a manifest, an object-store endpoint in a Secret)
//! must not make the curation or the operator reach the cluster's own network: the API
//! server, the cloud's metadata service, a database on a pod IP. So every connection goes
//! through [`Guarded`], which resolves the name itself, refuses the connection when *any*
//! address of it is loopback, private, link-local (the metadata services), shared, reserved
//! or multicast — in every spelling: the URL parser normalizes decimal, octal and hex IPv4
//! forms, and IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4) are judged
//! as the IPv4 address they carry — and then connects to exactly the address it checked, so
//! a name cannot resolve to a public address for the check and a private one for the
//! connection. Redirects go through the same connector.
//!
//! Refusals say only that the address is not public: no resolved address, no answer.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;

/// The environment variable holding the allowed `host:port` list (comma-separated), as the
/// operator passes it to the curation Job.
pub const ALLOW_ENV: &str = "MODELCOMMONS_FETCH_ALLOW";

/// The `host:port`s that fetches may reach even when they are not public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    allowed: Arc<BTreeSet<String>>,
}

/// The message of a refused connection.
pub const REFUSED: &str = "refused: not a public address (loopback, private, link-local and metadata addresses are not fetched; an operator may allow a private store by host:port)";

impl Egress {
    /// Allows these `host:port` entries (case-insensitive; IPv6 hosts in brackets; `host:*`
    /// for every port of a host).
    pub fn allowing<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Self {
        Self {
            allowed: Arc::new(
                entries
                    .into_iter()
                    .map(|e| e.as_ref().trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
            ),
        }
    }

    /// The list in [`ALLOW_ENV`] (none when unset).
    pub fn from_env() -> Self {
        Self::allowing(
            std::env::var(ALLOW_ENV)
                .unwrap_or_default()
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )
    }

    /// The list as [`ALLOW_ENV`] holds it.
    pub fn to_env(&self) -> String {
        self.allowed.iter().cloned().collect::<Vec<_>>().join(",")
    }

    /// Whether `host:port` is allowed explicitly.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = if bare.contains(':') {
            format!("[{bare}]")
        } else {
            bare.to_string()
        };
        self.allowed.contains(&format!("{host}:{port}"))
            || self.allowed.contains(&format!("{host}:*"))
    }

    /// The addresses to connect to for `host:port`: all of them when allowed, otherwise only
    /// if every one is public. Names are resolved here, once.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| format!("resolving {bare}: {e}"))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{bare} has no address"));
        }
        if self.allows(host, port) || addrs.iter().all(|a| is_public(a.ip())) {
            Ok(addrs)
        } else {
            Err(REFUSED.into())
        }
    }

    /// Checks the host of a URL (before a request, so a refusal is final, not retried).
    pub async fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err("no host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        self.resolve(&host, port).await.map(drop)
    }

    /// An HTTP connector that connects only where this allows.
    pub fn connector(&self, inner: HttpConnector) -> Guarded {
        Guarded {
            inner,
            egress: self.clone(),
        }
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", 0.0.0.0
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay
        || (a == 192 && b == 168)              // private
        || (a == 198 && (b == 18 || b == 19))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: usize| {
        Ipv4Addr::new(
            (s[hi] >> 8) as u8,
            s[hi] as u8,
            (s[hi + 1] >> 8) as u8,
            s[hi + 1] as u8,
        )
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return public_v4(embedded(6));
    }
    // 64:ff9b::/96 (NAT64) carries an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return public_v4(embedded(6));
    }
    // 2002::/16 (6to4) carries one in bits 16–48.
    if s[0] == 0x2002 {
        return public_v4(embedded(1));
    }
    !((s[0] & 0xfe00) == 0xfc00          // unique local (fd00:ec2::254 is a metadata service)
        || (s[0] & 0xffc0) == 0xfe80     // link-local
        || (s[0] & 0xffc0) == 0xfec0     // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00     // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0)      // Teredo
        || (s[0] == 0x0100 && s[1..4] == [0; 3])) // discard-only
}

/// An [`HttpConnector`] that resolves and checks the host itself and connects to the
/// checked address.
#[derive(Debug, Clone)]
pub struct Guarded {
    inner: HttpConnector,
    egress: Egress,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Guarded {
    type Response = <HttpConnector as tower_service::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<http::Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let egress = self.egress.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("no host")?.to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let addrs = egress.resolve(&host, port).await?;
            let mut last: Option<BoxError> = None;
            for a in addrs {
                let authority = match a {
                    SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
                    SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
                };
                let target = http::Uri::builder()
                    .scheme(uri.scheme_str().unwrap_or("http"))
                    .authority(authority)
                    .path_and_query("/")
                    .build()?;
                match inner.call(target).await {
                    Ok(io) => return Ok(io),
                    Err(e) => last = Some(e.into()),
                }
            }
            Err(last.unwrap_or_else(|| "no address".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }

    #[test]
    fn internal_addresses_are_not_public_in_any_form() {
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!public(s), "{s} counted as public");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(s), "{s} counted as internal");
        }
    }

    #[test]
    fn the_url_parser_normalizes_every_spelling_of_loopback() {
        for u in [
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let url = url::Url::parse(u).unwrap_or_else(|_| {
                url::Url::parse("http://x/").unwrap_or_else(|_| unreachable!())
            });
            let ip: IpAddr = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.into(),
                Some(url::Host::Ipv6(ip)) => ip.into(),
                _ => panic!("{u} is not an IP host"),
            };
            assert!(!is_public(ip), "{u} → {ip}");
        }
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to_unless_allowed() {
        let none = Egress::default();
        assert_eq!(none.resolve("localhost", 80).await, Err(REFUSED.into()));
        assert_eq!(none.resolve("127.0.0.1", 80).await, Err(REFUSED.into()));
        assert_eq!(none.resolve("[::1]", 80).await, Err(REFUSED.into()));
        let some = Egress::allowing(["127.0.0.1:9000", "[::1]:9000"]);
        assert!(some.resolve("127.0.0.1", 9000).await.is_ok());
        assert!(some.resolve("[::1]", 9000).await.is_ok());
        assert_eq!(some.resolve("127.0.0.1", 9001).await, Err(REFUSED.into()));
        assert_eq!(Egress::allowing(["a:1", "B:2"]).to_env(), "a:1,b:2");
        let any_port = Egress::allowing(["127.0.0.1:*"]);
        assert!(any_port.resolve("127.0.0.1", 1234).await.is_ok());
        assert_eq!(
            any_port.resolve("127.0.0.2", 1234).await,
            Err(REFUSED.into())
        );
    }
}
