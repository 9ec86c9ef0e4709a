//! Names and labels of the objects kubefence writes.
//!
//! A policy is named `kf-<source>-<kind>-<name>` in lower case. A name over
//! 63 characters (the limit for a label value, which Kubernetes tools
//! assume for names too) is cut and ends with 8 hex digits of a hash of
//! the full identity (source, kind, namespace, name), so two targets never
//! share a policy: Deployment/api and StatefulSet/api differ by kind, and
//! two long names that share a prefix differ by hash.

use sha2::{Digest, Sha256};

use crate::model::WorkloadKind;

/// Every object kubefence writes carries this label…
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// …with this value; kubefence never changes an object without it.
pub const MANAGED_BY_VALUE: &str = "kubefence";
/// Which job produced the object.
pub const SOURCE_LABEL: &str = "kubefence.dev/source";
/// The workload a policy was built for, so it can be found from either end.
pub const TARGET_KIND_LABEL: &str = "kubefence.dev/target-kind";
pub const TARGET_NAME_LABEL: &str = "kubefence.dev/target-name";

/// The longest name kubefence produces.
pub const MAX_NAME_LEN: usize = 63;

/// The five sources of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Baseline,
    Learned,
    Quarantine,
    Profile,
    Intent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Learned => "learned",
            Self::Quarantine => "quarantine",
            Self::Profile => "profile",
            Self::Intent => "intent",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kf-<source>-<kind>-<name>`, cut and hashed when too long.
pub fn policy_name(source: Source, kind: WorkloadKind, namespace: &str, name: &str) -> String {
    policy_name_for(source, kind.as_str(), namespace, name)
}

/// [`policy_name`] for an object of any kind (an `IsolationProfile`).
pub fn policy_name_for(source: Source, kind: &str, namespace: &str, name: &str) -> String {
    let full = format!("kf-{source}-{kind}-{name}").to_ascii_lowercase();
    fit(full, &format!("{source}/{kind}/{namespace}/{name}"))
}

/// `<kind>-<name>` in lower case (`deployment-nginx`): the name Kubescape
/// gives the NetworkPolicy of a GeneratedNetworkPolicy, which learned
/// policies keep so the two tools name the same workload alike. Cut and
/// hashed like [`policy_name`] when too long; an error when the result is
/// still not a name the API server accepts (a kind or name with characters
/// a DNS-1123 subdomain cannot hold), never a name that would be rejected.
pub fn kind_name(kind: &str, namespace: &str, name: &str) -> Result<String, String> {
    let full = format!("{kind}-{name}").to_ascii_lowercase();
    let fitted = fit(full, &format!("{kind}/{namespace}/{name}"));
    let errors = crate::validation::dns1123_subdomain(&fitted);
    if errors.is_empty() {
        Ok(fitted)
    } else {
        Err(format!(
            "cannot name a policy for {kind}/{name}: {}",
            errors.join("; ")
        ))
    }
}

/// `full` when short enough, else its prefix and 8 hex digits of a hash of
/// `identity`.
pub(crate) fn fit(full: String, identity: &str) -> String {
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    fit_hashed(full, identity)
}

/// `full` when at most `max` bytes long, else its prefix and 8 hex digits
/// of a hash of `identity` (`max` at least 16): for names with a limit
/// other than [`MAX_NAME_LEN`] (a DNS-1123 subdomain's 253).
pub fn fit_to(full: String, identity: &str, max: usize) -> String {
    if full.len() <= max {
        return full;
    }
    hashed(full, identity, max.max(16))
}

/// `full`'s prefix and 8 hex digits of a hash of `identity`, always: the
/// name of a cluster-scoped object, whose identity the readable part alone
/// may not carry.
pub(crate) fn fit_hashed(full: String, identity: &str) -> String {
    hashed(full, identity, MAX_NAME_LEN)
}

/// `full`'s prefix, cut to leave room for "-" and 8 hex digits of a hash
/// of `identity` within `max` bytes.
fn hashed(full: String, identity: &str, max: usize) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // A name never ends in "-" or ".". Cut on a character boundary: a name
    // read from input may hold any text.
    let mut cut = max.saturating_sub(9).min(full.len());
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = full[..cut].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// The labels every object of `source` carries.
pub fn ownership_labels(source: Source) -> [(&'static str, String); 2] {
    [
        (MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_string()),
        (SOURCE_LABEL, source.as_str().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_to_keeps_short_names_and_cuts_long_ones_within_the_limit() {
        assert_eq!(fit_to("cluster-a".into(), "x", 253), "cluster-a");
        let long = format!("cluster-{}", "b".repeat(253));
        let cut = fit_to(long.clone(), "id-1", 253);
        assert_eq!(cut.len(), 253);
        assert!(cut.starts_with("cluster-bbb"));
        // Another identity, another name.
        assert_ne!(cut, fit_to(long, "id-2", 253));
    }

    #[test]
    fn short_names_are_plain_and_lower_case() {
        assert_eq!(
            policy_name(Source::Baseline, WorkloadKind::Deployment, "shop", "Web"),
            "kf-baseline-deployment-web"
        );
    }

    #[test]
    fn kinds_never_share_a_name() {
        let d = policy_name(Source::Quarantine, WorkloadKind::Deployment, "ns", "api");
        let s = policy_name(Source::Quarantine, WorkloadKind::StatefulSet, "ns", "api");
        assert_ne!(d, s);
    }

    #[test]
    fn long_names_are_cut_and_hashed_by_full_identity() {
        let long = "a".repeat(80);
        let a = policy_name(
            Source::Baseline,
            WorkloadKind::Deployment,
            "ns",
            &format!("{long}-one"),
        );
        let b = policy_name(
            Source::Baseline,
            WorkloadKind::Deployment,
            "ns",
            &format!("{long}-two"),
        );
        let c = policy_name(
            Source::Baseline,
            WorkloadKind::Deployment,
            "other",
            &format!("{long}-one"),
        );
        for n in [&a, &b, &c] {
            assert_eq!(n.len(), MAX_NAME_LEN, "{n}");
            assert!(n.starts_with("kf-baseline-deployment-aaaa"), "{n}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c, "the namespace is part of the identity");
        assert_eq!(
            a,
            policy_name(
                Source::Baseline,
                WorkloadKind::Deployment,
                "ns",
                &format!("{long}-one")
            )
        );
    }

    #[test]
    fn kind_names_are_kubescapes_and_never_invalid() {
        assert_eq!(
            kind_name("Deployment", "ns", "nginx").as_deref(),
            Ok("deployment-nginx")
        );
        let long = kind_name("StatefulSet", "ns", &"x".repeat(80)).unwrap_or_default();
        assert_eq!(long.len(), MAX_NAME_LEN, "{long}");
        assert!(kind_name("Deployment", "ns", "bad_name").is_err());
        assert!(kind_name("Deployment", "ns", &"é".repeat(40)).is_err());
    }

    #[test]
    fn a_cut_name_does_not_end_in_a_dash_before_the_hash() {
        // Position 53 of the full name is a dash here.
        let name = format!("{}-{}", "b".repeat(30), "c".repeat(40));
        let n = policy_name(Source::Baseline, WorkloadKind::Deployment, "ns", &name);
        assert!(!n.contains("--"), "{n}");
    }
}
