//! Connections folded into neighbours, per workload, in bounded memory.
//!
//! Each connection is attributed (the local socket's pod → its workload,
//! the remote address → a pod, a Service's selector, the node, or an
//! external address) and kept once per (workload, direction, peer,
//! protocol, port): what a NetworkNeighborhood holds. Nothing per
//! connection survives the call, so memory grows with distinct neighbours,
//! not with traffic.
//!
//! The number of entries is capped (`max_entries`). Past the cap a new
//! entry is not stored: it is counted per peer workload (direction and the
//! peer's namespace/name, or "external" / "node"), with no port, and the
//! neighborhood says so (`kubefence.dev/agent-coarsened`). Such a
//! neighbour never becomes a rule, because a neighbour without ports would
//! allow every port: the learned policy stays least-privilege and the
//! annotation tells the reviewer what it lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kubefence_core::learn::{
    Evidence, Neighbor, NeighborPeer, Neighborhood, ObservedPort, ReservedPeer, WorkloadRef,
};
use kubefence_core::model::NAMESPACE_NAME_LABEL;
use kubefence_core::{LabelSelector, Labels};

use crate::connection::{Connection, Direction};
use crate::index::{Peer, PodIndex, PodRecord};

/// What happened to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A neighbour or port not seen before: the workload's neighborhood
    /// changes.
    New,
    /// Already known: counted in the evidence only.
    Known,
    /// Past the entry cap: counted per peer workload, without port.
    Coarsened,
    /// The local socket is not a pod of this node (a host process, a
    /// host-network pod, or a pod gone longer than the grace period).
    LocalNotAPod,
    /// The local pod's labels cannot select it (no label left once the
    /// per-replica ones are removed): no neighborhood can be written.
    LocalUnselectable,
    /// The peer is inside the cluster's networks but unknown.
    PeerUnknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Known => "known",
            Self::Coarsened => "coarsened",
            Self::LocalNotAPod => "local_not_a_pod",
            Self::LocalUnselectable => "local_unselectable",
            Self::PeerUnknown => "peer_unknown",
        }
    }
}

/// A peer as the coarse (capped) counts name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoarsePeer {
    /// `namespace/name` of the peer's workload or Service.
    Workload(String),
    Node,
    External,
}

impl std::fmt::Display for CoarsePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload(w) => f.write_str(w),
            Self::Node => f.write_str("node"),
            Self::External => f.write_str("external"),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Tally {
    connections: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
}

impl Tally {
    /// Adds what a later observation saw (times are RFC 3339, compared as
    /// text; an absent time never replaces one).
    fn absorb(&mut self, seen: Tally) {
        self.connections += seen.connections;
        if let Some(first) = seen.first_seen
            && self.first_seen.as_ref().is_none_or(|f| first < *f)
        {
            self.first_seen = Some(first);
        }
        if let Some(last) = seen.last_seen
            && self.last_seen.as_ref().is_none_or(|l| last > *l)
        {
            self.last_seen = Some(last);
        }
    }
}

#[derive(Clone, Debug)]
struct Observed {
    selector: LabelSelector,
    ingress: BTreeMap<NeighborPeer, BTreeMap<ObservedPort, Tally>>,
    egress: BTreeMap<NeighborPeer, BTreeMap<ObservedPort, Tally>>,
    coarse: BTreeMap<(Direction, CoarsePeer), u64>,
    /// Changed since it was last written.
    dirty: bool,
    /// When a connection of it was last folded in.
    touched: Instant,
}

/// The per-workload neighbours of this node.
#[derive(Debug)]
pub struct Aggregator {
    max_entries: usize,
    entries: usize,
    workloads: BTreeMap<WorkloadRef, Observed>,
}

/// What one workload's neighborhood holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub neighborhood: Neighborhood,
    /// Connections past the entry cap, per (direction, peer workload).
    pub coarse: BTreeMap<(Direction, CoarsePeer), u64>,
}

impl Aggregator {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            entries: 0,
            workloads: BTreeMap::new(),
        }
    }

    /// Folds one connection in. `time` (RFC 3339) is kept as evidence.
    pub fn record(
        &mut self,
        connection: &Connection,
        index: &PodIndex,
        now: Instant,
        time: &str,
    ) -> Outcome {
        let Peer::Pod(local) = index.lookup(connection.local.ip(), now) else {
            return Outcome::LocalNotAPod;
        };
        if local.selector.is_empty() {
            return Outcome::LocalUnselectable;
        }
        let (mut peer, coarse_peer) =
            match peer_of(&local, index.lookup(connection.remote.ip(), now)) {
                Some(p) => p,
                None => return Outcome::PeerUnknown,
            };
        // The names DNS answers gave the address, when the agent saw them.
        if let NeighborPeer::Address { ip, dns_names } = &mut peer {
            *dns_names = index.names_of(*ip);
        }
        let port = ObservedPort {
            protocol: connection.protocol,
            port: connection.destination_port(),
            name: None,
        };
        let seen = Tally {
            connections: 1,
            first_seen: Some(time.to_string()),
            last_seen: Some(time.to_string()),
        };
        self.fold(
            &local.workload,
            &local.selector,
            connection.direction,
            (peer, coarse_peer),
            port,
            seen,
            now,
        )
    }

    /// Folds in a neighborhood attributed elsewhere (the Hubble input: the
    /// core learner's neighborhoods of a batch of flows), neighbour by
    /// neighbour and port by port, under the same entry cap. Returns how
    /// many entries were new, known and coarsened.
    pub fn absorb(&mut self, learned: &Neighborhood, now: Instant) -> BTreeMap<Outcome, u64> {
        let mut outcomes = BTreeMap::new();
        if learned.selector.is_empty() {
            *outcomes.entry(Outcome::LocalUnselectable).or_default() += 1;
            return outcomes;
        }
        for (direction, side) in [
            (Direction::Incoming, &learned.ingress),
            (Direction::Outgoing, &learned.egress),
        ] {
            for neighbor in side {
                let coarse = coarse_peer_of(&neighbor.peer);
                let evidence = neighbor.evidence.clone().unwrap_or_default();
                for port in &neighbor.ports {
                    let seen = Tally {
                        connections: evidence.connections,
                        first_seen: evidence.first_seen.clone(),
                        last_seen: evidence.last_seen.clone(),
                    };
                    let outcome = self.fold(
                        &learned.workload,
                        &learned.selector,
                        direction,
                        (neighbor.peer.clone(), coarse.clone()),
                        port.clone(),
                        seen,
                        now,
                    );
                    *outcomes.entry(outcome).or_default() += 1;
                }
            }
        }
        outcomes
    }

    /// One (workload, direction, peer, port) entry seen `seen.connections`
    /// more times.
    #[allow(clippy::too_many_arguments)]
    fn fold(
        &mut self,
        workload: &WorkloadRef,
        selector: &LabelSelector,
        direction: Direction,
        (peer, coarse_peer): (NeighborPeer, CoarsePeer),
        port: ObservedPort,
        seen: Tally,
        now: Instant,
    ) -> Outcome {
        let at_cap = self.entries >= self.max_entries;
        let observed = self
            .workloads
            .entry(workload.clone())
            .or_insert_with(|| Observed {
                selector: selector.clone(),
                ingress: BTreeMap::new(),
                egress: BTreeMap::new(),
                coarse: BTreeMap::new(),
                dirty: false,
                touched: now,
            });
        observed.touched = now;
        let side = match direction {
            Direction::Incoming => &mut observed.ingress,
            Direction::Outgoing => &mut observed.egress,
        };
        match side.get_mut(&peer).and_then(|ports| ports.get_mut(&port)) {
            Some(tally) => {
                tally.absorb(seen);
                Outcome::Known
            }
            None if at_cap => {
                let count = observed.coarse.entry((direction, coarse_peer)).or_default();
                if *count == 0 {
                    observed.dirty = true;
                }
                *count += seen.connections.max(1);
                Outcome::Coarsened
            }
            None => {
                side.entry(peer).or_default().insert(port, seen);
                observed.dirty = true;
                self.entries += 1;
                Outcome::New
            }
        }
    }

    /// The workloads whose neighborhood changed since it was last written.
    pub fn dirty(&self) -> Vec<WorkloadRef> {
        self.workloads
            .iter()
            .filter(|(_, o)| o.dirty)
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// The workload's neighborhood as observed on this node.
    pub fn snapshot(&self, workload: &WorkloadRef) -> Option<Snapshot> {
        let o = self.workloads.get(workload)?;
        let neighbors = |side: &BTreeMap<NeighborPeer, BTreeMap<ObservedPort, Tally>>| {
            side.iter()
                .map(|(peer, ports)| {
                    let mut evidence = Evidence::default();
                    for t in ports.values() {
                        evidence.connections += t.connections;
                        if evidence.first_seen.is_none() || t.first_seen < evidence.first_seen {
                            evidence.first_seen.clone_from(&t.first_seen);
                        }
                        if t.last_seen > evidence.last_seen {
                            evidence.last_seen.clone_from(&t.last_seen);
                        }
                    }
                    Neighbor {
                        peer: peer.clone(),
                        ports: ports.keys().cloned().collect::<BTreeSet<_>>(),
                        evidence: Some(evidence),
                    }
                })
                .collect()
        };
        Some(Snapshot {
            neighborhood: Neighborhood {
                workload: workload.clone(),
                selector: o.selector.clone(),
                ingress: neighbors(&o.ingress),
                egress: neighbors(&o.egress),
            },
            coarse: o.coarse.clone(),
        })
    }

    /// The workload's neighborhood was written: clean until it changes.
    pub fn written(&mut self, workload: &WorkloadRef) {
        if let Some(o) = self.workloads.get_mut(workload) {
            o.dirty = false;
        }
    }

    /// Forgets the written workloads that no longer have a pod here (what
    /// they learned is in their NetworkNeighborhood already).
    pub fn forget_gone(&mut self, index: &PodIndex) -> usize {
        self.forget_written(|w, _| !index.has_workload(w))
    }

    /// Forgets the written workloads nothing was folded into for `idle`
    /// (the Hubble input, which has no pod index to tell a workload gone:
    /// what they learned is in their NetworkNeighborhood already).
    pub fn forget_idle(&mut self, now: Instant, idle: std::time::Duration) -> usize {
        self.forget_written(|_, touched| now.saturating_duration_since(touched) >= idle)
    }

    /// Drops the workloads written since their last change for which
    /// `gone(workload, last folded in)` holds; returns how many.
    fn forget_written(&mut self, gone: impl Fn(&WorkloadRef, Instant) -> bool) -> usize {
        let before = self.workloads.len();
        let mut freed = 0;
        self.workloads.retain(|w, o| {
            let keep = o.dirty || !gone(w, o.touched);
            if !keep {
                freed += o.ingress.values().map(BTreeMap::len).sum::<usize>()
                    + o.egress.values().map(BTreeMap::len).sum::<usize>();
            }
            keep
        });
        self.entries -= freed;
        before - self.workloads.len()
    }

    /// Entries held (each a workload, direction, peer, protocol and port).
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }
}

/// How a neighbour learned elsewhere is counted past the cap.
fn coarse_peer_of(peer: &NeighborPeer) -> CoarsePeer {
    match peer {
        NeighborPeer::Pods {
            namespace_selector,
            pod_selector,
        } => CoarsePeer::Workload(format!(
            "{}/{}",
            namespace_selector
                .as_ref()
                .map_or_else(|| "(own namespace)".to_string(), ToString::to_string),
            pod_selector
                .as_ref()
                .map_or_else(|| "(any pod)".to_string(), ToString::to_string),
        )),
        NeighborPeer::Reserved(ReservedPeer::Host | ReservedPeer::RemoteNode) => CoarsePeer::Node,
        NeighborPeer::Reserved(ReservedPeer::KubeApiserver) | NeighborPeer::Address { .. } => {
            CoarsePeer::External
        }
    }
}

/// The neighbour the remote end is, seen from `local`'s namespace, and how
/// it is counted past the cap. `None` for an unknown in-cluster address.
fn peer_of(local: &PodRecord, remote: Peer) -> Option<(NeighborPeer, CoarsePeer)> {
    let pods = |namespace: &str, selector: &LabelSelector, name: &str| {
        (
            NeighborPeer::Pods {
                namespace_selector: (namespace != local.namespace).then(|| {
                    LabelSelector::from_labels(Labels::from([(
                        NAMESPACE_NAME_LABEL.to_string(),
                        namespace.to_string(),
                    )]))
                }),
                pod_selector: Some(selector.clone()),
            },
            CoarsePeer::Workload(format!("{namespace}/{name}")),
        )
    };
    match remote {
        Peer::Pod(p) if p.selector.is_empty() => None,
        Peer::Pod(p) => Some(pods(&p.namespace, &p.selector, &p.workload.name)),
        Peer::Service(s) => Some(pods(&s.namespace, &s.selector, &s.name)),
        Peer::Node => Some((NeighborPeer::Reserved(ReservedPeer::Host), CoarsePeer::Node)),
        Peer::UnknownInCluster => None,
        Peer::External(ip) => Some((
            NeighborPeer::Address {
                ip,
                dns_names: BTreeSet::new(),
            },
            CoarsePeer::External,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use kubefence_core::Protocol;
    use proptest::prelude::*;

    use super::*;
    use crate::index::PodRecord;

    const WEB: &str = "10.1.0.1";
    const CART: &str = "10.1.0.2";
    const DB: &str = "10.1.0.3";

    fn index() -> PodIndex {
        let mut index = PodIndex::new(
            Duration::from_secs(30),
            vec!["10.1.0.0/16".parse().unwrap()],
        );
        for (ip, ns, app) in [
            (WEB, "shop", "web"),
            (CART, "shop", "cart"),
            (DB, "data", "db"),
        ] {
            index.upsert_pod(
                PodRecord {
                    namespace: ns.into(),
                    name: format!("{app}-0"),
                    workload: workload(ns, app),
                    selector: LabelSelector::from_labels(Labels::from([(
                        "app".into(),
                        app.into(),
                    )])),
                },
                vec![ip.parse().unwrap()],
            );
        }
        index
    }

    fn workload(ns: &str, app: &str) -> WorkloadRef {
        WorkloadRef {
            kind: "Deployment".into(),
            namespace: ns.into(),
            name: app.into(),
        }
    }

    fn conn(
        direction: Direction,
        protocol: Protocol,
        local: &str,
        lport: u16,
        remote: &str,
        rport: u16,
    ) -> Connection {
        Connection {
            direction,
            protocol,
            local: SocketAddr::new(local.parse().unwrap(), lport),
            remote: SocketAddr::new(remote.parse().unwrap(), rport),
        }
    }

    #[test]
    fn both_ends_of_a_connection_are_kept_once_per_port_with_the_destination_port() {
        let index = index();
        let now = Instant::now();
        let mut agg = Aggregator::new(100);
        // web → cart:8080 seen at web (outgoing) and at cart (incoming),
        // twice, from different ephemeral ports.
        for eph in [40000, 40001] {
            let out = conn(Direction::Outgoing, Protocol::Tcp, WEB, eph, CART, 8080);
            let inc = conn(Direction::Incoming, Protocol::Tcp, CART, 8080, WEB, eph);
            let expect = if eph == 40000 {
                Outcome::New
            } else {
                Outcome::Known
            };
            assert_eq!(agg.record(&out, &index, now, "t1"), expect);
            assert_eq!(agg.record(&inc, &index, now, "t1"), expect);
        }
        assert_eq!(agg.entries(), 2);
        let web = agg.snapshot(&workload("shop", "web")).unwrap().neighborhood;
        assert!(web.ingress.is_empty());
        assert_eq!(web.egress.len(), 1);
        let ports: Vec<u16> = web.egress[0].ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![8080]);
        assert_eq!(web.egress[0].evidence.as_ref().unwrap().connections, 2);
        let cart = agg
            .snapshot(&workload("shop", "cart"))
            .unwrap()
            .neighborhood;
        assert!(cart.egress.is_empty());
        assert_eq!(cart.ingress[0].ports.iter().next().unwrap().port, 8080);
        assert_eq!(
            cart.ingress[0].peer,
            NeighborPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                    "app".into(),
                    "web".into()
                )])))
            }
        );
    }

    #[test]
    fn peers_in_other_namespaces_external_and_unknown() {
        let index = index();
        let now = Instant::now();
        let mut agg = Aggregator::new(100);
        assert_eq!(
            agg.record(
                &conn(Direction::Outgoing, Protocol::Tcp, CART, 1, DB, 5432),
                &index,
                now,
                "t"
            ),
            Outcome::New
        );
        assert_eq!(
            agg.record(
                &conn(
                    Direction::Outgoing,
                    Protocol::Udp,
                    CART,
                    1,
                    "203.0.113.9",
                    53
                ),
                &index,
                now,
                "t"
            ),
            Outcome::New
        );
        assert_eq!(
            agg.record(
                &conn(Direction::Outgoing, Protocol::Tcp, CART, 1, "10.1.9.9", 80),
                &index,
                now,
                "t"
            ),
            Outcome::PeerUnknown
        );
        assert_eq!(
            agg.record(
                &conn(Direction::Outgoing, Protocol::Tcp, "192.0.2.1", 1, CART, 80),
                &index,
                now,
                "t"
            ),
            Outcome::LocalNotAPod
        );
        let cart = agg
            .snapshot(&workload("shop", "cart"))
            .unwrap()
            .neighborhood;
        let peers: Vec<&NeighborPeer> = cart.egress.iter().map(|n| &n.peer).collect();
        assert!(peers.contains(&&NeighborPeer::Pods {
            namespace_selector: Some(LabelSelector::from_labels(Labels::from([(
                NAMESPACE_NAME_LABEL.into(),
                "data".into()
            )]))),
            pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                "app".into(),
                "db".into()
            )]))),
        }));
        assert!(peers.contains(&&NeighborPeer::Address {
            ip: "203.0.113.9".parse::<IpAddr>().unwrap(),
            dns_names: BTreeSet::new()
        }));
        let udp = cart
            .egress
            .iter()
            .find(|n| matches!(n.peer, NeighborPeer::Address { .. }))
            .unwrap();
        assert_eq!(udp.ports.iter().next().unwrap().protocol, Protocol::Udp);
    }

    #[test]
    fn past_the_cap_new_neighbours_are_counted_per_peer_workload_without_ports() {
        let index = index();
        let now = Instant::now();
        let mut agg = Aggregator::new(2);
        for port in [80, 81] {
            assert_eq!(
                agg.record(
                    &conn(Direction::Outgoing, Protocol::Tcp, WEB, 1, CART, port),
                    &index,
                    now,
                    "t"
                ),
                Outcome::New
            );
        }
        agg.written(&workload("shop", "web"));
        assert!(agg.dirty().is_empty());
        // Known entries still count; new ones are coarsened.
        assert_eq!(
            agg.record(
                &conn(Direction::Outgoing, Protocol::Tcp, WEB, 1, CART, 80),
                &index,
                now,
                "t"
            ),
            Outcome::Known
        );
        for port in [82, 83, 84] {
            assert_eq!(
                agg.record(
                    &conn(Direction::Outgoing, Protocol::Tcp, WEB, 1, CART, port),
                    &index,
                    now,
                    "t"
                ),
                Outcome::Coarsened
            );
        }
        assert_eq!(agg.entries(), 2);
        assert_eq!(agg.dirty(), vec![workload("shop", "web")]);
        let snap = agg.snapshot(&workload("shop", "web")).unwrap();
        assert_eq!(
            snap.neighborhood.egress[0].ports.len(),
            2,
            "no port was added past the cap"
        );
        assert_eq!(
            snap.coarse,
            BTreeMap::from([(
                (
                    Direction::Outgoing,
                    CoarsePeer::Workload("shop/cart".into())
                ),
                3
            )])
        );
    }

    #[test]
    fn written_workloads_without_pods_are_forgotten_and_free_their_entries() {
        let mut index = index();
        let now = Instant::now();
        let mut agg = Aggregator::new(10);
        agg.record(
            &conn(Direction::Outgoing, Protocol::Tcp, WEB, 1, CART, 80),
            &index,
            now,
            "t",
        );
        index.remove_pod("shop", "web-0", now);
        index.purge(now + Duration::from_secs(31));
        assert_eq!(agg.forget_gone(&index), 0, "dirty: not written yet");
        agg.written(&workload("shop", "web"));
        assert_eq!(agg.forget_gone(&index), 1);
        assert_eq!(agg.entries(), 0);
    }

    proptest! {
        /// Whatever the connections and their order: every connection whose
        /// ends are known is counted exactly once (as new or known), the
        /// entries are the distinct (workload, direction, peer, proto,
        /// port) keys up to the cap, and memory never passes the cap.
        #[test]
        fn counts_are_exact_and_entries_bounded(
            conns in proptest::collection::vec((0usize..3, 0usize..3, any::<bool>(), any::<bool>(), 1u16..6, 1024u16..1030), 0..200),
            cap in 1usize..20,
        ) {
            let ips = [WEB, CART, DB];
            let index = index();
            let now = Instant::now();
            let mut agg = Aggregator::new(cap);
            let mut keys = BTreeSet::new();
            let mut counted = 0u64;
            for (a, b, out, udp, port, eph) in conns {
                let direction = if out { Direction::Outgoing } else { Direction::Incoming };
                let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
                let (lport, rport) = if out { (eph, port) } else { (port, eph) };
                let c = conn(direction, protocol, ips[a], lport, ips[b], rport);
                let outcome = agg.record(&c, &index, now, "t");
                prop_assert!(agg.entries() <= cap);
                let key = (a, b, out, udp, port);
                match outcome {
                    Outcome::New => { prop_assert!(keys.insert(key)); counted += 1; }
                    Outcome::Known => { prop_assert!(keys.contains(&key)); counted += 1; }
                    Outcome::Coarsened => { prop_assert!(!keys.contains(&key)); prop_assert_eq!(keys.len(), cap); }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(agg.entries(), keys.len());
            let total: u64 = [("shop", "web"), ("shop", "cart"), ("data", "db")]
                .iter()
                .filter_map(|(ns, app)| agg.snapshot(&workload(ns, app)))
                .flat_map(|s| s.neighborhood.ingress.into_iter().chain(s.neighborhood.egress))
                .map(|n| n.evidence.map_or(0, |e| e.connections))
                .sum();
            prop_assert_eq!(total, counted);
        }
    }
}
