// STAND-IN: replaced by the loader branch
//! Manifest loading (stand-in with the agreed signatures; it loads nothing).

use std::path::PathBuf;

use kubefence_core::Cluster;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Granularity {
    #[default]
    Workload,
    Pod,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub default_namespace: String,
    pub granularity: Granularity,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_string(),
            granularity: Granularity::Workload,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    Stdin,
}

#[derive(Clone, Debug, Default)]
pub struct Location {
    pub file: String,
    pub document: Option<usize>,
    pub object: Option<String>,
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Clone, Debug)]
pub struct Skipped {
    pub location: Location,
    pub api_version: String,
    pub kind: String,
}

#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub cluster: Cluster,
    pub errors: Vec<Diagnostic>,
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

pub fn load(_sources: &[Source], _opts: &LoadOptions) -> Loaded {
    Loaded::default()
}

pub fn load_str(_text: &str, _file_label: &str, _opts: &LoadOptions) -> Loaded {
    Loaded::default()
}

pub fn merge(parts: Vec<Loaded>) -> Loaded {
    let mut out = Loaded::default();
    for part in parts {
        out.cluster.namespaces.extend(part.cluster.namespaces);
        out.cluster.workloads.extend(part.cluster.workloads);
        out.cluster.services.extend(part.cluster.services);
        out.cluster.ingresses.extend(part.cluster.ingresses);
        out.cluster.config_maps.extend(part.cluster.config_maps);
        out.cluster.policies.extend(part.cluster.policies);
        out.errors.extend(part.errors);
        out.skipped.extend(part.skipped);
    }
    out
}
