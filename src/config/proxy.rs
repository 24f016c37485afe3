//! Proxies in front of the service whose `X-Forwarded-For` is believed (`--trusted-proxy
//! CIDR`): behind one, every request comes from the proxy's address, so the per-address login
//! limit would count everyone together and twenty failures by anyone would lock everyone out.

use std::net::IpAddr;

/// A network (`10.0.0.0/8`, `::1/128`, or one address) whose requests may name their client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    net: IpAddr,
    prefix: u8,
}

/// A `--trusted-proxy` value that is not an address or `ADDRESS/PREFIX`.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a trusted proxy: give an address or a network as ADDRESS/PREFIX, such as 10.0.0.0/8 or ::1"
)]
pub struct BadProxy(pub String);

impl std::str::FromStr for TrustedProxy {
    type Err = BadProxy;

    fn from_str(s: &str) -> Result<TrustedProxy, BadProxy> {
        let bad = || BadProxy(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(TrustedProxy { net, prefix })
    }
}

impl TrustedProxy {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        // IPv4 addresses sit in the top 32 bits, so the prefix counts from the top for both.
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - prefix);
        bits(ip) & mask == bits(self.net) & mask
    }
}

/// The client of a request that came from `peer` with `forwarded` (the `X-Forwarded-For`
/// values, in order): `peer` unless it is a trusted proxy; then, walking the list from the
/// right (the entries the trusted proxies added), the first address that is not a trusted
/// proxy itself. Entries a client wrote on the left are never believed.
pub fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[TrustedProxy]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map_while(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_hold_their_addresses() {
        let net: TrustedProxy = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        let one: TrustedProxy = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
        assert!("proxy.internal".parse::<TrustedProxy>().is_err());
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted: Vec<TrustedProxy> =
            vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        // Not from a trusted proxy: the header is the client's word, ignored.
        assert_eq!(
            client_address(ip("203.0.113.5"), &["1.2.3.4"], &trusted),
            ip("203.0.113.5")
        );
        // Through two trusted proxies; the leftmost entry was written by the client.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                &["6.6.6.6, 198.51.100.7", "10.0.0.2"],
                &trusted
            ),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("127.0.0.1"), &[], &trusted),
            ip("127.0.0.1")
        );
    }
}
