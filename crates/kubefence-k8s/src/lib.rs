//! kubefence-k8s: the Kubernetes adapter.
#![forbid(unsafe_code)]

pub mod load;
