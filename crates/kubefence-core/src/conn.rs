//! Sets of connections: which protocols and ports a direction allows.

use serde::{Deserialize, Serialize};

use crate::intervals::IntervalSet;

/// Port protocols a NetworkPolicy can name; TCP is the default.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Self::Tcp),
            "UDP" => Ok(Self::Udp),
            "SCTP" => Ok(Self::Sctp),
            _ => Err(format!(
                "unknown protocol {s:?} (expected TCP, UDP or SCTP)"
            )),
        }
    }
}

/// Lowest and highest port a connection can use.
pub const PORT_MIN: u16 = 1;
pub const PORT_MAX: u16 = u16::MAX;

/// The connections allowed in one direction between two endpoints.
///
/// `other` stands for every protocol that has no ports (ICMP and the rest):
/// only a rule without `ports` allows them, so "all" is more than every port
/// of TCP, UDP and SCTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnSet {
    tcp: IntervalSet<u16>,
    udp: IntervalSet<u16>,
    sctp: IntervalSet<u16>,
    other: bool,
}

// === impl ConnSet ===

impl ConnSet {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn all() -> Self {
        let every_port = IntervalSet::range(PORT_MIN, PORT_MAX);
        Self {
            tcp: every_port.clone(),
            udp: every_port.clone(),
            sctp: every_port,
            other: true,
        }
    }

    /// Every port of one protocol.
    pub fn protocol(protocol: Protocol) -> Self {
        Self::ports(protocol, PORT_MIN, PORT_MAX)
    }

    /// The ports `lo..=hi` of one protocol.
    pub fn ports(protocol: Protocol, lo: u16, hi: u16) -> Self {
        let mut set = Self::none();
        *set.ports_of_mut(protocol) = IntervalSet::range(lo.max(PORT_MIN), hi);
        set
    }

    pub fn port(protocol: Protocol, port: u16) -> Self {
        Self::ports(protocol, port, port)
    }

    pub fn ports_of(&self, protocol: Protocol) -> &IntervalSet<u16> {
        match protocol {
            Protocol::Tcp => &self.tcp,
            Protocol::Udp => &self.udp,
            Protocol::Sctp => &self.sctp,
        }
    }

    fn ports_of_mut(&mut self, protocol: Protocol) -> &mut IntervalSet<u16> {
        match protocol {
            Protocol::Tcp => &mut self.tcp,
            Protocol::Udp => &mut self.udp,
            Protocol::Sctp => &mut self.sctp,
        }
    }

    /// Protocols without ports (ICMP, ...), which only port-less rules allow.
    pub fn allows_portless_protocols(&self) -> bool {
        self.other
    }

    pub fn is_empty(&self) -> bool {
        !self.other && self.tcp.is_empty() && self.udp.is_empty() && self.sctp.is_empty()
    }

    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }

    pub fn allows(&self, protocol: Protocol, port: u16) -> bool {
        self.ports_of(protocol).contains(port)
    }

    pub fn union(&self, other: &Self) -> Self {
        Self {
            tcp: self.tcp.union(&other.tcp),
            udp: self.udp.union(&other.udp),
            sctp: self.sctp.union(&other.sctp),
            other: self.other || other.other,
        }
    }

    pub fn union_with(&mut self, other: &Self) {
        if other.is_empty() {
            return;
        }
        self.tcp.union_with(&other.tcp);
        self.udp.union_with(&other.udp);
        self.sctp.union_with(&other.sctp);
        self.other |= other.other;
    }

    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            tcp: self.tcp.intersection(&other.tcp),
            udp: self.udp.intersection(&other.udp),
            sctp: self.sctp.intersection(&other.sctp),
            other: self.other && other.other,
        }
    }

    pub fn difference(&self, other: &Self) -> Self {
        Self {
            tcp: self.tcp.difference(&other.tcp),
            udp: self.udp.difference(&other.udp),
            sctp: self.sctp.difference(&other.sctp),
            other: self.other && !other.other,
        }
    }

    /// `TCP/80`, `TCP/8000-8010`, `UDP/53`, sorted by protocol then port,
    /// with `OTHER` for port-less protocols. Empty for no connections.
    pub fn port_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for protocol in Protocol::ALL {
            for &(lo, hi) in self.ports_of(protocol).ranges() {
                if lo == hi {
                    out.push(format!("{protocol}/{lo}"));
                } else {
                    out.push(format!("{protocol}/{lo}-{hi}"));
                }
            }
        }
        if self.other {
            out.push("OTHER".to_string());
        }
        out
    }
}

impl std::fmt::Display for ConnSet {
    /// `all`, `none`, or the port strings joined by commas.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_all() {
            f.write_str("all")
        } else if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.port_strings().join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_more_than_every_port() {
        let every_port = ConnSet::protocol(Protocol::Tcp)
            .union(&ConnSet::protocol(Protocol::Udp))
            .union(&ConnSet::protocol(Protocol::Sctp));
        assert!(!every_port.is_all());
        assert!(
            ConnSet::all()
                .difference(&every_port)
                .allows_portless_protocols()
        );
    }

    #[test]
    fn port_strings_are_sorted_and_merged() {
        let set = ConnSet::ports(Protocol::Tcp, 8000, 8010)
            .union(&ConnSet::port(Protocol::Udp, 53))
            .union(&ConnSet::port(Protocol::Tcp, 80))
            .union(&ConnSet::port(Protocol::Tcp, 8011));
        assert_eq!(set.port_strings(), ["TCP/80", "TCP/8000-8011", "UDP/53"]);
        assert_eq!(ConnSet::all().to_string(), "all");
        assert_eq!(ConnSet::none().to_string(), "none");
    }
}
