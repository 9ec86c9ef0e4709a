//! kubefence's custom resources (kube derive + schemars): specs, statuses
//! and the registry of CRDs that `kubefence crds` prints.

pub mod quarantine;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD kubefence installs.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![quarantine::Quarantine::crd()]
}
