//! What the baseline builder inferred, for people (`--report text`) and
//! machines (`--report json`). Every list is sorted.

use serde::Serialize;

/// A reference from one workload to another through a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reference {
    pub from: String,
    pub to: String,
    /// `namespace/name`.
    pub service: String,
    /// Target ports on `to`: `TCP/7070`.
    pub ports: Vec<String>,
    /// Where it was found: `env CART_SERVICE_ADDR`, `args[1] of container main`.
    pub via: String,
}

/// A cluster name that matches no Service: no rule is added.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unresolved {
    pub from: String,
    pub value: String,
    pub via: String,
    pub reason: String,
}

/// A host outside the cluster: a NetworkPolicy cannot name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct External {
    pub from: String,
    pub host: String,
    pub port: Option<u16>,
    pub via: String,
}

/// A workload that got no policy, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub workload: String,
    pub message: String,
}

/// A workload whose pods no selector can tell apart from another
/// workload's: its policy (and every rule naming it) also covers those pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Indistinguishable {
    pub workload: String,
    /// The selector its policy uses.
    pub selector: String,
    /// The workloads whose pods that selector also matches.
    pub also_selects: Vec<String>,
}

/// An Ingress whose class no configured ingress controller serves: no
/// rule is added for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct UnknownIngressClass {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// Its class; `None` for an Ingress without one.
    pub class: Option<String>,
    /// The workloads it routes to, which get no rule from it.
    pub workloads: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub references: Vec<Reference>,
    pub unresolved: Vec<Unresolved>,
    pub external: Vec<External>,
    /// Workloads that share their pods' labels with others (see
    /// [`Indistinguishable`]).
    pub indistinguishable: Vec<Indistinguishable>,
    /// Ingresses that no configured controller serves.
    pub unknown_ingress_classes: Vec<UnknownIngressClass>,
    /// Workloads that could not get a correct policy (never a wrong one).
    pub errors: Vec<Problem>,
    /// Workloads left alone on purpose (opted out, protected namespace).
    pub skipped: Vec<Problem>,
}

impl Report {
    pub(crate) fn sort(&mut self) {
        self.references.sort();
        self.references.dedup();
        self.unresolved.sort();
        self.unresolved.dedup();
        self.external.sort();
        self.external.dedup();
        self.indistinguishable.sort();
        self.indistinguishable.dedup();
        self.unknown_ingress_classes.sort();
        self.unknown_ingress_classes.dedup();
        self.errors.sort();
        self.errors.dedup();
        self.skipped.sort();
        self.skipped.dedup();
    }

    /// The text report: one section a list, one line an entry.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut section = |title: &str, lines: Vec<String>| {
            out.push_str(&format!("{title} ({}):\n", lines.len()));
            for l in lines {
                out.push_str(&format!("  {l}\n"));
            }
        };
        section(
            "references",
            self.references
                .iter()
                .map(|r| {
                    format!(
                        "{} -> {} via Service {} on {} ({})",
                        r.from,
                        r.to,
                        r.service,
                        r.ports.join(","),
                        r.via
                    )
                })
                .collect(),
        );
        section(
            "unresolved",
            self.unresolved
                .iter()
                .map(|u| format!("{}: {:?} ({}): {}", u.from, u.value, u.via, u.reason))
                .collect(),
        );
        section(
            "external",
            self.external
                .iter()
                .map(|e| match e.port {
                    Some(p) => format!("{}: {}:{p} ({})", e.from, e.host, e.via),
                    None => format!("{}: {} ({})", e.from, e.host, e.via),
                })
                .collect(),
        );
        section(
            "indistinguishable",
            self.indistinguishable
                .iter()
                .map(|d| {
                    format!(
                        "{}: its policy selects {}, which also matches the pods of {} (no label of the pod template tells them apart; rules for it apply to them too)",
                        d.workload,
                        d.selector,
                        d.also_selects.join(", ")
                    )
                })
                .collect(),
        );
        section(
            "unknown ingress classes",
            self.unknown_ingress_classes
                .iter()
                .map(|u| {
                    let class = match &u.class {
                        Some(c) => format!("class {c:?}"),
                        None => "no class".to_string(),
                    };
                    format!(
                        "Ingress {} ({class}): no ingressControllers entry serves it, so {} get no ingress from a controller (add one with className to --config)",
                        u.ingress,
                        if u.workloads.is_empty() { "its backends".to_string() } else { u.workloads.join(", ") }
                    )
                })
                .collect(),
        );
        section(
            "errors",
            self.errors
                .iter()
                .map(|p| format!("{}: {}", p.workload, p.message))
                .collect(),
        );
        section(
            "skipped",
            self.skipped
                .iter()
                .map(|p| format!("{}: {}", p.workload, p.message))
                .collect(),
        );
        out
    }
}
