//! IBM's network-config-analyzer (`nca`) as an oracle: finding it, running
//! its connectivity query and reading its `txt_no_fw_rules` output.
//!
//! The output has one line per (source, destination, connection cube):
//!
//! ```text
//! ns/name[Deployment] => ns2/other[StatefulSet] : {protocols:TCP,dst_ports:80-90,8080}
//! ns/name[Deployment] => ns2/other[StatefulSet] : {protocols:UDP, SCTP}
//! 0.0.0.0-9.255.255.255,11.0.0.0-255.255.255.255 => ns/p[Pod] : All connections
//! ns/p[Pod] => ns/q[Pod] : All but {protocols:TCP,dst_ports:1-79,81-65535}
//! ```
//!
//! A pair may appear on several lines (its connections are their union);
//! a pair that does not appear has no connections. Protocol lists are joined
//! by `, ` and may read `all but A, B`; other lines (headers, warnings) are
//! ignored.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubefence_core::conn::{ConnSet, PORT_MAX, PORT_MIN};
use kubefence_core::intervals::IntervalSet;
use kubefence_core::ipset::IpSet;
use kubefence_core::{Protocol, WorkloadKind};

/// The pinned version `scripts/install-nca.sh` installs.
pub const NCA_VERSION: &str = "2.1.0";

/// Where nca should be: `$KUBEFENCE_NCA`, else `<repo>/.venv/nca/bin/nca`.
pub fn nca_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBEFENCE_NCA") {
        return PathBuf::from(p);
    }
    repo_root().join(".venv/nca/bin/nca")
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The nca executable, or an error that says how to install it.
pub fn find_nca() -> Result<PathBuf, String> {
    let path = nca_path();
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "network-config-analyzer not found at {} — run `scripts/install-nca.sh` \
             (or set KUBEFENCE_NCA=/path/to/nca; KUBEFENCE_SKIP_NCA=1 skips the oracle tests)",
            path.display()
        ))
    }
}

/// Runs `nca --connectivity POLICIES --resource_list RESOURCES -o
/// txt_no_fw_rules --print_ipv6` and returns its standard output.
///
/// Without `--print_ipv6`, nca leaves IPv6 addresses out of its output
/// unless a policy names one; kubefence always analyses both families, so
/// the oracle must print both.
pub fn run_connectivity(nca: &Path, policies: &Path, resources: &Path) -> Result<String, String> {
    let output = Command::new(nca)
        .arg("--connectivity")
        .arg(policies)
        .arg("--resource_list")
        .arg(resources)
        .args(["-o", "txt_no_fw_rules", "--print_ipv6"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nca.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.contains("Error") || stderr.contains("Traceback") {
        return Err(format!(
            "nca failed ({}):\n{stderr}\n{stdout}",
            output.status
        ));
    }
    Ok(stdout)
}

/// One side of an nca line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NcaEndpoint {
    /// `namespace/Kind/name`, as kubefence names endpoints.
    Workload(String),
    Addresses(IpSet),
}

/// Protocols other than TCP, UDP and SCTP, by nca's names: a boolean
/// algebra of "these" and "all but these".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Others {
    Only(BTreeSet<String>),
    AllBut(BTreeSet<String>),
}

impl Others {
    pub fn none() -> Self {
        Self::Only(BTreeSet::new())
    }
    pub fn all() -> Self {
        Self::AllBut(BTreeSet::new())
    }
    pub fn is_none(&self) -> bool {
        matches!(self, Self::Only(s) if s.is_empty())
    }
    pub fn is_all(&self) -> bool {
        matches!(self, Self::AllBut(s) if s.is_empty())
    }
    pub fn union(&self, other: &Self) -> Self {
        match (self, other) {
            (Self::Only(a), Self::Only(b)) => Self::Only(a | b),
            (Self::AllBut(a), Self::AllBut(b)) => Self::AllBut(a & b),
            (Self::AllBut(a), Self::Only(b)) | (Self::Only(b), Self::AllBut(a)) => {
                Self::AllBut(a - b)
            }
        }
    }
    pub fn complement(&self) -> Self {
        match self {
            Self::Only(a) => Self::AllBut(a.clone()),
            Self::AllBut(a) => Self::Only(a.clone()),
        }
    }
}

/// Allowed connections, precise enough to compare with a [`ConnSet`]:
/// port sets of TCP, UDP and SCTP, and which port-less protocols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conns {
    pub tcp: IntervalSet<u16>,
    pub udp: IntervalSet<u16>,
    pub sctp: IntervalSet<u16>,
    pub others: Others,
}

impl Default for Conns {
    fn default() -> Self {
        Self::none()
    }
}

// === impl Conns ===

impl Conns {
    pub fn none() -> Self {
        Self {
            tcp: IntervalSet::empty(),
            udp: IntervalSet::empty(),
            sctp: IntervalSet::empty(),
            others: Others::none(),
        }
    }

    pub fn all() -> Self {
        let ports = IntervalSet::range(PORT_MIN, PORT_MAX);
        Self {
            tcp: ports.clone(),
            udp: ports.clone(),
            sctp: ports,
            others: Others::all(),
        }
    }

    pub fn from_conn_set(set: &ConnSet) -> Self {
        Self {
            tcp: set.ports_of(Protocol::Tcp).clone(),
            udp: set.ports_of(Protocol::Udp).clone(),
            sctp: set.ports_of(Protocol::Sctp).clone(),
            others: if set.allows_portless_protocols() {
                Others::all()
            } else {
                Others::none()
            },
        }
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

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty() && self.sctp.is_empty() && self.others.is_none()
    }

    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }

    pub fn union(&self, other: &Self) -> Self {
        Self {
            tcp: self.tcp.union(&other.tcp),
            udp: self.udp.union(&other.udp),
            sctp: self.sctp.union(&other.sctp),
            others: self.others.union(&other.others),
        }
    }

    /// Everything not in `self`.
    pub fn complement(&self) -> Self {
        let ports = IntervalSet::range(PORT_MIN, PORT_MAX);
        Self {
            tcp: ports.difference(&self.tcp),
            udp: ports.difference(&self.udp),
            sctp: ports.difference(&self.sctp),
            others: self.others.complement(),
        }
    }
}

impl std::fmt::Display for Conns {
    /// `all`, `none`, or `TCP/80,UDP/53-60,OTHER` like [`ConnSet`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        for protocol in Protocol::ALL {
            for &(lo, hi) in self.ports_of(protocol).ranges() {
                if lo == hi {
                    parts.push(format!("{protocol}/{lo}"));
                } else {
                    parts.push(format!("{protocol}/{lo}-{hi}"));
                }
            }
        }
        match &self.others {
            o if o.is_none() => {}
            o if o.is_all() => parts.push("OTHER".into()),
            Others::Only(s) => parts.push(format!("OTHER({})", join(s))),
            Others::AllBut(s) => parts.push(format!("OTHER(all but {})", join(s))),
        }
        f.write_str(&parts.join(","))
    }
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// One line of nca output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NcaEdge {
    pub from: NcaEndpoint,
    pub to: NcaEndpoint,
    pub conns: Conns,
    /// The line as nca printed it.
    pub line: String,
}

/// Parses nca's `txt_no_fw_rules` output. Lines without ` => ` are skipped;
/// a connection line that does not parse is an error.
pub fn parse_output(text: &str) -> Result<Vec<NcaEdge>, String> {
    let mut edges = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((from, rest)) = line.split_once(" => ") else {
            continue;
        };
        let (to, conns) = rest
            .split_once(" : ")
            .ok_or_else(|| format!("no ' : ' in nca line {line:?}"))?;
        edges.push(NcaEdge {
            from: parse_endpoint(from).map_err(|e| format!("{e} in nca line {line:?}"))?,
            to: parse_endpoint(to).map_err(|e| format!("{e} in nca line {line:?}"))?,
            conns: parse_conns(conns).map_err(|e| format!("{e} in nca line {line:?}"))?,
            line: line.to_string(),
        });
    }
    Ok(edges)
}

/// `ns/name[Kind]` or a comma-separated list of `ip`, `ip-ip` or CIDRs.
pub fn parse_endpoint(text: &str) -> Result<NcaEndpoint, String> {
    let mut text = text.trim();
    // netpol-analyzer (np-guard's Go tool) marks address ranges `[External]`.
    if let Some(addresses) = text.strip_suffix("[External]") {
        text = addresses;
    } else if let Some(open) = text.find('[')
        && let Some(inner) = text[open + 1..].strip_suffix(']')
    {
        let (ns, name) = text[..open]
            .split_once('/')
            .ok_or_else(|| format!("workload {text:?} has no namespace"))?;
        let kind: WorkloadKind = inner.parse()?;
        return Ok(NcaEndpoint::Workload(format!("{ns}/{kind}/{name}")));
    }
    let mut set = IpSet::empty();
    for item in text.split(',') {
        let item = item.trim();
        let piece = if let Some((lo, hi)) = item.split_once('-') {
            let lo: IpAddr = lo.parse().map_err(|e| format!("bad address {lo:?}: {e}"))?;
            let hi: IpAddr = hi.parse().map_err(|e| format!("bad address {hi:?}: {e}"))?;
            ip_range(lo, hi)?
        } else if item.contains('/') {
            let net: ipnet::IpNet = item
                .parse()
                .map_err(|e| format!("bad CIDR {item:?}: {e}"))?;
            IpSet::from_net(&net)
        } else {
            let a: IpAddr = item
                .parse()
                .map_err(|e| format!("bad endpoint {item:?}: {e}"))?;
            IpSet::from_addr(a)
        };
        set = set.union(&piece);
    }
    Ok(NcaEndpoint::Addresses(set))
}

fn ip_range(lo: IpAddr, hi: IpAddr) -> Result<IpSet, String> {
    let mut set = IpSet::empty();
    match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => set.v4 = IntervalSet::range(u32::from(a), u32::from(b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => set.v6 = IntervalSet::range(u128::from(a), u128::from(b)),
        _ => return Err(format!("mixed address families in {lo}-{hi}")),
    }
    Ok(set)
}

/// `All connections`, `No connections`, `All but CUBES` or `CUBES`; also
/// netpol-analyzer's `TCP 80,8080-8090,UDP 53` (`,` or `;` separated).
pub fn parse_conns(text: &str) -> Result<Conns, String> {
    let text = text.trim();
    match text {
        "All connections" | "All Connections" => return Ok(Conns::all()),
        "No connections" | "No Connections" => return Ok(Conns::none()),
        _ => {}
    }
    if let Some(rest) = text.strip_prefix("All but ") {
        return Ok(parse_cubes(rest)?.complement());
    }
    if !text.starts_with('{') {
        return parse_protocol_ports(text);
    }
    parse_cubes(text)
}

/// `TCP 80,8080-8090;UDP 53` or `SCTP` (every port).
fn parse_protocol_ports(text: &str) -> Result<Conns, String> {
    let mut conns = Conns::none();
    let mut current: Option<Protocol> = None;
    for token in text.split([',', ';']) {
        let token = token.trim();
        let (proto, ports) = match token.split_once(' ') {
            Some((p, rest)) => (Some(p), rest.trim()),
            None if token.parse::<Protocol>().is_ok() => (Some(token), ""),
            None => (None, token),
        };
        if let Some(p) = proto {
            current = Some(p.parse()?);
        }
        let protocol = current.ok_or_else(|| format!("ports without a protocol: {token:?}"))?;
        let set = if ports.is_empty() {
            IntervalSet::range(PORT_MIN, PORT_MAX)
        } else {
            parse_ports(ports)?
        };
        let target = conns.ports_of_mut(protocol);
        *target = target.union(&set);
    }
    Ok(conns)
}

/// `{k:v,...},{k:v,...}`: the union of the cubes.
fn parse_cubes(text: &str) -> Result<Conns, String> {
    let mut conns = Conns::none();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body_start = rest
            .strip_prefix('{')
            .ok_or_else(|| format!("expected '{{' at {rest:?}"))?;
        let end = body_start
            .find('}')
            .ok_or_else(|| format!("unclosed cube at {rest:?}"))?;
        conns = conns.union(&parse_cube(&body_start[..end])?);
        rest = body_start[end + 1..].trim_start_matches(',').trim();
    }
    Ok(conns)
}

/// `protocols:TCP, UDP,dst_ports:80,8000-8010`. A field's value runs to the
/// next `,key:`; a missing dimension means all of it.
fn parse_cube(body: &str) -> Result<Conns, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for token in body.split(',') {
        match token.split_once(':') {
            Some((k, v)) => fields.push((k.trim().to_string(), v.trim().to_string())),
            None => match fields.last_mut() {
                Some((_, v)) => {
                    v.push(',');
                    v.push_str(token.trim());
                }
                None => return Err(format!("cube field without key: {token:?}")),
            },
        }
    }
    let mut ports = IntervalSet::range(PORT_MIN, PORT_MAX);
    let mut protocols = (true, true, true, Others::all());
    for (key, value) in fields {
        match key.as_str() {
            "protocols" => protocols = parse_protocols(&value),
            "dst_ports" => ports = parse_ports(&value)?,
            other => return Err(format!("unsupported cube dimension {other:?}")),
        }
    }
    let mut conns = Conns::none();
    for (on, protocol) in [
        (protocols.0, Protocol::Tcp),
        (protocols.1, Protocol::Udp),
        (protocols.2, Protocol::Sctp),
    ] {
        if on {
            *conns.ports_of_mut(protocol) = ports.clone();
        }
    }
    // Port-less protocols ignore the port dimension.
    conns.others = protocols.3;
    Ok(conns)
}

/// `*`, `TCP, UDP`, or `all but ICMP, TCP`: (tcp, udp, sctp, others).
fn parse_protocols(value: &str) -> (bool, bool, bool, Others) {
    let value = value.trim();
    if value == "*" {
        return (true, true, true, Others::all());
    }
    let (negated, list) = match value.strip_prefix("all but ") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let names: BTreeSet<String> = list
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    let has = |p: &str| names.contains(p) != negated;
    let others: BTreeSet<String> = names
        .iter()
        .filter(|n| !matches!(n.as_str(), "TCP" | "UDP" | "SCTP"))
        .cloned()
        .collect();
    let others = if negated {
        Others::AllBut(others)
    } else {
        Others::Only(others)
    };
    (has("TCP"), has("UDP"), has("SCTP"), others)
}

/// `80,8000-8010`.
fn parse_ports(value: &str) -> Result<IntervalSet<u16>, String> {
    let mut set = IntervalSet::empty();
    for item in value.split(',') {
        let item = item.trim();
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|e| format!("bad port {item:?}: {e}"))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|e| format!("bad port {item:?}: {e}"))?;
        set = set.union(&IntervalSet::range(lo, hi));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_connection_strings() {
        let c = parse_conns("{protocols:TCP,dst_ports:80-90,8080}").unwrap();
        assert_eq!(c.to_string(), "TCP/80-90,TCP/8080");
        let c = parse_conns("{protocols:UDP, SCTP,dst_ports:53}").unwrap();
        assert_eq!(c.to_string(), "UDP/53,SCTP/53");
        let c = parse_conns("{protocols:SCTP}").unwrap();
        assert_eq!(c.to_string(), "SCTP/1-65535");
        let c = parse_conns("All but {protocols:TCP,dst_ports:1-79,81-65535}").unwrap();
        assert_eq!(c.to_string(), "TCP/80,UDP/1-65535,SCTP/1-65535,OTHER");
        let c = parse_conns("{protocols:all but TCP, UDP}").unwrap();
        assert_eq!(c.to_string(), "SCTP/1-65535,OTHER");
        let c = parse_conns("{protocols:TCP,dst_ports:1-79},{protocols:UDP,dst_ports:53}").unwrap();
        assert_eq!(c.to_string(), "TCP/1-79,UDP/53");
        assert!(parse_conns("All connections").unwrap().is_all());
        // netpol-analyzer's forms.
        assert!(parse_conns("All Connections").unwrap().is_all());
        let c = parse_conns("TCP 80,8080-8090,UDP 53").unwrap();
        assert_eq!(c.to_string(), "TCP/80,TCP/8080-8090,UDP/53");
        let c = parse_conns("TCP 80;UDP 53,54").unwrap();
        assert_eq!(c.to_string(), "TCP/80,UDP/53-54");
        assert_eq!(parse_conns("SCTP").unwrap().to_string(), "SCTP/1-65535");
        assert!(parse_conns("{dst_ports:53}").unwrap().others.is_all());
    }

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            parse_endpoint("ns1/a[Deployment]").unwrap(),
            NcaEndpoint::Workload("ns1/Deployment/a".into())
        );
        let NcaEndpoint::Addresses(set) =
            parse_endpoint("0.0.0.0-9.255.255.255,11.0.0.0-255.255.255.255").unwrap()
        else {
            unreachable!()
        };
        assert!(set.contains("9.1.1.1".parse().unwrap()));
        assert!(!set.contains("10.1.1.1".parse().unwrap()));
        assert_eq!(
            parse_endpoint("0.0.0.0-9.255.255.255[External]").unwrap(),
            parse_endpoint("0.0.0.0-9.255.255.255").unwrap()
        );
        let edges = parse_output(
            "global: x\nns2/b[StatefulSet] => ns1/a[Deployment] : {protocols:SCTP}\nWarning: z\n",
        )
        .unwrap();
        assert_eq!(edges.len(), 1);
    }
}
