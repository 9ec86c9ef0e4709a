//! The garbage collector of kube-controller-manager (built by
//! `scripts/test-apiserver.sh` with the API server), for the tests that
//! show what deleting an owner deletes: it runs only the
//! `garbage-collector-controller`, against the local API server as the
//! admin, until the test process ends (the same stdin watchdog as the
//! servers). Against `KUBEFENCE_E2E_KUBECONFIG` the real cluster's own
//! garbage collector does the work and nothing is started.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use super::cluster::Cluster;
use super::{CONVERGE, eventually};

/// The process and the pipe that keeps it alive; never dropped.
struct Running {
    _watchdog: Child,
    _stdin: ChildStdin,
}

static RUNNING: OnceLock<Result<Option<Running>, String>> = OnceLock::new();

/// Starts the garbage collector once per test binary (nothing against a
/// real cluster), then waits until it has collected a throwaway dependent
/// (a ConfigMap owned by a ConfigMap) in `ns`: from then on, deleting an
/// owner deletes its dependents.
pub async fn ensure(cluster: &Cluster, admin: &Client, ns: &str) {
    let started = RUNNING.get_or_init(|| start(cluster));
    if let Err(e) = started {
        super::fail(&format!("kube-controller-manager: {e}"));
    }
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), ns);
    let owner = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gc-probe-owner"}}))
                .unwrap_or_default(),
        )
        .await
        .unwrap_or_else(|e| super::fail(&format!("gc probe owner: {e}")));
    let dependent = json!({"metadata": {"name": "gc-probe-dependent", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "gc-probe-owner",
        "uid": owner.metadata.uid,
    }]}});
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(dependent).unwrap_or_default(),
        )
        .await
        .unwrap_or_else(|e| super::fail(&format!("gc probe dependent: {e}")));
    let _ = configmaps
        .delete("gc-probe-owner", &DeleteParams::background())
        .await;
    // The first collection waits for the collector's discovery and caches.
    eventually(
        "the garbage collector to collect its probe",
        CONVERGE * 3,
        async || {
            configmaps
                .get_opt("gc-probe-dependent")
                .await
                .ok()
                .flatten()
                .is_none()
        },
        |gone| *gone,
    )
    .await;
}

fn start(cluster: &Cluster) -> Result<Option<Running>, String> {
    let Some(local) = &cluster.local else {
        return Ok(None);
    };
    let binary = super::apiserver::binary_dir()?.join("kube-controller-manager");
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: run {} first (it builds it with the API server)",
            binary.display(),
            super::apiserver::SCRIPT
        ));
    }
    let dir = local.dir.display();
    let script = format!(
        r#"set -u
"{binary}" --kubeconfig="{kubeconfig}" --controllers=garbage-collector-controller \
  --leader-elect=false --secure-port=0 --v=1 >"{dir}/controller-manager.log" 2>&1 &
pid=$!
# The test process holds the other end of stdin: EOF means it is gone.
read -r _ || true
kill -9 "$pid" 2>/dev/null
wait
"#,
        binary = binary.display(),
        kubeconfig = local.admin_kubeconfig.display(),
    );
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start kube-controller-manager: {e}"))?;
    let stdin = watchdog
        .stdin
        .take()
        .ok_or_else(|| "watchdog without stdin".to_string())?;
    Ok(Some(Running {
        _watchdog: watchdog,
        _stdin: stdin,
    }))
}
