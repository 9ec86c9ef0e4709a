//! The cluster the end-to-end tests run against, shared by every test of
//! the binary: the local API server (default), or the cluster of
//! `KUBEFENCE_E2E_KUBECONFIG` (kind, k3d), or none when `KUBEFENCE_E2E_SKIP`
//! is set.
//!
//! Either way the tests' setup installs, as the admin, what `deploy/`
//! installs except the Deployment (no pod runs): the CRDs, the operator's
//! namespace, ServiceAccount and RBAC, twice:
//!
//! - [`FULL_INSTALL`]: `deploy/base` plus the opt-in
//!   `deploy/components/quarantine`;
//! - [`DEFAULT_INSTALL`]: `deploy/base` alone, relocated to another
//!   namespace (as kustomize's `namespace:` would, plus a suffix on the
//!   cluster-scoped names), so a test can show what a default install does
//!   while the other tests use the full one.
//!
//! The operator under test authenticates as its own ServiceAccount with a
//! token from the TokenRequest API, so RBAC judges it by `deploy/` alone.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use serde_json::{Value, json};

use super::apiserver::{self, LocalServer};

pub const KUBECONFIG_ENV: &str = "KUBEFENCE_E2E_KUBECONFIG";
pub const SKIP_ENV: &str = "KUBEFENCE_E2E_SKIP";
/// `deploy/base` with `deploy/components/quarantine`.
pub const FULL_INSTALL: &str = "kubefence-system";
/// `deploy/base` alone (no quarantine rights), relocated here.
pub const DEFAULT_INSTALL: &str = "kubefence-default-install";
/// The operator's ServiceAccount (deploy/base/serviceaccount.yaml).
pub const SERVICE_ACCOUNT: &str = "kubefence";
/// The field manager of the tests' own setup writes.
const SETUP_MANAGER: &str = "kubefence-e2e-setup";

pub struct Cluster {
    /// The admin's kubeconfig file.
    pub admin_kubeconfig: PathBuf,
    /// Per install namespace: a kubeconfig with its ServiceAccount's token.
    operator_kubeconfigs: Vec<(String, PathBuf)>,
    /// The local server, when the tests started one.
    pub local: Option<LocalServer>,
    /// Kubeconfigs and operator logs.
    pub work: PathBuf,
    /// How long the setup (server start and install) took.
    pub setup_time: Duration,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
// Async: held across a whole test; every test has its own runtime.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared cluster, started and set up on first use; `None` (with a
/// note on stderr) when `KUBEFENCE_E2E_SKIP` is set. Panics with the reason
/// when it cannot be had, naming the script when the binaries are missing.
pub fn cluster() -> Option<&'static Cluster> {
    if std::env::var_os(SKIP_ENV).is_some() {
        eprintln!("skipped: {SKIP_ENV} is set");
        return None;
    }
    match CLUSTER.get_or_init(|| {
        // Setup runs its own runtime: the caller's may be a test's
        // current-thread runtime, which cannot block on another.
        std::thread::spawn(set_up)
            .join()
            .unwrap_or_else(|_| Err("cluster setup panicked".into()))
    }) {
        Ok(c) => Some(c),
        #[allow(clippy::panic)]
        Err(e) => panic!("end-to-end cluster: {e}"),
    }
}

/// Tests that run an operator take this: every operator watches every
/// namespace, so two at once would act on each other's objects.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

fn set_up() -> Result<Cluster, String> {
    let started = Instant::now();
    let (admin_kubeconfig, local, work) = match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) => {
            let work = tempfile::Builder::new()
                .prefix("kubefence-e2e-")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?
                .keep();
            (PathBuf::from(path), None, work)
        }
        None => {
            let server = apiserver::start(&apiserver::binary_dir()?)?;
            eprintln!(
                "local kube-apiserver at {} ready in {:.1?} (data in {})",
                server.url,
                server.startup,
                server.dir.display()
            );
            // Inside the server's directory: removed with it.
            let work = server.dir.join("work");
            std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
            (server.admin_kubeconfig.clone(), Some(server), work)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let operator_kubeconfigs = runtime.block_on(async {
        let admin = client_from(&admin_kubeconfig).await?;
        install(&admin, FULL_INSTALL, true).await?;
        install(&admin, DEFAULT_INSTALL, false).await?;
        let mut out = Vec::new();
        for ns in [FULL_INSTALL, DEFAULT_INSTALL] {
            let token = service_account_token(&admin, ns).await?;
            let path = work.join(format!("{ns}.kubeconfig"));
            write_token_kubeconfig(&admin_kubeconfig, &token, &path)?;
            out.push((ns.to_string(), path));
        }
        Ok::<_, String>(out)
    })?;
    let setup_time = started.elapsed();
    eprintln!("end-to-end cluster set up in {setup_time:.1?}");
    Ok(Cluster {
        admin_kubeconfig,
        operator_kubeconfigs,
        local,
        work,
        setup_time,
    })
}

impl Cluster {
    pub async fn admin(&self) -> Client {
        client_from(&self.admin_kubeconfig)
            .await
            .unwrap_or_else(|e| panic_now(&e))
    }

    /// The kubeconfig of the operator installed in `install_ns`.
    pub fn operator_kubeconfig(&self, install_ns: &str) -> &Path {
        self.operator_kubeconfigs
            .iter()
            .find(|(ns, _)| ns == install_ns)
            .map(|(_, p)| p.as_path())
            .unwrap_or_else(|| panic_now(&format!("no install in {install_ns}")))
    }

    /// A client with the operator's own ServiceAccount token.
    pub async fn operator_client(&self, install_ns: &str) -> Client {
        client_from(self.operator_kubeconfig(install_ns))
            .await
            .unwrap_or_else(|e| panic_now(&e))
    }

    /// Every audited request of `user` after byte `since` of the audit log,
    /// as `verb uri`. `None` without a local server (no audit log to read).
    pub fn requests_since(&self, user: &str, since: u64) -> Option<Vec<String>> {
        self.audit_since(user, since, |_| true)
    }

    /// Every audited request of `user` that RBAC refused after byte `since`
    /// of the audit log, as `verb uri`. `None` without a local server (no
    /// audit log to read).
    pub fn forbidden_since(&self, user: &str, since: u64) -> Option<Vec<String>> {
        // RBAC's own verdict: a 403 for another reason (a namespace being
        // terminated refuses creates) is not a missing right.
        self.audit_since(user, since, |event| {
            event["annotations"]["authorization.k8s.io/decision"] == "forbid"
        })
    }

    fn audit_since(
        &self,
        user: &str,
        since: u64,
        keep: impl Fn(&Value) -> bool,
    ) -> Option<Vec<String>> {
        let local = self.local.as_ref()?;
        let text = std::fs::read(&local.audit_log).unwrap_or_default();
        let start = usize::try_from(since).unwrap_or(0).min(text.len());
        let mut out = Vec::new();
        for line in String::from_utf8_lossy(&text[start..]).lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if event["user"]["username"] == user && keep(&event) {
                out.push(format!(
                    "{} {}",
                    event["verb"].as_str().unwrap_or("?"),
                    event["requestURI"].as_str().unwrap_or("?")
                ));
            }
        }
        Some(out)
    }

    /// The audit log's current length (see [`Cluster::forbidden_since`]).
    pub fn audit_offset(&self) -> u64 {
        self.local
            .as_ref()
            .and_then(|l| std::fs::metadata(&l.audit_log).ok())
            .map_or(0, |m| m.len())
    }
}

#[allow(clippy::panic)]
fn panic_now(message: &str) -> ! {
    panic!("{message}")
}

/// The RBAC username of the operator installed in `install_ns`.
pub fn operator_user(install_ns: &str) -> String {
    format!("system:serviceaccount:{install_ns}:{SERVICE_ACCOUNT}")
}

pub async fn client_from(kubeconfig: &Path) -> Result<Client, String> {
    let kc =
        Kubeconfig::read_from(kubeconfig).map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// A copy of `admin`'s current context with the user replaced by `token`.
fn write_token_kubeconfig(admin: &Path, token: &str, out: &Path) -> Result<(), String> {
    let kc = Kubeconfig::read_from(admin).map_err(|e| format!("{}: {e}", admin.display()))?;
    let current = kc.current_context.clone().unwrap_or_default();
    let cluster = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| format!("{}: no current context", admin.display()))?;
    let clusters: Vec<Value> = serde_json::to_value(&kc.clusters)
        .map_err(|e| e.to_string())?
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["name"] == cluster.as_str())
        .collect();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster, "user": "operator"}}],
        "current-context": "operator",
    });
    std::fs::write(out, config.to_string()).map_err(|e| format!("{}: {e}", out.display()))
}

impl Cluster {
    /// A kubeconfig (written under the work directory) and a client that
    /// authenticate as ServiceAccount `ns/name` (which must exist), for a
    /// test of what a given role allows.
    pub async fn service_account_kubeconfig(
        &self,
        admin: &Client,
        ns: &str,
        name: &str,
    ) -> (PathBuf, Client) {
        let token = token_of(admin, ns, name)
            .await
            .unwrap_or_else(|e| panic_now(&e));
        let path = self.work.join(format!("{ns}-{name}.kubeconfig"));
        write_token_kubeconfig(&self.admin_kubeconfig, &token, &path)
            .unwrap_or_else(|e| panic_now(&e));
        let client = client_from(&path).await.unwrap_or_else(|e| panic_now(&e));
        (path, client)
    }
}

/// A ServiceAccount token from the TokenRequest API (valid two hours).
async fn service_account_token(admin: &Client, ns: &str) -> Result<String, String> {
    token_of(admin, ns, SERVICE_ACCOUNT).await
}

async fn token_of(admin: &Client, ns: &str, name: &str) -> Result<String, String> {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 7200},
    });
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"
    ))
    .header("content-type", "application/json")
    .body(body.to_string().into_bytes())
    .map_err(|e| e.to_string())?;
    let answer: Value = admin
        .request(request)
        .await
        .map_err(|e| format!("TokenRequest for {ns}/{name}: {e}"))?;
    answer["status"]["token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("TokenRequest for {ns}: no token in {answer}"))
}

pub fn deploy() -> PathBuf {
    apiserver::repo_root().join("deploy")
}

pub fn yaml_docs(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_saphyr::from_multiple::<Value>(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_iter()
        .filter(|d| !d.is_null())
        .collect())
}

/// The objects a kustomization directory lists (`resources:`, in order).
pub fn kustomization_objects(dir: &Path) -> Result<Vec<Value>, String> {
    let k = yaml_docs(&dir.join("kustomization.yaml"))?;
    let mut out = Vec::new();
    for r in k
        .first()
        .and_then(|k| k["resources"].as_array())
        .cloned()
        .unwrap_or_default()
    {
        let Some(r) = r.as_str() else { continue };
        out.extend(yaml_docs(&dir.join(r))?);
    }
    Ok(out)
}

/// The kinds the tests install; the Deployment and the metrics Service
/// need a kubelet to mean anything.
const INSTALLED_KINDS: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Installs `deploy/base` (and the quarantine component when `quarantine`)
/// for an operator in `ns`, by server-side apply as the admin.
async fn install(admin: &Client, ns: &str, quarantine: bool) -> Result<(), String> {
    let mut objects = kustomization_objects(&deploy().join("base"))?;
    if quarantine {
        objects.extend(kustomization_objects(
            &deploy().join("components/quarantine"),
        )?);
        objects.extend(kustomization_objects(&deploy().join("components/learned"))?);
        objects.extend(kustomization_objects(
            &deploy().join("components/profiles"),
        )?);
        for engine in ["cilium", "adminnetworkpolicy"] {
            objects.extend(kustomization_objects(
                &deploy().join("components/profiles").join(engine),
            )?);
        }
        objects.extend(kustomization_objects(&deploy().join("components/intents"))?);
        for engine in ["cilium", "adminnetworkpolicy", "kubearmor"] {
            objects.extend(kustomization_objects(
                &deploy().join("components/intents").join(engine),
            )?);
        }
    }
    for mut object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        if !INSTALLED_KINDS.contains(&kind.as_str()) {
            continue;
        }
        if ns != FULL_INSTALL {
            relocate(&mut object, ns);
        }
        apply(admin, object).await?;
    }
    wait_for_crds(admin).await
}

/// What kustomize's `namespace: <ns>` does to the base, plus a suffix on
/// cluster-scoped RBAC names so both installs coexist.
fn relocate(object: &mut Value, ns: &str) {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let suffix = |v: &mut Value| {
        if let Some(name) = v.as_str() {
            *v = Value::String(format!("{name}-{ns}"));
        }
    };
    match kind.as_str() {
        "Namespace" => object["metadata"]["name"] = Value::String(ns.into()),
        "ClusterRole" => suffix(&mut object["metadata"]["name"]),
        "ClusterRoleBinding" => {
            suffix(&mut object["metadata"]["name"]);
            if object["roleRef"]["kind"] == "ClusterRole" {
                suffix(&mut object["roleRef"]["name"]);
            }
        }
        _ => {}
    }
    if object["metadata"].get("namespace").is_some() {
        object["metadata"]["namespace"] = Value::String(ns.into());
    }
    // (`get_mut`: indexing a missing key mutably would insert a null.)
    if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if s.get("namespace").is_some() {
                s["namespace"] = Value::String(ns.into());
            }
        }
    }
}

/// Server-side apply of one object, whatever its kind.
pub async fn apply(client: &Client, object: Value) -> Result<(), String> {
    apply_with(client, object, false).await
}

/// A server-side dry run (`dryRun=All`) of the apply of `object`: every
/// admission and validation step of the API server, nothing persisted.
pub async fn validate(client: &Client, object: Value) -> Result<(), String> {
    apply_with(client, object, true).await
}

async fn apply_with(client: &Client, object: Value, dry_run: bool) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("discovery of {kind}: {e}"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply(SETUP_MANAGER).force();
    params.dry_run = dry_run;
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| format!("apply {kind} {name}: {e}"))?;
    Ok(())
}

/// Waits until every kubefence CRD serves (Established).
async fn wait_for_crds(admin: &Client) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = crds
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let pending: Vec<String> = list
            .items
            .iter()
            .filter(|c| c.spec.group.ends_with("kubefence.dev"))
            .filter(|c| {
                !c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            })
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("CRDs not established: {pending:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
