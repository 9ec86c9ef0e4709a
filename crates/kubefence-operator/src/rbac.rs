//! Every API call the operator makes, as RBAC sees it.
//!
//! Keep this table next to the code that makes the calls: `cluster.rs`
//! (writes), `controllers/baseline/watch.rs` (list and watch),
//! `leader.rs` (the Lease, through kube-lease-manager: get, create, patch),
//! `controllers/quarantine/controller.rs` (Quarantines and their status)
//! and the event recorder (create, and patch for repeated events). The
//! test `deploy_rbac_covers_every_call` in `tests/deploy.rs` checks the
//! ClusterRole and the lease Role in `deploy/base/` against it and that
//! neither has a wildcard.

/// Where a permission must be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The ClusterRole (every namespace).
    Cluster,
    /// The Role in the operator's own namespace.
    OwnNamespace,
}

/// (scope, API group, resource, verb)
pub const CALLS: &[(Scope, &str, &str, &str)] = &[
    // Watches (list + watch) of the baseline controller.
    (Scope::Cluster, "apps", "deployments", "list"),
    (Scope::Cluster, "apps", "deployments", "watch"),
    (Scope::Cluster, "apps", "statefulsets", "list"),
    (Scope::Cluster, "apps", "statefulsets", "watch"),
    (Scope::Cluster, "apps", "daemonsets", "list"),
    (Scope::Cluster, "apps", "daemonsets", "watch"),
    (Scope::Cluster, "apps", "replicasets", "list"),
    (Scope::Cluster, "apps", "replicasets", "watch"),
    (Scope::Cluster, "batch", "jobs", "list"),
    (Scope::Cluster, "batch", "jobs", "watch"),
    (Scope::Cluster, "batch", "cronjobs", "list"),
    (Scope::Cluster, "batch", "cronjobs", "watch"),
    (Scope::Cluster, "", "pods", "list"),
    (Scope::Cluster, "", "pods", "watch"),
    (Scope::Cluster, "", "services", "list"),
    (Scope::Cluster, "", "services", "watch"),
    (Scope::Cluster, "", "configmaps", "list"),
    (Scope::Cluster, "", "configmaps", "watch"),
    (Scope::Cluster, "", "namespaces", "list"),
    (Scope::Cluster, "", "namespaces", "watch"),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "list"),
    (Scope::Cluster, "networking.k8s.io", "ingresses", "watch"),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "list",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "watch",
    ),
    // Writes (cluster.rs): server-side apply only (a patch; an apply that
    // creates the object is authorized as a create too); delete if ours.
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "create",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "patch",
    ),
    (
        Scope::Cluster,
        "networking.k8s.io",
        "networkpolicies",
        "delete",
    ),
    // Events on workloads (kube::runtime::events::Recorder).
    (Scope::Cluster, "events.k8s.io", "events", "create"),
    (Scope::Cluster, "events.k8s.io", "events", "patch"),
    // The Quarantine controller (controllers/quarantine/controller.rs): watch Quarantines,
    // add and remove its finalizer (a patch), write their status. Reading
    // targets and writing quarantine policies is the opt-in component
    // deploy/components/quarantine, not the base role.
    (Scope::Cluster, "kubefence.dev", "quarantines", "list"),
    (Scope::Cluster, "kubefence.dev", "quarantines", "watch"),
    (Scope::Cluster, "kubefence.dev", "quarantines", "patch"),
    (
        Scope::Cluster,
        "kubefence.dev",
        "quarantines/status",
        "patch",
    ),
    // Leader election (leader.rs, kube-lease-manager).
    (Scope::OwnNamespace, "coordination.k8s.io", "leases", "get"),
    (
        Scope::OwnNamespace,
        "coordination.k8s.io",
        "leases",
        "create",
    ),
    (
        Scope::OwnNamespace,
        "coordination.k8s.io",
        "leases",
        "patch",
    ),
];

/// (API group, resource, verb) of every call the quarantine operations make
/// with the NetworkPolicy engine (`controllers::quarantine::isolate` and
/// `release`): the CLI's online `quarantine` and `release` make exactly
/// these as the user who runs them, so the user-facing
/// `kubefence-quarantine-writer` ClusterRole
/// (`deploy/components/quarantine/clusterrole-writer.yaml`) must grant
/// them; the operator makes them too, under its base ClusterRole plus that
/// component. A test in `tests/deploy.rs` checks the role against it.
pub const QUARANTINE_CALLS: &[(&str, &str, &str)] = &[
    // plan: the target, and every workload of its namespace (which other
    // workloads the selector also matches).
    ("apps", "deployments", "get"),
    ("apps", "deployments", "list"),
    ("apps", "statefulsets", "get"),
    ("apps", "statefulsets", "list"),
    ("apps", "daemonsets", "get"),
    ("apps", "daemonsets", "list"),
    // A ReplicaSet or Job is also read as the middle owner of a pod
    // (selected_pods: is the pod the target's own?).
    ("apps", "replicasets", "get"),
    ("apps", "replicasets", "list"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "cronjobs", "get"),
    ("batch", "cronjobs", "list"),
    // The pods the selector picks (collateral check), a Pod target.
    ("", "pods", "get"),
    ("", "pods", "list"),
    // The namespace's policies (remaining paths), and the quarantine
    // policy: read, server-side apply (create or repair), delete if ours.
    ("networking.k8s.io", "networkpolicies", "get"),
    ("networking.k8s.io", "networkpolicies", "list"),
    ("networking.k8s.io", "networkpolicies", "create"),
    ("networking.k8s.io", "networkpolicies", "patch"),
    ("networking.k8s.io", "networkpolicies", "delete"),
    // KubefenceQuarantined / KubefenceReleased on the target.
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// The calls on the quarantine object of the other engines (get, apply,
/// delete): (component directory under `deploy/components/quarantine`,
/// API group, resource).
pub const QUARANTINE_ENGINE_CALLS: &[(&str, &str, &str)] = &[
    ("cilium", "cilium.io", "ciliumnetworkpolicies"),
    (
        "adminnetworkpolicy",
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
    ),
];

/// The verbs of [`QUARANTINE_ENGINE_CALLS`]: read, server-side apply
/// (create or repair), delete.
pub const QUARANTINE_ENGINE_VERBS: &[&str] = &["get", "create", "patch", "delete"];

/// (API group, resource, verb) of every call the learned controller
/// (`controllers::learned`) makes beyond [`CALLS`] (which hold its
/// NetworkPolicy list, watch, create, patch and delete): the opt-in
/// ClusterRole `deploy/components/learned/clusterrole.yaml` must grant
/// exactly these; a test in `tests/deploy.rs` checks it.
pub const LEARNED_CALLS: &[(&str, &str, &str)] = &[
    // Observed neighbours and named CIDRs, both groups (each optional).
    (
        "spdx.softwarecomposition.kubescape.io",
        "networkneighborhoods",
        "list",
    ),
    (
        "spdx.softwarecomposition.kubescape.io",
        "networkneighborhoods",
        "watch",
    ),
    (
        "spdx.softwarecomposition.kubescape.io",
        "knownservers",
        "list",
    ),
    (
        "spdx.softwarecomposition.kubescape.io",
        "knownservers",
        "watch",
    ),
    ("kubefence.dev", "networkneighborhoods", "list"),
    ("kubefence.dev", "networkneighborhoods", "watch"),
    ("kubefence.dev", "knownservers", "list"),
    ("kubefence.dev", "knownservers", "watch"),
    // GeneratedNetworkPolicies: apply, withdraw an approval (JSON patch),
    // delete when their neighborhoods are gone, and their status.
    ("kubefence.dev", "generatednetworkpolicies", "list"),
    ("kubefence.dev", "generatednetworkpolicies", "watch"),
    ("kubefence.dev", "generatednetworkpolicies", "create"),
    ("kubefence.dev", "generatednetworkpolicies", "patch"),
    ("kubefence.dev", "generatednetworkpolicies", "delete"),
    ("kubefence.dev", "generatednetworkpolicies/status", "patch"),
    // A policy with the learned policy's name, read to see whose it is.
    ("networking.k8s.io", "networkpolicies", "get"),
];
