//! The address policy of every outbound request: URLs must be https (http only with
//! `allow_http_urls`) and must not reach loopback, private, link-local or other
//! non-public addresses (unless private addresses are allowed). Checked when a URL is
//! registered and again at every send, where [`GuardedResolver`] drops disallowed
//! addresses so DNS cannot be re-pointed between check and connect.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT, NAT64,
//! 6to4, Teredo) are refused outright: whether they reach the embedded IPv4 address
//! depends on translators in the network, which the vault cannot see.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// IPv6 prefixes that are not (or not only) the public internet: `(prefix, length)`.
const NON_PUBLIC_V6: &[(u128, u32)] = &[
    (0, 96),                      // ::/96 unspecified, loopback, IPv4-compatible
    (0xffff << 32, 96),           // ::ffff:0:0/96 IPv4-mapped
    (0xffff << 48, 96),           // ::ffff:0:0:0/96 IPv4-translated (SIIT)
    (0x0064_ff9b << 96, 96),      // 64:ff9b::/96 NAT64
    (0x0064_ff9b_0001 << 80, 48), // 64:ff9b:1::/48 local-use NAT64
    (0x0100 << 112, 64),          // 100::/64 discard
    (0x2001 << 112, 32),          // 2001::/32 Teredo
    (0x2001_0002 << 96, 48),      // 2001:2::/48 benchmarking
    (0x2001_0db8 << 96, 32),      // 2001:db8::/32 documentation
    (0x2002 << 112, 16),          // 2002::/16 6to4
    (0x3fff << 112, 20),          // 3fff::/20 documentation
    (0x5f00 << 112, 16),          // 5f00::/16 segment routing
    (0xfc00 << 112, 7),           // fc00::/7 unique local
    (0xfe80 << 112, 10),          // fe80::/10 link-local
    (0xfec0 << 112, 10),          // fec0::/10 site-local (deprecated)
    (0xff00 << 112, 8),           // ff00::/8 multicast
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    !NON_PUBLIC_V6.iter().any(|&(prefix, len)| {
        let mask = u128::MAX << (128 - len);
        bits & mask == prefix & mask
    })
}

/// What the address policy refuses, in words for operators (never secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blocked by the address policy: {0}")]
pub struct Blocked(pub String);

/// The rules in force for one destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    pub allow_http: bool,
    pub allow_private: bool,
}

impl Guard {
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// The URL's shape: absolute, https (or allowed http), no credentials, a host.
    pub fn check_shape(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|_| "must be an absolute URL".to_owned())?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err("must use https (plain http needs allow_http_urls)".into()),
            _ => return Err("must be an https URL".into()),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not contain credentials".into());
        }
        if parsed.host().is_none() {
            return Err("must have a host".into());
        }
        Ok(parsed)
    }

    /// Refuses a URL whose host is an IP literal the policy does not allow (literals
    /// never reach the resolver, so they are checked here).
    pub fn check_literal(&self, url: &Url) -> Result<(), Blocked> {
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.address_allowed(literal) {
            Ok(())
        } else {
            Err(Blocked(format!("{literal} is not a public address")))
        }
    }

    /// The URL's shape and where its host resolves to, now (at registration).
    pub async fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = self.check_shape(url)?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match parsed.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| "its host does not resolve".to_owned())?
                .map(|a| a.ip())
                .collect(),
            None => Vec::new(),
        };
        if addresses.is_empty() {
            return Err("its host does not resolve".into());
        }
        if let Some(bad) = addresses.iter().find(|ip| !self.address_allowed(**ip)) {
            return Err(format!(
                "resolves to {bad}, a loopback, private, link-local or otherwise non-public \
                 address: blocked by the address policy"
            ));
        }
        Ok(parsed)
    }
}

/// reqwest's resolver at send time: resolves, then keeps only allowed addresses.
pub struct GuardedResolver(pub Guard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| guard.address_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                let why = format!("{} resolves only to non-public addresses", name.as_str());
                return Err(Box::new(Blocked(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            // IPv6 forms that embed IPv4, and other special ranges.
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "::ffff:0:a9fe:a9fe",
            "::127.0.0.1",
            "2002:a9fe:a9fe::",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "2001:db8::1",
            "fec0::1",
            "ff02::1",
            "192.0.0.8",
            "192.88.99.1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:4860::8888",
        ] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn metadata_and_loopback_urls_are_refused_by_default() {
        let strict = Guard {
            allow_http: true,
            allow_private: false,
        };
        for url in [
            "http://169.254.169.254/",
            "http://127.0.0.1/",
            "http://[::1]:8080/hook",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://localhost/",
        ] {
            let err = strict.check(url).await.unwrap_err();
            assert!(err.contains("address policy"), "{url}: {err}");
        }
        let https_only = Guard::default();
        assert!(
            https_only
                .check("http://93.184.216.34/")
                .await
                .unwrap_err()
                .contains("https")
        );
        assert!(
            https_only
                .check("https://user:pw@93.184.216.34/")
                .await
                .is_err()
        );
        assert!(https_only.check("ftp://93.184.216.34/").await.is_err());
        assert!(https_only.check("https://93.184.216.34/hook").await.is_ok());
        let permissive = Guard {
            allow_http: true,
            allow_private: true,
        };
        assert!(permissive.check("http://127.0.0.1:9/hook").await.is_ok());
    }
}
