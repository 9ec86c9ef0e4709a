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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use foldhash::fast::FixedState;
use serde::Serialize;
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

/// One side of a flow, borrowed: what tells endpoints apart, computed for
/// every flow without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndpointView<'a> {
    Pod {
        namespace: &'a str,
        pod_name: Option<&'a str>,
        labels: &'a [(Cow<'a, str>, Cow<'a, str>)],
        workloads: &'a [FlowWorkload<'a>],
    },
    Service {
        namespace: &'a str,
        name: &'a str,
    },
    Address(IpAddr),
    Reserved(ReservedPeer, Option<IpAddr>),
    /// A reserved identity a policy cannot name, or none at all.
    Unknown(Option<&'a ReservedIdentity>, Option<IpAddr>),
}

/// Hashes what is cheap and nearly always tells endpoints apart (for a pod:
/// namespace, name, how many labels); [`EndpointView::is`] compares the
/// rest. Hashing every label of both ends of every flow was most of the
/// learner's time.
impl Hash for EndpointView<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Self::Pod {
                namespace,
                pod_name,
                labels,
                workloads,
            } => {
                namespace.hash(state);
                pod_name.hash(state);
                labels.len().hash(state);
                workloads.len().hash(state);
            }
            Self::Service { namespace, name } => (namespace, name).hash(state),
            Self::Address(ip) => ip.hash(state),
            Self::Reserved(r, ip) => (r, ip).hash(state),
            Self::Unknown(r, ip) => (r, ip).hash(state),
        }
    }
}

impl<'a> EndpointView<'a> {
    fn of(e: &'a FlowEndpoint<'a>) -> Self {
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
                None => Self::Unknown(Some(&ReservedIdentity::World), None),
            };
        }
        if let Some(other) = e.reserved.first() {
            return Self::Unknown(Some(other), e.ip);
        }
        match (&e.namespace, &e.pod_name, &e.service) {
            (Some(ns), None, Some(svc)) if e.labels.is_empty() => Self::Service {
                namespace: ns,
                name: &svc.name,
            },
            (Some(ns), pod_name, _) => Self::Pod {
                namespace: ns,
                pod_name: pod_name.as_deref(),
                labels: &e.labels,
                workloads: &e.workloads,
            },
            (None, _, _) => Self::Unknown(None, e.ip),
        }
    }

    fn to_key(self) -> EndpointKey {
        match self {
            Self::Pod {
                namespace,
                pod_name,
                labels,
                workloads,
            } => EndpointKey::Pod {
                namespace: namespace.to_string(),
                pod_name: pod_name.map(str::to_string),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                workloads: workloads
                    .iter()
                    .cloned()
                    .map(FlowWorkload::into_owned)
                    .collect(),
            },
            Self::Service { namespace, name } => EndpointKey::Service {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            Self::Address(ip) => EndpointKey::Address(ip),
            Self::Reserved(r, ip) => EndpointKey::Reserved(r, ip),
            Self::Unknown(reserved, ip) => EndpointKey::Unknown(match (reserved, ip) {
                (Some(ReservedIdentity::World), _) => "reserved:world without an address".into(),
                (Some(r), Some(ip)) => format!("reserved:{} ({ip})", reserved_name(r)),
                (Some(r), None) => format!("reserved:{}", reserved_name(r)),
                (None, Some(ip)) => format!("{ip} (no identity)"),
                (None, None) => "endpoint without identity".into(),
            }),
        }
    }

    /// Whether `key` is this endpoint (the key was made from an equal view).
    fn is(self, key: &EndpointKey) -> bool {
        match (self, key) {
            (
                Self::Pod {
                    namespace,
                    pod_name,
                    labels,
                    workloads,
                },
                EndpointKey::Pod {
                    namespace: n,
                    pod_name: p,
                    labels: l,
                    workloads: w,
                },
            ) => {
                namespace == n
                    && pod_name == p.as_deref()
                    && labels.len() == l.len()
                    && labels
                        .iter()
                        .zip(l)
                        .all(|((k, v), (lk, lv))| k == lk && v == lv)
                    && workloads.len() == w.len()
                    && workloads
                        .iter()
                        .zip(w)
                        .all(|(a, b)| a.name == b.name && a.kind == b.kind)
            }
            (
                Self::Service { namespace, name },
                EndpointKey::Service {
                    namespace: n,
                    name: m,
                },
            ) => namespace == n && name == m,
            (Self::Address(a), EndpointKey::Address(b)) => a == *b,
            (Self::Reserved(r, ip), EndpointKey::Reserved(s, jp)) => r == *s && ip == *jp,
            (Self::Unknown(..), EndpointKey::Unknown(what)) => {
                self.to_key() == EndpointKey::Unknown(what.clone())
            }
            _ => false,
        }
    }
}

/// One side of a flow, owned: one per distinct endpoint. Pod labels are
/// kept as the flow lists them; the same pod listed in another order is
/// another key that attributes alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum EndpointKey {
    Pod {
        namespace: String,
        pod_name: Option<String>,
        labels: Vec<(String, String)>,
        workloads: Vec<FlowWorkload<'static>>,
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

/// A reader's name for an endpoint it has seen before
/// ([`Learner::observe_hinted`]).
pub type EndpointHint = u64;

type FastMap<K, V> = HashMap<K, V, FixedState>;

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
    /// Counted from [`Connections::counted`] when the learner is finished.
    connections: u64,
    flows: u64,
    first: Option<String>,
    last: Option<String>,
}

impl Tally {
    fn saw(&mut self, time: Option<&str>) {
        self.flows += 1;
        if let Some(t) = time {
            self.seen_at(t, t);
        }
    }

    fn seen_at(&mut self, first: &str, last: &str) {
        // The buffers are reused: flows arrive in time order, so the
        // last-seen time changes with almost every flow.
        match &mut self.last {
            Some(l) if last > l.as_str() => {
                l.clear();
                l.push_str(last);
                // One time (`saw`) later than the last cannot be the first.
                if std::ptr::eq(first, last) {
                    return;
                }
            }
            Some(_) => {}
            None => self.last = Some(last.to_string()),
        }
        match &mut self.first {
            Some(f) if first < f.as_str() => {
                f.clear();
                f.push_str(first);
            }
            Some(_) => {}
            None => self.first = Some(first.to_string()),
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

/// The tallies of the flows from one endpoint to one port of another, and
/// which 5-tuples were counted as connections for which tally.
#[derive(Clone, Debug, Default)]
struct Connections {
    ids: FastMap<ConnKey, u32>,
    tallies: Vec<(ConnKey, Tally)>,
    /// 5-tuple hash → the tally it is counted for: a connection counts
    /// once even when its packets were seen with different endpoint
    /// details (at both nodes). Indexes, not keys, keep this map, the one
    /// that grows with the connections, at 16 bytes an entry.
    counted: FastMap<u64, u32>,
}

impl Connections {
    fn id(&mut self, key: ConnKey) -> u32 {
        let tallies = &mut self.tallies;
        *self.ids.entry(key).or_insert_with(|| {
            tallies.push((key, Tally::default()));
            // More than 4 billion distinct connections cannot be held anyway.
            u32::try_from(tallies.len() - 1).unwrap_or(u32::MAX)
        })
    }

    fn tally(&mut self, id: u32) -> &mut Tally {
        &mut self.tallies[id as usize].1
    }

    /// Counts 5-tuple `tuple` as a connection of tally `id`. A 5-tuple
    /// seen for two tallies counts for the one whose endpoints come first
    /// by content, so the count does not depend on the order of the flows
    /// nor on how the input was split between learners.
    fn count(&mut self, tuple: u64, id: u32, endpoint_hashes: &[(u64, u64)]) {
        match self.counted.entry(tuple) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let held = *o.get();
                if held != id {
                    let rank = |id: u32| {
                        let k = self.tallies[id as usize].0;
                        (
                            endpoint_hashes[k.src as usize].1,
                            endpoint_hashes[k.dst as usize].1,
                            k.protocol,
                            k.port,
                        )
                    };
                    if rank(id) < rank(held) {
                        o.insert(id);
                    }
                }
            }
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
#[derive(Clone, Debug, Default)]
pub struct Learner {
    /// One hasher for every per-flow lookup: fixed, so the counts do not
    /// depend on the run.
    hasher: FixedState,
    /// Endpoint ids by the hash of their view (compared field by field).
    ids: FastMap<u64, Vec<EndpointId>>,
    endpoints: Vec<EndpointKey>,
    /// Per endpoint id: the hash of its view (its key in `ids`) and the
    /// hash of its whole key. Both depend on the endpoint alone, not on
    /// the learner, so learners of different parts of the input agree on
    /// them ([`Learner::merge`]).
    endpoint_hashes: Vec<(u64, u64)>,
    /// Endpoint ids by a reader's [`EndpointHint`] and the endpoint's
    /// address: a lookup that skips comparing labels ([`Learner::observe_hinted`]).
    hinted: FastMap<(EndpointHint, Option<IpAddr>), EndpointId>,
    connections: Connections,
    /// Flows of unknown direction, by 5-tuple and the 5-tuple's hash (so
    /// a connection already counted from its opening is not counted again
    /// once its direction is decided): how many. Kept small: without
    /// `is_reply` there is one entry per connection.
    undecided: FastMap<(UndecidedKey, u64), u64>,
    /// When flows of unknown direction were seen, by what they would be if
    /// they are the client's (times are per port, not per 5-tuple).
    undecided_times: FastMap<ConnKey, Tally>,
    /// Flows left out at observation, by (source, destination, reason).
    left_out: HashMap<(EndpointId, EndpointId, LeftOutReason), u64>,
    /// Names DNS answers gave each address.
    dns: FastMap<IpAddr, BTreeSet<String>>,
    counts: FlowCounts,
}

impl Learner {
    pub fn new() -> Self {
        Self::default()
    }

    fn id(&mut self, endpoint: &FlowEndpoint<'_>) -> EndpointId {
        let view = EndpointView::of(endpoint);
        let hash = self.hasher.hash_one(view);
        let bucket = self.ids.entry(hash).or_default();
        if let Some(&id) = bucket
            .iter()
            .find(|&&id| view.is(&self.endpoints[id as usize]))
        {
            return id;
        }
        // More than 4 billion distinct endpoints cannot be held anyway.
        let id = EndpointId::try_from(self.endpoints.len()).unwrap_or(EndpointId::MAX);
        let key = view.to_key();
        self.endpoint_hashes
            .push((hash, self.hasher.hash_one(&key)));
        self.endpoints.push(key);
        bucket.push(id);
        id
    }

    fn hinted_id(&mut self, endpoint: &FlowEndpoint<'_>, hint: Option<EndpointHint>) -> EndpointId {
        let Some(hint) = hint.filter(|_| endpoint.service.is_none()) else {
            return self.id(endpoint);
        };
        if let Some(&id) = self.hinted.get(&(hint, endpoint.ip)) {
            return id;
        }
        // Hints of endpoints gone from the reader's view are never given
        // again: start over rather than grow without bound.
        if self.hinted.len() >= 64 * 1024 {
            self.hinted.clear();
        }
        let id = self.id(endpoint);
        self.hinted.insert((hint, endpoint.ip), id);
        id
    }

    /// The id of an endpoint another learner knew (`hashes` as it had
    /// them), added when this learner has not seen it.
    fn id_of_key(&mut self, key: EndpointKey, hashes: (u64, u64)) -> EndpointId {
        let bucket = self.ids.entry(hashes.0).or_default();
        if let Some(&id) = bucket
            .iter()
            .find(|&&id| self.endpoints[id as usize] == key)
        {
            return id;
        }
        let id = EndpointId::try_from(self.endpoints.len()).unwrap_or(EndpointId::MAX);
        self.endpoint_hashes.push(hashes);
        self.endpoints.push(key);
        bucket.push(id);
        id
    }

    /// Folds in what `other` learned from another part of the input, as
    /// if this learner had observed those flows too: the result of
    /// [`Learner::finish`] is the same as one learner's over all the flows,
    /// whatever the split and the order of the merges (a 5-tuple seen by
    /// both is one connection). This is what lets a large input be read by
    /// several threads, each with its own learner.
    pub fn merge(&mut self, other: Learner) {
        if self.counts == FlowCounts::default() && self.endpoints.is_empty() {
            // Nothing to fold into: take the other whole rather than copy
            // it, which would hold both at once. Its hints were another
            // reader's.
            *self = other;
            self.hinted.clear();
            return;
        }
        let Learner {
            endpoints,
            endpoint_hashes,
            connections,
            undecided,
            undecided_times,
            left_out,
            dns,
            counts,
            ..
        } = other;
        let ids: Vec<EndpointId> = endpoints
            .into_iter()
            .zip(endpoint_hashes)
            .map(|(key, hashes)| self.id_of_key(key, hashes))
            .collect();
        let conn = |k: ConnKey| ConnKey {
            src: ids[k.src as usize],
            dst: ids[k.dst as usize],
            ..k
        };
        let Connections {
            tallies, counted, ..
        } = connections;
        let tally_ids: Vec<u32> = tallies
            .iter()
            .map(|(k, tally)| {
                let id = self.connections.id(conn(*k));
                self.connections.tally(id).absorb(tally);
                id
            })
            .collect();
        for (tuple, id) in counted {
            self.connections
                .count(tuple, tally_ids[id as usize], &self.endpoint_hashes);
        }
        for ((k, tuple), flows) in undecided {
            let k = UndecidedKey {
                src: ids[k.src as usize],
                dst: ids[k.dst as usize],
                ..k
            };
            *self.undecided.entry((k, tuple)).or_default() += flows;
        }
        for (k, tally) in undecided_times {
            self.undecided_times
                .entry(conn(k))
                .or_default()
                .absorb(&tally);
        }
        for ((src, dst, reason), n) in left_out {
            *self
                .left_out
                .entry((ids[src as usize], ids[dst as usize], reason))
                .or_default() += n;
        }
        for (ip, names) in dns {
            self.dns.entry(ip).or_default().extend(names);
        }
        self.counts.add(&counts);
    }

    /// Folds one flow in.
    pub fn observe(&mut self, flow: &Flow<'_>) {
        self.observe_hinted(flow, None, None);
    }

    /// [`Learner::observe`] for a reader that knows when it sees an
    /// endpoint it has seen before: `source` and `destination` are its
    /// hints for the flow's two endpoints (or `None`). The same hint must
    /// only ever be given for endpoints equal in everything but their
    /// address (namespace, labels, reserved identities, pod name,
    /// workloads); an endpoint with a Service is looked up in full. A
    /// learner merged from another ([`Learner::merge`]) drops that one's
    /// hints, so each reader keeps its hints to its own learner.
    pub fn observe_hinted(
        &mut self,
        flow: &Flow<'_>,
        source: Option<EndpointHint>,
        destination: Option<EndpointHint>,
    ) {
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
        let src = self.hinted_id(&flow.source, source);
        let dst = self.hinted_id(&flow.destination, destination);
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
                let key = ConnKey {
                    src,
                    dst,
                    protocol,
                    port,
                };
                let tuple = self.tuple_hash(flow, src, dst);
                let id = self.connections.id(key);
                self.connections.tally(id).saw(flow.time.as_deref());
                self.connections.count(tuple, id, &self.endpoint_hashes);
            }
            Class::Undecided => {
                let tuple = self.tuple_hash(flow, src, dst);
                let key = UndecidedKey {
                    src,
                    dst,
                    protocol,
                    src_port: flow.source_port.unwrap_or(0),
                    dst_port: port,
                };
                *self.undecided.entry((key, tuple)).or_default() += 1;
                self.undecided_times
                    .entry(ConnKey {
                        src,
                        dst,
                        protocol,
                        port,
                    })
                    .or_default()
                    .saw(flow.time.as_deref());
            }
            Class::Reply => {}
        }
    }

    /// Decides the flows of unknown direction, now that every listening
    /// port is known, and turns what was left out into report lines.
    fn decide(self) -> Decided {
        let Learner {
            endpoints,
            endpoint_hashes,
            mut connections,
            undecided,
            undecided_times,
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
        let listening: HashSet<(EndpointId, Protocol, u16)> = connections
            .tallies
            .iter()
            .map(|(k, _)| (k.dst, k.protocol, k.port))
            .collect();
        let mut decided_forward: HashSet<u32> = HashSet::new();
        for ((k, tuple), flows) in undecided {
            let from_listening = listening.contains(&(k.src, k.protocol, k.src_port));
            let to_listening = listening.contains(&(k.dst, k.protocol, k.dst_port));
            if to_listening {
                let key = ConnKey {
                    src: k.src,
                    dst: k.dst,
                    protocol: k.protocol,
                    port: k.dst_port,
                };
                // A 5-tuple whose opening was not seen is one connection.
                let id = connections.id(key);
                connections.tally(id).flows += flows;
                connections.count(tuple, id, &endpoint_hashes);
                decided_forward.insert(id);
            } else if from_listening {
                counts.inferred_replies += flows;
            } else {
                *left_out
                    .entry((
                        endpoints[k.src as usize].describe(),
                        endpoints[k.dst as usize].describe(),
                        LeftOutReason::UnknownDirection,
                    ))
                    .or_default() += flows;
            }
        }
        for id in decided_forward {
            let (key, entry) = &mut connections.tallies[id as usize];
            if let Some(times) = undecided_times.get(key)
                && let (Some(first), Some(last)) = (&times.first, &times.last)
            {
                entry.seen_at(first, last);
            }
        }
        let Connections {
            mut tallies,
            counted,
            ..
        } = connections;
        for id in counted.into_values() {
            tallies[id as usize].1.connections += 1;
        }
        counts.connections = tallies.iter().map(|(_, t)| t.connections).sum();
        let mut connections = tallies;
        connections.sort_by_key(|(k, _)| *k);
        Decided {
            endpoints,
            connections,
            left_out,
            dns,
            counts,
        }
    }

    /// Every distinct connection (source, destination, protocol, port) with
    /// its ends attributed as [`Learner::finish`] attributes them, for
    /// checking traffic against policies (`verify`) rather than learning
    /// from it. Sorted.
    pub fn observed(self, cluster: Option<&Cluster>) -> (Vec<ObservedConnection>, LearnReport) {
        let Decided {
            endpoints,
            connections,
            left_out,
            dns,
            counts,
        } = self.decide();
        let ends: Vec<ObservedEnd> = endpoints
            .iter()
            .map(|e| match resolve(e, cluster, &dns) {
                Resolved::Workload(a) => ObservedEnd::Workload(a.workload),
                Resolved::Peer(NeighborPeer::Address { ip, .. }, _) => ObservedEnd::Address(ip),
                Resolved::Peer(NeighborPeer::Reserved(r), ip) => ObservedEnd::Reserved(r, ip),
                _ => ObservedEnd::Unattributed(e.describe()),
            })
            .collect();
        let mut folded: BTreeMap<(&ObservedEnd, &ObservedEnd, Protocol, u16), Tally> =
            BTreeMap::new();
        for (k, tally) in &connections {
            folded
                .entry((
                    &ends[k.src as usize],
                    &ends[k.dst as usize],
                    k.protocol,
                    k.port,
                ))
                .or_default()
                .absorb(tally);
        }
        let observed: Vec<ObservedConnection> = folded
            .into_iter()
            .map(
                |((source, destination, protocol, port), tally)| ObservedConnection {
                    source: source.clone(),
                    destination: destination.clone(),
                    protocol,
                    port,
                    flows: tally.flows,
                    evidence: tally.evidence(),
                },
            )
            .collect();
        let mut report = LearnReport {
            flows: counts,
            ..LearnReport::default()
        };
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
        (observed, report)
    }

    /// Attributes the endpoints (with the manifests when given) and returns
    /// one neighborhood per workload, sorted, with what was left out.
    pub fn finish(self, cluster: Option<&Cluster>) -> (Vec<Neighborhood>, LearnReport) {
        let Decided {
            endpoints,
            connections,
            mut left_out,
            dns,
            counts,
        } = self.decide();
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
        for (k, tally) in &connections {
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
                if a.selector.is_empty() {
                    // Only per-run labels (a Job's pods, say): a policy
                    // selecting it would select every pod of the namespace.
                    *left_out
                        .entry((
                            workload_id(&a.workload),
                            endpoints[other_key as usize].describe(),
                            LeftOutReason::NoStableLabels,
                        ))
                        .or_default() += tally.flows;
                    continue;
                }
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

/// The learner's state once every flow is decided.
struct Decided {
    endpoints: Vec<EndpointKey>,
    /// Sorted.
    connections: Vec<(ConnKey, Tally)>,
    left_out: BTreeMap<(String, String, LeftOutReason), u64>,
    dns: FastMap<IpAddr, BTreeSet<String>>,
    counts: FlowCounts,
}

/// One end of an observed connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ObservedEnd {
    /// A pod of this workload; the engine's endpoint is
    /// `namespace/Kind/name` (the kind as [`crate::model::WorkloadKind`]
    /// spells it when it is one).
    Workload(WorkloadRef),
    /// Outside the cluster.
    Address(IpAddr),
    /// A Cilium reserved identity, with the address seen.
    Reserved(ReservedPeer, Option<IpAddr>),
    /// A pod of no known workload, a Service without its selector, or an
    /// identity a policy cannot name: described.
    Unattributed(String),
}

/// Connections between the same two ends on the same port, as observed
/// (pods of one workload fold into the workload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedConnection {
    pub source: ObservedEnd,
    pub destination: ObservedEnd,
    pub protocol: Protocol,
    pub port: u16,
    /// The flows folded into it (openings and the client's later packets).
    pub flows: u64,
    /// Connections counted (once each, from the opening) and when.
    pub evidence: Evidence,
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
    dns: &FastMap<IpAddr, BTreeSet<String>>,
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

fn classify(flow: &Flow<'_>) -> Class {
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

impl Learner {
    /// The flow's 5-tuple (addresses, or endpoints when an address is
    /// missing: by the hashes of their keys, which any learner computes
    /// alike), so the packets of one connection, seen at both nodes or
    /// retransmitted, count once.
    fn tuple_hash(&self, flow: &Flow<'_>, src: EndpointId, dst: EndpointId) -> u64 {
        let ends = match (flow.source.ip, flow.destination.ip) {
            (Some(s), Some(d)) => Ok((s, d)),
            _ => Err((
                self.endpoint_hashes[src as usize].1,
                self.endpoint_hashes[dst as usize].1,
            )),
        };
        self.hasher
            .hash_one((ends, flow.protocol, flow.source_port, flow.destination_port))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::learn::flows::{DnsRecord, FlowService, TcpFlags};
    use crate::model::{Service, ServiceType};

    fn pod(ns: &str, name: &str, app: &str, ip: [u8; 4]) -> FlowEndpoint<'static> {
        FlowEndpoint {
            namespace: Some(ns.to_string().into()),
            labels: vec![
                ("app".into(), app.to_string().into()),
                ("pod-template-hash".into(), "6b4f9c7d5f".into()),
            ],
            pod_name: Some(format!("{name}-6b4f9c7d5f-x2x4z").into()),
            workloads: vec![FlowWorkload {
                name: name.to_string().into(),
                kind: "Deployment".into(),
            }],
            ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
            ..FlowEndpoint::default()
        }
    }

    fn world(ip: [u8; 4]) -> FlowEndpoint<'static> {
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
        src: &FlowEndpoint<'static>,
        sport: u16,
        dst: &FlowEndpoint<'static>,
        dport: u16,
        flags: TcpFlags,
        is_reply: Option<bool>,
        time: &str,
    ) -> Flow<'static> {
        Flow {
            time: Some(time.to_string().into()),
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

    mod merging {
        use proptest::prelude::*;

        use super::*;

        /// A flow from a small universe: four pods of two workloads (one
        /// pod reusing another's address, as a restarted pod does), an
        /// external address and a DNS answer, TCP and UDP, every flag and
        /// `is_reply` combination that changes how a flow is counted.
        fn arb_flow() -> impl Strategy<Value = Flow<'static>> {
            let ends = || {
                prop_oneof![
                    Just(pod("shop", "web", "web", [10, 0, 0, 1])),
                    Just(pod("shop", "web", "web", [10, 0, 0, 2])),
                    Just(pod("shop", "cart", "cart", [10, 0, 0, 3])),
                    Just(pod("shop", "cart", "cart", [10, 0, 0, 1])),
                    Just(world([203, 0, 113, 9])),
                ]
            };
            let flags = prop_oneof![
                Just(Some(SYN)),
                Just(Some(SYN_ACK)),
                Just(Some(ACK)),
                Just(None)
            ];
            let is_reply = prop_oneof![Just(None), Just(Some(false)), Just(Some(true))];
            (
                (
                    ends(),
                    ends(),
                    prop_oneof![Just(8080u16), Just(40000), Just(53)],
                ),
                (
                    prop_oneof![Just(8080u16), Just(40000), Just(40001)],
                    flags,
                    is_reply,
                ),
                (any::<bool>(), 0..60u8, any::<bool>()),
            )
                .prop_map(
                    |((src, dst, sport), (dport, flags, is_reply), (udp, second, dns))| {
                        let mut flow = tcp(
                            &src,
                            sport,
                            &dst,
                            dport,
                            flags.unwrap_or(ACK),
                            is_reply,
                            &format!("2026-01-01T00:00:{second:02}Z"),
                        );
                        if udp {
                            flow.protocol = Some(Protocol::Udp);
                            flow.tcp_flags = None;
                        } else if flags.is_none() {
                            flow.tcp_flags = None;
                        }
                        if dns {
                            flow.dns = Some(DnsRecord {
                                query: "api.example.com.".into(),
                                ips: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))],
                            });
                        }
                        flow
                    },
                )
        }

        fn finish_both(learner: Learner) -> ((Vec<Neighborhood>, LearnReport), String) {
            let observed = format!("{:?}", learner_clone_observed(&learner));
            (learner.finish(None), observed)
        }

        /// `observed` consumes the learner: run it on a learner rebuilt
        /// from the same flows instead.
        fn learner_clone_observed(learner: &Learner) -> Vec<ObservedConnection> {
            let mut copy = Learner::new();
            copy.merge(learner.clone());
            copy.observed(None).0
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Reading the input with several learners (each flow to any of
            /// them, as blocks go to threads) and merging them in any order
            /// learns exactly what one learner reading it all learns.
            #[test]
            fn learners_of_parts_merged_in_any_order_learn_what_one_learns(
                flows in proptest::collection::vec(arb_flow(), 0..60),
                parts in proptest::collection::vec(0..4usize, 60),
                merge_order in Just([0usize, 1, 2, 3]).prop_shuffle(),
            ) {
                let mut whole = Learner::new();
                let mut learners: Vec<Learner> = (0..4).map(|_| Learner::new()).collect();
                for (flow, part) in flows.iter().zip(&parts) {
                    whole.observe(flow);
                    learners[*part].observe(flow);
                }
                let mut learners: Vec<Option<Learner>> = learners.into_iter().map(Some).collect();
                let first = merge_order[0];
                let mut merged = learners[first].take().unwrap();
                for i in &merge_order[1..] {
                    merged.merge(learners[*i].take().unwrap());
                }
                let (expected, expected_observed) = finish_both(whole);
                let (got, got_observed) = finish_both(merged);
                prop_assert_eq!(got, expected);
                prop_assert_eq!(got_observed, expected_observed);
            }
        }
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
    fn a_service_without_selector_is_reported_never_every_pod() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let external_name = FlowEndpoint {
            namespace: Some("shop".into()),
            service: Some(FlowService {
                namespace: "shop".into(),
                name: "db".into(),
            }),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))),
            ..FlowEndpoint::default()
        };
        let mut cluster = Cluster::default();
        cluster.services.push(Service {
            namespace: "shop".into(),
            name: "db".into(),
            selector: None,
            service_type: ServiceType::ClusterIp,
            ports: vec![],
            external_ips: vec![],
        });
        let flows = [tcp(&web, 40000, &external_name, 5432, SYN, None, "t1")];
        let (hoods, report) = learn(&flows, Some(&cluster));
        assert!(hood(&hoods, "web").egress.is_empty());
        assert!(
            report
                .left_out
                .iter()
                .any(|l| l.reason == LeftOutReason::UnknownIdentity && l.peer == "shop/Service/db"),
            "{report:?}"
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

    #[test]
    fn a_connection_seen_from_its_syn_is_not_counted_again_by_its_undecided_packets() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        let flows = [
            tcp(&web, 40000, &cart, 8080, SYN, None, "t1"),
            // The client's later packets, direction not recorded.
            tcp(&web, 40000, &cart, 8080, ACK, None, "t2"),
            tcp(&web, 40000, &cart, 8080, ACK, None, "t3"),
        ];
        let (hoods, report) = learn(&flows, None);
        assert_eq!(report.flows.connections, 1);
        let evidence = hood(&hoods, "web").egress[0]
            .evidence
            .clone()
            .unwrap_or_default();
        assert_eq!(evidence.connections, 1);
        assert_eq!(evidence.last_seen.as_deref(), Some("t3"));
    }

    #[test]
    fn observed_connections_fold_pods_into_workloads_and_skip_replies() {
        let web_a = pod("shop", "web", "web", [10, 0, 0, 1]);
        let mut web_b = pod("shop", "web", "web", [10, 0, 0, 3]);
        web_b.pod_name = Some("web-6b4f9c7d5f-b2b2b".into());
        let cart = pod("shop", "cart", "cart", [10, 0, 0, 2]);
        let flows = [
            tcp(&web_a, 40000, &cart, 8080, SYN, None, "t1"),
            tcp(&web_b, 40001, &cart, 8080, SYN, None, "t2"),
            tcp(&cart, 8080, &web_a, 40000, SYN_ACK, None, "t1"),
            // A reply without is_reply, from the listening port: not a
            // connection from cart to web's ephemeral port.
            tcp(&cart, 8080, &web_b, 40001, ACK, None, "t2"),
        ];
        let mut l = Learner::new();
        for f in &flows {
            l.observe(f);
        }
        let (observed, report) = l.observed(None);
        assert_eq!(observed.len(), 1, "{observed:?}");
        let c = &observed[0];
        let workload = |name: &str| {
            ObservedEnd::Workload(WorkloadRef {
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: name.into(),
            })
        };
        assert_eq!(c.source, workload("web"));
        assert_eq!(c.destination, workload("cart"));
        assert_eq!((c.protocol, c.port), (Protocol::Tcp, 8080));
        assert_eq!(c.evidence.connections, 2);
        assert_eq!(report.flows.inferred_replies, 1);
    }

    #[test]
    fn a_workload_with_only_per_run_labels_gets_no_neighborhood_but_a_report() {
        let web = pod("shop", "web", "web", [10, 0, 0, 1]);
        let job = FlowEndpoint {
            namespace: Some("shop".into()),
            labels: vec![
                (
                    "batch.kubernetes.io/job-name".into(),
                    "backup-28912345".into(),
                ),
                ("job-name".into(), "backup-28912345".into()),
                ("controller-uid".into(), "0b1c".into()),
            ],
            pod_name: Some("backup-28912345-x2x4z".into()),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
            ..FlowEndpoint::default()
        };
        let flows = [tcp(&job, 40000, &web, 8080, SYN, None, "t1")];
        let (hoods, report) = learn(&flows, None);
        assert!(
            hoods.iter().all(|h| h.workload.name != "backup"),
            "{hoods:?}"
        );
        assert!(hood(&hoods, "web").ingress.is_empty());
        let reasons: Vec<(&str, &LeftOutReason)> = report
            .left_out
            .iter()
            .map(|l| (l.subject.as_str(), &l.reason))
            .collect();
        assert!(
            reasons.contains(&("shop/CronJob/backup", &LeftOutReason::NoStableLabels)),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&("shop/Deployment/web", &LeftOutReason::NoStableLabels)),
            "the peer side too: {reasons:?}"
        );
    }
}
