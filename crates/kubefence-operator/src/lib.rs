//! kubefence-operator: controllers that keep kubefence policies true in a live cluster.
#![forbid(unsafe_code)]

pub mod quarantine;
