//! Synthetic Hubble flows for the learn benchmarks: `hubble observe -o
//! jsonpb` lines over a fixed cluster of [`WORKLOADS`] Deployments (two
//! pods each, pod names in the ReplicaSet pattern, ten namespaces), each
//! calling five others on its own port, plus 50 addresses outside the
//! cluster.
//!
//! Of the flows, [`REPLY_PERCENT`] are replies (SYN-ACK, `is_reply: true`),
//! [`EXTERNAL_PERCENT`] go to an address outside the cluster
//! (`reserved:world`, TCP 443), and the rest are packets between pods: a
//! SYN opening a connection one time in four, its later ACK packets
//! otherwise. Seeded: the same seed gives the same lines.

use std::fmt::Write as _;
use std::io::{self, Write};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Deployments in the generated cluster.
pub const WORKLOADS: usize = 200;
pub const NAMESPACES: usize = 10;
pub const REPLY_PERCENT: u32 = 5;
pub const EXTERNAL_PERCENT: u32 = 10;
/// Callees per workload.
const CALLEES: usize = 5;
const EXTERNAL_ADDRESSES: usize = 50;
/// Source ports each client uses.
const SOURCE_PORTS: u16 = 32;
/// Characters of generated name suffixes (Kubernetes' SafeEncodeString).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

struct Pod {
    namespace: String,
    workload: String,
    name: String,
    ip: String,
    hash: String,
    identity: u32,
}

fn suffix(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn pods(rng: &mut StdRng) -> Vec<[Pod; 2]> {
    (0..WORKLOADS)
        .map(|w| {
            let hash = suffix(rng, 9);
            let pod = |i: usize, rng: &mut StdRng| Pod {
                namespace: format!("ns-{}", w % NAMESPACES),
                workload: format!("svc-{w}"),
                name: format!("svc-{w}-{hash}-{}", suffix(rng, 5)),
                ip: format!("10.{}.{}.{}", 1 + w / 200, w % 200, 10 + i),
                hash: hash.clone(),
                identity: 10_000 + w as u32,
            };
            [pod(0, rng), pod(1, rng)]
        })
        .collect()
}

/// The port workload `w` listens on.
pub fn port_of(w: usize) -> u16 {
    8000 + (w % 50) as u16
}

/// The workloads `w` calls.
pub fn callees(w: usize) -> impl Iterator<Item = usize> {
    (1..=CALLEES)
        .map(move |k| (w * 7 + k * 13) % WORKLOADS)
        .filter(move |&c| c != w)
}

fn endpoint(out: &mut String, p: &Pod) {
    let _ = write!(
        out,
        r#"{{"ID":{id},"identity":{id},"namespace":"{ns}","labels":["k8s:app={wl}","k8s:io.cilium.k8s.policy.cluster=default","k8s:io.kubernetes.pod.namespace={ns}","k8s:pod-template-hash={hash}"],"pod_name":"{name}","workloads":[{{"name":"{wl}","kind":"Deployment"}}]}}"#,
        id = p.identity,
        ns = p.namespace,
        wl = p.workload,
        hash = p.hash,
        name = p.name,
    );
}

/// The generator: an iterator of jsonpb lines (without newline).
pub struct FlowGen {
    rng: StdRng,
    pods: Vec<[Pod; 2]>,
    externals: Vec<String>,
    remaining: usize,
    sequence: u64,
    line: String,
}

impl FlowGen {
    pub fn new(flows: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let pods = pods(&mut rng);
        let externals = (0..EXTERNAL_ADDRESSES)
            .map(|i| format!("203.0.{}.{}", 113 + i / 200, 1 + i % 200))
            .collect();
        Self {
            rng,
            pods,
            externals,
            remaining: flows,
            sequence: 0,
            line: String::with_capacity(1024),
        }
    }

    /// The next line, in an internal buffer (no allocation per line).
    pub fn next_line(&mut self) -> Option<&str> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.sequence += 1;
        let seq = self.sequence;
        let roll = self.rng.random_range(0..100u32);
        let w = self.rng.random_range(0..WORKLOADS);
        let client = &self.pods[w][self.rng.random_range(0..2)];
        // A few source ports per client, so packets of one connection share
        // its 5-tuple as real traffic does.
        let sport: u16 = 32768 + self.rng.random_range(0..SOURCE_PORTS);
        let time = format!(
            "2026-03-01T{:02}:{:02}:{:02}.{:09}Z",
            (seq / 3_600_000_000) % 24,
            (seq / 60_000_000) % 60,
            (seq / 1_000_000) % 60,
            (seq % 1_000_000) * 1000
        );
        let out = &mut self.line;
        out.clear();
        let _ = write!(
            out,
            r#"{{"flow":{{"time":"{time}","verdict":"FORWARDED","IP":{{"#
        );
        if roll < EXTERNAL_PERCENT {
            let ext = &self.externals[self.rng.random_range(0..self.externals.len())];
            let _ = write!(
                out,
                r#""source":"{}","destination":"{ext}","ipVersion":"IPv4"}},"l4":{{"TCP":{{"source_port":{sport},"destination_port":443,"flags":{{"SYN":true}}}}}},"source":"#,
                client.ip
            );
            endpoint(out, client);
            let _ = write!(
                out,
                r#","destination":{{"identity":2,"labels":["reserved:world"]}},"Type":"L3_L4","node_name":"node-{}","event_type":{{"type":4,"sub_type":3}},"traffic_direction":"EGRESS","is_reply":false,"Summary":"TCP Flags: SYN"}},"node_name":"node-{}","time":"{time}"}}"#,
                w % 8,
                w % 8
            );
        } else {
            let callee = callees(w)
                .nth(self.rng.random_range(0..CALLEES - 1))
                .unwrap_or((w + 1) % WORKLOADS);
            let server = &self.pods[callee][self.rng.random_range(0..2)];
            let port = port_of(callee);
            let reply = roll < EXTERNAL_PERCENT + REPLY_PERCENT;
            let (src, dst, sp, dp, flags, is_reply, dir) = if reply {
                (
                    server,
                    client,
                    port,
                    sport,
                    r#"{"SYN":true,"ACK":true}"#,
                    true,
                    "INGRESS",
                )
            } else if self.rng.random_range(0..4u32) == 0 {
                (
                    client,
                    server,
                    sport,
                    port,
                    r#"{"SYN":true}"#,
                    false,
                    "EGRESS",
                )
            } else {
                (
                    client,
                    server,
                    sport,
                    port,
                    r#"{"ACK":true}"#,
                    false,
                    "EGRESS",
                )
            };
            let _ = write!(
                out,
                r#""source":"{}","destination":"{}","ipVersion":"IPv4"}},"l4":{{"TCP":{{"source_port":{sp},"destination_port":{dp},"flags":{flags}}}}},"source":"#,
                src.ip, dst.ip
            );
            endpoint(out, src);
            out.push_str(r#","destination":"#);
            endpoint(out, dst);
            let _ = write!(
                out,
                r#","Type":"L3_L4","node_name":"node-{}","event_type":{{"type":4,"sub_type":3}},"traffic_direction":"{dir}","is_reply":{is_reply}}},"node_name":"node-{}","time":"{time}"}}"#,
                w % 8,
                w % 8
            );
        }
        Some(&self.line)
    }
}

/// Writes `flows` lines to `w`.
pub fn write_jsonpb<W: Write>(w: &mut W, flows: usize, seed: u64) -> io::Result<()> {
    let mut generator = FlowGen::new(flows, seed);
    while let Some(line) = generator.next_line() {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_the_advertised_mix() {
        let mut generator = FlowGen::new(20_000, 7);
        let (mut replies, mut external, mut total) = (0u32, 0u32, 0u32);
        while let Some(line) = generator.next_line() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            total += 1;
            if v["flow"]["is_reply"] == true {
                replies += 1;
            }
            if v["flow"]["destination"]["labels"][0] == "reserved:world" {
                external += 1;
            }
        }
        assert_eq!(total, 20_000);
        // Within 1.5 points of the advertised shares.
        assert!((850..=1150).contains(&replies), "{replies}");
        assert!((1700..=2300).contains(&external), "{external}");
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_jsonpb(&mut a, 500, 3).unwrap();
        write_jsonpb(&mut b, 500, 3).unwrap();
        assert_eq!(a, b);
    }
}
