//! Finding which Services a workload talks to, from its configuration.
//!
//! Where references are looked for: container and init-container env values
//! (literal, `valueFrom.configMapKeyRef`, every key of an
//! `envFrom.configMapRef`), args and command (read as one argument list, as
//! the container runtime joins them); a host and a port split over two
//! variables (`MYSQL_DB_HOST` + `MYSQL_DB_PORT`, libpq's `PGHOST` +
//! `PGPORT`) are joined.
//!
//! How a host is read (`ns` is the workload's namespace unless named):
//! `svc` → Service `svc` in `ns`; `svc.other` → Service `svc` in `other`
//! (an external host when `other` is not a namespace of the cluster);
//! `svc.other.svc[.<cluster-domain>]` → Service `svc` in `other`; anything
//! else with dots, or an IP address, is outside the cluster; `localhost`
//! and loopback addresses are the pod itself and are ignored. A host that
//! no Service can have (`no_such_svc:4040`: `_` is not allowed in a
//! Service name) is unresolved.
//!
//! What counts, to keep noise out. A host counts when:
//! - it is written as an address: with a scheme or a port (for a Service
//!   or an unresolved cluster name, also with dots); or
//! - it is the value of a variable or flag named like an address: the name's
//!   last word (words split at `_`, `-`, `.`; trailing qualifiers such as
//!   `PRIMARY`, `REPLICA`, `RO`, `RW` or a number skipped) is HOST(S),
//!   HOSTNAME, ADDR, ADDRESS, URL(S), URI, ENDPOINT(S), DSN, SERVER(S),
//!   SERVICE, BROKER(S), UPSTREAM or BACKEND, or ends in HOST (`PGHOST`,
//!   `DBHOST`). For `--flag=value` and `--flag value` arguments the flag is
//!   the name; or
//! - it is the value of a command-line flag (`--cart_svc carts`,
//!   `--cart_svc=carts`, `-Dx=carts`) and is exactly the name of a Service
//!   that exists (a bare word after a flag that names no Service is not
//!   reported: it is far more often a mode or a level than a host). Only a
//!   whole argument is a flag's value (not the words of an `sh -c` script),
//!   and not after a flag for a name (`--service-name`, `--user`, `--id`:
//!   last word NAME(S), ID, USER(NAME), LABEL, PREFIX or TAG).
//!
//! So a bare word in an ordinary variable (`LOG_LEVEL=info`,
//! `OTEL_SERVICE_NAME=frontend`, `GET_HOSTS_FROM=dns`: its last word is
//! FROM) or an argument that follows no flag (`serve carts`) is not a
//! reference, and neither is anything in a URL's path or query
//! (`?replicaSet=rs0`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Cluster, ConfigMap, Container, EnvValue, Service, Workload};

use super::address::{Address, keyed_addresses};

/// One address-shaped value found in a workload's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub value: String,
    pub via: String,
    pub address: Address,
    /// From a variable whose name says it holds an address.
    pub named_like_address: bool,
    /// The value of a command-line flag (`--x value`, `--x=value`).
    pub flag_value: bool,
}

/// What a candidate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target<'c> {
    Service(&'c Service),
    /// A cluster-internal name that matches no Service.
    Unresolved(String),
    External,
    /// The pod itself (`localhost`).
    Ignored,
}

/// The words that make a variable an address when they end its name…
const ADDRESS_WORDS: [&str; 18] = [
    "HOST",
    "HOSTS",
    "HOSTNAME",
    "ADDR",
    "ADDRESS",
    "URL",
    "URLS",
    "URI",
    "ENDPOINT",
    "ENDPOINTS",
    "DSN",
    "SERVER",
    "SERVERS",
    "SERVICE",
    "BROKER",
    "BROKERS",
    "UPSTREAM",
    "BACKEND",
];
/// …possibly followed by these (`DB_HOST_RO`, `REDIS_URL_PRIMARY`,
/// `KAFKA_BROKERS_1`); `*_SERVICE_NAME` and `GET_HOSTS_FROM` are not
/// addresses.
const QUALIFIERS: [&str; 16] = [
    "PRIMARY",
    "SECONDARY",
    "REPLICA",
    "REPLICAS",
    "MASTER",
    "SLAVE",
    "LEADER",
    "FOLLOWER",
    "READ",
    "WRITE",
    "RO",
    "RW",
    "INTERNAL",
    "EXTERNAL",
    "LIST",
    "OVERRIDE",
];

pub(crate) fn named_like_address(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    let mut words: Vec<&str> = upper
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    while words
        .last()
        .is_some_and(|w| QUALIFIERS.contains(w) || w.chars().all(|c| c.is_ascii_digit()))
    {
        words.pop();
    }
    // `PGHOST`, `DBHOST`: one word ending in HOST.
    words
        .last()
        .is_some_and(|w| ADDRESS_WORDS.contains(w) || w.ends_with("HOST"))
}

/// Services and ConfigMaps by (namespace, name), so each lookup is cheap.
pub(crate) struct Lookup<'c> {
    cluster: &'c Cluster,
    services: HashMap<(&'c str, &'c str), &'c Service>,
    config_maps: HashMap<(&'c str, &'c str), &'c ConfigMap>,
}

impl<'c> Lookup<'c> {
    pub(crate) fn new(cluster: &'c Cluster) -> Self {
        Self {
            cluster,
            services: cluster
                .services
                .iter()
                .map(|s| ((s.namespace.as_str(), s.name.as_str()), s))
                .collect(),
            config_maps: cluster
                .config_maps
                .iter()
                .map(|m| ((m.namespace.as_str(), m.name.as_str()), m))
                .collect(),
        }
    }

    fn service(&self, name: &str, namespace: &str) -> Option<&'c Service> {
        self.services.get(&(namespace, name)).copied()
    }
}

/// Where the reference finder reads ConfigMaps from: the builder's
/// [`Lookup`] over a [`Cluster`], or a controller's own cache (which may
/// keep only the keys some workload reads, see [`config_map_reads`]).
pub trait ConfigMaps {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap>;
}

impl ConfigMaps for Lookup<'_> {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(&(namespace, name)).copied()
    }
}

/// A cluster snapshot (a linear search: for one-off reads; the builder
/// uses [`Lookup`]).
impl ConfigMaps for Cluster {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|m| m.namespace == namespace && m.name == name)
    }
}

/// What a workload reads of one ConfigMap of its namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigMapRead {
    /// One key (`valueFrom.configMapKeyRef`).
    Key(String),
    /// Every key (`envFrom.configMapRef`).
    All,
}

/// The ConfigMaps (by name, in the workload's namespace) whose data the
/// reference finder reads for `workload`, and what of each: nothing else of
/// any ConfigMap can change its references.
pub fn config_map_reads(workload: &Workload) -> BTreeMap<String, BTreeSet<ConfigMapRead>> {
    let mut reads: BTreeMap<String, BTreeSet<ConfigMapRead>> = BTreeMap::new();
    for c in &workload.containers {
        for from in &c.env_from {
            reads
                .entry(from.name.clone())
                .or_default()
                .insert(ConfigMapRead::All);
        }
        for e in &c.env {
            if let EnvValue::ConfigMapKey { name, key } = &e.value {
                reads
                    .entry(name.clone())
                    .or_default()
                    .insert(ConfigMapRead::Key(key.clone()));
            }
        }
    }
    reads
}

/// Every Service (namespace, name) that `workload`'s configuration could
/// name, whether or not it exists: each host of each candidate address, read
/// as [`resolve`] reads it, before the lookup and before [`counts`]. So the
/// Services the builder resolves for `workload` are always among these,
/// also once a Service that does not exist yet is created (a controller
/// indexes workloads by them to know whom a Service change reaches).
pub fn service_names(
    config_maps: &impl ConfigMaps,
    workload: &Workload,
) -> BTreeSet<(String, String)> {
    let mut names = BTreeSet::new();
    for cand in candidates(config_maps, workload) {
        let host = cand.address.host.as_str();
        if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
            continue;
        }
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            // `no_such_svc`: no Service can have it.
            [name] if name.contains('_') => {}
            [name] => {
                names.insert((workload.namespace.clone(), name.to_string()));
            }
            [name, ns] | [name, ns, "svc", ..] => {
                names.insert((ns.to_string(), name.to_string()));
            }
            _ => {}
        }
    }
    names
}

/// Whether Service `service` selects the pods of `workload`: same
/// namespace, a non-empty selector, every pair among the pod labels (a
/// Service without a selector selects no pods).
pub fn service_selects(service: &Service, workload: &Workload) -> bool {
    match &service.selector {
        Some(selector) if !selector.is_empty() && service.namespace == workload.namespace => {
            selector
                .iter()
                .all(|(k, v)| workload.pod_labels.get(k) == Some(v))
        }
        _ => false,
    }
}

/// Every candidate address in `workload`'s containers.
pub(crate) fn candidates(config_maps: &impl ConfigMaps, workload: &Workload) -> Vec<Candidate> {
    let mut out = Vec::new();
    for c in &workload.containers {
        let kind = if c.init {
            "init container"
        } else {
            "container"
        };
        let vars = env_values(config_maps, workload, c);
        for (var, (value, origin)) in &vars {
            let joined = joined_port(var, value, &vars);
            for (key, mut address) in keyed_addresses(value) {
                let mut via = format!("env {var}{origin}");
                if address.port.is_none()
                    && let Some((port_var, port)) = &joined
                {
                    address.port = Some(*port);
                    via = format!("env {var} + {port_var}");
                }
                out.push(Candidate {
                    value: value.clone(),
                    via,
                    named_like_address: named_like_address(var) || named_like_address(&key),
                    flag_value: false,
                    address,
                });
            }
        }
        // The runtime runs `command` followed by `args`: one argument list,
        // so a flag at the end of `command` takes the first of `args`.
        let argv: Vec<(String, &String)> = c
            .command
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("command[{i}]"), w))
            .chain(
                c.args
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (format!("args[{i}]"), w)),
            )
            .collect();
        let mut previous_flag: Option<&str> = None;
        for (field, word) in &argv {
            // Only a whole argument is a flag's value: the words of a
            // script after `sh -c` are not.
            let one_word = !word.trim().contains(char::is_whitespace);
            for (key, address) in keyed_addresses(word) {
                // `--db-host=mysql`: the flag names the value; `--db-host
                // mysql`: the flag before it does.
                let (name, flag_value) = match previous_flag {
                    Some(flag) if key.is_empty() => (flag, one_word && !names_a_name(flag)),
                    _ => (
                        key.as_str(),
                        one_word && key.starts_with('-') && !names_a_name(&key),
                    ),
                };
                out.push(Candidate {
                    value: word.to_string(),
                    via: format!("{field} of {kind} {}", c.name),
                    named_like_address: named_like_address(name),
                    flag_value,
                    address,
                });
            }
            previous_flag = flag_expecting_value(word);
        }
    }
    out
}

/// Words that end the name of a flag whose value is a name, not a host
/// (`--service-name frontend`, as `OTEL_SERVICE_NAME=frontend` is not a
/// reference either).
const NAME_WORDS: [&str; 8] = [
    "NAME", "NAMES", "ID", "USER", "USERNAME", "LABEL", "PREFIX", "TAG",
];

fn names_a_name(flag: &str) -> bool {
    flag.to_ascii_uppercase()
        .split(['_', '-', '.'])
        .rfind(|w| !w.is_empty())
        .is_some_and(|w| NAME_WORDS.contains(&w))
}

/// `--flag` or `-f` without `=value`: the next argument may be its value.
fn flag_expecting_value(word: &str) -> Option<&str> {
    let is_flag = word.starts_with('-')
        && !word.contains('=')
        && word
            .trim_start_matches('-')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
    is_flag.then_some(word)
}

/// A container's env variables with their values (literal, or read from a
/// ConfigMap of the workload's namespace) and where the value came from.
fn env_values(
    config_maps: &impl ConfigMaps,
    workload: &Workload,
    c: &Container,
) -> BTreeMap<String, (String, String)> {
    let config_map = |name: &str| config_maps.config_map(&workload.namespace, name);
    let mut vars = BTreeMap::new();
    // envFrom first: explicit env entries override it, as in Kubernetes.
    for from in &c.env_from {
        if let Some(map) = config_map(&from.name) {
            for (key, value) in &map.data {
                let var = format!("{}{key}", from.prefix.as_deref().unwrap_or_default());
                vars.insert(
                    var,
                    (value.clone(), format!(" (envFrom configMap {})", from.name)),
                );
            }
        }
    }
    for e in &c.env {
        match &e.value {
            EnvValue::Literal(v) => {
                vars.insert(e.name.clone(), (v.clone(), String::new()));
            }
            EnvValue::ConfigMapKey { name, key } => {
                if let Some(v) = config_map(name).and_then(|m| m.data.get(key)) {
                    vars.insert(
                        e.name.clone(),
                        (v.clone(), format!(" (configMap {name} key {key})")),
                    );
                }
            }
            EnvValue::Opaque => {}
        }
    }
    vars
}

/// For `<P>_HOST`, `<P>HOST` (or `HOSTNAME`, `ADDR`, `ADDRESS`, `SERVER`),
/// the numeric value of `<P>_PORT` / `<P>PORT` in the same container.
fn joined_port(
    var: &str,
    value: &str,
    vars: &BTreeMap<String, (String, String)>,
) -> Option<(String, u16)> {
    let prefix = ["HOSTNAME", "HOST", "ADDRESS", "ADDR", "SERVER"]
        .iter()
        .find_map(|suffix| var.strip_suffix(suffix))?;
    if value.contains(':') {
        return None;
    }
    let port_var = format!("{prefix}PORT");
    let (port, _) = vars.get(&port_var)?;
    Some((port_var, port.trim().parse().ok()?))
}

/// What an address names, seen from `namespace`.
pub(crate) fn resolve<'c>(
    lookup: &Lookup<'c>,
    namespace: &str,
    address: &Address,
    cluster_domain: &str,
) -> Target<'c> {
    let host = address.host.as_str();
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return if ip.is_loopback() || ip.is_unspecified() {
            Target::Ignored
        } else {
            Target::External
        };
    }
    if host == "localhost" {
        return Target::Ignored;
    }
    let service = |name: &str, ns: &str| lookup.service(name, ns);
    let found_or_unresolved = |name: &str, ns: &str| match service(name, ns) {
        Some(s) => Target::Service(s),
        None => Target::Unresolved(format!("no Service {ns}/{name}")),
    };
    let labels: Vec<&str> = host.split('.').collect();
    if let [name] = labels.as_slice()
        && name.contains('_')
    {
        return Target::Unresolved(format!(
            "{name} cannot be the name of a Service (no `_` in DNS names), so nothing in the cluster answers to it"
        ));
    }
    match labels.as_slice() {
        [name] => found_or_unresolved(name, namespace),
        [name, ns] => match service(name, ns) {
            Some(s) => Target::Service(s),
            None if lookup.cluster.namespaces.contains_key(*ns) => {
                Target::Unresolved(format!("no Service {ns}/{name}"))
            }
            None => Target::External,
        },
        [name, ns, "svc", domain @ ..]
            if domain.is_empty() || domain.join(".") == cluster_domain =>
        {
            found_or_unresolved(name, ns)
        }
        _ => Target::External,
    }
}

/// Whether a candidate is worth reporting or acting on, given what it names
/// (see the module docs).
pub(crate) fn counts(candidate: &Candidate, target: &Target<'_>) -> bool {
    let a = &candidate.address;
    let written_as_address = a.has_scheme || a.port.is_some();
    match target {
        Target::Ignored => false,
        Target::Service(_) => {
            written_as_address
                || a.host.contains('.')
                || candidate.named_like_address
                || candidate.flag_value
        }
        Target::Unresolved(_) => {
            written_as_address || a.host.contains('.') || candidate.named_like_address
        }
        Target::External => written_as_address || candidate.named_like_address,
    }
}
