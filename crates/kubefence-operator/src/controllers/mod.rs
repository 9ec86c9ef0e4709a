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
    }
}
