//! An in-process fake API server for tests and benchmarks (feature `fake`).
//!
//! A `kube::Client` over a tower-test mock service, answered by a task that
//! keeps NetworkPolicies in memory and behaves like the API server for the
//! calls the operator makes: server-side apply (`PATCH … ?fieldManager=…&
//! force=true`, content type `application/apply-patch+yaml`), delete with a
//! uid precondition, get, and events (create, patch). Every request is
//! recorded (method, path and query, body) so tests assert exactly what was
//! sent, as the ApiServerVerifier of kube-rs's controller-rs does; writes
//! are echoed to subscribers as watch events, as a real watch would.
//!
//! Latency: with [`FakeApi::with_latency`] every answer is delayed.
//!
//! Faults: with [`FakeApi::with_faults`] a seeded share of requests fails
//! with 409, 429 or 500 (nothing written), or times out (for writes, after
//! the write is done: the worst case, the client cannot know it succeeded).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::client::Body;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: Method,
    /// Path and query, as sent.
    pub uri: String,
    pub body: Option<Value>,
    /// Answered with an injected fault.
    pub faulted: bool,
}

impl Recorded {
    /// A write to the API (anything but GET).
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// A write of a NetworkPolicy: a create (POST to the collection) or a
    /// write of one object.
    pub fn is_policy_write(&self) -> bool {
        self.is_write() && self.uri.contains("/networkpolicies")
    }

    /// The policy a request is about: the last path segment, or, for a
    /// create, the name in the body.
    pub fn policy_name(&self) -> String {
        let path = self.uri.split('?').next().unwrap_or_default();
        match path.rsplit('/').next().unwrap_or_default() {
            "networkpolicies" => self
                .body
                .as_ref()
                .and_then(|b| b.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name => name.to_string(),
        }
    }

    pub fn is_event(&self) -> bool {
        self.uri.contains("/apis/events.k8s.io/")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Conflict,
    TooMany,
    Internal,
    Timeout,
}

#[derive(Default)]
struct Inner {
    policies: BTreeMap<(String, String), NetworkPolicy>,
    requests: Vec<Recorded>,
    subscribers: Vec<mpsc::UnboundedSender<Event<NetworkPolicy>>>,
    next_uid: u64,
    resource_version: u64,
    /// (share of failing calls, xorshift state)
    faults: Option<(f64, u64)>,
    /// coordination.k8s.io Leases, as JSON.
    leases: BTreeMap<(String, String), Value>,
    /// Which field manager owns each Lease spec field (server-side apply
    /// conflicts are what keeps two replicas from both taking a Lease).
    lease_owners: BTreeMap<(String, String, String), String>,
    /// Every answer waits this long (a slow API server); requests are then
    /// answered concurrently, as a real server does.
    latency: Option<Duration>,
    /// ConfigMaps, as JSON, served by name (a list with a
    /// `metadata.name` field selector).
    config_maps: BTreeMap<(String, String), Value>,
}

impl Inner {
    fn roll(&mut self) -> Option<Fault> {
        let (rate, state) = self.faults.as_mut()?;
        // xorshift64: deterministic for a seed, no dependency.
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        let r = (x >> 11) as f64 / (1u64 << 53) as f64;
        if r >= *rate {
            return None;
        }
        Some(match x % 4 {
            0 => Fault::Conflict,
            1 => Fault::TooMany,
            2 => Fault::Internal,
            _ => Fault::Timeout,
        })
    }

    fn publish(&mut self, event: Event<NetworkPolicy>) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn stamp(&mut self, np: &mut NetworkPolicy, uid: Option<String>) {
        self.resource_version += 1;
        np.metadata.resource_version = Some(self.resource_version.to_string());
        np.metadata.uid = Some(uid.unwrap_or_else(|| {
            self.next_uid += 1;
            format!("uid-{}", self.next_uid)
        }));
    }
}

/// Adds `manager` (with `operation`) to the object's managedFields, as the
/// API server records who wrote an object (field sets are not modelled).
fn record_manager(
    np: &mut NetworkPolicy,
    before: Option<&NetworkPolicy>,
    manager: &str,
    operation: &str,
) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    let mut entries = before
        .and_then(|b| b.metadata.managed_fields.clone())
        .unwrap_or_default();
    entries.retain(|e| {
        !(e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(operation))
    });
    entries.push(ManagedFieldsEntry {
        manager: Some(manager.to_string()),
        operation: Some(operation.to_string()),
        api_version: Some("networking.k8s.io/v1".into()),
        ..ManagedFieldsEntry::default()
    });
    np.metadata.managed_fields = Some(entries);
}

impl Inner {
    /// GET, POST, and PATCH (server-side apply with field ownership, or a
    /// strategic merge) of Leases: what kube-lease-manager uses.
    fn lease(
        &mut self,
        method: &Method,
        ns: &str,
        name: Option<&str>,
        body: Option<Value>,
        content_type: &str,
        query: &str,
    ) -> Response<Body> {
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .map(String::from)
        };
        match (method, name) {
            (&Method::GET, Some(name)) => match self.leases.get(&(ns.into(), name.into())) {
                Some(l) => ok(StatusCode::OK, l),
                None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
            },
            (&Method::POST, None) => {
                let mut lease = body.unwrap_or(Value::Null);
                let name = lease
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let key = (ns.to_string(), name);
                if self.leases.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists", "already exists");
                }
                self.resource_version += 1;
                lease["metadata"]["namespace"] = json!(ns);
                lease["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
                self.leases.insert(key, lease.clone());
                ok(StatusCode::CREATED, &lease)
            }
            (&Method::PATCH, Some(name)) => {
                let key = (ns.to_string(), name.to_string());
                let manager = param("fieldManager").unwrap_or_default();
                let force = param("force").as_deref() == Some("true");
                let apply = content_type.starts_with("application/apply-patch");
                let Some(lease) = self.leases.get(&key).cloned() else {
                    return status(StatusCode::NOT_FOUND, "NotFound", "not found");
                };
                let patch = body
                    .as_ref()
                    .and_then(|b| b.get("spec"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if apply && !force {
                    for (field, value) in &patch {
                        let owner =
                            self.lease_owners
                                .get(&(key.0.clone(), key.1.clone(), field.clone()));
                        let current = lease.pointer(&format!("/spec/{field}"));
                        if owner.is_some_and(|o| *o != manager) && current != Some(value) {
                            return status(
                                StatusCode::CONFLICT,
                                "Conflict",
                                &format!(
                                    "Apply failed with 1 conflict: conflict with another manager: .spec.{field}"
                                ),
                            );
                        }
                    }
                }
                let mut lease = lease;
                if !lease["spec"].is_object() {
                    lease["spec"] = json!({});
                }
                for (field, value) in patch {
                    let owner_key = (key.0.clone(), key.1.clone(), field.clone());
                    if value.is_null() {
                        if let Some(spec) = lease["spec"].as_object_mut() {
                            spec.remove(&field);
                        }
                        self.lease_owners.remove(&owner_key);
                    } else {
                        lease["spec"][&field] = value;
                        self.lease_owners.insert(owner_key, manager.clone());
                    }
                }
                self.resource_version += 1;
                lease["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
                self.leases.insert(key, lease.clone());
                ok(StatusCode::OK, &lease)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method"),
        }
    }
}

/// The fake API server's state, shared with the test.
#[derive(Clone, Default)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    let mut r = Response::new(Body::from(body.to_string().into_bytes()));
    *r.status_mut() = code;
    r
}

/// `%2F` → `/` and so on (label selectors in query strings).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ok(code: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = code;
    r
}

impl FakeApi {
    /// A fake API server and a client whose every request it answers.
    pub fn start() -> (Client, FakeApi) {
        let fake = FakeApi::default();
        (fake.client(), fake)
    }

    /// Another client of the same fake server (a second replica).
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let latency = server.lock().latency;
                if let Some(latency) = latency {
                    let server = server.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(latency).await;
                        let (response, hang) = server.answer(request).await;
                        if hang {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            drop(send);
                        } else {
                            send.send_response(response);
                        }
                    });
                    continue;
                }
                let (response, hang) = server.answer(request).await;
                if hang {
                    // No answer until long after any client timeout.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(send);
                    });
                } else {
                    send.send_response(response);
                }
            }
        });
        Client::new(service, "default")
    }

    /// The holder of a Lease, if any.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lock()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|l| {
                l.pointer("/spec/holderIdentity")?
                    .as_str()
                    .map(String::from)
            })
    }

    /// Fails `rate` (0..1) of the requests from now on, chosen by `seed`.
    pub fn with_faults(self, rate: f64, seed: u64) -> Self {
        self.lock().faults = Some((rate, seed.max(1)));
        self
    }

    /// Stores a ConfigMap (no watch event: tests feed those themselves).
    pub fn put_config_map(&self, cm: &k8s_openapi::api::core::v1::ConfigMap) {
        let key = (
            cm.metadata.namespace.clone().unwrap_or_default(),
            cm.metadata.name.clone().unwrap_or_default(),
        );
        let value = serde_json::to_value(cm).unwrap_or(Value::Null);
        self.lock().config_maps.insert(key, value);
    }

    /// Answers every request after `latency` (a slow API server).
    pub fn with_latency(self, latency: Duration) -> Self {
        self.lock().latency = Some(latency);
        self
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.lock().faults = None;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Requests other than GET, faulted ones included.
    pub fn writes(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.is_write()).count()
    }

    /// The stored policies.
    pub fn policies(&self) -> BTreeMap<(String, String), NetworkPolicy> {
        self.lock().policies.clone()
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        self.lock()
            .policies
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Stores a policy as someone else would (a hand edit or a foreign
    /// policy; recorded as manager `kubectl-edit` unless the policy lists
    /// its managedFields) and tells the watchers.
    pub fn put(&self, mut np: NetworkPolicy) {
        let mut inner = self.lock();
        let key = (
            np.metadata.namespace.clone().unwrap_or_default(),
            np.metadata.name.clone().unwrap_or_default(),
        );
        let before = inner.policies.get(&key).cloned();
        let uid = before.as_ref().and_then(|p| p.metadata.uid.clone());
        if np.metadata.managed_fields.is_none() {
            record_manager(&mut np, before.as_ref(), "kubectl-edit", "Update");
        }
        inner.stamp(&mut np, uid);
        inner.policies.insert(key, np.clone());
        inner.publish(Event::Apply(np));
    }

    /// Deletes a policy as someone else would, and tells the watchers.
    pub fn remove(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        let mut inner = self.lock();
        let gone = inner
            .policies
            .remove(&(namespace.to_string(), name.to_string()))?;
        inner.publish(Event::Delete(gone.clone()));
        Some(gone)
    }

    /// A NetworkPolicy watch: the current list, then every change.
    pub fn policy_watch(
        &self,
    ) -> impl Stream<Item = Result<Event<NetworkPolicy>, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let listed: Vec<NetworkPolicy> = {
            let mut inner = self.lock();
            inner.subscribers.push(tx);
            inner.policies.values().cloned().collect()
        };
        let initial = std::iter::once(Event::Init)
            .chain(listed.into_iter().map(Event::InitApply))
            .chain(std::iter::once(Event::InitDone));
        let live = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        stream::iter(initial).chain(live).map(Ok)
    }

    async fn answer(&self, request: Request<Body>) -> (Response<Body>, bool) {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let mut inner = self.lock();
        let fault = inner.roll();
        inner.requests.push(Recorded {
            method: parts.method.clone(),
            uri: uri.clone(),
            body: body.clone(),
            faulted: fault.is_some(),
        });
        match fault {
            Some(Fault::Conflict) => {
                return (
                    status(StatusCode::CONFLICT, "Conflict", "injected conflict"),
                    false,
                );
            }
            Some(Fault::TooMany) => {
                return (
                    status(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequests",
                        "injected throttling",
                    ),
                    false,
                );
            }
            Some(Fault::Internal) => {
                return (
                    status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        "injected failure",
                    ),
                    false,
                );
            }
            Some(Fault::Timeout) | None => {}
        }
        let hang = fault == Some(Fault::Timeout);
        let path = parts.uri.path();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let response = match (&parts.method, segments.as_slice()) {
            (
                &Method::POST,
                [
                    "apis",
                    "networking.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "networkpolicies",
                ],
            ) => {
                let Some(mut np) = body
                    .clone()
                    .and_then(|b| serde_json::from_value::<NetworkPolicy>(b).ok())
                else {
                    return (
                        status(StatusCode::BAD_REQUEST, "BadRequest", "not a NetworkPolicy"),
                        hang,
                    );
                };
                let key = (ns.to_string(), np.metadata.name.clone().unwrap_or_default());
                if inner.policies.contains_key(&key) {
                    return (
                        status(
                            StatusCode::CONFLICT,
                            "AlreadyExists",
                            &format!("networkpolicies \"{}\" already exists", key.1),
                        ),
                        hang,
                    );
                }
                let manager = parts
                    .uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                    .unwrap_or_default()
                    .to_string();
                record_manager(&mut np, None, &manager, "Update");
                inner.stamp(&mut np, None);
                inner.policies.insert(key, np.clone());
                inner.publish(Event::Apply(np.clone()));
                ok(StatusCode::CREATED, &np)
            }
            (
                m,
                [
                    "apis",
                    "networking.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "networkpolicies",
                    name,
                ],
            ) => {
                let key = (ns.to_string(), name.to_string());
                match *m {
                    Method::GET => match inner.policies.get(&key) {
                        Some(np) => ok(StatusCode::OK, np),
                        None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
                    },
                    Method::PATCH => {
                        let query = parts.uri.query().unwrap_or_default();
                        let force = query.split('&').any(|kv| kv == "force=true");
                        let manager = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("fieldManager="))
                            .unwrap_or_default()
                            .to_string();
                        // An apply of the bare identity: the manager gives
                        // back its fields (field sets are not modelled: its
                        // labels go, the rest stays with the others).
                        if body.as_ref().is_some_and(|b| b.get("spec").is_none()) {
                            if let Some(mut np) = inner.policies.get(&key).cloned() {
                                if let Some(entries) = np.metadata.managed_fields.as_mut() {
                                    entries
                                        .retain(|e| e.manager.as_deref() != Some(manager.as_str()));
                                }
                                if let Some(labels) = np.metadata.labels.as_mut() {
                                    labels.retain(|k, _| {
                                        !k.starts_with("kubefence.dev/")
                                            && k != "app.kubernetes.io/managed-by"
                                    });
                                }
                                let uid = np.metadata.uid.clone();
                                inner.stamp(&mut np, uid);
                                inner.policies.insert(key.clone(), np.clone());
                                inner.publish(Event::Apply(np.clone()));
                                return (ok(StatusCode::OK, &np), hang);
                            }
                            return (status(StatusCode::NOT_FOUND, "NotFound", "not found"), hang);
                        }
                        let Some(mut np) = body
                            .clone()
                            .and_then(|b| serde_json::from_value::<NetworkPolicy>(b).ok())
                        else {
                            return (
                                status(
                                    StatusCode::BAD_REQUEST,
                                    "BadRequest",
                                    "not a NetworkPolicy",
                                ),
                                hang,
                            );
                        };
                        let existing = inner.policies.get(&key).cloned();
                        // A resourceVersion in the body is a precondition,
                        // as on a real API server.
                        if let Some(want) = np.metadata.resource_version.clone() {
                            let current = existing
                                .as_ref()
                                .and_then(|o| o.metadata.resource_version.clone());
                            if current.as_deref() != Some(want.as_str()) {
                                return (
                                    status(
                                        StatusCode::CONFLICT,
                                        "Conflict",
                                        "the object has been modified; please apply your changes to the latest version and try again",
                                    ),
                                    hang,
                                );
                            }
                        }
                        // Without force, a field another manager set to
                        // another value is a conflict (the spec, here).
                        if let Some(old) = existing.as_ref()
                            && !force
                            && old
                                .metadata
                                .managed_fields
                                .iter()
                                .flatten()
                                .any(|e| e.manager.as_deref() != Some(manager.as_str()))
                            && old.spec != np.spec
                        {
                            return (
                                status(
                                    StatusCode::CONFLICT,
                                    "Conflict",
                                    "Apply failed with 1 conflict: conflict with another manager: .spec",
                                ),
                                hang,
                            );
                        }
                        let created = existing.is_none();
                        if let Some(old) = existing {
                            // Fields set by others survive; ours are replaced.
                            let mut labels = old.metadata.labels.clone().unwrap_or_default();
                            labels.extend(np.metadata.labels.take().unwrap_or_default());
                            np.metadata.labels = Some(labels);
                            let mut ann = old.metadata.annotations.clone().unwrap_or_default();
                            ann.extend(np.metadata.annotations.take().unwrap_or_default());
                            np.metadata.annotations = (!ann.is_empty()).then_some(ann);
                        }
                        let before = inner.policies.get(&key).cloned();
                        let manager = parts
                            .uri
                            .query()
                            .unwrap_or_default()
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("fieldManager="))
                            .unwrap_or_default()
                            .to_string();
                        record_manager(&mut np, before.as_ref(), &manager, "Apply");
                        let uid = before.as_ref().and_then(|p| p.metadata.uid.clone());
                        inner.stamp(&mut np, uid);
                        inner.policies.insert(key, np.clone());
                        inner.publish(Event::Apply(np.clone()));
                        let code = if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        };
                        ok(code, &np)
                    }
                    Method::DELETE => {
                        let want_uid = body
                            .as_ref()
                            .and_then(|b| b.pointer("/preconditions/uid"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        match inner.policies.get(&key).cloned() {
                            None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
                            Some(np) if want_uid.is_some() && np.metadata.uid != want_uid => {
                                status(
                                    StatusCode::CONFLICT,
                                    "Conflict",
                                    "Precondition failed: UID in precondition does not match",
                                )
                            }
                            Some(np) => {
                                inner.policies.remove(&key);
                                inner.publish(Event::Delete(np.clone()));
                                ok(StatusCode::OK, &np)
                            }
                        }
                    }
                    _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method"),
                }
            }
            (
                m,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "leases",
                    rest @ ..,
                ],
            ) => {
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let query = parts.uri.query().unwrap_or_default().to_string();
                inner.lease(
                    m,
                    ns,
                    rest.first().copied(),
                    body.clone(),
                    &content_type,
                    &query,
                )
            }
            // A cluster-wide list (with an equality label selector), or a
            // watch, which stays open without events.
            (&Method::GET, ["apis", "networking.k8s.io", "v1", "networkpolicies"]) => {
                let query = parts.uri.query().unwrap_or_default();
                if query
                    .split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1")
                {
                    return (ok(StatusCode::OK, &Value::Null), true);
                }
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="))
                    .map(percent_decode)
                    .unwrap_or_default();
                let wanted: Vec<(String, String)> = selector
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let items: Vec<&NetworkPolicy> = inner
                    .policies
                    .values()
                    .filter(|p| {
                        let labels = p.metadata.labels.clone().unwrap_or_default();
                        wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
                    .collect();
                let list = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
                    "metadata": {"resourceVersion": inner.resource_version.to_string()}, "items": items});
                ok(StatusCode::OK, &list)
            }
            (&Method::GET, ["api", "v1", "namespaces", ns, "configmaps"]) => {
                let query = parts.uri.query().unwrap_or_default();
                let name = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldSelector="))
                    .map(percent_decode)
                    .and_then(|f| f.strip_prefix("metadata.name=").map(String::from));
                let items: Vec<&Value> = inner
                    .config_maps
                    .iter()
                    .filter(|((n, m), _)| n == ns && name.as_ref().is_none_or(|x| x == m))
                    .map(|(_, v)| v)
                    .collect();
                let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": inner.resource_version.to_string()}, "items": items});
                ok(StatusCode::OK, &list)
            }
            (&Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"])
            | (&Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]) => {
                ok(StatusCode::CREATED, &body.unwrap_or(Value::Null))
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the fake does not serve this",
            ),
        };
        (response, hang)
    }
}
