//! kubefence-testkit: test support that is not part of the product.
//!
//! ```text
//!  synth::small_random / synth::scaled ──▶ SynthCluster
//!        │                                    │
//!        ├─ yaml::to_yaml ─▶ manifests ─▶ nca ─┤ (and, later, kubefence-k8s::load)
//!        └─ build::to_cluster ─▶ core Cluster ─▶ engine::analyze
//!                                             │
//!                           compare::compare ◀┘ pair by pair
//! ```
//!
//! - [`synth`]: seeded synthetic clusters, small (every NetworkPolicy feature)
//!   or scaled (benchmarks);
//! - [`yaml`] and [`build`]: the same cluster as Kubernetes YAML and as the
//!   core model;
//! - [`nca`]: IBM's network-config-analyzer as an independent oracle
//!   (`scripts/install-nca.sh` installs it);
//! - [`compare`]: what kubefence and nca allow, pair by pair.
#![forbid(unsafe_code)]

pub mod baseline_synth;
pub mod build;
pub mod compare;
pub mod flowgen;
pub mod hubble_relay;
pub mod nca;
pub mod synth;
pub mod yaml;

use std::path::Path;

use kubefence_core::Cluster;
use kubefence_core::engine::{AnalyzeOptions, analyze};

pub use build::to_cluster;
pub use compare::{Mismatch, compare};
pub use synth::{ScaledProfile, SynthCluster, scaled, scaled_with, small_random};
pub use yaml::to_yaml;

/// Writes `resources.yaml` and `policies.yaml` for `synth` into `dir`.
pub fn write_case(synth: &SynthCluster, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in [
        ("resources.yaml", yaml::resources_yaml(synth)),
        ("policies.yaml", yaml::policies_yaml(synth)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes `resources.json` and `policies.json` (each one `kind: List`) for
/// `synth` into `dir`.
pub fn write_json_case(synth: &SynthCluster, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in [
        ("resources.json", yaml::resources_json(synth)),
        ("policies.json", yaml::policies_json(synth)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Runs one differential case: writes the manifests of `synth` into `dir`,
/// runs nca on them, analyzes `cluster` (which must describe the same
/// cluster) and compares. nca's output is kept in `dir/nca.txt` and any
/// mismatches in `dir/mismatches.txt`.
pub fn differential_case(
    synth: &SynthCluster,
    cluster: &Cluster,
    nca_bin: &Path,
    dir: &Path,
) -> Result<Vec<Mismatch>, String> {
    let mut results = differential_case_for(synth, &[("kubefence", cluster)], nca_bin, dir)?;
    Ok(results.pop().map(|(_, m)| m).unwrap_or_default())
}

/// [`differential_case`] for several readings of the same cluster (built
/// directly, read through the loader, ...), all against one nca run.
/// Mismatches of reading `name` go to `dir/mismatches-<name>.txt`.
pub fn differential_case_for(
    synth: &SynthCluster,
    clusters: &[(&str, &Cluster)],
    nca_bin: &Path,
    dir: &Path,
) -> Result<Vec<(String, Vec<Mismatch>)>, String> {
    write_case(synth, dir)?;
    let output = nca::run_connectivity(
        nca_bin,
        &dir.join("policies.yaml"),
        &dir.join("resources.yaml"),
    )?;
    let _ = std::fs::write(dir.join("nca.txt"), &output);
    let edges = nca::parse_output(&output)?;
    let mut results = Vec::new();
    for (name, cluster) in clusters {
        let ours = analyze(cluster, &AnalyzeOptions::default());
        let mismatches = compare(&ours, &edges);
        if !mismatches.is_empty() {
            let _ = std::fs::write(
                dir.join(format!("mismatches-{name}.txt")),
                compare::report(&mismatches, usize::MAX),
            );
        }
        results.push((name.to_string(), mismatches));
    }
    Ok(results)
}
