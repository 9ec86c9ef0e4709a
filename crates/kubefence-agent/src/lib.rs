//! The kubefence node agent (`kubefence agent`, a DaemonSet): sees every new
//! TCP and UDP connection of every pod on its node and keeps one
//! NetworkNeighborhood per workload, which the learned controller turns
//! into a policy for review.
//!
//! ```text
//!  kernel (bpf/connections.bpf.c) ──ring buffer──▶ capture ──▶ Connection
//!                                                                │
//!  Pods of this node, Services ──(watch)──▶ index ──▶ aggregate (per workload,
//!                                                   direction, peer, port;
//!                                                   bounded, coarsened)
//!                                                                │
//!                      writer (merge, ≤ 1 write per workload per 30 s) ──▶
//!                      NetworkNeighborhood (kubefence.dev) ──▶ learned controller
//! ```
//!
//! Modules, one job each: [`connection`] (the event and its decoding),
//! [`capture`] (eBPF), [`index`] (address → pod, Service, node, external),
//! [`aggregate`] (dedup and the entry cap), [`object`] (the object written,
//! merged with what is there), [`writer`] (rate limit and the API calls),
//! [`watch`] (the Pod and Service watches), [`agent`] (the loop that joins
//! them), [`telemetry`] (its counters, as Prometheus metrics).

#[cfg(target_os = "linux")]
pub mod agent;
pub mod aggregate;
pub mod capture;
pub mod connection;
pub mod dns;
pub mod index;
pub mod object;
#[cfg(target_os = "linux")]
pub mod telemetry;
pub mod watch;
pub mod writer;
