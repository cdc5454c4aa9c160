//! Who a request's client is, for its rate limits ([`ClientKey::of`]): the authenticated user
//! when authentication is on, else the IP address it comes from: the connection's peer, or,
//! when the peer is a trusted proxy, the address the proxies' `X-Forwarded-For` names.

use super::TrustedProxies;
use crate::auth::Identity;
use axum::http::{HeaderMap, HeaderName};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// `X-Forwarded-For`: the addresses a request came through, the client's first, each proxy
/// appending the one it received the request from.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client a rate limit counts a request against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An authenticated caller: the API key's user, or the JWT's `sub`.
    User(Box<str>),
    /// An anonymous caller, by address. IPv6 addresses count by their /64 network, the block
    /// one host or one home usually has: otherwise a single host could take a fresh address
    /// for each request, and each would have a bucket (and memory) of its own.
    Ip(IpAddr),
    /// A request whose peer address is not known (an [`crate::HttpService`] driven without
    /// [`crate::serve`]); all such requests share one bucket.
    Unknown,
}

impl ClientKey {
    /// The client of a request from `peer` with `headers`, `identity` being the caller when
    /// authentication is on.
    ///
    /// `X-Forwarded-For` counts only when the peer is a trusted proxy: anyone else could send
    /// a different made-up address with each request. Then the client is the rightmost address
    /// that is not a trusted proxy's: the one the last trusted proxy received the request from
    /// (entries left of it were written by the client, or by proxies nobody vouches for).
    pub fn of(
        identity: Option<&Identity>,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
    ) -> Self {
        if let Some(identity) = identity {
            return Self::User(identity.user_id().into());
        }
        let Some(peer) = peer else {
            return Self::Unknown;
        };
        let peer = peer.ip().to_canonical();
        if trusted.is_empty() || !trusted.contains(peer) {
            return Self::ip(peer);
        }
        Self::ip(forwarded_client(peer, headers, trusted))
    }

    /// The key of an anonymous client at `ip` (IPv6: its /64).
    fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & (u128::MAX << 64);
                Self::Ip(IpAddr::V6(Ipv6Addr::from(network)))
            }
            v4 => Self::Ip(v4),
        }
    }
}

/// The rightmost address of `X-Forwarded-For` (all its fields, in order) that is not a trusted
/// proxy's, the trusted `peer` having sent the request. An entry that is no address (a proxy
/// wrote `unknown`, or the header is garbled) ends the walk: the client is then the last
/// trusted hop, the nearest address known to be real. When every entry is a trusted proxy's,
/// the leftmost is the client.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer;
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|field| field.to_str().ok())
        .flat_map(|field| field.rsplit(','));
    for entry in entries {
        let Some(ip) = parse_forwarded(entry.trim()) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an IP address, possibly with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| entry.trim_start_matches('[').trim_end_matches(']').parse())
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                &X_FORWARDED_FOR,
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::Ip(s.parse().expect("ip"))
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).expect("proxies");
        let spoofed = forwarded(&["203.0.113.9"]);
        let of = |p: &str, h: &HeaderMap, t: &TrustedProxies| ClientKey::of(None, peer(p), h, t);
        assert_eq!(of("198.51.100.1:4000", &spoofed, &none), ip("198.51.100.1"));
        assert_eq!(
            of("198.51.100.1:4000", &spoofed, &proxies),
            ip("198.51.100.1"),
            "an untrusted peer's X-Forwarded-For is ignored"
        );
        assert_eq!(of("10.0.0.5:4000", &spoofed, &proxies), ip("203.0.113.9"));
        assert_eq!(
            of("10.0.0.5:4000", &HeaderMap::new(), &proxies),
            ip("10.0.0.5"),
            "a proxy that forwards no address is the client"
        );
        assert_eq!(
            ClientKey::of(None, None, &spoofed, &proxies),
            ClientKey::Unknown
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "fd00::/8"]).expect("proxies");
        let of = |h: &HeaderMap| ClientKey::of(None, peer("10.0.0.1:1"), h, &proxies);
        // The client made up the first entry; the edge proxy (10.0.0.2) appended the real one.
        assert_eq!(
            of(&forwarded(&["1.1.1.1, 198.51.100.7, 10.0.0.2"])),
            ip("198.51.100.7")
        );
        // The same list split over several fields, in order.
        assert_eq!(
            of(&forwarded(&["1.1.1.1", "198.51.100.7", "10.0.0.2"])),
            ip("198.51.100.7")
        );
        // Every entry a proxy's: the leftmost is the client.
        assert_eq!(of(&forwarded(&["10.9.9.9, 10.0.0.2"])), ip("10.9.9.9"));
        // Ports and brackets are tolerated; IPv4-mapped addresses are IPv4.
        assert_eq!(
            of(&forwarded(&["198.51.100.7:5555, [fd00::1]:80"])),
            ip("198.51.100.7")
        );
        assert_eq!(of(&forwarded(&["::ffff:198.51.100.7"])), ip("198.51.100.7"));
        // Garbage right of the client stops the walk at the last trusted hop.
        assert_eq!(of(&forwarded(&["198.51.100.7, unknown"])), ip("10.0.0.1"));
        assert_eq!(
            of(&forwarded(&["unknown, 198.51.100.7, 10.0.0.2"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn an_authenticated_caller_is_its_user_wherever_it_comes_from() {
        let keys = crate::ApiKeys::parse("alice ak-alice-7f3c9e1d2b4a6058\n").expect("keys");
        let auth = crate::Auth::off().with_api_keys(keys);
        let mut headers = forwarded(&["203.0.113.9"]);
        headers.insert(
            crate::API_KEY,
            HeaderValue::from_static("ak-alice-7f3c9e1d2b4a6058"),
        );
        let identity = auth.authenticate(&headers).expect("authenticated");
        let proxies = TrustedProxies::parse(&["0.0.0.0/0"]).expect("proxies");
        for from in ["198.51.100.1:1", "10.0.0.1:2"] {
            assert_eq!(
                ClientKey::of(identity.as_ref(), peer(from), &headers, &proxies),
                ClientKey::User("alice".into())
            );
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_64_network() {
        let none = TrustedProxies::default();
        let a = ClientKey::of(None, peer("[2001:db8:1:2::1]:1"), &HeaderMap::new(), &none);
        let b = ClientKey::of(
            None,
            peer("[2001:db8:1:2:ffff::9]:1"),
            &HeaderMap::new(),
            &none,
        );
        let c = ClientKey::of(None, peer("[2001:db8:1:3::1]:1"), &HeaderMap::new(), &none);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = ClientKey::of(None, peer("[::ffff:192.0.2.1]:1"), &HeaderMap::new(), &none);
        assert_eq!(mapped, ip("192.0.2.1"));
    }
}
