//! The normalized flow record every flow source is read into.
//!
//! Hubble (`hubble observe -o jsonpb` / `-o json`) and the kubefence node
//! agent each have their own wire format; their readers (in
//! `kubefence-k8s`) turn each record into one [`Flow`], and the learner only
//! ever sees this type. Every field a source may leave out is an `Option`:
//! absent means *unknown*, never a default. In particular an absent
//! `is_reply` is not `false` (Hubble omits it when the datapath could not
//! tell), and an unknown enum value is kept in an `Other`/`Unknown` arm
//! rather than rejected, so a newer Cilium never makes a file unreadable.
//!
//! The field names follow Hubble's `flow.Flow` message (cilium/cilium
//! `api/v1/flow/flow.proto`), where the mapping is not obvious it is said on
//! the field.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::conn::Protocol;

/// One observed packet event, normalized.
///
/// Text is borrowed from the record it was read from where it can be
/// (`Cow`): a reader parses a record, hands the borrowed flow to the
/// learner and drops both, so reading a million flows does not allocate a
/// dozen strings per flow. [`Flow::into_owned`] detaches one from its
/// record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow<'a> {
    /// When the event happened, RFC 3339 as the source wrote it (Hubble's
    /// `time`, falling back to the jsonpb wrapper's `time`). Used for the
    /// first/last-seen evidence only, compared as text.
    pub time: Option<Cow<'a, str>>,
    /// The endpoint that sent this packet (Hubble `source` + `IP.source`).
    /// For a reply packet that is the server, not the client.
    pub source: FlowEndpoint<'a>,
    /// The endpoint the packet was sent to (Hubble `destination` +
    /// `IP.destination`).
    pub destination: FlowEndpoint<'a>,
    /// Transport protocol (Hubble `l4.TCP`, `l4.UDP`, `l4.SCTP`). `None` for
    /// every other L4 (ICMPv4, ICMPv6, …) or when `l4` is absent: such flows
    /// cannot become a port rule and the learner reports them.
    pub protocol: Option<Protocol>,
    /// The packet's source port (`l4.<proto>.source_port`). Used to tell a
    /// UDP 5-tuple apart and to recognise replies from a listening port.
    pub source_port: Option<u16>,
    /// The packet's destination port (`l4.<proto>.destination_port`).
    pub destination_port: Option<u16>,
    /// TCP flags of the packet (`l4.TCP.flags`); `None` for non-TCP or when
    /// the source did not record them.
    pub tcp_flags: Option<TcpFlags>,
    /// Whether this packet belongs to the reply direction of a connection
    /// (Hubble `is_reply`, a BoolValue). `None` = unknown: Hubble leaves it
    /// out when the datapath has no connection-tracking state. Never read
    /// `None` as `Some(false)`.
    pub is_reply: Option<bool>,
    /// Which side of the connection the event was observed at (Hubble
    /// `traffic_direction`). For a policy-verdict event, `Ingress` means the
    /// destination's ingress policy decided, `Egress` the source's egress.
    pub traffic_direction: Option<TrafficDirection>,
    /// What the datapath did with the packet (Hubble `verdict`).
    pub verdict: Option<Verdict>,
    /// Layer of the record (Hubble `Type`: `L3_L4`, `L7`, `SOCK`).
    pub flow_type: Option<FlowType>,
    /// Which monitor event produced the record (Hubble `event_type.type`,
    /// a Cilium monitor message type number). A policy-verdict event is
    /// emitted once per new connection, so it counts as the opening.
    pub event: Option<FlowEvent>,
    /// The DNS part of an L7 record (Hubble `l7.dns`), when present.
    pub dns: Option<DnsRecord<'a>>,
}

/// One side of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEndpoint<'a> {
    /// Kubernetes namespace of the pod (Hubble `namespace`); `None` for
    /// anything that is not a pod (world, host, …).
    pub namespace: Option<Cow<'a, str>>,
    /// Kubernetes pod labels, parsed from Hubble's `k8s:key=value` entries
    /// (source prefix `k8s:` removed). Sorted by key when the reader builds
    /// them; Cilium-internal labels such as
    /// `k8s:io.cilium.k8s.namespace.labels.*` and
    /// `k8s:io.kubernetes.pod.namespace` are kept as they came: the learner
    /// ignores the `io.cilium.k8s.` and `io.kubernetes.pod.namespace` keys
    /// when it derives selectors.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Cilium reserved identities from `reserved:<name>` labels (world,
    /// host, remote-node, kube-apiserver, …); kept apart from the pod
    /// labels because they describe what the endpoint is, not a label it
    /// carries.
    pub reserved: Vec<ReservedIdentity>,
    /// The pod's name (Hubble `pod_name`); `None` outside pods.
    pub pod_name: Option<Cow<'a, str>>,
    /// The controllers that own the pod, as Hubble resolved them
    /// (`workloads[{name, kind}]`, outermost first when it knows it:
    /// a ReplicaSet's Deployment is reported as the Deployment).
    pub workloads: Vec<FlowWorkload<'a>>,
    /// Cilium security identity number (Hubble `identity`). Informative:
    /// identities 1–8 are the reserved ones, but the `reserved` labels are
    /// what the learner reads.
    pub identity: Option<u32>,
    /// The packet address on this side (Hubble `IP.source` /
    /// `IP.destination`).
    pub ip: Option<IpAddr>,
    /// The Kubernetes Service the address belonged to, when Hubble resolved
    /// it (`source_service` / `destination_service`). Used when the pod
    /// behind it is unknown: the peer then is the Service's `spec.selector`
    /// (from the manifests), never the Service's own labels.
    pub service: Option<FlowService<'a>>,
}

/// A Service as Hubble names it (`{name, namespace}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowService<'a> {
    pub namespace: Cow<'a, str>,
    pub name: Cow<'a, str>,
}

/// A pod's controller as Hubble names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowWorkload<'a> {
    pub name: Cow<'a, str>,
    /// The Kubernetes kind (`Deployment`, `StatefulSet`, `DaemonSet`, …).
    /// Empty when the source did not say.
    pub kind: Cow<'a, str>,
}

/// Cilium's reserved identities (labels `reserved:<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReservedIdentity {
    /// `reserved:world`: outside the cluster.
    World,
    /// `reserved:host`: the local node.
    Host,
    /// `reserved:remote-node`: another node of the cluster.
    RemoteNode,
    /// `reserved:kube-apiserver`: the Kubernetes API server.
    KubeApiserver,
    /// `reserved:health`: Cilium's health endpoints.
    Health,
    /// `reserved:init`: an endpoint whose identity is not resolved yet.
    Init,
    /// `reserved:ingress`: Cilium's ingress proxy.
    Ingress,
    /// `reserved:unmanaged`: a pod Cilium does not manage.
    Unmanaged,
    /// `reserved:unknown`, or a name this version does not know.
    Unknown(String),
}

impl ReservedIdentity {
    /// Reads the part after `reserved:`. Never fails: an unknown name is
    /// kept in [`ReservedIdentity::Unknown`].
    pub fn parse(name: &str) -> Self {
        match name {
            "world" | "world-ipv4" | "world-ipv6" => Self::World,
            "host" => Self::Host,
            "remote-node" => Self::RemoteNode,
            "kube-apiserver" => Self::KubeApiserver,
            "health" => Self::Health,
            "init" => Self::Init,
            "ingress" => Self::Ingress,
            "unmanaged" => Self::Unmanaged,
            other => Self::Unknown(other.to_string()),
        }
    }
}

/// TCP flags of one packet. Only SYN, ACK, FIN and RST matter to the
/// learner; the others are kept so nothing read is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
    pub ns: bool,
}

impl TcpFlags {
    /// The first packet of a TCP connection: SYN without ACK.
    pub fn is_opening(&self) -> bool {
        self.syn && !self.ack
    }
}

/// Hubble `traffic_direction`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrafficDirection {
    Ingress,
    Egress,
    /// `TRAFFIC_DIRECTION_UNKNOWN` or a value this version does not know.
    Unknown(String),
}

/// Hubble `verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Forwarded,
    Dropped,
    Error,
    Audit,
    Redirected,
    Traced,
    Translated,
    /// `VERDICT_UNKNOWN` or a value this version does not know.
    Other(String),
}

/// Hubble `Type` (the layer of the record).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowType {
    /// `L3_L4`: a packet seen by the datapath.
    L3L4,
    /// `L7`: a record from the proxy (DNS, HTTP, Kafka).
    L7,
    /// `SOCK`: a socket-level trace.
    Sock,
    /// `UNKNOWN_TYPE` or a value this version does not know.
    Other(String),
}

/// Hubble `event_type.type`: the Cilium monitor message that produced the
/// record. The numbers are Cilium's `MessageType*` constants
/// (pkg/monitor/api/types.go).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowEvent {
    /// 1: a drop notification.
    Drop,
    /// 4: a trace notification (an ordinary forwarded packet).
    Trace,
    /// 5: a policy verdict, emitted once when a new connection is checked
    /// against policy: it marks a connection's opening.
    PolicyVerdict,
    /// 7: a socket-level trace.
    TraceSock,
    /// 129: an L7 proxy access log record.
    AccessLog,
    /// Any other message type, by number.
    Other(u32),
}

impl FlowEvent {
    /// Maps Cilium's monitor message type number.
    pub fn from_monitor_type(number: u32) -> Self {
        match number {
            1 => Self::Drop,
            4 => Self::Trace,
            5 => Self::PolicyVerdict,
            7 => Self::TraceSock,
            129 => Self::AccessLog,
            other => Self::Other(other),
        }
    }
}

/// The DNS part of an L7 record (Hubble `l7.dns`). Only answers teach the
/// learner anything: which addresses a name resolved to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord<'a> {
    /// The queried name (Hubble `query`), as written (usually with the
    /// trailing dot: `api.example.com.`). The learner strips the dot.
    pub query: Cow<'a, str>,
    /// The addresses in the answer (Hubble `ips`); empty for a request.
    pub ips: Vec<IpAddr>,
}

fn owned(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

impl Flow<'_> {
    /// The same flow, holding its own text.
    pub fn into_owned(self) -> Flow<'static> {
        Flow {
            time: self.time.map(owned),
            source: self.source.into_owned(),
            destination: self.destination.into_owned(),
            protocol: self.protocol,
            source_port: self.source_port,
            destination_port: self.destination_port,
            tcp_flags: self.tcp_flags,
            is_reply: self.is_reply,
            traffic_direction: self.traffic_direction,
            verdict: self.verdict,
            flow_type: self.flow_type,
            event: self.event,
            dns: self.dns.map(DnsRecord::into_owned),
        }
    }
}

impl FlowEndpoint<'_> {
    /// The same endpoint, holding its own text.
    pub fn into_owned(self) -> FlowEndpoint<'static> {
        FlowEndpoint {
            namespace: self.namespace.map(owned),
            labels: self
                .labels
                .into_iter()
                .map(|(k, v)| (owned(k), owned(v)))
                .collect(),
            reserved: self.reserved,
            pod_name: self.pod_name.map(owned),
            workloads: self
                .workloads
                .into_iter()
                .map(FlowWorkload::into_owned)
                .collect(),
            identity: self.identity,
            ip: self.ip,
            service: self.service.map(FlowService::into_owned),
        }
    }
}

impl FlowService<'_> {
    /// The same Service name, holding its own text.
    pub fn into_owned(self) -> FlowService<'static> {
        FlowService {
            namespace: owned(self.namespace),
            name: owned(self.name),
        }
    }
}

impl FlowWorkload<'_> {
    /// The same controller name, holding its own text.
    pub fn into_owned(self) -> FlowWorkload<'static> {
        FlowWorkload {
            name: owned(self.name),
            kind: owned(self.kind),
        }
    }
}

impl DnsRecord<'_> {
    /// The same DNS answer, holding its own text.
    pub fn into_owned(self) -> DnsRecord<'static> {
        DnsRecord {
            query: owned(self.query),
            ips: self.ips,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_syn_without_ack_opens_a_tcp_connection() {
        let syn = TcpFlags {
            syn: true,
            ..TcpFlags::default()
        };
        let syn_ack = TcpFlags {
            syn: true,
            ack: true,
            ..TcpFlags::default()
        };
        let ack = TcpFlags {
            ack: true,
            ..TcpFlags::default()
        };
        assert!(syn.is_opening());
        assert!(!syn_ack.is_opening());
        assert!(!ack.is_opening());
    }

    #[test]
    fn unknown_reserved_names_and_monitor_types_are_kept_not_rejected() {
        assert_eq!(ReservedIdentity::parse("world"), ReservedIdentity::World);
        assert_eq!(
            ReservedIdentity::parse("world-ipv6"),
            ReservedIdentity::World
        );
        assert_eq!(
            ReservedIdentity::parse("something-new"),
            ReservedIdentity::Unknown("something-new".to_string())
        );
        assert_eq!(FlowEvent::from_monitor_type(5), FlowEvent::PolicyVerdict);
        assert_eq!(FlowEvent::from_monitor_type(42), FlowEvent::Other(42));
    }
}
