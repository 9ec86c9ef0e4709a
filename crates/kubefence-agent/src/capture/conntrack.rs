//! The conntrack fallback (`--mode conntrack`), for kernels without BTF or
//! hosts that refuse BPF: the kernel's connection tracking reports each new
//! connection once (ctnetlink's `NFNLGRP_CONNTRACK_NEW` group), TCP at its
//! first SYN and UDP at its first datagram, and never for a reply. It sees
//! what crosses the netfilter hooks of the agent's network namespace: run in
//! the host's (`hostNetwork: true`), that is the routed pod traffic of an
//! iptables-based CNI (kube-proxy keeps conntrack on). Traffic that bypasses
//! netfilter (eBPF datapaths such as Cilium's) is not seen: use
//! `--mode hubble` there.
//!
//! An event carries both tuples: the original (client → the address it
//! called, a ClusterIP before DNAT) and the reply (from the real server).
//! [`connections_of`] turns it into the connection of each end that is a pod
//! of this node: outgoing for the client, incoming for the server.
//!
//! Netlink gives no parser for ctnetlink messages that a maintained crate
//! publishes (`netlink-packet-netfilter` covers nflog and nftables), so the
//! few attributes read are walked here with `netlink-packet-core`'s
//! attribute iterator; the socket is `netlink-sys`'s.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kubefence_core::Protocol;
use netlink_packet_core::{NetlinkBuffer, NlaBuffer, NlasIterator};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::capture::ebpf::CaptureStats;
use crate::connection::{Connection, Direction};
use crate::index::{Peer, PodIndex};

/// ctnetlink's multicast group of new connections (`NFNLGRP_CONNTRACK_NEW`).
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`.
const CT_NEW: u16 = 1 << 8;
const NLMSG_ERROR: u16 = 2;
const NLMSG_OVERRUN: u16 = 4;
/// `struct nfgenmsg`: family, version, resource id.
const NFGENMSG_LEN: usize = 4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// The receive buffer asked for: bursts of new connections wait here.
const RECEIVE_BUFFER: usize = 8 << 20;

/// Why the conntrack capture cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(io::Error),
    #[error(
        "cannot subscribe to new conntrack events ({0}): the agent needs CAP_NET_ADMIN in the \
         host's network namespace (and a kernel with CONFIG_NF_CT_NETLINK)"
    )]
    Subscribe(io::Error),
}

/// A new connection as conntrack reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    pub protocol: Protocol,
    /// The client.
    pub source: SocketAddr,
    /// The address the client called (a Service's ClusterIP before DNAT).
    pub destination: SocketAddr,
    /// The server that answers (the reply tuple's source: after DNAT, the
    /// pod behind the Service).
    pub server: SocketAddr,
}

/// Why a message is not an opening.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a netlink message: {0}")]
    Netlink(String),
    #[error("a new-connection event without {0}")]
    Missing(&'static str),
    #[error("{0} has {1} bytes")]
    Length(&'static str, usize),
}

/// The subscribed socket. Events wait in its buffer until [`Self::run`].
pub struct ConntrackCapture {
    socket: Socket,
}

impl std::fmt::Debug for ConntrackCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConntrackCapture")
    }
}

impl ConntrackCapture {
    /// Opens the socket and joins the new-connection group.
    pub fn start() -> Result<Self, ConntrackError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Socket)?;
        socket.bind_auto().map_err(ConntrackError::Socket)?;
        // Best effort: a smaller buffer only means overruns come sooner,
        // and they are counted.
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        socket
            .add_membership(NFNLGRP_CONNTRACK_NEW)
            .map_err(ConntrackError::Subscribe)?;
        socket
            .set_non_blocking(true)
            .map_err(ConntrackError::Socket)?;
        Ok(Self { socket })
    }

    /// Reads events into `sink` until `shutdown` turns true. A full socket
    /// buffer (`ENOBUFS`: the kernel dropped events) is counted in
    /// `stats.lost`, a message that is not an opening in
    /// `stats.malformed`; neither stops the capture.
    pub async fn run(
        self,
        stats: Arc<CaptureStats>,
        mut shutdown: watch::Receiver<bool>,
        mut sink: impl FnMut(Opening),
    ) -> io::Result<()> {
        // The safe constructor, deprecated since tokio's I/O-safety rework
        // (its unsound case is an fd closed while registered): the AsyncFd
        // owns the Socket that owns the fd, so the fd outlives the
        // registration (as in the eBPF capture).
        #[allow(deprecated)]
        let socket = AsyncFd::new(self.socket)?;
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        loop {
            buf.clear();
            let received = tokio::select! {
                r = recv(&socket, &mut buf) => r,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            match received {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for message in messages(&buf) {
                stats.events.fetch_add(1, Ordering::Relaxed);
                match message {
                    Ok(Some(opening)) => sink(opening),
                    Ok(None) => {}
                    Err(e) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "a conntrack message skipped");
                    }
                }
            }
        }
    }
}

/// One datagram, when the socket has one.
async fn recv(socket: &AsyncFd<Socket>, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv(buf, 0)) {
            Ok(result) => return result.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// Every netlink message of one datagram: an opening, `None` for a message
/// of another kind (a protocol conntrack tracks without ports, an error
/// report), or why it cannot be read. Never panics, whatever the bytes.
pub fn messages(datagram: &[u8]) -> Vec<Result<Option<Opening>, DecodeError>> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = match NetlinkBuffer::new_checked(rest) {
            Ok(h) => h,
            Err(e) => {
                out.push(Err(DecodeError::Netlink(e.to_string())));
                break;
            }
        };
        let length = header.length() as usize;
        let message_type = header.message_type();
        out.push(match message_type {
            CT_NEW => opening(header.payload()),
            NLMSG_OVERRUN => Err(DecodeError::Netlink("overrun".into())),
            NLMSG_ERROR => Ok(None),
            _ => Ok(None),
        });
        // Messages are aligned to 4 bytes.
        let aligned = (length + 3) & !3;
        if aligned == 0 || aligned > rest.len() {
            break;
        }
        rest = &rest[aligned..];
    }
    out
}

/// One `IPCTNL_MSG_CT_NEW` payload (after the netlink header).
pub fn opening(payload: &[u8]) -> Result<Option<Opening>, DecodeError> {
    let attributes = payload
        .get(NFGENMSG_LEN..)
        .ok_or(DecodeError::Length("nfgenmsg", payload.len()))?;
    let mut original = None;
    let mut reply = None;
    for nla in NlasIterator::new(attributes) {
        let nla = nla.map_err(|e| DecodeError::Netlink(e.to_string()))?;
        match nla.kind() {
            CTA_TUPLE_ORIG => original = Some(tuple(nla.value())?),
            CTA_TUPLE_REPLY => reply = Some(tuple(nla.value())?),
            _ => {}
        }
    }
    let original = original.ok_or(DecodeError::Missing("its original tuple"))?;
    let reply = reply.ok_or(DecodeError::Missing("its reply tuple"))?;
    let protocol = match original.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        // ICMP and the rest: no port a policy can name.
        _ => return Ok(None),
    };
    let (Some(source_port), Some(destination_port), Some(server_port)) = (
        original.source_port,
        original.destination_port,
        reply.source_port,
    ) else {
        return Err(DecodeError::Missing("ports"));
    };
    Ok(Some(Opening {
        protocol,
        source: SocketAddr::new(original.source, source_port),
        destination: SocketAddr::new(original.destination, destination_port),
        server: SocketAddr::new(reply.source, server_port),
    }))
}

struct Tuple {
    source: IpAddr,
    destination: IpAddr,
    protocol: u8,
    source_port: Option<u16>,
    destination_port: Option<u16>,
}

fn tuple(bytes: &[u8]) -> Result<Tuple, DecodeError> {
    let mut source = None;
    let mut destination = None;
    let mut protocol = None;
    let mut source_port = None;
    let mut destination_port = None;
    for nla in NlasIterator::new(bytes) {
        let nla = nla.map_err(|e| DecodeError::Netlink(e.to_string()))?;
        match nla.kind() {
            CTA_TUPLE_IP => {
                for ip in NlasIterator::new(nla.value()) {
                    let ip = ip.map_err(|e| DecodeError::Netlink(e.to_string()))?;
                    match ip.kind() {
                        CTA_IP_V4_SRC => source = Some(v4(&ip, "CTA_IP_V4_SRC")?),
                        CTA_IP_V4_DST => destination = Some(v4(&ip, "CTA_IP_V4_DST")?),
                        CTA_IP_V6_SRC => source = Some(v6(&ip, "CTA_IP_V6_SRC")?),
                        CTA_IP_V6_DST => destination = Some(v6(&ip, "CTA_IP_V6_DST")?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in NlasIterator::new(nla.value()) {
                    let p = p.map_err(|e| DecodeError::Netlink(e.to_string()))?;
                    let value = p.value();
                    match p.kind() {
                        CTA_PROTO_NUM => protocol = value.first().copied(),
                        // Ports are in network byte order.
                        CTA_PROTO_SRC_PORT => source_port = Some(be16(value, "source port")?),
                        CTA_PROTO_DST_PORT => {
                            destination_port = Some(be16(value, "destination port")?);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Tuple {
        source: source.ok_or(DecodeError::Missing("a source address"))?,
        destination: destination.ok_or(DecodeError::Missing("a destination address"))?,
        protocol: protocol.ok_or(DecodeError::Missing("a protocol"))?,
        source_port,
        destination_port,
    })
}

fn v4(nla: &NlaBuffer<&[u8]>, what: &'static str) -> Result<IpAddr, DecodeError> {
    let octets: [u8; 4] = nla
        .value()
        .try_into()
        .map_err(|_| DecodeError::Length(what, nla.value().len()))?;
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

fn v6(nla: &NlaBuffer<&[u8]>, what: &'static str) -> Result<IpAddr, DecodeError> {
    let octets: [u8; 16] = nla
        .value()
        .try_into()
        .map_err(|_| DecodeError::Length(what, nla.value().len()))?;
    Ok(IpAddr::V6(Ipv6Addr::from(octets)))
}

fn be16(value: &[u8], what: &'static str) -> Result<u16, DecodeError> {
    let bytes: [u8; 2] = value
        .try_into()
        .map_err(|_| DecodeError::Length(what, value.len()))?;
    Ok(u16::from_be_bytes(bytes))
}

/// The connections of this node's pods in one opening: outgoing for the
/// client when it is a pod here, incoming for the server when it is (both
/// when they share the node).
pub fn connections_of(opening: &Opening, index: &PodIndex, now: Instant) -> Vec<Connection> {
    let mut out = Vec::with_capacity(2);
    if matches!(index.lookup(opening.source.ip(), now), Peer::Pod(_)) {
        out.push(Connection {
            direction: Direction::Outgoing,
            protocol: opening.protocol,
            local: opening.source,
            remote: opening.destination,
        });
    }
    if matches!(index.lookup(opening.server.ip(), now), Peer::Pod(_)) {
        out.push(Connection {
            direction: Direction::Incoming,
            protocol: opening.protocol,
            local: opening.server,
            remote: opening.source,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    //! Messages built by hand from the kernel's ctnetlink layout
    //! (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&length.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    const NESTED: u16 = 0x8000;

    fn tuple_nla(
        kind: u16,
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        sport: u16,
        dport: u16,
    ) -> Vec<u8> {
        let ip = [nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)].concat();
        let ports = [
            nla(CTA_PROTO_NUM, &[proto]),
            nla(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            nla(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
        .concat();
        let inner = [
            nla(CTA_TUPLE_IP | NESTED, &ip),
            nla(CTA_TUPLE_PROTO | NESTED, &ports),
        ]
        .concat();
        nla(kind | NESTED, &inner)
    }

    fn message(message_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let length = u32::try_from(16 + payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_ne_bytes());
        out.extend_from_slice(&message_type.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A TCP connection from 10.0.0.1:40000 to the ClusterIP 10.96.0.10:80,
    /// DNAT'd to the pod 10.244.1.5:8080.
    fn dnat_event() -> Vec<u8> {
        let payload = [
            vec![2, 0, 0, 0],
            tuple_nla(CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 96, 0, 10], 6, 40000, 80),
            tuple_nla(
                CTA_TUPLE_REPLY,
                [10, 244, 1, 5],
                [10, 0, 0, 1],
                6,
                8080,
                40000,
            ),
            nla(3, &2u32.to_be_bytes()),
        ]
        .concat();
        message(CT_NEW, &payload)
    }

    #[test]
    fn an_event_gives_the_client_the_called_address_and_the_real_server() {
        let decoded = messages(&dnat_event());
        assert_eq!(
            decoded,
            vec![Ok(Some(Opening {
                protocol: Protocol::Tcp,
                source: "10.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!()),
                destination: "10.96.0.10:80".parse().unwrap_or_else(|_| unreachable!()),
                server: "10.244.1.5:8080".parse().unwrap_or_else(|_| unreachable!()),
            }))]
        );
    }

    #[test]
    fn two_events_in_one_datagram_are_both_read() {
        let datagram = [dnat_event(), dnat_event()].concat();
        assert_eq!(messages(&datagram).len(), 2);
    }

    #[test]
    fn icmp_is_not_an_opening_and_other_messages_are_skipped() {
        let payload = [
            vec![2, 0, 0, 0],
            tuple_nla(CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 0, 0, 2], 1, 0, 0),
            tuple_nla(CTA_TUPLE_REPLY, [10, 0, 0, 2], [10, 0, 0, 1], 1, 0, 0),
        ]
        .concat();
        assert_eq!(messages(&message(CT_NEW, &payload)), vec![Ok(None)]);
        assert_eq!(messages(&message(NLMSG_ERROR, &[0; 20])), vec![Ok(None)]);
    }

    #[test]
    fn malformed_messages_are_errors_never_panics() {
        let good = dnat_event();
        // Every truncation and every single-byte corruption.
        for cut in 0..good.len() {
            let _ = messages(&good[..cut]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = messages(&bad);
        }
        // An address of the wrong length is named.
        let payload = [
            vec![2, 0, 0, 0],
            nla(
                CTA_TUPLE_ORIG | NESTED,
                &nla(CTA_TUPLE_IP | NESTED, &nla(CTA_IP_V4_SRC, &[1, 2, 3])),
            ),
        ]
        .concat();
        assert_eq!(
            messages(&message(CT_NEW, &payload)),
            vec![Err(DecodeError::Length("CTA_IP_V4_SRC", 3))]
        );
        let only_original = [
            vec![2, 0, 0, 0],
            tuple_nla(CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 2),
        ]
        .concat();
        assert_eq!(
            messages(&message(CT_NEW, &only_original)),
            vec![Err(DecodeError::Missing("its reply tuple"))]
        );
    }
}
