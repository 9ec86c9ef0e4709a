//! Building the policies.

use std::collections::{BTreeMap, BTreeSet};

use crate::conn::{ConnSet, Protocol};
use crate::model::{
    Cluster, NAMESPACE_NAME_LABEL, Service, ServicePortRef, ServiceType, TargetPort, Workload,
    WorkloadKind,
};
use crate::naming::{self, Source};
use crate::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use crate::selector::{LabelSelector, Labels};

use super::config::{BaselineConfig, ConfigError, DnsConfig, Resolved};
use super::references::{Candidate, Lookup, Target, candidates, counts, resolve, service_selects};
use super::report::{
    External, Indistinguishable, Problem, Reference, Report, UnknownIngressClass, Unresolved,
};
use super::separate::{Selection, separate};
use super::{OPT_OUT_ANNOTATION, OPT_OUT_VALUE, RULES_ANNOTATION, SELECTOR_ANNOTATION};

/// Which namespaces get policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every namespace but the protected ones. `Some`: exactly
    /// these, protected ones included when named.
    pub namespaces: Option<BTreeSet<String>>,
}

impl Scope {
    fn includes(&self, namespace: &str, cfg: &BaselineConfig) -> Result<(), &'static str> {
        match &self.namespaces {
            Some(names) if names.contains(namespace) => Ok(()),
            Some(_) => Err("namespace not requested"),
            None if cfg.protected_namespaces.contains(namespace) => {
                Err("protected namespace (name it explicitly to include it)")
            }
            None => Ok(()),
        }
    }
}

/// The workload a policy belongs to (its ownerReference, when the uid is known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: WorkloadKind,
    pub name: String,
    pub uid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedPolicy {
    /// `namespace/Kind/name` of the workload.
    pub workload: String,
    pub owner: OwnerRef,
    pub policy: NetworkPolicy,
    pub labels: Labels,
    pub annotations: Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// Sorted by namespace and name.
    pub policies: Vec<GeneratedPolicy>,
    pub report: Report,
}

/// Why a rule exists, for the rules annotation.
type Reasons = BTreeSet<String>;

/// What one workload's policy needs, gathered from the whole cluster.
#[derive(Default)]
struct Needs {
    /// Destination workload index → ports and reasons.
    egress: BTreeMap<usize, (ConnSet, Reasons)>,
    /// Source workload index → ports and reasons.
    ingress: BTreeMap<usize, (ConnSet, Reasons)>,
    /// Ingress controller entry (the first of those with the same
    /// selectors) → routed ports and reasons.
    ingress_controllers: BTreeMap<usize, (ConnSet, Reasons)>,
    outside: Option<(ConnSet, Reasons)>,
}

fn add(slot: &mut (ConnSet, Reasons), conns: &ConnSet, reason: String) {
    slot.0.union_with(conns);
    slot.1.insert(reason);
}

/// Builds a baseline policy for every in-scope workload of `cluster`.
///
/// In phases, each gathering what the workloads' policies need from one
/// source: which workloads each Service selects, which workloads are in
/// scope, the references between workloads, the Ingress routes, the
/// ingress controllers' own egress, the Services exposed outside the
/// cluster; then one policy per in-scope workload.
pub fn build(
    cluster: &Cluster,
    cfg: &BaselineConfig,
    scope: &Scope,
) -> Result<Baseline, ConfigError> {
    let resolved = cfg.resolve()?;
    let mut b = Builder::new(cluster, cfg, &resolved, scope);
    b.add_references();
    b.add_ingress_routes();
    b.add_ingress_controller_egress();
    b.add_exposed_services();
    Ok(b.policies())
}

/// The state of one build, shared by its phases.
struct Builder<'c> {
    cluster: &'c Cluster,
    workloads: &'c [Workload],
    cfg: &'c BaselineConfig,
    resolved: &'c Resolved,
    lookup: Lookup<'c>,
    /// For each Service (by index in `cluster.services`), the workloads its
    /// selector picks.
    service_targets: Vec<Vec<usize>>,
    service_index: BTreeMap<(&'c str, &'c str), usize>,
    /// For each `ingressControllers` entry, the first entry with the same
    /// selectors (those share one rule).
    canonical: Vec<usize>,
    in_scope: Vec<bool>,
    needs: Vec<Needs>,
    selections: Vec<Selection>,
    report: Report,
}

impl<'c> Builder<'c> {
    /// Phase 1: which workloads each Service selects, and which workloads
    /// get a policy (scope, opt-out).
    fn new(
        cluster: &'c Cluster,
        cfg: &'c BaselineConfig,
        resolved: &'c Resolved,
        scope: &Scope,
    ) -> Self {
        let workloads = &cluster.workloads;
        let mut report = Report::default();
        // Candidates come from an index on (namespace, label, value) of one
        // selector pair, so matching is not every Service against every
        // workload of its namespace.
        let mut by_label: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
        for (i, w) in workloads.iter().enumerate() {
            for (k, v) in &w.pod_labels {
                by_label
                    .entry((w.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        let service_targets: Vec<Vec<usize>> = cluster
            .services
            .iter()
            .map(|s| selected_workloads(workloads, &by_label, s))
            .collect();
        let service_index = cluster
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.namespace.as_str(), s.name.as_str()), i))
            .collect();
        let in_scope = workloads
            .iter()
            .map(|w| in_scope(w, scope, cfg, &mut report))
            .collect();
        let canonical = resolved
            .ingress_controllers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                resolved
                    .ingress_controllers
                    .iter()
                    .position(|d| d.namespaces == c.namespaces && d.pods == c.pods)
                    .unwrap_or(i)
            })
            .collect();
        Self {
            cluster,
            workloads,
            cfg,
            resolved,
            lookup: Lookup::new(cluster),
            service_targets,
            service_index,
            canonical,
            in_scope,
            needs: workloads.iter().map(|_| Needs::default()).collect(),
            selections: separate(workloads),
            report,
        }
    }

    /// The workloads Service `s` selects.
    fn targets_of(&self, s: &Service) -> Vec<usize> {
        self.service_index
            .get(&(s.namespace.as_str(), s.name.as_str()))
            .map(|&i| self.service_targets[i].clone())
            .unwrap_or_default()
    }

    /// Phase 2: references between workloads. Those from out-of-scope
    /// workloads still open the destination's ingress, so the pair keeps
    /// working.
    fn add_references(&mut self) {
        for ai in 0..self.workloads.len() {
            let a = &self.workloads[ai];
            for cand in candidates(&self.lookup, a) {
                let target = resolve(
                    &self.lookup,
                    &a.namespace,
                    &cand.address,
                    &self.cfg.cluster_domain,
                );
                if !counts(&cand, &target) {
                    continue;
                }
                match target {
                    Target::Ignored => {}
                    Target::External => {
                        if self.in_scope[ai] {
                            self.report.external.push(External {
                                from: a.id(),
                                host: cand.address.host.clone(),
                                port: cand.address.port,
                                via: cand.via.clone(),
                            });
                        }
                    }
                    Target::Unresolved(reason) => {
                        if self.in_scope[ai] {
                            self.report.unresolved.push(Unresolved {
                                from: a.id(),
                                value: cand.value.clone(),
                                via: cand.via.clone(),
                                reason,
                            });
                        }
                    }
                    Target::Service(service) => self.add_service_reference(ai, &cand, service),
                }
            }
        }
    }

    /// A reference from workload `ai` to `service`: egress from `ai` and
    /// ingress to every workload the Service selects, on its target ports.
    fn add_service_reference(&mut self, ai: usize, cand: &Candidate, service: &Service) {
        let workloads = self.workloads;
        let a = &workloads[ai];
        let ports: Vec<_> = match cand.address.port {
            Some(p) => service.ports.iter().filter(|sp| sp.port == p).collect(),
            None => service.ports.iter().collect(),
        };
        if ports.is_empty() {
            if self.in_scope[ai] {
                self.report.unresolved.push(Unresolved {
                    from: a.id(),
                    value: cand.value.clone(),
                    via: cand.via.clone(),
                    reason: format!(
                        "Service {}/{} has no port {}",
                        service.namespace,
                        service.name,
                        cand.address.port.map(|p| p.to_string()).unwrap_or_default()
                    ),
                });
            }
            return;
        }
        for bi in self.targets_of(service) {
            if bi == ai {
                continue; // its own pods: always allowed
            }
            let b = &workloads[bi];
            let conns = target_ports(b, ports.iter().copied());
            let involved = self.in_scope[ai] || self.in_scope[bi];
            if conns.is_empty() {
                if involved {
                    self.report.unresolved.push(Unresolved {
                        from: a.id(),
                        value: cand.value.clone(),
                        via: cand.via.clone(),
                        reason: format!(
                            "the target ports of Service {}/{} are not declared by {}",
                            service.namespace,
                            service.name,
                            b.id()
                        ),
                    });
                }
                continue;
            }
            let reason = format!(
                "{} via Service {}/{}: {}={}",
                a.id(),
                service.namespace,
                service.name,
                cand.via,
                cand.value
            );
            if involved {
                self.report.references.push(Reference {
                    from: a.id(),
                    to: b.id(),
                    service: format!("{}/{}", service.namespace, service.name),
                    ports: conns.port_strings(),
                    via: cand.via.clone(),
                });
            }
            add(
                self.needs[ai].egress.entry(bi).or_default(),
                &conns,
                reason.clone(),
            );
            add(
                self.needs[bi].ingress.entry(ai).or_default(),
                &conns,
                reason,
            );
        }
    }

    /// Phase 3: workloads behind an Ingress: the controllers of its class
    /// may reach the routed ports. Entries with the same selectors share
    /// one rule.
    fn add_ingress_routes(&mut self) {
        let cluster = self.cluster;
        for ingress in &cluster.ingresses {
            let serving: BTreeSet<usize> = self
                .resolved
                .ingress_controllers
                .iter()
                .enumerate()
                .filter(|(_, c)| c.class_name == ingress.class)
                .map(|(i, _)| self.canonical[i])
                .collect();
            let mut routed_to = BTreeSet::new();
            for backend in &ingress.backends {
                let Some(service) = cluster
                    .services
                    .iter()
                    .find(|s| s.namespace == ingress.namespace && s.name == backend.service)
                else {
                    continue;
                };
                let ports: Vec<_> = service
                    .ports
                    .iter()
                    .filter(|sp| match &backend.port {
                        ServicePortRef::Number(n) => sp.port == *n,
                        ServicePortRef::Name(name) => sp.name.as_deref() == Some(name.as_str()),
                    })
                    .collect();
                for bi in self.targets_of(service) {
                    routed_to.insert(bi);
                    let conns = target_ports(&self.workloads[bi], ports.iter().copied());
                    let reason = format!(
                        "ingress controller via Ingress {}/{} to Service {}",
                        ingress.namespace, ingress.name, service.name
                    );
                    for &entry in &serving {
                        add(
                            self.needs[bi].ingress_controllers.entry(entry).or_default(),
                            &conns,
                            reason.clone(),
                        );
                    }
                }
            }
            // A class no controller serves is said, never silently dropped:
            // nothing is opened for it (which controller runs it is unknown).
            if serving.is_empty() && routed_to.iter().any(|&bi| self.in_scope[bi]) {
                self.report
                    .unknown_ingress_classes
                    .push(UnknownIngressClass {
                        ingress: format!("{}/{}", ingress.namespace, ingress.name),
                        class: ingress.class.clone(),
                        workloads: routed_to
                            .iter()
                            .map(|&bi| self.workloads[bi].id())
                            .collect(),
                    });
            }
        }
    }

    /// Phase 4: the ingress controllers' own egress to what they route to,
    /// so the pair keeps working when the controller's namespace is
    /// baselined too.
    fn add_ingress_controller_egress(&mut self) {
        let workloads = self.workloads;
        for (entry, controller_cfg) in self.resolved.ingress_controllers.iter().enumerate() {
            if self.canonical[entry] != entry {
                continue;
            }
            let routed: Vec<(usize, ConnSet)> = self
                .needs
                .iter()
                .enumerate()
                .filter_map(|(bi, n)| {
                    n.ingress_controllers
                        .get(&entry)
                        .map(|(c, _)| (bi, c.clone()))
                })
                .filter(|(_, c)| !c.is_empty())
                .collect();
            if routed.is_empty() {
                continue;
            }
            for (ci, controller) in workloads.iter().enumerate() {
                let ns_labels = self
                    .cluster
                    .namespace_labels(&controller.namespace)
                    .cloned()
                    .unwrap_or_default();
                let is_controller = controller_cfg.namespaces.matches(&ns_labels)
                    && controller_cfg.pods.matches(&controller.pod_labels);
                if !is_controller {
                    continue;
                }
                for (bi, conns) in &routed {
                    if *bi != ci {
                        let reason = format!("routes Ingress traffic to {}", workloads[*bi].id());
                        add(self.needs[ci].egress.entry(*bi).or_default(), conns, reason);
                    }
                }
            }
        }
    }

    /// Phase 5: Services reachable from outside the cluster.
    fn add_exposed_services(&mut self) {
        let cluster = self.cluster;
        for service in &cluster.services {
            let exposed = matches!(
                service.service_type,
                ServiceType::LoadBalancer | ServiceType::NodePort
            ) || !service.external_ips.is_empty();
            if !exposed {
                continue;
            }
            for bi in self.targets_of(service) {
                let conns = target_ports(&self.workloads[bi], service.ports.iter());
                let reason = format!(
                    "outside the cluster via Service {}/{}",
                    service.namespace, service.name
                );
                add(
                    self.needs[bi].outside.get_or_insert_default(),
                    &conns,
                    reason,
                );
            }
        }
    }

    /// Phase 6: one policy per in-scope workload, sorted, with the report.
    fn policies(mut self) -> Baseline {
        let workloads = self.workloads;
        let mut policies = Vec::new();
        for (wi, w) in workloads.iter().enumerate() {
            if !self.in_scope[wi] {
                continue;
            }
            if w.selector.is_empty() {
                self.report.errors.push(Problem {
                    workload: w.id(),
                    message: "its selector is empty: a policy would select every pod of the namespace, so none is made".into(),
                });
                continue;
            }
            let selection = &self.selections[wi];
            if !selection.still_matched.is_empty() {
                self.report.indistinguishable.push(Indistinguishable {
                    workload: w.id(),
                    selector: selection.selector.to_string(),
                    also_selects: selection
                        .still_matched
                        .iter()
                        .map(|&o| workloads[o].id())
                        .collect(),
                });
            }
            policies.push(policy_for(
                self.cluster,
                wi,
                &self.needs[wi],
                &self.selections,
                self.resolved,
                self.cfg,
                &mut self.report,
            ));
        }
        policies.sort_by(|a, b| {
            (&a.policy.namespace, &a.policy.name).cmp(&(&b.policy.namespace, &b.policy.name))
        });
        self.report.sort();
        Baseline {
            policies,
            report: self.report,
        }
    }
}

/// Whether workload `w` gets a policy (its namespace is in scope and it is
/// not opted out); says why not in the report.
fn in_scope(w: &Workload, scope: &Scope, cfg: &BaselineConfig, report: &mut Report) -> bool {
    let included = scope.includes(&w.namespace, cfg);
    let opted_out =
        w.annotations.get(OPT_OUT_ANNOTATION).map(String::as_str) == Some(OPT_OUT_VALUE);
    match (included, opted_out) {
        (Err(why), _) => {
            report.skipped.push(Problem {
                workload: w.id(),
                message: why.to_string(),
            });
            false
        }
        (Ok(()), true) => {
            report.skipped.push(Problem {
                workload: w.id(),
                message: format!("opted out ({OPT_OUT_ANNOTATION}: {OPT_OUT_VALUE})"),
            });
            false
        }
        (Ok(()), false) => true,
    }
}

/// The workloads whose pods a Service selects (none without a selector);
/// `by_label` indexes workloads by (namespace, pod label, value).
fn selected_workloads(
    workloads: &[Workload],
    by_label: &BTreeMap<(&str, &str, &str), Vec<usize>>,
    service: &Service,
) -> Vec<usize> {
    let Some(selector) = service.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    // Any one pair narrows the candidates; the rest are checked on each.
    let Some((key, value)) = selector.iter().next() else {
        return Vec::new();
    };
    by_label
        .get(&(service.namespace.as_str(), key.as_str(), value.as_str()))
        .into_iter()
        .flatten()
        .copied()
        .filter(|&i| service_selects(service, &workloads[i]))
        .collect()
}

/// The target ports of some Service ports on workload `b`: numbers as they
/// are, names resolved against `b`'s container ports (a name `b` does not
/// declare gives nothing).
fn target_ports<'s>(
    b: &Workload,
    ports: impl Iterator<Item = &'s crate::model::ServicePort>,
) -> ConnSet {
    let named = b.named_ports();
    let mut conns = ConnSet::none();
    for sp in ports {
        match &sp.target_port {
            TargetPort::Number(n) => conns.union_with(&ConnSet::port(sp.protocol, *n)),
            TargetPort::Name(name) => {
                if let Some(&(protocol, port)) = named.get(name)
                    && protocol == sp.protocol
                {
                    conns.union_with(&ConnSet::port(protocol, port));
                }
            }
        }
    }
    conns
}

/// `ports` entries for a connection set (never "every port": the sets here
/// are always specific ports).
fn port_specs(conns: &ConnSet) -> Vec<PortSpec> {
    let mut specs = Vec::new();
    for protocol in Protocol::ALL {
        for &(lo, hi) in conns.ports_of(protocol).ranges() {
            specs.push(PortSpec {
                protocol,
                port: Some(PortRef::Number(lo)),
                end_port: (hi > lo).then_some(hi),
            });
        }
    }
    specs
}

/// The egress rule to the cluster DNS that every baseline policy carries:
/// the configured resolver's pods on the configured ports. Learned policies
/// use the same rule for observed DNS traffic, so the two never disagree.
pub fn dns_rule(dns: &DnsConfig) -> Result<Rule, ConfigError> {
    let config = BaselineConfig {
        dns: dns.clone(),
        ..BaselineConfig::default()
    };
    Ok(resolved_dns_rule(&config.resolve()?))
}

fn resolved_dns_rule(resolved: &Resolved) -> Rule {
    let dns_ports = resolved
        .dns_ports
        .iter()
        .fold(ConnSet::none(), |acc, &(p, n)| {
            acc.union(&ConnSet::port(p, n))
        });
    Rule {
        peers: vec![Peer::Pods {
            namespace_selector: Some(resolved.dns_namespaces.clone()),
            pod_selector: Some(resolved.dns_pods.clone()),
        }],
        ports: port_specs(&dns_ports),
    }
}

/// A peer naming workload `peer`'s pods (with `selector`), seen from
/// `namespace`.
fn workload_peer(peer: &Workload, selector: &LabelSelector, namespace: &str) -> Peer {
    Peer::Pods {
        namespace_selector: (peer.namespace != namespace).then(|| {
            LabelSelector::from_labels(Labels::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                peer.namespace.clone(),
            )]))
        }),
        pod_selector: Some(selector.clone()),
    }
}

fn policy_for(
    cluster: &Cluster,
    wi: usize,
    needs: &Needs,
    selections: &[Selection],
    resolved: &Resolved,
    cfg: &BaselineConfig,
    report: &mut Report,
) -> GeneratedPolicy {
    let w = &cluster.workloads[wi];
    let selector = &selections[wi].selector;
    let mut egress: Vec<(Rule, String)> = Vec::new();
    let mut ingress: Vec<(Rule, String)> = Vec::new();
    let own_pods = Peer::Pods {
        namespace_selector: None,
        pod_selector: Some(selector.clone()),
    };

    egress.push((resolved_dns_rule(resolved), "cluster DNS".to_string()));
    egress.push((
        Rule {
            peers: vec![own_pods.clone()],
            ports: vec![],
        },
        "its own pods".into(),
    ));
    ingress.push((
        Rule {
            peers: vec![own_pods],
            ports: vec![],
        },
        "its own pods".into(),
    ));

    let peer_rules = |map: &BTreeMap<usize, (ConnSet, Reasons)>,
                      out: &mut Vec<(Rule, String)>,
                      report: &mut Report| {
        // Sorted by the peer's id, so the order does not depend on input order.
        let mut entries: Vec<(usize, &(ConnSet, Reasons))> =
            map.iter().map(|(&i, v)| (i, v)).collect();
        entries.sort_by_key(|(i, _)| cluster.workloads[*i].id());
        for (pi, (conns, reasons)) in entries {
            let peer = &cluster.workloads[pi];
            let peer_selection = &selections[pi];
            if peer.selector.is_empty() {
                report.errors.push(Problem {
                    workload: w.id(),
                    message: format!(
                        "cannot allow {}: its selector is empty and would name every pod of {}",
                        peer.id(),
                        peer.namespace
                    ),
                });
                continue;
            }
            let mut why = reasons.iter().cloned().collect::<Vec<_>>().join("; ");
            if !peer_selection.still_matched.is_empty() {
                why.push_str(&format!(
                    " [the selector of {} also matches the pods of {}: no label tells them apart]",
                    peer.id(),
                    peer_selection
                        .still_matched
                        .iter()
                        .map(|&o| cluster.workloads[o].id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            out.push((
                Rule {
                    peers: vec![workload_peer(peer, &peer_selection.selector, &w.namespace)],
                    ports: port_specs(conns),
                },
                why,
            ));
        }
    };
    peer_rules(&needs.egress, &mut egress, report);

    for (&entry, (conns, reasons)) in &needs.ingress_controllers {
        if conns.is_empty() {
            continue;
        }
        let controller = &resolved.ingress_controllers[entry];
        ingress.push((
            Rule {
                peers: vec![Peer::Pods {
                    namespace_selector: Some(controller.namespaces.clone()),
                    pod_selector: (!controller.pods.is_empty()).then(|| controller.pods.clone()),
                }],
                ports: port_specs(conns),
            },
            reasons.iter().cloned().collect::<Vec<_>>().join("; "),
        ));
    }
    if let Some((conns, reasons)) = &needs.outside
        && !conns.is_empty()
    {
        let peers = cfg
            .external_cidrs
            .iter()
            .map(|cidr| {
                Peer::IpBlock(IpBlock {
                    cidr: cidr.trunc(),
                    except: vec![],
                })
            })
            .collect();
        ingress.push((
            Rule {
                peers,
                ports: port_specs(conns),
            },
            reasons.iter().cloned().collect::<Vec<_>>().join("; "),
        ));
    }
    peer_rules(&needs.ingress, &mut ingress, report);

    let mut rules_note = Vec::new();
    for (i, (_, why)) in ingress.iter().enumerate() {
        rules_note.push(format!("ingress[{i}]: {why}"));
    }
    for (i, (_, why)) in egress.iter().enumerate() {
        rules_note.push(format!("egress[{i}]: {why}"));
    }

    let name = naming::policy_name(Source::Baseline, w.kind, &w.namespace, &w.name);
    let mut labels: Labels = naming::ownership_labels(Source::Baseline)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    labels.insert(
        naming::TARGET_KIND_LABEL.into(),
        w.kind.as_str().to_ascii_lowercase(),
    );
    // A label value is at most 63 characters; the name is in the annotation
    // and the ownerReference anyway.
    if w.name.len() <= naming::MAX_NAME_LEN {
        labels.insert(naming::TARGET_NAME_LABEL.into(), w.name.clone());
    }
    let mut annotations = Labels::from([(RULES_ANNOTATION.to_string(), rules_note.join("\n"))]);
    if let Some(note) = selections[wi].note(&cluster.workloads, &w.selector) {
        annotations.insert(SELECTOR_ANNOTATION.to_string(), note);
    }
    GeneratedPolicy {
        workload: w.id(),
        owner: OwnerRef {
            kind: w.kind,
            name: w.name.clone(),
            uid: w.uid.clone(),
        },
        policy: NetworkPolicy {
            namespace: w.namespace.clone(),
            name,
            pod_selector: selector.clone(),
            policy_types: PolicyTypes {
                ingress: true,
                egress: true,
            },
            ingress: ingress.into_iter().map(|(r, _)| r).collect(),
            egress: egress.into_iter().map(|(r, _)| r).collect(),
        },
        labels,
        annotations,
    }
}
