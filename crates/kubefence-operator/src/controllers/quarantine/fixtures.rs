//! A fake API server for tests (the kube-rs controller-rs ApiServerVerifier
//! pattern, with state): a tower-test mock service behind a real
//! `kube::Client`, answering GET, LIST, POST, PATCH and DELETE from an
//! in-memory object map, honouring `dryRun=All`, and logging every request
//! so tests assert the exact calls (and the absence of any).
//!
//! Server-side apply is modelled as far as the quarantine code relies on
//! it: an apply creates a missing object or replaces the fields it sends
//! (labels and annotations key by key, `spec` whole), refuses a
//! `metadata.resourceVersion` that is not the stored one (409 Conflict), and
//! records the manager in `managedFields` (operation Apply; Update for a
//! POST). Every write bumps `resourceVersion`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: Method,
    /// Path and query, as sent.
    pub uri: String,
    pub body: Option<Value>,
}

impl Seen {
    /// `"POST /apis/…?dryRun=All&…"`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

#[derive(Default)]
struct State {
    /// Object path (no query) → object.
    objects: BTreeMap<String, Value>,
    log: Vec<Seen>,
    /// Paths under which writes answer 403 (a default install's RBAC).
    forbidden_writes: Vec<String>,
    /// Paths under which every request answers 403.
    forbidden: Vec<String>,
    next_uid: u64,
    resource_version: u64,
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A client talking to a fresh fake API server.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = server.serve(request).await;
                send.send_response(response);
            }
        });
        (Client::new(service, "default"), fake)
    }

    /// Stores an object at its path (as if it existed in the cluster).
    pub fn insert(&self, path: &str, mut object: Value) {
        let mut st = self.state.lock().unwrap();
        st.next_uid += 1;
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", st.next_uid));
        }
        st.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        st.objects.insert(path.to_string(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    /// Answers writes under `prefix` with 403 Forbidden.
    pub fn forbid_writes(&self, prefix: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden_writes
            .push(prefix.to_string());
    }

    /// Every request under `prefix` answers 403 (reads included).
    pub fn forbid(&self, prefix: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden
            .push(prefix.to_string());
    }

    /// Every request so far, and forgets them.
    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    /// Every request so far, as `METHOD uri` lines, and forgets them.
    pub fn take_lines(&self) -> Vec<String> {
        self.take_log().iter().map(Seen::line).collect()
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).unwrap())
        };
        let mut st = self.state.lock().unwrap();
        st.log.push(Seen {
            method: method.clone(),
            uri: uri.clone(),
            body: body.clone(),
        });
        let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
        // dryRun=All on the URI (create, patch) or in DeleteOptions (delete).
        let dry_run = query.split('&').any(|kv| kv == "dryRun=All")
            || body
                .as_ref()
                .and_then(|b| b["dryRun"].as_array())
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        let path = path.to_string();
        if st.forbidden.iter().any(|p| path.starts_with(p.as_str()))
            || method != Method::GET
                && st
                    .forbidden_writes
                    .iter()
                    .any(|p| path.starts_with(p.as_str()))
        {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("{method} {path} is forbidden"),
            );
        }
        match method {
            Method::GET => {
                if let Some(o) = st.objects.get(&path) {
                    return ok(StatusCode::OK, o.clone());
                }
                let prefix = format!("{path}/");
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                    .map(|(_, o)| o.clone())
                    .collect();
                if is_collection(&path) {
                    ok(
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                } else {
                    status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{path} not found"),
                    )
                }
            }
            Method::POST => {
                let mut object = body.unwrap_or(Value::Null);
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let name = if name.is_empty() {
                    st.next_uid += 1;
                    format!("generated-{}", st.next_uid)
                } else {
                    name
                };
                let at = format!("{path}/{name}");
                if st.objects.contains_key(&at) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{at} already exists"),
                    );
                }
                st.next_uid += 1;
                object["metadata"]["uid"] = json!(format!("uid-{}", st.next_uid));
                if let Some(manager) = query_value(query, "fieldManager") {
                    object["metadata"]["managedFields"] =
                        json!([{"manager": manager, "operation": "Update"}]);
                }
                if !dry_run {
                    st.resource_version += 1;
                    object["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                    st.objects.insert(at, object.clone());
                }
                ok(StatusCode::CREATED, object)
            }
            Method::DELETE => {
                if !st.objects.contains_key(&path) {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{path} not found"),
                    );
                }
                if !dry_run {
                    st.objects.remove(&path);
                }
                ok(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                )
            }
            Method::PATCH => {
                let (object_path, sub) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_string(), true),
                    None => (path.clone(), false),
                };
                if content_type.contains("apply-patch") && !sub {
                    let manager = query_value(query, "fieldManager").unwrap_or_default();
                    let patch = body.unwrap_or(Value::Null);
                    return apply(&mut st, &object_path, patch, &manager, dry_run);
                }
                let Some(mut object) = st.objects.get(&object_path).cloned() else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{path} not found"),
                    );
                };
                let patch = body.unwrap_or(Value::Null);
                if sub {
                    object["status"] = patch["status"].clone();
                } else if content_type.contains("json-patch") {
                    // The finalizer helper: add or remove one finalizer.
                    for op in patch.as_array().into_iter().flatten() {
                        match op["op"].as_str() {
                            Some("remove") => {
                                object["metadata"]["finalizers"] = json!([]);
                            }
                            Some("add") => {
                                let v = &op["value"];
                                let list = if v.is_array() { v.clone() } else { json!([v]) };
                                object["metadata"]["finalizers"] = list;
                            }
                            _ => {}
                        }
                    }
                } else if content_type.contains("merge-patch") {
                    // Events of a series are merge-patched.
                    merge(&mut object, &patch);
                } else {
                    panic!("unexpected patch {content_type} {path}");
                }
                if !dry_run {
                    st.resource_version += 1;
                    object["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                    st.objects.insert(object_path, object.clone());
                }
                ok(StatusCode::OK, object)
            }
            other => panic!("unexpected {other} {uri}"),
        }
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// Server-side apply, as far as the module docs say.
fn apply(st: &mut State, path: &str, patch: Value, manager: &str, dry_run: bool) -> Response<Body> {
    let existing = st.objects.get(path).cloned();
    let wanted_rv = patch["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    let mut object = match existing {
        Some(o) => {
            if wanted_rv.is_some()
                && wanted_rv.as_deref() != o["metadata"]["resourceVersion"].as_str()
            {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!("{path}: the object has been modified"),
                );
            }
            o
        }
        None => {
            if wanted_rv.is_some() {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                );
            }
            st.next_uid += 1;
            let mut o = patch.clone();
            o["metadata"] = json!({
                "name": patch["metadata"]["name"],
                "uid": format!("uid-{}", st.next_uid),
            });
            if !patch["metadata"]["namespace"].is_null() {
                o["metadata"]["namespace"] = patch["metadata"]["namespace"].clone();
            }
            o
        }
    };
    for key in ["labels", "annotations"] {
        if let Some(map) = patch["metadata"][key].as_object() {
            for (k, v) in map {
                object["metadata"][key][k] = v.clone();
            }
        }
    }
    if !patch["spec"].is_null() {
        object["spec"] = patch["spec"].clone();
    }
    let mut managers: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !managers
        .iter()
        .any(|m| m["manager"] == manager && m["operation"] == "Apply")
    {
        managers.push(json!({"manager": manager, "operation": "Apply"}));
    }
    object["metadata"]["managedFields"] = json!(managers);
    if !dry_run {
        st.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        st.objects.insert(path.to_string(), object.clone());
    }
    ok(StatusCode::OK, object)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// `/apis/g/v/namespaces/ns/plural` or `/api/v1/namespaces/ns/plural` or a
/// cluster-scoped `/apis/g/v/plural`.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.first() {
        Some(&"api") => matches!(parts.len(), 3 | 5),
        Some(&"apis") => matches!(parts.len(), 4 | 6),
        _ => false,
    }
}

fn ok(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    ok(
        code,
        json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

// === objects ===

pub fn deployment(ns: &str, name: &str, selector: Value) -> (String, Value) {
    (
        format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": selector,
                "template": {
                    "metadata": {"labels": {"app": name, "tier": "back"}},
                    "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
                }
            }
        }),
    )
}

pub fn statefulset(ns: &str, name: &str) -> (String, Value) {
    (
        format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{name}"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "serviceName": name,
                "selector": {"matchLabels": {"app": name, "kind": "sts"}},
                "template": {
                    "metadata": {"labels": {"app": name, "kind": "sts"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}
                }
            }
        }),
    )
}

pub fn netpol_path(ns: &str, name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}")
}

pub fn allow_ingress_from_web(ns: &str) -> (String, Value) {
    (
        netpol_path(ns, "api-from-web"),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "api-from-web", "namespace": ns},
            "spec": {
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]
            }
        }),
    )
}

pub fn quarantine_path(ns: &str, name: &str) -> String {
    format!("/apis/kubefence.dev/v1alpha1/namespaces/{ns}/quarantines/{name}")
}
