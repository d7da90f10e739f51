//! Workflow targets: URLs a user gives, so every request to one goes only
//! to a public address, follows no redirect and times out. The address rule
//! lives here, once: checked when a workflow is created (IP literals and
//! `localhost` names) and again at connect time by the resolver, so a name
//! that resolves to a private address (DNS rebinding) is refused too.
//!
//! `CONNECTOR_ALLOW_PRIVATE_TARGETS=true` lifts the address rule (the dev
//! server's default: its targets are local services). Redirects stay off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// Longest target URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Time to connect to a target; the whole delivery has its own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a target URL is refused. The message is for the workflow's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target.url is not a URL: {0}")]
    Malformed(String),
    #[error("target.url must be http or https")]
    Scheme,
    #[error("target.url must not carry a user name or password")]
    Credentials,
    #[error(
        "target.url points to a private, loopback, link-local or unspecified address ({0}); targets must be public (CONNECTOR_ALLOW_PRIVATE_TARGETS=true allows private ones)"
    )]
    Private(String),
}

/// Parses and checks a target URL: http(s), a host, no credentials, at most
/// [`MAX_URL_LEN`] bytes; unless `allow_private`, no IP literal outside the
/// public internet and no `localhost` name.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    if raw.len() > MAX_URL_LEN {
        return Err(TargetError::Malformed(format!(
            "longer than {MAX_URL_LEN} bytes"
        )));
    }
    let url = Url::parse(raw).map_err(|e| TargetError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let host = url
        .host()
        .ok_or_else(|| TargetError::Malformed("no host".into()))?;
    if !allow_private {
        match host {
            Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => {
                return Err(TargetError::Private(ip.to_string()));
            }
            Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => {
                return Err(TargetError::Private(ip.to_string()));
            }
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    return Err(TargetError::Private(name));
                }
            }
            _ => {}
        }
    }
    Ok(url)
}

/// Whether an address is on the public internet: not loopback, private,
/// link-local (169.254/16 holds cloud metadata), shared (100.64/10),
/// unspecified, broadcast, documentation, benchmarking, reserved or
/// multicast; for IPv6 also unique-local (fc00::/7), link-local (fe80::/10)
/// and the IPv4-mapped, -compatible and NAT64 forms of a non-public IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its low bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// A refused address, found by the resolver at connect time.
#[derive(Debug, thiserror::Error)]
#[error("the target's host resolves only to non-public addresses")]
pub struct ForbiddenAddress;

/// Resolves names like the system does, then keeps only public addresses;
/// none left is [`ForbiddenAddress`].
#[derive(Debug, Clone, Copy)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(ForbiddenAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client for target deliveries: no redirects, a connect timeout, and
/// unless `allow_private` the public-only resolver.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .user_agent(crate::stripe::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60));
    if !allow_private {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
    }
    builder.build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Whether a failed request was refused by the address rule (a permanent
/// failure: retrying reaches the same address).
pub fn is_forbidden(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<ForbiddenAddress>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://[::1]/",
            "http://0.0.0.0/",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.1/",
            "http://10.0.0.1/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://255.255.255.255/",
            "http://224.0.0.1/",
        ] {
            assert!(
                matches!(check_url(url, false), Err(TargetError::Private(_))),
                "{url}: {:?}",
                check_url(url, false)
            );
            assert!(check_url(url, true).is_ok(), "{url} with private allowed");
        }
    }

    #[test]
    fn malformed_urls_are_refused_whatever_the_setting() {
        for (url, allow) in [
            ("http://[", true),
            ("https://", true),
            ("ftp://example.com/", true),
            ("file:///etc/passwd", true),
            ("https://user:pw@example.com/", true),
            ("example.com/hook", true),
        ] {
            assert!(check_url(url, allow).is_err(), "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long, true).is_err());
    }

    #[test]
    fn public_targets_pass() {
        for url in [
            "https://hooks.example.com/stripe",
            "http://93.184.216.34:8080/x",
            "https://[2606:4700::1111]/",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses_at_connect_time() {
        // `localhost` resolves to loopback: the check at connect time refuses
        // it even where the creation check would not look (a DNS name).
        let err = client(false)
            .get("http://localhost:9/")
            .send()
            .await
            .unwrap_err();
        assert!(is_forbidden(&err), "{err:?}");
    }
}
