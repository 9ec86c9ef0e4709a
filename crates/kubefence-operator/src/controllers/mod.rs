//! The controllers, and their registry.
//!
//! A controller is a function `fn(Arc<Context>) -> BoxFuture<Result<()>>`
//! that runs until `ctx.shutdown` turns true: it reads the shared caches in
//! `ctx.stores` (reflector stores kept filled by `crate::run`, for example
//! every policy kubefence owns) and sets up the watches it alone needs,
//! registers and sets its readiness flag (`ctx.readiness`), writes only
//! while `ctx.is_leader()`, and records metrics under its name. To add one
//! (quarantine, learned, profiles, intents), add its module and one entry
//! to [`all`]; `crate::run` starts every entry and stops the process when
//! one fails.
//!
//! The Quarantine controller (`crate::quarantine::run_controller`) is not
//! registered yet: it runs its own kube-runtime `Controller` with its own
//! signal handling and writes whether or not this replica leads. Wiring it
//! in means an entry here whose future runs it until `ctx.shutdown`, with
//! its writes gated on `ctx.is_leader()`, and its RBAC
//! (`deploy/components/quarantine`) added to the install.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::Context;
use crate::error::Result;

pub mod baseline;

/// A registered controller.
pub struct Registration {
    pub name: &'static str,
    pub start: fn(Arc<Context>) -> BoxFuture<'static, Result<()>>,
}

/// Every controller the operator runs.
pub fn all() -> Vec<Registration> {
    vec![Registration {
        name: baseline::NAME,
        start: baseline::start,
    }]
}
