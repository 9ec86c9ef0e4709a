//! One new connection as the capture reports it, and the kernel record it
//! is decoded from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kubefence_core::Protocol;

/// Which side of the connection the socket on this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The local socket opened the connection (TCP SYN_SENT →
    /// ESTABLISHED; the first datagram of a UDP flow was sent from it).
    Outgoing,
    /// The local socket accepted it (TCP SYN_RECV → ESTABLISHED; the
    /// first datagram of a UDP flow arrived at it).
    Incoming,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
        })
    }
}

/// A connection seen opening, from the point of view of the socket on this
/// node (`local`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    pub direction: Direction,
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Connection {
    /// The port the connection was opened to: the peer's for an outgoing
    /// connection, the local socket's for an incoming one. Policies allow
    /// this port; the other one is ephemeral.
    pub fn destination_port(&self) -> u16 {
        match self.direction {
            Direction::Outgoing => self.remote.port(),
            Direction::Incoming => self.local.port(),
        }
    }
}

/// Size of the kernel's `struct event` (bpf/connections.bpf.c).
pub const EVENT_SIZE: usize = 48;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const DIRECTION_OUTGOING: u8 = 1;
const DIRECTION_INCOMING: u8 = 2;

/// Why a kernel record was not a connection. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event of {0} bytes, expected {EVENT_SIZE}")]
    Size(usize),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown protocol {0}")]
    Protocol(u8),
    #[error("unknown direction {0}")]
    Direction(u8),
}

/// Decodes one ring buffer record. Addresses are in network order, ports
/// in host order (little endian: the agent runs where the kernel does).
pub fn decode_event(bytes: &[u8]) -> Result<Connection, EventError> {
    let record: &[u8; EVENT_SIZE] = bytes
        .try_into()
        .map_err(|_| EventError::Size(bytes.len()))?;
    let addr = |at: usize, family: u8| -> Result<IpAddr, EventError> {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&record[at..at + 16]);
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                octets[0], octets[1], octets[2], octets[3],
            ))),
            AF_INET6 => {
                let v6 = Ipv6Addr::from(octets);
                // A dual-stack socket talking IPv4 reports v4-mapped
                // addresses: the pod's address is the IPv4 one.
                Ok(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            other => Err(EventError::Family(other)),
        }
    };
    let family = record[36];
    let local_port = u16::from_ne_bytes([record[32], record[33]]);
    let remote_port = u16::from_ne_bytes([record[34], record[35]]);
    let protocol = match record[37] {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        other => return Err(EventError::Protocol(other)),
    };
    let direction = match record[38] {
        DIRECTION_OUTGOING => Direction::Outgoing,
        DIRECTION_INCOMING => Direction::Incoming,
        other => return Err(EventError::Direction(other)),
    };
    Ok(Connection {
        direction,
        protocol,
        local: SocketAddr::new(addr(0, family)?, local_port),
        remote: SocketAddr::new(addr(16, family)?, remote_port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(family: u8, protocol: u8, direction: u8) -> [u8; EVENT_SIZE] {
        let mut r = [0u8; EVENT_SIZE];
        if family == AF_INET {
            r[0..4].copy_from_slice(&[10, 99, 0, 1]);
            r[16..20].copy_from_slice(&[10, 99, 0, 2]);
        } else {
            r[0..16].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
            r[16..32].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        }
        r[32..34].copy_from_slice(&40000u16.to_ne_bytes());
        r[34..36].copy_from_slice(&8080u16.to_ne_bytes());
        r[36] = family;
        r[37] = protocol;
        r[38] = direction;
        r
    }

    #[test]
    fn an_ipv4_tcp_record_decodes_with_its_ports_and_direction() {
        let c = decode_event(&record(AF_INET, IPPROTO_TCP, DIRECTION_OUTGOING));
        assert_eq!(
            c,
            Ok(Connection {
                direction: Direction::Outgoing,
                protocol: Protocol::Tcp,
                local: "10.99.0.1:40000".parse().unwrap(),
                remote: "10.99.0.2:8080".parse().unwrap(),
            })
        );
        let c = c.unwrap();
        assert_eq!(c.destination_port(), 8080);
    }

    #[test]
    fn an_incoming_connection_is_to_the_local_port() {
        let c = decode_event(&record(AF_INET6, IPPROTO_UDP, DIRECTION_INCOMING));
        let Ok(c) = c else { panic!("{c:?}") };
        assert_eq!(c.direction, Direction::Incoming);
        assert_eq!(c.protocol, Protocol::Udp);
        assert_eq!(c.destination_port(), 40000);
        assert_eq!(c.local.ip().to_string(), "fd00::1");
    }

    #[test]
    fn v4_mapped_addresses_are_read_as_ipv4() {
        let mut r = record(AF_INET6, IPPROTO_TCP, DIRECTION_OUTGOING);
        let mapped = Ipv4Addr::new(10, 99, 0, 2).to_ipv6_mapped().octets();
        r[16..32].copy_from_slice(&mapped);
        let Ok(c) = decode_event(&r) else { panic!() };
        assert_eq!(c.remote.ip(), IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert_eq!(decode_event(&[0u8; 12]), Err(EventError::Size(12)));
        assert_eq!(
            decode_event(&record(7, IPPROTO_TCP, DIRECTION_OUTGOING)),
            Err(EventError::Family(7))
        );
        assert_eq!(
            decode_event(&record(AF_INET, 1, DIRECTION_OUTGOING)),
            Err(EventError::Protocol(1))
        );
        assert_eq!(
            decode_event(&record(AF_INET, IPPROTO_TCP, 9)),
            Err(EventError::Direction(9))
        );
    }
}
