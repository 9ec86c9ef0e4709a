//! The watches that feed the address index: the Pods of this node
//! (`spec.nodeName` field selector: the API server sends only them) and
//! every Service (their ClusterIPs and selectors).
//!
//! Events are applied by pure functions ([`PodEvents::apply`],
//! [`apply_service_event`]) so the rules are tested with synthetic events;
//! [`watch_pods`] and [`watch_services`] run kube-runtime watchers (which
//! re-list and retry with backoff) and apply each event under the agent's
//! lock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch as signal;

use crate::index::{PodIndex, host_ip, pod_record, service_record};

/// The field selector of this node's pods.
pub fn node_field_selector(node: &str) -> String {
    format!("spec.nodeName={node}")
}

/// Applies Pod watch events; remembers, during a (re-)list, which pods the
/// list held, so the pods that vanished while the watch was down are
/// marked deleted when the list ends.
#[derive(Debug, Default)]
pub struct PodEvents {
    listing: Option<HashSet<(String, String)>>,
    known: HashSet<(String, String)>,
}

impl PodEvents {
    /// Applies one event; `true` once a list is complete (the index is in
    /// sync).
    pub fn apply(&mut self, index: &mut PodIndex, event: Event<Pod>, now: Instant) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(HashSet::new());
                false
            }
            Event::InitApply(pod) => {
                if let Some(key) = self.upsert(index, &pod)
                    && let Some(listing) = &mut self.listing
                {
                    listing.insert(key);
                }
                false
            }
            Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    let gone: Vec<_> = self.known.difference(&listing).cloned().collect();
                    for (namespace, name) in gone {
                        index.remove_pod(&namespace, &name, now);
                        self.known.remove(&(namespace, name));
                    }
                }
                true
            }
            Event::Apply(pod) => {
                self.upsert(index, &pod);
                false
            }
            Event::Delete(pod) => {
                if let (Some(namespace), Some(name)) = (
                    pod.metadata.namespace.as_deref(),
                    pod.metadata.name.as_deref(),
                ) {
                    index.remove_pod(namespace, name, now);
                    self.known
                        .remove(&(namespace.to_string(), name.to_string()));
                }
                false
            }
        }
    }

    fn upsert(&mut self, index: &mut PodIndex, pod: &Pod) -> Option<(String, String)> {
        if let Some(ip) = host_ip(pod) {
            index.add_node_ip(ip);
        }
        let (record, ips) = pod_record(pod)?;
        let key = (record.namespace.clone(), record.name.clone());
        index.upsert_pod(record, ips);
        self.known.insert(key.clone());
        Some(key)
    }
}

/// Applies one Service watch event.
pub fn apply_service_event(index: &mut PodIndex, event: Event<Service>) {
    match event {
        Event::Apply(s) | Event::InitApply(s) => match service_record(&s) {
            Some((record, ips)) => index.upsert_service(record, ips),
            None => {
                if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                    index.remove_service(ns, name);
                }
            }
        },
        Event::Delete(s) => {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                index.remove_service(ns, name);
            }
        }
        Event::Init | Event::InitDone => {}
    }
}

/// Watches this node's pods into `index` until the stream ends;
/// `synced` turns true after the first complete list.
pub async fn watch_pods(
    client: kube::Client,
    node: String,
    index: Arc<Mutex<PodIndex>>,
    synced: signal::Sender<bool>,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&node_field_selector(&node));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut state = PodEvents::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let done = match index.lock() {
                    Ok(mut index) => state.apply(&mut index, event, Instant::now()),
                    Err(_) => return,
                };
                if done {
                    synced.send_replace(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying with backoff"),
        }
    }
}

/// Watches every Service into `index` until the stream ends.
pub async fn watch_services(client: kube::Client, index: Arc<Mutex<PodIndex>>) {
    let api: Api<Service> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => match index.lock() {
                Ok(mut index) => apply_service_event(&mut index, event),
                Err(_) => return,
            },
            Err(e) => tracing::warn!(error = %e, "service watch failed; retrying with backoff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::index::Peer;

    fn pod(name: &str, ip: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some([("app".to_string(), name.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                host_ip: Some("192.0.2.10".into()),
                ..PodStatus::default()
            }),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_relist_marks_the_pods_it_no_longer_holds_as_deleted() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(Duration::from_secs(5), vec!["10.1.0.0/16".parse().unwrap()]);
        let mut events = PodEvents::default();
        assert!(!events.apply(&mut index, Event::Init, t0));
        events.apply(&mut index, Event::InitApply(pod("a", "10.1.0.1")), t0);
        events.apply(&mut index, Event::InitApply(pod("b", "10.1.0.2")), t0);
        assert!(events.apply(&mut index, Event::InitDone, t0));
        assert_eq!(index.lookup(ip("192.0.2.10"), t0), Peer::Node);
        // The watch broke; "b" was deleted meanwhile; the re-list lacks it.
        events.apply(&mut index, Event::Init, t0);
        events.apply(&mut index, Event::InitApply(pod("a", "10.1.0.1")), t0);
        events.apply(&mut index, Event::InitDone, t0);
        let later = t0 + Duration::from_secs(6);
        assert!(matches!(index.lookup(ip("10.1.0.1"), later), Peer::Pod(_)));
        assert_eq!(index.lookup(ip("10.1.0.2"), later), Peer::UnknownInCluster);
        // An explicit delete, within and past its grace period.
        events.apply(&mut index, Event::Delete(pod("a", "10.1.0.1")), later);
        assert!(matches!(index.lookup(ip("10.1.0.1"), later), Peer::Pod(_)));
        assert_eq!(
            index.lookup(ip("10.1.0.1"), later + Duration::from_secs(6)),
            Peer::UnknownInCluster
        );
    }

    #[test]
    fn the_field_selector_names_the_node() {
        assert_eq!(node_field_selector("node-1"), "spec.nodeName=node-1");
    }
}
