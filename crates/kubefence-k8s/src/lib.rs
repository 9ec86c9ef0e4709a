//! kubefence-k8s: the Kubernetes adapter. Reads manifests and live-object
//! dumps (k8s-openapi types) into the pure model of `kubefence-core`.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod config;
pub mod convert;
#[cfg(feature = "crd")]
pub mod crd;
#[cfg(feature = "crd")]
pub mod intent;
pub mod learn;
pub mod load;
// Reads IsolationProfile objects, which exist only with the CRDs.
#[cfg(feature = "crd")]
pub mod profile;
pub mod quarantine;
pub mod render;
#[cfg(feature = "crd")]
pub mod sandbox;
