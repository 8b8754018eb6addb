//! Destination checks against server-side request forgery (docs/policy.md, "Destinations").
//!
//! Pure functions over addresses the proxy has already resolved: the proxy
//! resolves once, calls [`check_destination`], and dials exactly the
//! addresses that passed.
//!
//! IPv4 addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d` and NAT64 `64:ff9b::/96`) are classified as the
//! IPv4 address they carry, so no IPv6 spelling reaches a blocked IPv4 range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Ports of cluster control planes, refused even where the address is allowed.
pub const CONTROL_PLANE_PORTS: [u16; 5] = [2379, 2380, 6443, 10250, 10255];

/// The cloud metadata address, never exempt.
pub const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The AWS IPv6 metadata address (inside the ULA range), never exempt.
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);

/// `prefix breadth` below which an `allowed_ips` entry draws a warning.
pub const BROAD_PREFIX_V4: u8 = 16;

/// The class of an address, from most to least restricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Loopback, link-local, unspecified, metadata: never dialed.
    AlwaysBlocked,
    /// Private and reserved ranges: dialed only when the policy names them.
    Internal,
    Public,
}

fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    // Every call site passes a prefix of at most 32.
    Ipv4Net::new(Ipv4Addr::new(a, b, c, d), prefix).unwrap_or_default()
}

fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix).unwrap_or_default()
}

/// The IPv4 ranges that are always blocked.
pub fn always_blocked_v4() -> [Ipv4Net; 3] {
    [
        v4(127, 0, 0, 0, 8),
        v4(169, 254, 0, 0, 16),
        v4(0, 0, 0, 0, 8),
    ]
}

/// The IPv6 ranges that are always blocked (embedded IPv4 is handled separately).
pub fn always_blocked_v6() -> [Ipv6Net; 4] {
    [
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254], 128),
    ]
}

fn internal_v4() -> [Ipv4Net; 12] {
    [
        v4(10, 0, 0, 0, 8),
        v4(172, 16, 0, 0, 12),
        v4(192, 168, 0, 0, 16),
        v4(100, 64, 0, 0, 10),
        v4(192, 0, 0, 0, 24),
        v4(192, 0, 2, 0, 24),
        v4(198, 51, 100, 0, 24),
        v4(203, 0, 113, 0, 24),
        v4(198, 18, 0, 0, 15),
        v4(224, 0, 0, 0, 4),
        v4(240, 0, 0, 0, 4),
        v4(255, 255, 255, 255, 32),
    ]
}

fn internal_v6() -> [Ipv6Net; 4] {
    [
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32),
    ]
}

/// The IPv4 address an IPv6 address carries, if it is one of the embedding forms.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-compatible (deprecated) `::a.b.c.d`, but not `::` and `::1` themselves.
    if s[..6] == [0; 6] && u32::from(tail) > 1 {
        return Some(tail);
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    None
}

/// Unwraps embedded IPv4 so every check sees the address that will really be reached.
pub fn effective(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match effective(ip) {
        IpAddr::V4(ip) => {
            if always_blocked_v4().iter().any(|net| net.contains(&ip)) {
                AddressClass::AlwaysBlocked
            } else if internal_v4().iter().any(|net| net.contains(&ip)) {
                AddressClass::Internal
            } else {
                AddressClass::Public
            }
        }
        IpAddr::V6(ip) => {
            if always_blocked_v6().iter().any(|net| net.contains(&ip)) {
                AddressClass::AlwaysBlocked
            } else if internal_v6().iter().any(|net| net.contains(&ip)) {
                AddressClass::Internal
            } else {
                AddressClass::Public
            }
        }
    }
}

pub fn is_always_blocked(ip: IpAddr) -> bool {
    classify(ip) == AddressClass::AlwaysBlocked
}

/// True for every address that is not public (always-blocked included).
pub fn is_internal(ip: IpAddr) -> bool {
    classify(ip) != AddressClass::Public
}

/// Why an `allowed_ips` entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowedIpError {
    #[error("invalid CIDR/IP in allowed_ips: {0}")]
    Invalid(String),
    #[error("allowed_ips entry {entry} falls within always-blocked range {range}")]
    AlwaysBlocked { entry: String, range: String },
}

/// Parses one `allowed_ips` entry (CIDR or bare IP) and refuses any entry
/// that overlaps an always-blocked range (docs/policy.md, "Destinations").
pub fn parse_allowed_ip(entry: &str) -> Result<IpNet, AllowedIpError> {
    let trimmed = entry.trim();
    let net = match trimmed.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => match trimmed.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(AllowedIpError::Invalid(entry.to_owned())),
        },
    };
    let blocked = |range: String| AllowedIpError::AlwaysBlocked {
        entry: entry.to_owned(),
        range,
    };
    match net {
        IpNet::V4(net) => {
            if let Some(range) = always_blocked_v4().iter().find(|r| overlaps_v4(&net, r)) {
                return Err(blocked(range.to_string()));
            }
        }
        IpNet::V6(net) => {
            if let Some(range) = always_blocked_v6().iter().find(|r| overlaps_v6(&net, r)) {
                return Err(blocked(range.to_string()));
            }
            // An IPv6 range that reaches IPv4-mapped space is checked as IPv4.
            let mapped = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
            if overlaps_v6(&net, &mapped) {
                return Err(blocked(mapped.to_string()));
            }
        }
    }
    Ok(net)
}

fn overlaps_v4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps_v6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// True when an `allowed_ips` net is broad enough to deserve a warning.
pub fn is_broad(net: &IpNet) -> bool {
    match net {
        IpNet::V4(net) => net.prefix_len() < BROAD_PREFIX_V4,
        IpNet::V6(net) => net.prefix_len() < 48,
    }
}

/// How a matched endpoint lets its destination through, in precedence order.
#[derive(Debug, Clone, Copy)]
pub enum DestinationMode<'a> {
    /// A gateway alias host pinned to one trusted link-local address.
    TrustedGateway(IpAddr),
    /// The endpoint lists `allowed_ips`.
    AllowedIps(&'a [IpNet]),
    /// The endpoint host is an IP literal: an implicit `allowed_ips` of it.
    IpLiteral(IpAddr),
    /// The endpoint names this host exactly: internal ranges are allowed.
    DeclaredHost,
    /// Public addresses only.
    PublicOnly,
}

/// The short kind used in the `ssrf_denied` detail (`blocked: <kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedKind {
    TrustedGateway,
    AllowedIps,
    DeclaredEndpoint,
    InternalAddress,
    ControlPlanePort,
    NoAddresses,
    HostAddress,
}

impl DeniedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeniedKind::TrustedGateway => "trusted-gateway check failed",
            DeniedKind::AllowedIps => "allowed_ips check failed",
            DeniedKind::DeclaredEndpoint => "declared endpoint check failed",
            DeniedKind::InternalAddress | DeniedKind::NoAddresses => "internal address",
            DeniedKind::ControlPlanePort => "declared endpoint check failed",
            DeniedKind::HostAddress => "host address",
        }
    }
}

/// A refused destination: the kind for the response body, the reason for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationDenied {
    pub kind: DeniedKind,
    pub reason: String,
}

impl fmt::Display for DestinationDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Refuses a destination that is one of this host's own addresses (`own`,
/// those of its interfaces), as loopback is refused: the proxy runs on the
/// host, and a policy naming `10.0.0.5` should not open the host's own
/// services. Only an `allowed_ips` entry naming the address exactly (a
/// single address, or a /32 or /128) lets it through.
pub fn check_host_addresses(
    mode: DestinationMode<'_>,
    host: &str,
    resolved: &[IpAddr],
    own: &[IpAddr],
) -> Result<(), DestinationDenied> {
    for &ip in resolved {
        let real = effective(ip);
        if !own.iter().any(|o| effective(*o) == real) {
            continue;
        }
        let named = matches!(mode, DestinationMode::AllowedIps(nets) if nets.iter().any(|net| {
            net.prefix_len() == net.max_prefix_len() && effective(net.addr()) == real
        }));
        if !named {
            return Err(DestinationDenied {
                kind: DeniedKind::HostAddress,
                reason: format!(
                    "{host} resolves to {ip}, an address of this host, connection rejected \
                     (allowed only when allowed_ips names it exactly)"
                ),
            });
        }
    }
    Ok(())
}

/// Decides whether every resolved address of `host:port` may be dialed.
/// All addresses must pass; one bad address refuses the connection, so a
/// DNS answer cannot smuggle an internal address in beside a public one.
pub fn check_destination(
    mode: DestinationMode<'_>,
    host: &str,
    port: u16,
    resolved: &[IpAddr],
) -> Result<(), DestinationDenied> {
    let deny = |kind, reason: String| Err(DestinationDenied { kind, reason });
    if resolved.is_empty() {
        return deny(
            DeniedKind::NoAddresses,
            format!("DNS resolution returned no addresses for {host}"),
        );
    }
    let pinned_mode = !matches!(mode, DestinationMode::PublicOnly);
    if pinned_mode && CONTROL_PLANE_PORTS.contains(&port) {
        return deny(
            DeniedKind::ControlPlanePort,
            format!("port {port} is a blocked control-plane port, connection rejected"),
        );
    }
    for &ip in resolved {
        let class = classify(ip);
        let real = effective(ip);
        match mode {
            DestinationMode::TrustedGateway(trusted) => {
                let link_local = matches!(real, IpAddr::V4(v4) if v4.is_link_local())
                    || matches!(real, IpAddr::V6(v6) if v6.is_unicast_link_local());
                if real != effective(trusted) || !link_local || real == IpAddr::V4(METADATA_V4) {
                    return deny(
                        DeniedKind::TrustedGateway,
                        format!(
                            "{host} resolves to {ip}, which is not the trusted gateway address"
                        ),
                    );
                }
            }
            _ if class == AddressClass::AlwaysBlocked => {
                return deny(
                    match mode {
                        DestinationMode::AllowedIps(_) | DestinationMode::IpLiteral(_) => {
                            DeniedKind::AllowedIps
                        }
                        DestinationMode::DeclaredHost => DeniedKind::DeclaredEndpoint,
                        _ => DeniedKind::InternalAddress,
                    },
                    format!("{host} resolves to always-blocked address {ip}, connection rejected"),
                );
            }
            DestinationMode::AllowedIps(nets) => {
                if !nets
                    .iter()
                    .any(|net| net.contains(&real) || net.contains(&ip))
                {
                    return deny(
                        DeniedKind::AllowedIps,
                        format!(
                            "{host} resolves to {ip}, which is not in allowed_ips, connection rejected"
                        ),
                    );
                }
            }
            DestinationMode::IpLiteral(literal) => {
                if effective(literal) != real {
                    return deny(
                        DeniedKind::AllowedIps,
                        format!(
                            "{host} resolves to {ip}, which is not in allowed_ips, connection rejected"
                        ),
                    );
                }
            }
            DestinationMode::DeclaredHost => {}
            DestinationMode::PublicOnly => {
                if class == AddressClass::Internal {
                    return deny(
                        DeniedKind::InternalAddress,
                        format!("{host} resolves to internal address {ip}, connection rejected"),
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
