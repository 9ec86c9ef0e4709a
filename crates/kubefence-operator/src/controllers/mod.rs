//! The controllers, and their registry.
//!
//! A controller is a function `fn(Arc<Context>) -> BoxFuture<Result<()>>`
//! that runs until `ctx.shutdown` turns true: it sets up the watches it
//! needs (each keeps only what it reads, in its own compact form), registers
//! and sets its readiness flag (`ctx.readiness`), writes only while
//! `ctx.is_leader()`, and records metrics under its name. To add one
//! (quarantine, learned, profiles, intents), add its module and one entry
//! to [`all`]; `crate::run` starts every entry and stops the process when
//! one fails.
//!
//! The Quarantine controller runs only while this replica leads (see
//! [`quarantine`]); its policy rights are the opt-in
//! `deploy/components/quarantine`. The learned controller ([`learned`])
//! runs only when `OperatorConfig::learned` is set (`kubefence operator
//! --learned`), with the opt-in `deploy/components/learned`.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::{Context, OperatorConfig};
use crate::error::Result;

pub mod baseline;
pub mod intents;
pub mod learned;
pub mod profiles;
pub mod quarantine;

/// A registered controller.
pub struct Registration {
    pub name: &'static str,
    pub start: fn(Arc<Context>) -> BoxFuture<'static, Result<()>>,
}

/// Every controller the operator runs with `config`.
pub fn all(config: &OperatorConfig) -> Vec<Registration> {
    let mut out = vec![
        Registration {
            name: baseline::NAME,
            start: baseline::start,
        },
        Registration {
            name: quarantine::NAME,
            start: quarantine::start,
        },
    ];
    if config.learned {
        out.push(Registration {
            name: learned::NAME,
            start: learned::start,
        });
    }
    if config.profiles {
        out.push(Registration {
            name: profiles::NAME,
            start: profiles::start,
        });
    }
    if config.intents {
        out.push(Registration {
            name: intents::NAME,
            start: intents::start,
        });
    }
    out
}

/// The engines among `engines` whose kind the API server serves, each at
/// the version kubefence writes (discovery: read only, allowed to every
/// authenticated user).
pub async fn discover_engines(
    client: &kube::Client,
    engines: &[kubefence_core::ruleset::Engine],
) -> Vec<(kubefence_core::ruleset::Engine, kube::core::ApiResource)> {
    let mut out = Vec::new();
    for &engine in engines {
        let api = kubefence_k8s::adapters::api(engine);
        let gvk = kube::core::GroupVersionKind::gvk(api.group, api.version, api.kind);
        if let Ok((resource, _)) = kube::discovery::pinned_kind(client, &gvk).await {
            out.push((engine, resource));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learned_controller_runs_only_when_configured() {
        let names = |c: &OperatorConfig| all(c).iter().map(|r| r.name).collect::<Vec<_>>();
        let off = OperatorConfig::default();
        assert!(!names(&off).contains(&learned::NAME));
        let on = OperatorConfig {
            learned: true,
            ..OperatorConfig::default()
        };
        assert_eq!(names(&on), vec!["baseline", "quarantine", "learned"]);
        let intents = OperatorConfig {
            intents: true,
            ..OperatorConfig::default()
        };
        assert_eq!(names(&intents), vec!["baseline", "quarantine", "intents"]);
    }
}
