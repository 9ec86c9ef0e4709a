//! Every API call the operator makes, as RBAC sees it.
//!
//! Keep this table next to the code that makes the calls: `cluster.rs`
//! (writes), `controllers/baseline/watch.rs` (list and watch),
//! `leader.rs` (the Lease, through kube-lease-manager: get, create, patch),
//! `controllers/quarantine/controller.rs` (Quarantines and their status)
//! and the event recorder (create, and patch for repeated events). The
//! tests `deploy_rbac_covers_every_call_and_nothing_more` and
//! `component_roles_grant_exactly_their_calls` in `tests/deploy.rs` check
//! the ClusterRole and the lease Role in `deploy/base/`, and the roles the
//! components of `deploy/components/` bind to the operator, against it,
//! and that none has a wildcard. The node agent's calls (`Scope::Agent`,
//! crates/kubefence-agent: `watch.rs` and `writer.rs`) are checked against
//! the role its component binds to its own ServiceAccount.

/// Where a permission must be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The ClusterRole (every namespace).
    Cluster,
    /// The Role in the operator's own namespace.
    OwnNamespace,
    /// The ClusterRole that an opt-in component of `deploy/components/`
    /// (the directory named here) binds to the operator's ServiceAccount.
    /// The quarantine writer role also serves people who run `kubefence
    /// quarantine --confirm` themselves, so it holds every call of
    /// quarantine and release, reads included, even those the base role
    /// already grants the operator.
    Component(&'static str),
    /// The ClusterRole of the node agent's own ServiceAccount
    /// (`deploy/components/agent`, `kubefence-agent`): the agent runs as a
    /// DaemonSet apart from the operator and gets none of its rights.
    Agent,
    /// The ClusterRole a person binds to read a live cluster with the CLI
    /// (`deploy/components/reader`, `kubefence-reader`; `live.rs`): bound
    /// to no ServiceAccount of kubefence's.
    Reader,
}

/// The quarantine component (`deploy/components/quarantine`).
pub const QUARANTINE: Scope = Scope::Component("quarantine");
/// Its Cilium engine (`deploy/components/quarantine/cilium`).
pub const QUARANTINE_CILIUM: Scope = Scope::Component("quarantine/cilium");
/// Its AdminNetworkPolicy engine.
pub const QUARANTINE_ANP: Scope = Scope::Component("quarantine/adminnetworkpolicy");
/// The opt-in learned-policy controller (`deploy/components/learned`).
pub const LEARNED: Scope = Scope::Component("learned");
/// The opt-in profiles controller (`deploy/components/profiles`).
pub const PROFILES: Scope = Scope::Component("profiles");
/// The profiles controller's guardrail denies for `engine: cilium`.
pub const PROFILES_CILIUM: Scope = Scope::Component("profiles/cilium");
/// The same for `engine: clusternetworkpolicy` and `adminnetworkpolicy`.
pub const PROFILES_POLICY_API: Scope = Scope::Component("profiles/adminnetworkpolicy");
/// The opt-in intents controller (`deploy/components/intents`).
pub const INTENTS: Scope = Scope::Component("intents");
/// Its engines beyond NetworkPolicy, one component each.
pub const INTENTS_CILIUM: Scope = Scope::Component("intents/cilium");
pub const INTENTS_POLICY_API: Scope = Scope::Component("intents/adminnetworkpolicy");
pub const INTENTS_KUBEARMOR: Scope = Scope::Component("intents/kubearmor");

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
    // Quarantine and release (controllers/quarantine/ops.rs), made by the
    // operator and, as the user who runs them, by the CLI's online
    // `quarantine`/`release`: so the user-facing writer ClusterRole grants
    // exactly these. Read the target (the kinds a Quarantine may name) and
    // list every workload of its namespace (which other workloads the
    // selector also matches); a ReplicaSet or Job is also read as the middle
    // owner of a pod (is the pod the target's own?); list the pods the
    // selector picks (collateral check) and the namespace's NetworkPolicies
    // (remaining paths); read, apply (an apply that creates is authorized as
    // a create too) and delete the quarantine policy; record Events.
    (QUARANTINE, "apps", "deployments", "get"),
    (QUARANTINE, "apps", "deployments", "list"),
    (QUARANTINE, "apps", "statefulsets", "get"),
    (QUARANTINE, "apps", "statefulsets", "list"),
    (QUARANTINE, "apps", "daemonsets", "get"),
    (QUARANTINE, "apps", "daemonsets", "list"),
    (QUARANTINE, "apps", "replicasets", "get"),
    (QUARANTINE, "apps", "replicasets", "list"),
    (QUARANTINE, "batch", "jobs", "get"),
    (QUARANTINE, "batch", "jobs", "list"),
    (QUARANTINE, "batch", "cronjobs", "get"),
    (QUARANTINE, "batch", "cronjobs", "list"),
    (QUARANTINE, "", "pods", "get"),
    (QUARANTINE, "", "pods", "list"),
    (QUARANTINE, "networking.k8s.io", "networkpolicies", "get"),
    (QUARANTINE, "networking.k8s.io", "networkpolicies", "list"),
    (QUARANTINE, "networking.k8s.io", "networkpolicies", "create"),
    (QUARANTINE, "networking.k8s.io", "networkpolicies", "patch"),
    (QUARANTINE, "networking.k8s.io", "networkpolicies", "delete"),
    (QUARANTINE, "events.k8s.io", "events", "create"),
    (QUARANTINE, "events.k8s.io", "events", "patch"),
    // The other engines' quarantine objects: read, apply, delete.
    (
        QUARANTINE_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "get",
    ),
    (
        QUARANTINE_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "create",
    ),
    (
        QUARANTINE_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "patch",
    ),
    (
        QUARANTINE_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "delete",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "get",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "create",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "patch",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "delete",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "get",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "create",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "patch",
    ),
    (
        QUARANTINE_ANP,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "delete",
    ),
    // The learned controller (controllers/learned), beyond the base role
    // (which holds its NetworkPolicy list, watch, create, patch, delete):
    // observed neighbours and named CIDRs of both groups (each optional),
    // its GeneratedNetworkPolicies (apply, withdraw an approval with a JSON
    // patch, delete when their neighborhoods are gone, status), and a read
    // of a policy with the learned policy's name, to see whose it is.
    (
        LEARNED,
        "spdx.softwarecomposition.kubescape.io",
        "networkneighborhoods",
        "list",
    ),
    (
        LEARNED,
        "spdx.softwarecomposition.kubescape.io",
        "networkneighborhoods",
        "watch",
    ),
    (
        LEARNED,
        "spdx.softwarecomposition.kubescape.io",
        "knownservers",
        "list",
    ),
    (
        LEARNED,
        "spdx.softwarecomposition.kubescape.io",
        "knownservers",
        "watch",
    ),
    (LEARNED, "kubefence.dev", "networkneighborhoods", "list"),
    (LEARNED, "kubefence.dev", "networkneighborhoods", "watch"),
    (LEARNED, "kubefence.dev", "knownservers", "list"),
    (LEARNED, "kubefence.dev", "knownservers", "watch"),
    (LEARNED, "kubefence.dev", "generatednetworkpolicies", "list"),
    (
        LEARNED,
        "kubefence.dev",
        "generatednetworkpolicies",
        "watch",
    ),
    (
        LEARNED,
        "kubefence.dev",
        "generatednetworkpolicies",
        "create",
    ),
    (
        LEARNED,
        "kubefence.dev",
        "generatednetworkpolicies",
        "patch",
    ),
    (
        LEARNED,
        "kubefence.dev",
        "generatednetworkpolicies",
        "delete",
    ),
    (
        LEARNED,
        "kubefence.dev",
        "generatednetworkpolicies/status",
        "patch",
    ),
    (LEARNED, "networking.k8s.io", "networkpolicies", "get"),
    // The node agent (crates/kubefence-agent), under its own
    // ServiceAccount: watch the pods of its node (a field selector is still
    // a list and watch of pods) and every Service (ClusterIP -> selector);
    // read, create (the first write, which must fail if another node
    // created it meanwhile) and server-side apply its NetworkNeighborhoods.
    (Scope::Agent, "", "pods", "list"),
    (Scope::Agent, "", "pods", "watch"),
    (Scope::Agent, "", "services", "list"),
    (Scope::Agent, "", "services", "watch"),
    (Scope::Agent, "kubefence.dev", "networkneighborhoods", "get"),
    (
        Scope::Agent,
        "kubefence.dev",
        "networkneighborhoods",
        "create",
    ),
    (
        Scope::Agent,
        "kubefence.dev",
        "networkneighborhoods",
        "patch",
    ),
    // The profiles controller (controllers/profiles), beyond the base role
    // (which holds its pod and NetworkPolicy watches and its NetworkPolicy
    // create, patch and delete): watch IsolationProfiles, write their status.
    (PROFILES, "kubefence.dev", "isolationprofiles", "list"),
    (PROFILES, "kubefence.dev", "isolationprofiles", "watch"),
    (
        PROFILES,
        "kubefence.dev",
        "isolationprofiles/status",
        "patch",
    ),
    // agent-sandbox, when installed: templates get their default profile;
    // claims, warm pools and Sandboxes trace pods to their template
    // (coverage). Read only.
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        "list",
    ),
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        "watch",
    ),
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxclaims",
        "list",
    ),
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxclaims",
        "watch",
    ),
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        "list",
    ),
    (
        PROFILES,
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        "watch",
    ),
    (PROFILES, "agents.x-k8s.io", "sandboxes", "list"),
    (PROFILES, "agents.x-k8s.io", "sandboxes", "watch"),
    // Guardrail denies of profiles whose engine can deny: watched by
    // kubefence's labels, created and applied (server-side apply), removed
    // when no profile wants them.
    (
        PROFILES_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "list",
    ),
    (
        PROFILES_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "watch",
    ),
    (
        PROFILES_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "create",
    ),
    (
        PROFILES_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "patch",
    ),
    (
        PROFILES_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "delete",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "list",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "watch",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "create",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "patch",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "delete",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "list",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "watch",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "create",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "patch",
    ),
    (
        PROFILES_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "delete",
    ),
    // The intents controller (controllers/intents), beyond the base role
    // (which holds its namespace watch and its NetworkPolicy watch,
    // create, patch and delete): watch intents and bindings, write the
    // bindings' status; write IntentPolicies (owned by their bindings) and
    // their status; watch CRDs (metadata) to notice an engine installed.
    (INTENTS, "kubefence.dev", "securityintents", "list"),
    (INTENTS, "kubefence.dev", "securityintents", "watch"),
    (INTENTS, "kubefence.dev", "securityintentbindings", "list"),
    (INTENTS, "kubefence.dev", "securityintentbindings", "watch"),
    (
        INTENTS,
        "kubefence.dev",
        "securityintentbindings/status",
        "patch",
    ),
    (
        INTENTS,
        "kubefence.dev",
        "clustersecurityintentbindings",
        "list",
    ),
    (
        INTENTS,
        "kubefence.dev",
        "clustersecurityintentbindings",
        "watch",
    ),
    (
        INTENTS,
        "kubefence.dev",
        "clustersecurityintentbindings/status",
        "patch",
    ),
    (INTENTS, "kubefence.dev", "intentpolicies", "list"),
    (INTENTS, "kubefence.dev", "intentpolicies", "watch"),
    (INTENTS, "kubefence.dev", "intentpolicies", "create"),
    (INTENTS, "kubefence.dev", "intentpolicies", "patch"),
    (INTENTS, "kubefence.dev", "intentpolicies", "delete"),
    (INTENTS, "kubefence.dev", "intentpolicies/status", "patch"),
    (
        INTENTS,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "list",
    ),
    (
        INTENTS,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "watch",
    ),
    // Each engine's objects: watched by kubefence's labels, created and
    // applied (server-side apply), removed when no IntentPolicy wants them.
    (INTENTS_CILIUM, "cilium.io", "ciliumnetworkpolicies", "list"),
    (
        INTENTS_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "watch",
    ),
    (
        INTENTS_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "create",
    ),
    (
        INTENTS_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "patch",
    ),
    (
        INTENTS_CILIUM,
        "cilium.io",
        "ciliumnetworkpolicies",
        "delete",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "list",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "watch",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "create",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "patch",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "clusternetworkpolicies",
        "delete",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "list",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "watch",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "create",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "patch",
    ),
    (
        INTENTS_POLICY_API,
        "policy.networking.k8s.io",
        "adminnetworkpolicies",
        "delete",
    ),
    (
        INTENTS_KUBEARMOR,
        "security.kubearmor.com",
        "kubearmorpolicies",
        "list",
    ),
    (
        INTENTS_KUBEARMOR,
        "security.kubearmor.com",
        "kubearmorpolicies",
        "watch",
    ),
    (
        INTENTS_KUBEARMOR,
        "security.kubearmor.com",
        "kubearmorpolicies",
        "create",
    ),
    (
        INTENTS_KUBEARMOR,
        "security.kubearmor.com",
        "kubearmorpolicies",
        "patch",
    ),
    (
        INTENTS_KUBEARMOR,
        "security.kubearmor.com",
        "kubearmorpolicies",
        "delete",
    ),
    // The CLI reading a live cluster as its user (live.rs): lists of the
    // kinds the model reads, and one namespace by name (`-n`).
    (Scope::Reader, "", "namespaces", "list"),
    (Scope::Reader, "", "namespaces", "get"),
    (Scope::Reader, "apps", "deployments", "list"),
    (Scope::Reader, "apps", "statefulsets", "list"),
    (Scope::Reader, "apps", "daemonsets", "list"),
    (Scope::Reader, "apps", "replicasets", "list"),
    (Scope::Reader, "batch", "jobs", "list"),
    (Scope::Reader, "batch", "cronjobs", "list"),
    (Scope::Reader, "", "pods", "list"),
    (Scope::Reader, "", "services", "list"),
    (Scope::Reader, "", "configmaps", "list"),
    (Scope::Reader, "networking.k8s.io", "ingresses", "list"),
    (
        Scope::Reader,
        "networking.k8s.io",
        "networkpolicies",
        "list",
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
