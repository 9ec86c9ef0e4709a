//! Reading a live cluster for the CLI (`kubefence analyze` without `-f`):
//! paginated lists of exactly the kinds the model reads, read-only, as the
//! user of the kubeconfig. The objects come back as JSON documents (with
//! their apiVersion and kind, managed fields dropped) for the same loader
//! that reads files, so a live cluster is read exactly as its
//! `kubectl get -o yaml` dump would be.
//!
//! The rights this takes are `rbac::CALLS` with `Scope::Reader`, granted by
//! the ClusterRole in `deploy/components/reader`.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

/// Objects per list request.
const PAGE: u32 = 500;

/// Where to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (`-A`).
    AllNamespaces,
    /// One namespace (`-n NS`, or the context's).
    Namespace(String),
}

/// What was read.
#[derive(Clone, Debug, Default)]
pub struct Read {
    pub objects: Vec<Value>,
    /// What could be read only in part, said once each (a namespace whose
    /// labels could not be read).
    pub warnings: Vec<String>,
    /// Requests sent (list pages and gets).
    pub requests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(
        "forbidden: cannot {verb} {resource}{} as the current user ({message}); the ClusterRole in deploy/components/reader grants what kubefence reads: `kubectl apply -f deploy/components/reader/clusterrole.yaml`, then bind it to yourself (see its comment)",
        namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_default()
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        namespace: Option<String>,
        message: String,
    },
    #[error("cannot {verb} {resource}: {source}")]
    Api {
        verb: &'static str,
        resource: String,
        #[source]
        source: kube::Error,
    },
}

/// The kinds the model reads, in the order they are listed.
fn kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<ReplicaSet>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<CronJob>(&()),
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Ingress>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
    ]
}

/// `plural.group` (`deployments.apps`), `plural` for the core group: the
/// resource as RBAC and kubectl name it.
fn resource_name(r: &ApiResource) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

/// Reads the cluster of `client` within `scope`.
pub async fn read(client: &Client, scope: &Scope) -> Result<Read, LiveError> {
    read_paged(client, scope, PAGE).await
}

/// [`read`] with `page` objects per list request (tests use small pages to
/// exercise the continue tokens).
pub async fn read_paged(client: &Client, scope: &Scope, page: u32) -> Result<Read, LiveError> {
    let mut out = Read::default();
    let namespace = match scope {
        Scope::AllNamespaces => None,
        Scope::Namespace(ns) => Some(ns.as_str()),
    };
    read_namespaces(client, namespace, page, &mut out).await?;
    for resource in kinds() {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        list_all(&api, &resource, namespace, page, &mut out).await?;
    }
    Ok(out)
}

/// Namespaces: all of them (`-A`), or the one, by a get; a user allowed to
/// read one namespace's objects but not the namespace itself still gets an
/// answer, with the warning that its labels are unknown.
async fn read_namespaces(
    client: &Client,
    namespace: Option<&str>,
    page: u32,
    out: &mut Read,
) -> Result<(), LiveError> {
    let resource = ApiResource::erase::<Namespace>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    match namespace {
        None => list_all(&api, &resource, None, page, out).await,
        Some(ns) => {
            out.requests += 1;
            match api.get(ns).await {
                Ok(o) => {
                    out.objects.push(document(o, &resource));
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    out.warnings.push(format!(
                        "cannot get namespace {ns} ({}): its labels are unknown, so namespaceSelectors are matched against its name label only",
                        s.message
                    ));
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    out.warnings.push(format!("namespace {ns} does not exist"));
                    Ok(())
                }
                Err(e) => Err(LiveError::Api {
                    verb: "get",
                    resource: format!("namespace {ns}"),
                    source: e,
                }),
            }
        }
    }
}

/// Every page of one list.
async fn list_all(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    namespace: Option<&str>,
    page: u32,
    out: &mut Read,
) -> Result<(), LiveError> {
    let mut params = ListParams::default().limit(page.max(1));
    loop {
        out.requests += 1;
        let page = api.list(&params).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => LiveError::Forbidden {
                verb: "list",
                resource: resource_name(resource),
                namespace: namespace.map(str::to_string),
                message: s.message,
            },
            e => LiveError::Api {
                verb: "list",
                resource: resource_name(resource),
                source: e,
            },
        })?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.objects
            .extend(page.items.into_iter().map(|o| document(o, resource)));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// One listed object as a document: apiVersion and kind set (list items
/// lack them), managed fields dropped.
fn document(mut o: DynamicObject, resource: &ApiResource) -> Value {
    o.metadata.managed_fields = None;
    o.types = Some(kube::core::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    serde_json::to_value(&o).unwrap_or(Value::Null)
}

/// What `read` lists and gets, as RBAC names it: (group, resource, verb).
pub fn calls() -> Vec<(String, String, &'static str)> {
    let mut out = vec![
        (String::new(), "namespaces".to_string(), "list"),
        (String::new(), "namespaces".to_string(), "get"),
    ];
    for r in kinds() {
        out.push((r.group.clone(), r.plural.clone(), "list"));
    }
    out
}

/// The kinds read, for `--help` and docs: `deployments.apps, …`.
pub fn kinds_read() -> String {
    std::iter::once("namespaces".to_string())
        .chain(kinds().iter().map(resource_name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_role_in_the_call_table_is_what_read_calls() {
        let table: std::collections::BTreeSet<(String, String, String)> = crate::rbac::CALLS
            .iter()
            .filter(|(s, ..)| *s == crate::rbac::Scope::Reader)
            .map(|(_, g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
            .collect();
        let read: std::collections::BTreeSet<(String, String, String)> = calls()
            .into_iter()
            .map(|(g, r, v)| (g, r, v.to_string()))
            .collect();
        assert_eq!(table, read);
    }

    #[test]
    fn a_listed_object_gets_its_kind_back_and_loses_managed_fields() {
        let r = ApiResource::erase::<Deployment>(&());
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": 1},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let d = document(o, &r);
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["kind"], "Deployment");
        assert!(d["metadata"].get("managedFields").is_none(), "{d}");
        assert_eq!(d["spec"]["replicas"], 1);
    }
}
