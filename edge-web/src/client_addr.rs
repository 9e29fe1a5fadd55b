//! The client's address behind reverse proxies: `[web] trusted_proxies` and the reading of
//! `X-Forwarded-For` / `Forwarded` (RFC 7239). Every per-address limit and every log line of
//! the edge uses the address decided here.
//!
//! The headers are believed only when the TCP peer is a trusted proxy; from anyone else they
//! are ignored, since any client can send them. The hops are walked right to left (each proxy
//! appends the address it was connected from) and the right-most address that is not itself
//! a trusted proxy is the client: what is left of it was written by someone we do not trust.
//! A hop that cannot be read (`unknown`, an obfuscated name, garbage) stops the walk at the
//! peer address, because nothing to its left can be vouched for.
//!
//! When both headers are present, `X-Forwarded-For` wins: it is the one nginx, Caddy,
//! HAProxy, Traefik and the cloud load balancers maintain, and such a proxy passes a
//! client's own `Forwarded` header through untouched, so preferring `Forwarded` would let
//! any visitor choose its address. `Forwarded` is read when no `X-Forwarded-For` came.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Mutex,
};

use axum::http::{HeaderMap, HeaderName, header::FORWARDED};
use ipnet::IpNet;
use tracing::warn;

/// The de-facto standard header (no constant in `http`).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Distinct untrusted peers warned about; enough to name the proxy even when a few spoofing
/// clients came first, and a bound on the log a spoofer can cause.
const WARN_PEERS: usize = 8;

/// An entry of `[web] trusted_proxies` that is neither an address nor a CIDR network.
#[derive(Debug, thiserror::Error)]
#[error(
    "{entry:?} is not an IP address or a CIDR network (e.g. \"127.0.0.1\", \"10.0.0.0/8\", \"::1\")"
)]
pub struct BadProxyEntry {
    pub entry: String,
}

/// The proxies whose forwarding headers are believed, and the client address they imply.
#[derive(Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// Untrusted peers already warned about (forwarding headers from them are ignored).
    warned: Mutex<HashSet<IpAddr>>,
}

impl TrustedProxies {
    /// Parses `[web] trusted_proxies`: addresses (`127.0.0.1`, `::1`) and networks
    /// (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxyEntry> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxyEntry {
                        entry: entry.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            nets,
            warned: Mutex::default(),
        })
    }

    /// Whether no proxy is trusted (the headers are never read).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that came from `peer` with `headers`. Warns (for
    /// the first few such peers) when an untrusted peer sends forwarding headers: then every
    /// visitor behind it shares its limits.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if self.trusts(peer) {
            return resolve(peer, headers, |ip| self.trusts(ip));
        }
        if has_forwarding_headers(headers) && self.first_warning(peer) {
            warn!(
                proxy = %peer,
                "requests from {peer} carry X-Forwarded-For/Forwarded, but {peer} is not in \
                 web.trusted_proxies: the headers are ignored and connection and event limits \
                 count everyone behind {peer} as one client; if {peer} is your reverse proxy, \
                 add it to web.trusted_proxies"
            );
        }
        peer
    }

    /// True the first time `peer` is seen here (up to [`WARN_PEERS`] peers).
    fn first_warning(&self, peer: IpAddr) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.len() < WARN_PEERS && warned.insert(peer)
    }
}

fn has_forwarding_headers(headers: &HeaderMap) -> bool {
    headers.contains_key(&X_FORWARDED_FOR) || headers.contains_key(FORWARDED)
}

/// The client behind `peer` (a trusted proxy): the right-most hop that `trusted` refuses; when
/// every hop is trusted, the left-most one; the peer when the headers are absent or a hop
/// cannot be read.
fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let Some(hops) = forwarded_hops(headers) else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else {
            return peer;
        };
        if !trusted(ip) {
            return ip;
        }
        client = ip;
    }
    client
}

/// The hops of `X-Forwarded-For` (all its lines, in order) or else of `Forwarded`, left to
/// right; `None` in a hop that cannot be read, `None` overall when neither header came or a
/// line is not text.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    if headers.contains_key(&X_FORWARDED_FOR) {
        let mut hops = Vec::new();
        for line in headers.get_all(&X_FORWARDED_FOR) {
            hops.extend(line.to_str().ok()?.split(',').map(parse_node));
        }
        return Some(hops);
    }
    if headers.contains_key(FORWARDED) {
        let mut hops = Vec::new();
        for line in headers.get_all(FORWARDED) {
            hops.extend(split_unquoted(line.to_str().ok()?, ',').map(forwarded_for));
        }
        return Some(hops);
    }
    None
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.1;proto=https`,
/// `For="[2001:db8::1]:4711"`); `None` when it has none or it is not an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_unquoted(element, ';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => unquote(quoted.strip_suffix('"')?),
            None => value.to_owned(),
        };
        parse_node(&value)
    })
}

/// The contents of a quoted-string (RFC 7230): `\x` stands for `x`.
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// Splits at `separator` outside double quotes.
fn split_unquoted(s: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    s.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            return true;
        }
        false
    })
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, and a bare `2001:db8::1` (some proxies write it so in
/// `X-Forwarded-For`). `unknown` and obfuscated names (`_hidden`) are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (ip, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port, or an obfuscated one (`_abc`, RFC 7239 §6.3).
fn is_port(port: &str) -> bool {
    port.parse::<u16>().is_ok() || (port.len() > 1 && port.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).unwrap()
    }

    const LOCAL: &str = "127.0.0.1";

    #[test]
    fn entries_are_addresses_or_networks() {
        let p = proxies(&[
            "127.0.0.1",
            "10.0.0.0/8",
            "::1",
            "fd00::/8",
            " 192.168.1.7/24 ",
        ]);
        for trusted in ["127.0.0.1", "10.200.3.4", "::1", "fd12::5", "192.168.1.200"] {
            assert!(p.trusts(ip(trusted)), "{trusted}");
        }
        for untrusted in ["127.0.0.2", "11.0.0.1", "::2", "fe80::1", "192.168.2.1"] {
            assert!(!p.trusts(ip(untrusted)), "{untrusted}");
        }
        // An IPv4 peer of a dual-stack listener.
        assert!(p.trusts(ip("::ffff:10.1.1.1")));
        for bad in ["localhost", "10.0.0.0/33", "", "1.2.3.4:80", "*"] {
            let err = TrustedProxies::parse(&[bad]).unwrap_err();
            assert_eq!(err.entry, bad.trim());
        }
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let p = proxies(&["10.0.0.1"]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        assert_eq!(p.client_ip(ip("198.51.100.7"), &h), ip("198.51.100.7"));
        assert_eq!(proxies(&[]).client_ip(ip(LOCAL), &h), ip(LOCAL));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&[LOCAL, "10.0.0.0/8"]);
        let cases = [
            ("203.0.113.9", "203.0.113.9"),
            // A visitor's own (spoofed) entries are left of what the proxies appended.
            ("6.6.6.6, 203.0.113.9", "203.0.113.9"),
            ("6.6.6.6, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
            ("203.0.113.9,10.1.2.3,10.4.5.6", "203.0.113.9"),
            ("203.0.113.9:5123", "203.0.113.9"),
            ("[2001:db8::17]:4711", "2001:db8::17"),
            ("2001:db8::17", "2001:db8::17"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            // Only proxies: the furthest one is where the request began.
            ("10.9.9.9, 10.1.1.1", "10.9.9.9"),
        ];
        for (xff, client) in cases {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(p.client_ip(ip(LOCAL), &h), ip(client), "{xff}");
        }
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
        ]);
        assert_eq!(p.client_ip(ip(LOCAL), &h), ip("203.0.113.9"));
        // The peer as a dual-stack listener reports it.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(p.client_ip(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn unreadable_or_absent_headers_mean_the_peer() {
        let p = proxies(&[LOCAL]);
        assert_eq!(p.client_ip(ip(LOCAL), &HeaderMap::new()), ip(LOCAL));
        for xff in [
            "",
            "unknown",
            "not-an-address",
            "203.0.113.9, garbage",
            "203.0.113.9:99999",
            "[2001:db8::1",
            "[203.0.113.9]",
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(p.client_ip(ip(LOCAL), &h), ip(LOCAL), "{xff:?}");
        }
        // Garbage left of the client does not matter: the walk stops at the client.
        let h = headers(&[("x-forwarded-for", "garbage, 203.0.113.9")]);
        assert_eq!(p.client_ip(ip(LOCAL), &h), ip("203.0.113.9"));
        // Not text at all.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_bytes(b"\xff203.0.113.9").unwrap(),
        );
        assert_eq!(p.client_ip(ip(LOCAL), &h), ip(LOCAL));
    }

    #[test]
    fn forwarded_per_rfc_7239() {
        let p = proxies(&[LOCAL, "10.0.0.0/8"]);
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[::1]:1234\"", "::1"),
            ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
            (
                "for=192.0.2.43, for=\"10.0.0.5:80\";by=_proxy",
                "192.0.2.43",
            ),
            ("proto=https;for=\"192.0.2.7\";host=\"a,b;c\"", "192.0.2.7"),
            ("for=\"192.0.2.8:_obf\"", "192.0.2.8"),
            // Unreadable hops stop the walk at the peer.
            ("for=unknown", LOCAL),
            ("for=_hidden", LOCAL),
            ("proto=https", LOCAL),
            ("for=\"[2001:db8::1]", LOCAL),
        ];
        for (forwarded, client) in cases {
            let h = headers(&[("forwarded", forwarded)]);
            assert_eq!(p.client_ip(ip(LOCAL), &h), ip(client), "{forwarded}");
        }
        // A hop that is itself a trusted proxy is passed over; when all are, the furthest.
        let h = headers(&[("forwarded", "for=\"[::1]:1234\"")]);
        assert_eq!(proxies(&[LOCAL, "::1"]).client_ip(ip(LOCAL), &h), ip("::1"));
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        // nginx appends to X-Forwarded-For and passes a visitor's own `Forwarded` through.
        let p = proxies(&[LOCAL]);
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(p.client_ip(ip(LOCAL), &h), ip("203.0.113.9"));
    }

    #[test]
    fn untrusted_peers_with_headers_are_warned_about_once_each_up_to_a_bound() {
        let p = proxies(&["10.0.0.1"]);
        assert!(p.first_warning(ip("192.0.2.1")));
        assert!(!p.first_warning(ip("192.0.2.1")));
        for n in 2..=WARN_PEERS as u8 {
            assert!(p.first_warning(IpAddr::from([192, 0, 2, n])));
        }
        assert!(!p.first_warning(ip("192.0.2.200")));
        // Only requests that carry the headers count.
        let p = proxies(&["10.0.0.1"]);
        p.client_ip(ip("192.0.2.1"), &HeaderMap::new());
        assert!(p.first_warning(ip("192.0.2.1")));
    }
}
