//! The one in-process fake API server for tests and benchmarks (feature
//! `fake`): the fault-injection half of the test suite (the real
//! kube-apiserver of `tests/e2e.rs` is the other).
//!
//! A `kube::Client` over a tower-test mock service, answered by a task that
//! keeps objects of any kind in memory as JSON, keyed by their API path
//! (`/apis/apps/v1/namespaces/shop/deployments/api`), and behaves like the
//! API server for the calls the operator makes (the kube-rs controller-rs
//! ApiServerVerifier pattern, with state):
//!
//! - get and list (namespaced or across namespaces, with an equality label
//!   selector); a watch request stays open without events (controllers in
//!   tests read [`FakeApi::policy_watch`] instead);
//! - create (POST; AlreadyExists is 409; the field manager recorded as an
//!   Update), delete (uid precondition, 404 when missing);
//! - server-side apply as far as kubefence relies on it: creates a missing
//!   object or replaces the fields it sends (labels and annotations key by
//!   key, `spec` whole), refuses a `metadata.resourceVersion` that is not
//!   the stored one (409), conflicts (409) without `force` when another
//!   manager holds a spec it would change, records the manager in
//!   `managedFields` (operation Apply), and an apply of the bare identity
//!   gives back the manager's fields; the status subresource;
//! - JSON patches (finalizers, with `test`) and merge patches;
//! - `dryRun=All` (query or DeleteOptions): validated, nothing persisted;
//! - Leases with field ownership (what kube-lease-manager does);
//! - Events are accepted and not kept.
//!
//! Every write bumps `resourceVersion`; every NetworkPolicy change is
//! echoed to the [`FakeApi::policy_watch`] subscribers, as a real watch
//! would. Every request is recorded (method, path and query, body) so tests
//! assert exactly what was sent, and the absence of any.
//!
//! Faults: [`FakeApi::with_faults`] fails a seeded share of requests with
//! 409, 429 or 500 (nothing written), or times out (for writes, after the
//! write is done: the worst case, the client cannot know it succeeded);
//! [`FakeApi::forbid`] and [`FakeApi::forbid_writes`] answer 403 under a
//! path, as RBAC would.
//!
//! One request goes through named phases: [`Incoming::read`] (parse),
//! `Inner::record` (log, roll a fault), `Inner::authorize` (403),
//! `Inner::route` (leases, events, objects), and per verb `list`, `create`,
//! `patch` (`apply`, `patch_status`, `json_patch`, `merge_patch`), `delete`.

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

    /// `"POST /apis/…?dryRun=All&…"`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
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
    /// Object path (no query) → object.
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    subscribers: Vec<mpsc::UnboundedSender<Event<NetworkPolicy>>>,
    next_uid: u64,
    resource_version: u64,
    /// (share of failing calls, xorshift state)
    faults: Option<(f64, u64)>,
    /// Paths under which writes answer 403 (a default install's RBAC).
    forbidden_writes: Vec<String>,
    /// Paths under which every request answers 403.
    forbidden: Vec<String>,
    /// Paths under which no request is ever answered.
    hanging: Vec<String>,
    /// Paths the server does not serve (a CRD not installed): 404.
    absent: Vec<String>,
    /// coordination.k8s.io Leases, as JSON.
    leases: BTreeMap<(String, String), Value>,
    /// Which field manager owns each Lease spec field (server-side apply
    /// conflicts are what keeps two replicas from both taking a Lease).
    lease_owners: BTreeMap<(String, String, String), String>,
    /// Every answer waits this long (a slow API server); requests are then
    /// answered concurrently, as a real server does.
    latency: Option<Duration>,
}

/// One request, parsed.
struct Incoming {
    method: Method,
    /// Path and query, as sent.
    uri: String,
    path: String,
    query: String,
    content_type: String,
    body: Option<Value>,
}

impl Incoming {
    async fn read(request: Request<Body>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        Self {
            method: parts.method.clone(),
            uri,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(&bytes).ok(),
        }
    }

    fn param(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .map(percent_decode)
    }

    /// `dryRun=All` on the URI (create, patch) or in DeleteOptions (delete).
    fn dry_run(&self) -> bool {
        self.param("dryRun").as_deref() == Some("All")
            || self
                .body
                .as_ref()
                .and_then(|b| b["dryRun"].as_array())
                .is_some_and(|a| a.iter().any(|v| v == "All"))
    }

    fn is_watch(&self) -> bool {
        matches!(self.param("watch").as_deref(), Some("true" | "1"))
    }
}

/// Where an API path points.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Location {
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Location {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (prefix, rest) = match parts.first() {
            Some(&"api") if parts.len() >= 3 => (format!("/api/{}", parts[1]), &parts[2..]),
            Some(&"apis") if parts.len() >= 4 => {
                (format!("/apis/{}/{}", parts[1], parts[2]), &parts[3..])
            }
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            rest => (None, rest),
        };
        let (plural, name, subresource) = match rest {
            [plural] => (plural, None, None),
            [plural, name] => (plural, Some(name.to_string()), None),
            [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        Some(Self {
            prefix,
            namespace,
            plural: plural.to_string(),
            name,
            subresource,
        })
    }

    fn collection(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/namespaces/{ns}/{}", self.prefix, self.plural),
            None => format!("{}/{}", self.prefix, self.plural),
        }
    }

    fn object_path(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }

    fn is_network_policy(&self) -> bool {
        self.prefix == "/apis/networking.k8s.io/v1" && self.plural == "networkpolicies"
    }
}

/// The API path of an object (from its apiVersion, kind, namespace and
/// name), for [`FakeApi::add`].
fn path_of(object: &Value) -> Option<String> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    let name = object["metadata"]["name"].as_str()?;
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    // Every kind the tests store has a regular plural.
    let lower = kind.to_ascii_lowercase();
    let plural = if lower.ends_with("policy") {
        format!("{}ies", &lower[..lower.len() - 1])
    } else {
        format!("{lower}s")
    };
    Some(match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{prefix}/{plural}/{name}"),
    })
}

impl Inner {
    /// Phase 2: logs the request and rolls an injected fault.
    fn record(&mut self, req: &Incoming) -> Option<Fault> {
        let fault = self.roll();
        self.requests.push(Recorded {
            method: req.method.clone(),
            uri: req.uri.clone(),
            body: req.body.clone(),
            faulted: fault.is_some(),
        });
        fault
    }

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

    /// Phase 3: RBAC, as configured by the test (and kinds not served).
    fn authorize(&self, req: &Incoming) -> Option<Response<Body>> {
        let under = |prefixes: &[String]| prefixes.iter().any(|p| req.path.starts_with(p.as_str()));
        let refused =
            under(&self.forbidden) || (req.method != Method::GET && under(&self.forbidden_writes));
        if self.absent.iter().any(|p| req.path.starts_with(p.as_str())) {
            return Some(not_found(&req.path));
        }
        refused.then(|| {
            status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("{} {} is forbidden", req.method, req.path),
            )
        })
    }

    /// Phase 4: leases, events, then objects by verb.
    fn route(&mut self, req: &Incoming) -> Response<Body> {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        if let [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            rest @ ..,
        ] = segments.as_slice()
        {
            return self.lease(
                &req.method,
                ns,
                rest.first().copied(),
                req.body.clone(),
                &req.content_type,
                &req.query,
            );
        }
        if let ["apis", "events.k8s.io", "v1", "namespaces", _, "events", ..] = segments.as_slice()
            && matches!(req.method, Method::POST | Method::PATCH)
        {
            // Accepted, not kept: nothing reads events back.
            return ok(
                StatusCode::CREATED,
                &req.body.clone().unwrap_or(Value::Null),
            );
        }
        let Some(loc) = Location::parse(&req.path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the fake does not serve this",
            );
        };
        match (&req.method, loc.name.clone()) {
            (&Method::GET, None) => self.list(&loc, req),
            (&Method::GET, Some(name)) => match self.objects.get(&loc.object_path(&name)) {
                Some(o) if loc.subresource.is_none() => ok(StatusCode::OK, o),
                _ => not_found(&req.path),
            },
            (&Method::POST, None) => self.create(&loc, req),
            (&Method::PATCH, Some(name)) => self.patch(&loc, &name, req),
            (&Method::DELETE, Some(name)) => self.delete(&loc, &name, req),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method"),
        }
    }

    /// A list of the collection (every namespace when the path names
    /// none), filtered by an equality label selector and a
    /// `metadata.name` field selector; a watch stays open without events.
    fn list(&mut self, loc: &Location, req: &Incoming) -> Response<Body> {
        if req.is_watch() {
            return ok(StatusCode::OK, &Value::Null);
        }
        let wanted: Vec<(String, String)> = req
            .param("labelSelector")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let named = req
            .param("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name=").map(String::from));
        let items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|(path, _)| {
                Location::parse(path).is_some_and(|at| {
                    at.prefix == loc.prefix
                        && at.plural == loc.plural
                        && at.subresource.is_none()
                        && (loc.namespace.is_none() || at.namespace == loc.namespace)
                })
            })
            .map(|(_, o)| o)
            .filter(|o| {
                wanted
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()))
                    && named
                        .as_deref()
                        .is_none_or(|n| o["metadata"]["name"].as_str() == Some(n))
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List",
            "metadata": {"resourceVersion": self.resource_version.to_string()}, "items": items});
        ok(StatusCode::OK, &list)
    }

    fn create(&mut self, loc: &Location, req: &Incoming) -> Response<Body> {
        let mut object = req.body.clone().unwrap_or(Value::Null);
        let name = match object["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                self.next_uid += 1;
                format!("generated-{}", self.next_uid)
            }
        };
        let path = loc.object_path(&name);
        if self.objects.contains_key(&path) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", loc.plural),
            );
        }
        object["metadata"]["name"] = json!(name);
        if let Some(ns) = &loc.namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        record_manager(
            &mut object,
            &req.param("fieldManager").unwrap_or_default(),
            "Update",
        );
        if req.dry_run() {
            self.next_uid += 1;
            object["metadata"]["uid"] = json!(format!("uid-{}", self.next_uid));
        } else {
            object = self.store(&path, object);
        }
        ok(StatusCode::CREATED, &object)
    }

    fn patch(&mut self, loc: &Location, name: &str, req: &Incoming) -> Response<Body> {
        let path = loc.object_path(name);
        let patch = req.body.clone().unwrap_or(Value::Null);
        if loc.subresource.as_deref() == Some("status") {
            return self.patch_status(&path, &patch, req.dry_run());
        }
        if req.content_type.contains("apply-patch") {
            let manager = req.param("fieldManager").unwrap_or_default();
            let force = req.param("force").as_deref() == Some("true");
            return self.apply(loc, &path, patch, &manager, force, req.dry_run());
        }
        let Some(mut object) = self.objects.get(&path).cloned() else {
            return not_found(&path);
        };
        if req.content_type.contains("json-patch") {
            // The finalizers: `test` first, so a concurrent change fails.
            // As the API server's JSON patch library does, a test for null
            // passes on an absent field (RFC 6902 would fail it).
            let ops: Vec<Value> = patch
                .as_array()
                .into_iter()
                .flatten()
                .filter(|op| {
                    !(op["op"] == "test"
                        && op["value"].is_null()
                        && op["path"]
                            .as_str()
                            .is_some_and(|p| object.pointer(p).is_none()))
                })
                .cloned()
                .collect();
            let ops: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                Ok(p) => p,
                Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
            };
            if let Err(e) = json_patch::patch(&mut object, &ops) {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
            }
        } else if req.content_type.contains("merge-patch") {
            json_patch::merge(&mut object, &patch);
        } else {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &req.content_type,
            );
        }
        if !req.dry_run() {
            object = self.store(&path, object);
        }
        ok(StatusCode::OK, &object)
    }

    /// The status subresource: the status is replaced, nothing else.
    fn patch_status(&mut self, path: &str, patch: &Value, dry_run: bool) -> Response<Body> {
        let Some(mut object) = self.objects.get(path).cloned() else {
            return not_found(path);
        };
        object["status"] = patch["status"].clone();
        if !dry_run {
            object = self.store(path, object);
        }
        ok(StatusCode::OK, &object)
    }

    /// Server-side apply, as far as the module docs say.
    fn apply(
        &mut self,
        loc: &Location,
        path: &str,
        patch: Value,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Response<Body> {
        let existing = self.objects.get(path).cloned();
        // A resourceVersion in the body is a precondition.
        if let Some(want) = patch["metadata"]["resourceVersion"].as_str() {
            match &existing {
                None => return not_found(path),
                Some(o) if o["metadata"]["resourceVersion"].as_str() != Some(want) => {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                Some(_) => {}
            }
        }
        let fields: Vec<&String> = patch
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            .collect();
        if fields.is_empty() {
            // The bare identity: the manager gives back its fields (field
            // sets are not modelled: kubefence's labels go, the rest stays
            // with the others).
            let Some(mut object) = existing else {
                return not_found(path);
            };
            if let Some(entries) = object["metadata"]["managedFields"].as_array_mut() {
                entries.retain(|e| e["manager"] != manager);
            }
            if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
                labels.retain(|k, _| {
                    !k.starts_with("kubefence.dev/") && k != "app.kubernetes.io/managed-by"
                });
            }
            if !dry_run {
                object = self.store(path, object);
            }
            return ok(StatusCode::OK, &object);
        }
        // Without force, a field another manager set to another value is
        // a conflict (the spec, here).
        if let Some(old) = &existing
            && !force
            && old["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["manager"] != manager)
            && fields.iter().any(|f| old[f.as_str()] != patch[f.as_str()])
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "Apply failed with 1 conflict: conflict with another manager: .spec",
            );
        }
        let created = existing.is_none();
        let mut object = existing.unwrap_or_else(|| {
            json!({"apiVersion": patch["apiVersion"], "kind": patch["kind"],
                   "metadata": {"name": patch["metadata"]["name"]}})
        });
        if let Some(ns) = &loc.namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        for (key, value) in patch["metadata"].as_object().into_iter().flatten() {
            match key.as_str() {
                // Fields set by others survive; ours are replaced.
                "labels" | "annotations" => {
                    for (k, v) in value.as_object().into_iter().flatten() {
                        object["metadata"][key][k] = v.clone();
                    }
                }
                "resourceVersion" | "uid" | "managedFields" | "creationTimestamp" => {}
                _ => object["metadata"][key] = value.clone(),
            }
        }
        for field in fields {
            object[field.as_str()] = patch[field.as_str()].clone();
        }
        record_manager(&mut object, manager, "Apply");
        if dry_run {
            if created {
                self.next_uid += 1;
                object["metadata"]["uid"] = json!(format!("uid-{}", self.next_uid));
            }
        } else {
            object = self.store(path, object);
        }
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        ok(code, &object)
    }

    /// Delete with a uid precondition (DeleteOptions); 404 when missing.
    fn delete(&mut self, loc: &Location, name: &str, req: &Incoming) -> Response<Body> {
        let path = loc.object_path(name);
        let want_uid = req
            .body
            .as_ref()
            .and_then(|b| b.pointer("/preconditions/uid"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(object) = self.objects.get(&path).cloned() else {
            return not_found(&path);
        };
        if want_uid.is_some() && object["metadata"]["uid"].as_str() != want_uid.as_deref() {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "Precondition failed: UID in precondition does not match",
            );
        }
        if !req.dry_run() {
            self.unstore(&path);
        }
        ok(StatusCode::OK, &object)
    }

    /// Stores `object` at `path`: its uid (or the stored object's, or a
    /// new one), a new resourceVersion; tells the policy watchers.
    fn store(&mut self, path: &str, mut object: Value) -> Value {
        if object["metadata"]["uid"].as_str().is_none() {
            let uid = match self.objects.get(path) {
                Some(before) => before["metadata"]["uid"].clone(),
                None => {
                    self.next_uid += 1;
                    json!(format!("uid-{}", self.next_uid))
                }
            };
            object["metadata"]["uid"] = uid;
        }
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects.insert(path.to_string(), object.clone());
        // Typed only for a watcher (benchmarks store thousands).
        if !self.subscribers.is_empty()
            && let Some(np) = as_policy(path, &object)
        {
            self.publish(Event::Apply(np));
        }
        object
    }

    fn unstore(&mut self, path: &str) -> Option<Value> {
        let gone = self.objects.remove(path)?;
        if !self.subscribers.is_empty()
            && let Some(np) = as_policy(path, &gone)
        {
            self.publish(Event::Delete(np));
        }
        Some(gone)
    }

    fn publish(&mut self, event: Event<NetworkPolicy>) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    /// Every stored NetworkPolicy, typed.
    fn policies(&self) -> impl Iterator<Item = NetworkPolicy> + '_ {
        self.objects
            .iter()
            .filter_map(|(path, o)| as_policy(path, o))
    }
}

/// The object at `path` as a NetworkPolicy, when it is one.
fn as_policy(path: &str, object: &Value) -> Option<NetworkPolicy> {
    let loc = Location::parse(path)?;
    if !loc.is_network_policy() || loc.name.is_none() || loc.subresource.is_some() {
        return None;
    }
    serde_json::from_value(object.clone()).ok()
}

/// Adds `manager` (with `operation`) to the object's managedFields, as the
/// API server records who wrote an object (field sets are not modelled).
fn record_manager(object: &mut Value, manager: &str, operation: &str) {
    if manager.is_empty() {
        return;
    }
    let api_version = object["apiVersion"].clone();
    let mut entries: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == operation));
    entries.push(json!({"manager": manager, "operation": operation, "apiVersion": api_version}));
    object["metadata"]["managedFields"] = json!(entries);
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
    ok(code, &body)
}

fn not_found(path: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{path} not found"),
    )
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
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The answer to an injected fault (a timeout is answered late instead).
fn fault_response(fault: Fault) -> Option<Response<Body>> {
    Some(match fault {
        Fault::Conflict => status(StatusCode::CONFLICT, "Conflict", "injected conflict"),
        Fault::TooMany => status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "injected throttling",
        ),
        Fault::Internal => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "injected failure",
        ),
        Fault::Timeout => return None,
    })
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

    /// One request, phase by phase (see the module docs). `true` when the
    /// answer must never arrive (an injected timeout, or a watch).
    async fn answer(&self, request: Request<Body>) -> (Response<Body>, bool) {
        let req = Incoming::read(request).await;
        let mut inner = self.lock();
        let fault = inner.record(&req);
        if let Some(response) = fault.and_then(fault_response) {
            return (response, false);
        }
        let hang = fault == Some(Fault::Timeout)
            || (req.method == Method::GET && req.is_watch())
            || inner
                .hanging
                .iter()
                .any(|p| req.path.starts_with(p.as_str()));
        if let Some(refused) = inner.authorize(&req) {
            return (refused, hang);
        }
        (inner.route(&req), hang)
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

    /// Answers every request after `latency` (a slow API server).
    pub fn with_latency(self, latency: Duration) -> Self {
        self.lock().latency = Some(latency);
        self
    }

    /// Stores a ConfigMap (no watch event: tests feed those themselves).
    pub fn put_config_map(&self, cm: &k8s_openapi::api::core::v1::ConfigMap) {
        self.add(cm);
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.lock().faults = None;
    }

    /// Answers writes under `prefix` with 403 Forbidden.
    pub fn forbid_writes(&self, prefix: &str) {
        self.lock().forbidden_writes.push(prefix.to_string());
    }

    /// Every request under `prefix` answers 403 (reads included).
    pub fn forbid(&self, prefix: &str) {
        self.lock().forbidden.push(prefix.to_string());
    }

    /// Answers every request under `prefix` with 404, as the API server
    /// does for a group whose CRD is not installed.
    pub fn not_installed(&self, prefix: &str) {
        self.lock().absent.push(prefix.to_string());
    }

    /// Never answers a request under `prefix` (an API server that hangs).
    pub fn hang(&self, prefix: &str) {
        self.lock().hanging.push(prefix.to_string());
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

    /// Every request so far, and forgets them.
    pub fn take_log(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Every request so far, as `METHOD uri` lines, and forgets them.
    pub fn take_lines(&self) -> Vec<String> {
        self.take_log().iter().map(Recorded::line).collect()
    }

    /// Requests other than GET, faulted ones included.
    pub fn writes(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.is_write()).count()
    }

    /// Stores an object at its path, as if it existed in the cluster (its
    /// uid kept, or the stored object's, or a new one; a new
    /// resourceVersion), and tells the policy watchers.
    pub fn insert(&self, path: &str, object: Value) {
        self.lock().store(path, object);
    }

    /// Stores a typed object (a fixture) at the path its kind, namespace
    /// and name give.
    #[allow(clippy::panic)]
    pub fn add(&self, object: &impl serde::Serialize) {
        let value = match serde_json::to_value(object) {
            Ok(v) => v,
            Err(e) => panic!("fixture: {e}"),
        };
        let Some(path) = path_of(&value) else {
            panic!("fixture without apiVersion, kind or name: {value}");
        };
        self.insert(&path, value);
    }

    /// The object stored at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Removes the object at `path` as someone else would.
    pub fn delete_path(&self, path: &str) -> Option<Value> {
        self.lock().unstore(path)
    }

    /// The stored policies.
    pub fn policies(&self) -> BTreeMap<(String, String), NetworkPolicy> {
        self.lock()
            .policies()
            .map(|np| {
                (
                    (
                        np.metadata.namespace.clone().unwrap_or_default(),
                        np.metadata.name.clone().unwrap_or_default(),
                    ),
                    np,
                )
            })
            .collect()
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        let path = crate::fixtures::policy_path(namespace, name);
        let inner = self.lock();
        as_policy(&path, inner.objects.get(&path)?)
    }

    /// Stores a policy as someone else would (a hand edit or a foreign
    /// policy; recorded as manager `kubectl-edit` unless the policy lists
    /// its managedFields) and tells the watchers.
    pub fn put(&self, np: NetworkPolicy) {
        let namespace = np.metadata.namespace.clone().unwrap_or_default();
        let name = np.metadata.name.clone().unwrap_or_default();
        let path = crate::fixtures::policy_path(&namespace, &name);
        let mut object = serde_json::to_value(&np).unwrap_or(Value::Null);
        object["apiVersion"] = json!("networking.k8s.io/v1");
        object["kind"] = json!("NetworkPolicy");
        let mut inner = self.lock();
        if np.metadata.managed_fields.is_none() {
            if let Some(before) = inner.objects.get(&path) {
                object["metadata"]["managedFields"] = before["metadata"]["managedFields"].clone();
            }
            record_manager(&mut object, "kubectl-edit", "Update");
        }
        inner.store(&path, object);
    }

    /// Deletes a policy as someone else would, and tells the watchers.
    pub fn remove(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        let path = crate::fixtures::policy_path(namespace, name);
        let gone = self.lock().unstore(&path)?;
        serde_json::from_value(gone).ok()
    }

    /// A NetworkPolicy watch: the current list, then every change.
    pub fn policy_watch(
        &self,
    ) -> impl Stream<Item = Result<Event<NetworkPolicy>, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let listed: Vec<NetworkPolicy> = {
            let mut inner = self.lock();
            inner.subscribers.push(tx);
            inner.policies().collect()
        };
        let initial = std::iter::once(Event::Init)
            .chain(listed.into_iter().map(Event::InitApply))
            .chain(std::iter::once(Event::InitDone));
        let live = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        stream::iter(initial).chain(live).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_collections_and_objects() {
        let loc = Location::parse("/apis/apps/v1/namespaces/shop/deployments/api").unwrap();
        assert_eq!(loc.prefix, "/apis/apps/v1");
        assert_eq!(loc.namespace.as_deref(), Some("shop"));
        assert_eq!(loc.plural, "deployments");
        assert_eq!(loc.name.as_deref(), Some("api"));
        assert_eq!(
            loc.collection(),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        let loc = Location::parse("/api/v1/namespaces/shop/pods").unwrap();
        assert_eq!((loc.prefix.as_str(), loc.name), ("/api/v1", None));
        let loc =
            Location::parse("/apis/kubefence.dev/v1alpha1/namespaces/shop/quarantines/q/status")
                .unwrap();
        assert_eq!(loc.subresource.as_deref(), Some("status"));
        let loc = Location::parse("/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies/x")
            .unwrap();
        assert_eq!((loc.namespace, loc.name.as_deref()), (None, Some("x")));
        // A namespace itself is a cluster-scoped object.
        let loc = Location::parse("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (loc.plural.as_str(), loc.name.as_deref()),
            ("namespaces", Some("shop"))
        );
    }

    #[test]
    fn fixtures_land_at_their_api_path() {
        let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "shop"}});
        assert_eq!(
            path_of(&np).as_deref(),
            Some("/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/p")
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "shop"}});
        assert_eq!(
            path_of(&pod).as_deref(),
            Some("/api/v1/namespaces/shop/pods/x")
        );
    }
}
