//! Keeps webhooks away from internal networks: endpoint URLs must be https (http only
//! with `allow_http_urls`) and must not reach loopback, private, link-local or other
//! non-public addresses (unless `webhook_allow_private_addresses`). Checked when an
//! endpoint is registered and again at every send, where the resolver below drops
//! disallowed addresses so DNS cannot be re-pointed between check and connect.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
}

/// The rules in force.
#[derive(Debug, Clone, Copy, Default)]
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

    /// The URL's shape and where its host resolves to, now.
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
                "resolves to {bad}, a loopback, private or link-local address (set \
                 webhook_allow_private_addresses to allow)"
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
                return Err("the webhook host resolves only to disallowed addresses".into());
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
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
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
            "http://localhost/",
        ] {
            let err = strict.check(url).await.unwrap_err();
            assert!(
                err.contains("loopback, private or link-local"),
                "{url}: {err}"
            );
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
