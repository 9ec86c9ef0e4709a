//! Folding flows into connections, and connections into neighborhoods.
//!
//! [`Learner::observe`] takes one flow at a time and keeps only what is
//! distinct: the endpoints (pods, addresses, reserved identities), one tally
//! per (source, destination, protocol, port), the 5-tuples already counted,
//! and the names DNS answers gave addresses. Memory grows with distinct
//! connections and peers, never with the number of flows.
//!
//! A connection is counted once, from its opening: a TCP SYN without ACK, a
//! policy-verdict event, the first non-reply flow of a 5-tuple. Reply flows
//! (`is_reply: true`, a SYN-ACK) never become rules. An absent `is_reply`
//! is unknown, not false: such a flow is decided in [`Learner::finish`],
//! once every listening port is known — sent from a port its sender listens
//! on to one its receiver does not, it is a reply; sent to a listening port,
//! it is the client's; otherwise it is reported, not guessed.
//!
//! [`Learner::finish`] attributes each pod to its workload ([`attribute`])
//! and gives every workload its [`Neighborhood`]: the peers that opened
//! connections to it (ingress) and the peers it opened connections to
//! (egress), with ports and evidence. The result does not depend on the
//! order of the flows.
//!
//! [`attribute`]: super::attribute

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use crate::conn::Protocol;
use crate::model::{Cluster, NAMESPACE_NAME_LABEL};
use crate::selector::{LabelSelector, Labels};

use super::attribute::{PodView, attribute, pod_labels, stable_labels};
use super::flows::{
    Flow, FlowEndpoint, FlowEvent, FlowType, FlowWorkload, ReservedIdentity, Verdict,
};
use super::model::{
    Evidence, Neighbor, NeighborPeer, Neighborhood, ObservedPort, ReservedPeer, WorkloadRef,
};
use super::report::{FlowCounts, LearnReport, LeftOut, LeftOutReason};

/// One side of a flow, reduced to what tells it apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum EndpointKey {
    Pod {
        namespace: String,
        pod_name: Option<String>,
        labels: Vec<(String, String)>,
        workloads: Vec<FlowWorkload>,
    },
    /// A Service address whose pod is not known.
    Service {
        namespace: String,
        name: String,
    },
    /// Outside the cluster.
    Address(IpAddr),
    Reserved(ReservedPeer, Option<IpAddr>),
    /// Nothing a policy can name (reserved health/init/…, or no labels).
    Unknown(String),
}

impl EndpointKey {
    fn of(e: &FlowEndpoint) -> Self {
        let has = |r: &ReservedIdentity| e.reserved.contains(r);
        // kube-apiserver may come together with host: the API server is the
        // more precise identity.
        if has(&ReservedIdentity::KubeApiserver) {
            return Self::Reserved(ReservedPeer::KubeApiserver, e.ip);
        }
        if has(&ReservedIdentity::Host) {
            return Self::Reserved(ReservedPeer::Host, e.ip);
        }
        if has(&ReservedIdentity::RemoteNode) {
            return Self::Reserved(ReservedPeer::RemoteNode, e.ip);
        }
        if has(&ReservedIdentity::World) {
            return match e.ip {
                Some(ip) => Self::Address(ip),
                None => Self::Unknown("reserved:world without an address".into()),
            };
        }
        if let Some(other) = e.reserved.first() {
            return Self::Unknown(format!("reserved:{}", reserved_name(other)));
        }
        match (&e.namespace, &e.pod_name, &e.service) {
            (Some(ns), None, Some(svc)) if e.labels.is_empty() => Self::Service {
                namespace: ns.clone(),
                name: svc.name.clone(),
            },
            (Some(ns), pod_name, _) => {
                let mut labels = e.labels.clone();
                labels.sort();
                Self::Pod {
                    namespace: ns.clone(),
                    pod_name: pod_name.clone(),
                    labels,
                    workloads: e.workloads.clone(),
                }
            }
            (None, _, _) => Self::Unknown(match e.ip {
                Some(ip) => format!("{ip} (no identity)"),
                None => "endpoint without identity".into(),
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Pod {
                namespace,
                pod_name,
                ..
            } => format!("{namespace}/{}", pod_name.as_deref().unwrap_or("<pod>")),
            Self::Service { namespace, name } => format!("{namespace}/Service/{name}"),
            Self::Address(ip) => ip.to_string(),
            Self::Reserved(r, ip) => match ip {
                Some(ip) => format!("{} ({ip})", reserved_peer_name(*r)),
                None => reserved_peer_name(*r).to_string(),
            },
            Self::Unknown(what) => what.clone(),
        }
    }
}

fn reserved_name(r: &ReservedIdentity) -> &str {
    match r {
        ReservedIdentity::World => "world",
        ReservedIdentity::Host => "host",
        ReservedIdentity::RemoteNode => "remote-node",
        ReservedIdentity::KubeApiserver => "kube-apiserver",
        ReservedIdentity::Health => "health",
        ReservedIdentity::Init => "init",
        ReservedIdentity::Ingress => "ingress",
        ReservedIdentity::Unmanaged => "unmanaged",
        ReservedIdentity::Unknown(name) => name,
    }
}

pub(crate) fn reserved_peer_name(r: ReservedPeer) -> &'static str {
    match r {
        ReservedPeer::KubeApiserver => "reserved:kube-apiserver",
        ReservedPeer::Host => "reserved:host",
        ReservedPeer::RemoteNode => "reserved:remote-node",
    }
}

type EndpointId = u32;

/// Connections from one endpoint to one destination port of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConnKey {
    src: EndpointId,
    dst: EndpointId,
    protocol: Protocol,
    port: u16,
}

/// Flows of unknown direction, by 5-tuple (endpoints standing for
/// addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct UndecidedKey {
    src: EndpointId,
    dst: EndpointId,
    protocol: Protocol,
    src_port: u16,
    dst_port: u16,
}

#[derive(Clone, Debug, Default)]
struct Tally {
    connections: u64,
    flows: u64,
    first: Option<String>,
    last: Option<String>,
}

impl Tally {
    fn saw(&mut self, time: Option<&String>, new_connection: bool) {
        self.flows += 1;
        if new_connection {
            self.connections += 1;
        }
        if let Some(t) = time {
            self.seen_at(t, t);
        }
    }

    fn seen_at(&mut self, first: &String, last: &String) {
        if self.first.as_ref().is_none_or(|f| first < f) {
            self.first = Some(first.clone());
        }
        if self.last.as_ref().is_none_or(|l| last > l) {
            self.last = Some(last.clone());
        }
    }

    fn absorb(&mut self, other: &Tally) {
        self.connections += other.connections;
        self.flows += other.flows;
        if let (Some(first), Some(last)) = (&other.first, &other.last) {
            self.seen_at(first, last);
        }
    }

    fn evidence(&self) -> Evidence {
        Evidence {
            connections: self.connections,
            first_seen: self.first.clone(),
            last_seen: self.last.clone(),
        }
    }
}

/// What one flow is, for learning.
enum Class {
    /// Opens a connection, or belongs to one in the client's direction.
    Forward,
    Reply,
    Undecided,
}

/// The streaming aggregator: feed it flows, then [`Learner::finish`].
#[derive(Debug, Default)]
pub struct Learner {
    ids: HashMap<EndpointKey, EndpointId>,
    endpoints: Vec<EndpointKey>,
    connections: HashMap<ConnKey, Tally>,
    /// Hashes of the 5-tuples already counted as a connection.
    counted: HashSet<u64>,
    undecided: HashMap<UndecidedKey, Tally>,
    /// Flows left out at observation, by (source, destination, reason).
    left_out: HashMap<(EndpointId, EndpointId, LeftOutReason), u64>,
    /// Names DNS answers gave each address.
    dns: HashMap<IpAddr, BTreeSet<String>>,
    counts: FlowCounts,
}

impl Learner {
    pub fn new() -> Self {
        Self::default()
    }

    fn id(&mut self, key: EndpointKey) -> EndpointId {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        // More than 4 billion distinct endpoints cannot be held anyway.
        let id = EndpointId::try_from(self.endpoints.len()).unwrap_or(EndpointId::MAX);
        self.endpoints.push(key.clone());
        self.ids.insert(key, id);
        id
    }

    /// Folds one flow in.
    pub fn observe(&mut self, flow: &Flow) {
        self.counts.read += 1;
        if let Some(dns) = &flow.dns
            && !dns.ips.is_empty()
        {
            self.counts.dns_answers += 1;
            let name = dns.query.trim_end_matches('.').to_ascii_lowercase();
            if !name.is_empty() {
                for ip in &dns.ips {
                    self.dns.entry(*ip).or_default().insert(name.clone());
                }
            }
        }
        if matches!(flow.flow_type, Some(FlowType::Sock)) {
            self.counts.socket_traces += 1;
            return;
        }
        if matches!(flow.verdict, Some(Verdict::Dropped | Verdict::Error)) {
            self.counts.not_forwarded += 1;
            return;
        }
        let class = classify(flow);
        if matches!(class, Class::Reply) {
            self.counts.replies += 1;
            return;
        }
        let src = self.id(EndpointKey::of(&flow.source));
        let dst = self.id(EndpointKey::of(&flow.destination));
        let Some(protocol) = flow.protocol else {
            *self
                .left_out
                .entry((src, dst, LeftOutReason::PortlessProtocol))
                .or_default() += 1;
            return;
        };
        let Some(port) = flow.destination_port.filter(|&p| p != 0) else {
            *self
                .left_out
                .entry((src, dst, LeftOutReason::NoPort))
                .or_default() += 1;
            return;
        };
        match class {
            Class::Forward => {
                let new = self.counted.insert(tuple_hash(flow, src, dst));
                self.connections
                    .entry(ConnKey {
                        src,
                        dst,
                        protocol,
                        port,
                    })
                    .or_default()
                    .saw(flow.time.as_ref(), new);
            }
            Class::Undecided => {
                self.undecided
                    .entry(UndecidedKey {
                        src,
                        dst,
                        protocol,
                        src_port: flow.source_port.unwrap_or(0),
                        dst_port: port,
                    })
                    .or_default()
                    .saw(flow.time.as_ref(), false);
            }
            Class::Reply => {}
        }
    }

    /// Attributes the endpoints (with the manifests when given) and returns
    /// one neighborhood per workload, sorted, with what was left out.
    pub fn finish(self, cluster: Option<&Cluster>) -> (Vec<Neighborhood>, LearnReport) {
        let Learner {
            endpoints,
            mut connections,
            undecided,
            left_out: observed_left_out,
            dns,
            mut counts,
            ..
        } = self;
        let mut left_out: BTreeMap<(String, String, LeftOutReason), u64> = BTreeMap::new();
        for ((src, dst, reason), n) in observed_left_out {
            *left_out
                .entry((
                    endpoints[src as usize].describe(),
                    endpoints[dst as usize].describe(),
                    reason,
                ))
                .or_default() += n;
        }

        // Flows of unknown direction, decided by the listening ports.
        let listening: HashSet<(EndpointId, Protocol, u16)> = connections
            .keys()
            .map(|k| (k.dst, k.protocol, k.port))
            .collect();
        for (k, tally) in undecided {
            let from_listening = listening.contains(&(k.src, k.protocol, k.src_port));
            let to_listening = listening.contains(&(k.dst, k.protocol, k.dst_port));
            if to_listening {
                let entry = connections
                    .entry(ConnKey {
                        src: k.src,
                        dst: k.dst,
                        protocol: k.protocol,
                        port: k.dst_port,
                    })
                    .or_default();
                // One 5-tuple: one connection whose opening was not seen.
                entry.absorb(&Tally {
                    connections: 1,
                    ..tally
                });
            } else if from_listening {
                counts.inferred_replies += tally.flows;
            } else {
                *left_out
                    .entry((
                        endpoints[k.src as usize].describe(),
                        endpoints[k.dst as usize].describe(),
                        LeftOutReason::UnknownDirection,
                    ))
                    .or_default() += tally.flows;
            }
        }
        counts.connections = connections.values().map(|t| t.connections).sum();

        let resolved: Vec<Resolved> = endpoints
            .iter()
            .map(|e| resolve(e, cluster, &dns))
            .collect();
        let mut report = LearnReport {
            flows: counts,
            ..LearnReport::default()
        };
        for e in &resolved {
            if let Resolved::Peer(NeighborPeer::Reserved(r), Some(ip)) = e {
                match r {
                    ReservedPeer::KubeApiserver => report.api_server_addresses.insert(*ip),
                    ReservedPeer::Host | ReservedPeer::RemoteNode => {
                        report.node_addresses.insert(*ip)
                    }
                };
            }
        }

        let mut hoods: BTreeMap<WorkloadRef, Hood> = BTreeMap::new();
        let mut sorted: Vec<(&ConnKey, &Tally)> = connections.iter().collect();
        sorted.sort_by_key(|(k, _)| **k);
        for (k, tally) in sorted {
            let (src, dst) = (&resolved[k.src as usize], &resolved[k.dst as usize]);
            let port_name = match dst {
                Resolved::Workload(a) => a.named_ports.get(&(k.protocol, k.port)).cloned(),
                _ => None,
            };
            let port = ObservedPort {
                protocol: k.protocol,
                port: k.port,
                name: port_name,
            };
            let mut attributed = false;
            for (own, other, other_key, egress) in
                [(src, dst, k.dst, true), (dst, src, k.src, false)]
            {
                let Resolved::Workload(a) = own else {
                    continue;
                };
                attributed = true;
                let hood = hoods.entry(a.workload.clone()).or_insert_with(|| Hood {
                    selector: a.selector.clone(),
                    ..Hood::default()
                });
                match other.peer_from(&a.workload.namespace) {
                    Ok(peer) => {
                        let side = if egress {
                            &mut hood.egress
                        } else {
                            &mut hood.ingress
                        };
                        let (ports, t) = side.entry(peer).or_default();
                        ports.insert(port.clone());
                        t.absorb(tally);
                    }
                    Err(reason) => {
                        *left_out
                            .entry((
                                workload_id(&a.workload),
                                endpoints[other_key as usize].describe(),
                                reason,
                            ))
                            .or_default() += tally.flows;
                    }
                }
            }
            for (end, key, other_key) in [(src, k.src, k.dst), (dst, k.dst, k.src)] {
                if let Resolved::Unattributed(..) = end {
                    *left_out
                        .entry((
                            endpoints[key as usize].describe(),
                            endpoints[other_key as usize].describe(),
                            LeftOutReason::UnattributedPod,
                        ))
                        .or_default() += tally.flows;
                    attributed = true;
                }
            }
            if !attributed {
                *left_out
                    .entry((
                        endpoints[k.src as usize].describe(),
                        endpoints[k.dst as usize].describe(),
                        LeftOutReason::UnknownIdentity,
                    ))
                    .or_default() += tally.flows;
            }
        }

        report.left_out = left_out
            .into_iter()
            .map(|((subject, peer, reason), count)| LeftOut {
                subject,
                peer,
                reason,
                count,
            })
            .collect();
        report.sort();
        let neighborhoods = hoods
            .into_iter()
            .map(|(workload, hood)| hood.into_neighborhood(workload))
            .collect();
        (neighborhoods, report)
    }
}

/// One workload's neighbours while they are gathered.
#[derive(Default)]
struct Hood {
    selector: LabelSelector,
    ingress: BTreeMap<NeighborPeer, (BTreeSet<ObservedPort>, Tally)>,
    egress: BTreeMap<NeighborPeer, (BTreeSet<ObservedPort>, Tally)>,
}

impl Hood {
    fn into_neighborhood(self, workload: WorkloadRef) -> Neighborhood {
        let neighbors = |side: BTreeMap<NeighborPeer, (BTreeSet<ObservedPort>, Tally)>| {
            side.into_iter()
                .map(|(peer, (ports, tally))| Neighbor {
                    peer,
                    ports,
                    evidence: Some(tally.evidence()),
                })
                .collect()
        };
        Neighborhood {
            workload,
            selector: self.selector,
            ingress: neighbors(self.ingress),
            egress: neighbors(self.egress),
        }
    }
}

pub(crate) fn workload_id(w: &WorkloadRef) -> String {
    format!("{}/{}/{}", w.namespace, w.kind, w.name)
}

/// An endpoint, attributed.
enum Resolved {
    /// A pod of a known workload.
    Workload(super::attribute::Attributed),
    /// A pod of no known workload, or a Service: named by a selector in a
    /// namespace, but given no policy of its own.
    Unattributed(String, Option<LabelSelector>),
    /// A Service whose `spec.selector` names its pods.
    Selected(String, LabelSelector),
    Peer(NeighborPeer, Option<IpAddr>),
    Unusable(LeftOutReason),
}

impl Resolved {
    fn peer_from(&self, namespace: &str) -> Result<NeighborPeer, LeftOutReason> {
        let pods = |ns: &str, selector: &LabelSelector| NeighborPeer::Pods {
            namespace_selector: (ns != namespace).then(|| {
                LabelSelector::from_labels(Labels::from([(
                    NAMESPACE_NAME_LABEL.to_string(),
                    ns.to_string(),
                )]))
            }),
            pod_selector: Some(selector.clone()),
        };
        match self {
            Self::Workload(a) if a.selector.is_empty() => Err(LeftOutReason::NoStableLabels),
            Self::Workload(a) => Ok(pods(&a.workload.namespace, &a.selector)),
            Self::Unattributed(ns, Some(selector)) | Self::Selected(ns, selector) => {
                Ok(pods(ns, selector))
            }
            Self::Unattributed(_, None) => Err(LeftOutReason::NoStableLabels),
            Self::Peer(peer, _) => Ok(peer.clone()),
            Self::Unusable(reason) => Err(reason.clone()),
        }
    }
}

fn resolve(
    e: &EndpointKey,
    cluster: Option<&Cluster>,
    dns: &HashMap<IpAddr, BTreeSet<String>>,
) -> Resolved {
    match e {
        EndpointKey::Pod {
            namespace,
            pod_name,
            labels,
            workloads,
        } => {
            let view = PodView {
                namespace,
                pod_name: pod_name.as_deref(),
                labels,
                workloads,
            };
            match attribute(&view, cluster) {
                Some(a) => Resolved::Workload(a),
                None => {
                    let stable = stable_labels(&pod_labels(labels));
                    Resolved::Unattributed(
                        namespace.clone(),
                        (!stable.is_empty()).then(|| LabelSelector::from_labels(stable)),
                    )
                }
            }
        }
        EndpointKey::Service { namespace, name } => {
            let selector = cluster.and_then(|c| {
                c.services
                    .iter()
                    .find(|s| s.namespace == *namespace && s.name == *name)
                    .and_then(|s| s.selector.clone())
            });
            match selector {
                // The Service's spec.selector, never its own labels.
                Some(sel) if !sel.is_empty() => {
                    Resolved::Selected(namespace.clone(), LabelSelector::from_labels(sel))
                }
                _ => Resolved::Unusable(LeftOutReason::UnknownIdentity),
            }
        }
        EndpointKey::Address(ip) => Resolved::Peer(
            NeighborPeer::Address {
                ip: *ip,
                dns_names: dns.get(ip).cloned().unwrap_or_default(),
            },
            Some(*ip),
        ),
        EndpointKey::Reserved(r, ip) => Resolved::Peer(NeighborPeer::Reserved(*r), *ip),
        EndpointKey::Unknown(_) => Resolved::Unusable(LeftOutReason::UnknownIdentity),
    }
}

fn classify(flow: &Flow) -> Class {
    if flow.is_reply == Some(true) {
        return Class::Reply;
    }
    if matches!(flow.event, Some(FlowEvent::PolicyVerdict)) {
        return Class::Forward;
    }
    if let Some(flags) = &flow.tcp_flags
        && flow.protocol == Some(Protocol::Tcp)
    {
        if flags.is_opening() {
            return Class::Forward;
        }
        if flags.syn && flags.ack {
            return Class::Reply;
        }
    }
    match flow.is_reply {
        Some(false) => Class::Forward,
        _ => Class::Undecided,
    }
}

/// The flow's 5-tuple (addresses, or endpoints when an address is missing),
/// so the packets of one connection, seen at both nodes or retransmitted,
/// count once.
fn tuple_hash(flow: &Flow, src: EndpointId, dst: EndpointId) -> u64 {
    let mut h = DefaultHasher::new();
    match (flow.source.ip, flow.destination.ip) {
        (Some(s), Some(d)) => (s, d).hash(&mut h),
        _ => (src, dst).hash(&mut h),
    }
    (flow.protocol, flow.source_port, flow.destination_port).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::learn::flows::{DnsRecord, FlowService, TcpFlags};
    use crate::model::{Service, ServiceType};

    fn pod(ns: &str, name: &str, app: &str, ip: [u8; 4]) -> FlowEndpoint {
        FlowEndpoint {
            namespace: Some(ns.into()),
            labels: vec![
                ("app".into(), app.into()),
                ("pod-template-hash".into(), "6b4f9c7d5f".into()),
            ],
            pod_name: Some(format!("{name}-6b4f9c7d5f-x2x4z")),
            workloads: vec![FlowWorkload {
                name: name.into(),
                kind: "Deployment".into(),
            }],
            ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
            ..FlowEndpoint::default()
        }
    }

    fn world(ip: [u8; 4]) -> FlowEndpoint {
        FlowEndpoint {
            reserved: vec![ReservedIdentity::World],
            ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
            ..FlowEndpoint::default()
        }
    }

    const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
        urg: false,
        ece: false,
        cwr: false,
        ns: false,
    };
    const SYN_ACK: TcpFlags = TcpFlags { ack: true, ..SYN };
    const ACK: TcpFlags = TcpFlags {
        syn: false,
        ..SYN_ACK
    };

    fn tcp(
        src: &FlowEndpoint,
        sport: u16,
        dst: &FlowEndpoint,
        dport: u16,
        flags: TcpFlags,
        is_reply: Option<bool>,
        time: &str,
    ) -> Flow {
        Flow {
            time: Some(time.into()),
            source: src.clone(),
            destination: dst.clone(),
            protocol: Some(Protocol::Tcp),
            source_port: Some(sport),
            destination_port: Some(dport),
            tcp_flags: Some(flags),
            is_reply,
            verdict: Some(Verdict::Forwarded),
            flow_type: Some(FlowType::L3L4),
            ..Flow::default()
        }
    }

    fn learn(flows: &[Flow], cluster: Option<&Cluster>) -> (Vec<Neighborhood>, LearnReport) {
        let mut l = Learner::new();
        for f in flows {
            l.observe(f);
        }
        l.finish(cluster)
    }

    fn hood<'a>(hoods: &'a [Neighborhood], name: &str) -> &'a Neighborhood {
        hoods
            .iter()
            .find(|h| h.workload.name == name)
            .unwrap_or_else(|| panic!("no neighborhood for {name}: {hoods:?}"))
    }

    fn ports(n: &Neighbor) -> Vec<(Protocol, u16)> {
        n.ports.iter().map(|p| (p.protocol, p.port)).collect()
    }

    #[test]
    fn a_connection_counts_once_from_its_syn_and_replies_never_become_rules() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        let flows = [
            tcp(&web, 40000, &cart, 8080, SYN, None, "2026-01-01T00:00:01Z"),
            // Retransmitted SYN, and the same SYN seen at the other node.
            tcp(&web, 40000, &cart, 8080, SYN, None, "2026-01-01T00:00:02Z"),
            tcp(
                &web,
                40000,
                &cart,
                8080,
                SYN,
                Some(false),
                "2026-01-01T00:00:02Z",
            ),
            tcp(
                &cart,
                8080,
                &web,
                40000,
                SYN_ACK,
                None,
                "2026-01-01T00:00:03Z",
            ),
            tcp(
                &cart,
                8080,
                &web,
                40000,
                ACK,
                Some(true),
                "2026-01-01T00:00:04Z",
            ),
            tcp(
                &web,
                40000,
                &cart,
                8080,
                ACK,
                Some(false),
                "2026-01-01T00:00:05Z",
            ),
        ];
        let (hoods, report) = learn(&flows, None);
        assert_eq!(report.flows.connections, 1);
        assert_eq!(report.flows.replies, 2);
        let web_hood = hood(&hoods, "web");
        assert!(web_hood.ingress.is_empty(), "{web_hood:?}");
        assert_eq!(web_hood.egress.len(), 1);
        assert_eq!(ports(&web_hood.egress[0]), [(Protocol::Tcp, 8080)]);
        let evidence = web_hood.egress[0].evidence.clone().unwrap_or_default();
        assert_eq!(evidence.connections, 1);
        assert_eq!(evidence.first_seen.as_deref(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(evidence.last_seen.as_deref(), Some("2026-01-01T00:00:05Z"));
        let cart_hood = hood(&hoods, "cart");
        assert!(cart_hood.egress.is_empty(), "{cart_hood:?}");
        assert_eq!(ports(&cart_hood.ingress[0]), [(Protocol::Tcp, 8080)]);
        assert_eq!(
            cart_hood.ingress[0].peer,
            NeighborPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                    "app".into(),
                    "web".into()
                )]))),
            },
            "the peer is the workload, without pod-template-hash"
        );
    }

    #[test]
    fn an_absent_is_reply_is_unknown_not_false() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        // Mid-connection packets with no is_reply and no listening port
        // known: either side may be the server.
        let flows = [tcp(&cart, 8080, &web, 40000, ACK, None, "t1")];
        let (hoods, report) = learn(&flows, None);
        assert!(
            hoods
                .iter()
                .all(|h| h.ingress.is_empty() && h.egress.is_empty()),
            "{hoods:?}"
        );
        assert!(
            report
                .left_out
                .iter()
                .any(|l| l.reason == LeftOutReason::UnknownDirection),
            "{report:?}"
        );
    }

    #[test]
    fn packets_from_a_known_listening_port_to_an_ephemeral_one_are_replies() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        let flows = [
            tcp(&cart, 8080, &web, 40001, ACK, None, "t2"),
            tcp(&web, 40000, &cart, 8080, SYN, None, "t1"),
            // Without is_reply, towards the listening port: the client's.
            tcp(&web, 40002, &cart, 8080, ACK, None, "t3"),
        ];
        let (hoods, report) = learn(&flows, None);
        assert_eq!(report.flows.inferred_replies, 1);
        assert!(hood(&hoods, "cart").egress.is_empty());
        assert!(hood(&hoods, "web").ingress.is_empty());
        assert_eq!(
            report.flows.connections, 2,
            "the SYN and the unopened 5-tuple"
        );
    }

    #[test]
    fn a_policy_verdict_event_opens_a_connection_and_udp_counts_per_5_tuple() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        let verdict = Flow {
            tcp_flags: None,
            event: Some(FlowEvent::PolicyVerdict),
            ..tcp(&web, 40000, &cart, 9090, ACK, None, "t1")
        };
        let udp = |sport: u16, is_reply: Option<bool>| Flow {
            protocol: Some(Protocol::Udp),
            tcp_flags: None,
            ..tcp(&web, sport, &cart, 5000, ACK, is_reply, "t1")
        };
        let flows = [
            verdict,
            udp(41000, Some(false)),
            udp(41000, Some(false)),
            udp(41001, Some(false)),
            udp(41002, Some(true)),
        ];
        let (hoods, report) = learn(&flows, None);
        let egress = &hood(&hoods, "web").egress[0];
        assert_eq!(
            ports(egress),
            [(Protocol::Tcp, 9090), (Protocol::Udp, 5000)]
        );
        assert_eq!(egress.evidence.clone().unwrap_or_default().connections, 3);
        assert_eq!(report.flows.connections, 3);
    }

    #[test]
    fn dns_answers_name_external_addresses_and_drops_icmp_are_not_rules() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let api = world([203, 0, 113, 7]);
        let answer = Flow {
            dns: Some(DnsRecord {
                query: "API.example.com.".into(),
                ips: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))],
            }),
            protocol: Some(Protocol::Udp),
            tcp_flags: None,
            flow_type: Some(FlowType::L7),
            ..tcp(&web, 53, &web, 40000, ACK, Some(true), "t0")
        };
        let icmp = Flow {
            protocol: None,
            tcp_flags: None,
            destination_port: None,
            source_port: None,
            ..tcp(&web, 0, &api, 0, ACK, Some(false), "t1")
        };
        let dropped = Flow {
            verdict: Some(Verdict::Dropped),
            ..tcp(&web, 40001, &api, 22, SYN, None, "t1")
        };
        let flows = [
            tcp(&web, 40000, &api, 443, SYN, None, "t1"),
            answer,
            icmp,
            dropped,
        ];
        let (hoods, report) = learn(&flows, None);
        let egress = &hood(&hoods, "web").egress;
        assert_eq!(egress.len(), 1, "{egress:?}");
        assert_eq!(
            egress[0].peer,
            NeighborPeer::Address {
                ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
                dns_names: BTreeSet::from(["api.example.com".to_string()]),
            }
        );
        assert_eq!(ports(&egress[0]), [(Protocol::Tcp, 443)]);
        assert_eq!(report.flows.not_forwarded, 1);
        assert_eq!(report.flows.dns_answers, 1);
        assert!(
            report
                .left_out
                .iter()
                .any(|l| l.reason == LeftOutReason::PortlessProtocol),
            "{report:?}"
        );
    }

    #[test]
    fn a_service_peer_is_its_spec_selector_never_its_labels() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart_service = FlowEndpoint {
            namespace: Some("shop".into()),
            service: Some(FlowService {
                namespace: "shop".into(),
                name: "cart".into(),
            }),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 9))),
            ..FlowEndpoint::default()
        };
        let mut cluster = Cluster::default();
        cluster.services.push(Service {
            namespace: "shop".into(),
            name: "cart".into(),
            selector: Some(Labels::from([("app".into(), "cart".into())])),
            service_type: ServiceType::ClusterIp,
            ports: vec![],
            external_ips: vec![],
        });
        let flows = [tcp(&web, 40000, &cart_service, 80, SYN, None, "t1")];
        let (hoods, _) = learn(&flows, Some(&cluster));
        assert_eq!(
            hood(&hoods, "web").egress[0].peer,
            NeighborPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                    "app".into(),
                    "cart".into()
                )]))),
            }
        );
    }

    #[test]
    fn node_peers_and_the_api_server_are_kept_as_reserved_with_their_addresses() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let host = FlowEndpoint {
            reserved: vec![ReservedIdentity::Host],
            ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10))),
            ..FlowEndpoint::default()
        };
        let api = FlowEndpoint {
            reserved: vec![ReservedIdentity::Host, ReservedIdentity::KubeApiserver],
            ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))),
            ..FlowEndpoint::default()
        };
        let flows = [
            tcp(&host, 50000, &web, 8080, SYN, None, "t1"),
            tcp(&web, 40000, &api, 6443, SYN, None, "t1"),
        ];
        let (hoods, report) = learn(&flows, None);
        let h = hood(&hoods, "web");
        assert_eq!(
            h.ingress[0].peer,
            NeighborPeer::Reserved(ReservedPeer::Host)
        );
        assert_eq!(
            h.egress[0].peer,
            NeighborPeer::Reserved(ReservedPeer::KubeApiserver)
        );
        assert!(
            report
                .node_addresses
                .contains(&IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10)))
        );
        assert!(
            report
                .api_server_addresses
                .contains(&IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)))
        );
    }

    #[test]
    fn unattributed_pods_are_reported_and_named_by_their_stable_labels() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let loose = FlowEndpoint {
            namespace: Some("tools".into()),
            labels: vec![("run".into(), "debug".into())],
            pod_name: Some("debug".into()),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))),
            ..FlowEndpoint::default()
        };
        let flows = [tcp(&loose, 40000, &web, 8080, SYN, None, "t1")];
        let (hoods, report) = learn(&flows, None);
        assert_eq!(hoods.len(), 1, "only web gets a neighborhood: {hoods:?}");
        assert_eq!(
            hoods[0].ingress[0].peer,
            NeighborPeer::Pods {
                namespace_selector: Some(LabelSelector::from_labels(Labels::from([(
                    NAMESPACE_NAME_LABEL.into(),
                    "tools".into()
                )]))),
                pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                    "run".into(),
                    "debug".into()
                )]))),
            }
        );
        assert!(
            report
                .left_out
                .iter()
                .any(|l| l.reason == LeftOutReason::UnattributedPod && l.subject == "tools/debug"),
            "{report:?}"
        );
    }
}
