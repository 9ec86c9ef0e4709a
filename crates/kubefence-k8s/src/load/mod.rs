//! Manifest loading: files, directories and stdin → one [`Cluster`].
//!
//! ```text
//!  sources ──(source)──▶ texts ──(documents)──▶ JSON values, one per object
//!     ──(convert)──▶ core objects ──(fold)──▶ Cluster (pods folded into
//!                                             their workloads, namespaces
//!                                             completed, sorted)
//! ```
//!
//! A bad document, object or field is an error that names its file, document
//! and field; the object is left out whole and everything else is still
//! loaded.

mod documents;
pub(crate) mod fold;
mod namespaces;
mod parallel;
// A Diagnostic (an error path, once per unreadable source) is returned by
// value: boxing it would only make every caller clumsier.
#[allow(clippy::result_large_err)]
mod source;

use std::collections::HashMap;
use std::path::PathBuf;

use kubefence_core::Cluster;

use crate::convert::Converted;

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
    /// Directory walks also enter hidden directories and read hidden files
    /// (names starting with `.`, such as `.github/`); by default they are
    /// skipped, as they hold CI and tool configuration, not manifests.
    pub include_hidden: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_string(),
            granularity: Granularity::Workload,
            include_hidden: false,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    Stdin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub document: Option<usize>,
    /// Where in a list the object is: `items[3]` (a `kind: List` or typed
    /// list), `[3]` (a bare JSON or YAML array), or both nested.
    pub item: Option<String>,
    pub object: Option<String>,
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(item) = &self.item {
            write!(f, ": {item}")?;
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

/// What loading produced: the cluster, the errors, and the objects whose
/// kind kubefence does not read.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub cluster: Cluster,
    pub errors: Vec<Diagnostic>,
    /// What was read but deserves a word: duplicates (the later one is
    /// used), namespaces used but not given.
    pub warnings: Vec<Diagnostic>,
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Loads every source (files, directories recursively, stdin) into one
/// cluster. Files are parsed and converted in parallel; the result is in
/// input order, exactly as a sequential load.
pub fn load(sources: &[Source], opts: &LoadOptions) -> Loaded {
    join(vec![part(sources, opts)], opts)
}

/// Objects read and converted but not yet joined into a cluster: parts
/// read apart (a live cluster and files, several embedded texts) are
/// joined by [`join`] as if they had been loaded together.
#[derive(Clone, Debug, Default)]
pub struct Part(RawInput);

/// Reads every source as [`load`] does, into a [`Part`].
pub fn part(sources: &[Source], opts: &LoadOptions) -> Part {
    // Reading (sequential: a directory walk, stdin) ...
    let mut reads: Vec<source::SourceTexts> = sources
        .iter()
        .map(|src| source::read(src, opts.include_hidden))
        .collect();
    // ... then every file parsed and converted on its own.
    let mut files: Vec<(usize, String, String)> = Vec::new();
    for (i, read) in reads.iter_mut().enumerate() {
        for (label, text) in std::mem::take(&mut read.texts) {
            files.push((i, label, text));
        }
    }
    let parsed = parallel::map_in_order(files, 2, |(i, label, text)| {
        let mut one = RawInput::default();
        documents::parse_into(&text, &label, opts, &mut one);
        (i, one)
    });
    let mut per_source: Vec<Vec<RawInput>> = sources.iter().map(|_| Vec::new()).collect();
    for (i, one) in parsed {
        per_source[i].push(one);
    }
    let mut raw = RawInput::default();
    for ((src, read), parts) in sources.iter().zip(reads).zip(per_source) {
        let before = raw.entries();
        raw.errors.extend(read.errors);
        for part in parts {
            raw.extend(part);
        }
        // Nothing read is not a result: an empty source is an error.
        if raw.entries() == before {
            raw.errors
                .push(source::nothing_in(src, opts.include_hidden));
        }
    }
    Part(raw)
}

/// Every object of the sources as JSON, unconverted, with where it is, and
/// what could not be read: for the kinds that are not part of the cluster
/// model (the learned-policy objects), which their own module converts.
/// The sources are read as [`load`] reads them (directories recursively,
/// multi-document YAML, JSON, lists, bare arrays); a source that holds
/// nothing is an error.
#[derive(Clone, Debug, Default)]
pub struct RawObjects {
    pub objects: Vec<(Location, serde_json::Value)>,
    pub errors: Vec<Diagnostic>,
}

pub fn read_objects(sources: &[Source]) -> RawObjects {
    // Hidden files and folders are skipped in directory walks, as `load`
    // skips them by default.
    let include_hidden = false;
    let mut out = RawObjects::default();
    for src in sources {
        let before = out.objects.len() + out.errors.len();
        let read = source::read(src, include_hidden);
        out.errors.extend(read.errors);
        for (label, text) in read.texts {
            each_object_of(&text, &label, &mut out.objects, &mut out.errors);
        }
        if out.objects.len() + out.errors.len() == before {
            out.errors.push(source::nothing_in(src, include_hidden));
        }
    }
    out
}

/// The objects of one text, unconverted (see [`read_objects`]).
pub fn each_object_of(
    text: &str,
    label: &str,
    objects: &mut Vec<(Location, serde_json::Value)>,
    errors: &mut Vec<Diagnostic>,
) {
    documents::each_object(text, label, &mut |item| match item {
        documents::Item::Object(value, location) => objects.push((location.clone(), value)),
        documents::Item::Error(diagnostic) => errors.push(diagnostic),
    });
}

/// Loads one file's content; `file_label` names it in errors.
pub fn load_str(text: &str, file_label: &str, opts: &LoadOptions) -> Loaded {
    join(vec![part_of_str(text, file_label, opts)], opts)
}

/// Reads one file's content as [`load_str`] does, into a [`Part`].
pub fn part_of_str(text: &str, file_label: &str, opts: &LoadOptions) -> Part {
    let mut raw = RawInput::default();
    documents::parse_into(text, file_label, opts, &mut raw);
    Part(raw)
}

/// Joins parts into one cluster, as if they had been loaded together: pods
/// fold into workloads of other parts, namespaces are shared, and of two
/// objects with the same kind, namespace and name the later one is used.
pub fn join(parts: Vec<Part>, opts: &LoadOptions) -> Loaded {
    let mut raw = RawInput::default();
    for part in parts {
        raw.extend(part.0);
    }
    raw.finish(opts)
}

/// One converted object and where it was read.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    pub location: Location,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub converted: Converted,
}

/// Objects as read, in input order, before duplicates are resolved and
/// pods are folded into workloads.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawInput {
    /// In runs (one per thread that converted them, per file), in order:
    /// joining runs moves them, where one vector would copy every object
    /// into a new one (hundreds of megabytes for a large dump).
    objects: Vec<Vec<Placed>>,
    pub errors: Vec<Diagnostic>,
    pub skipped: Vec<Skipped>,
}

impl RawInput {
    pub(crate) fn push(&mut self, placed: Placed) {
        match self.objects.last_mut() {
            Some(run) => run.push(placed),
            None => self.objects.push(vec![placed]),
        }
    }

    /// Everything read so far: objects, errors and skipped objects.
    fn entries(&self) -> usize {
        self.objects.iter().map(Vec::len).sum::<usize>() + self.errors.len() + self.skipped.len()
    }

    /// Appends `other`; into an empty input it is moved whole.
    fn extend(&mut self, other: RawInput) {
        append(&mut self.objects, other.objects);
        append(&mut self.errors, other.errors);
        append(&mut self.skipped, other.skipped);
    }

    /// The cluster of these objects. They are moved into it, not copied:
    /// at 300,000 objects a second copy is hundreds of megabytes, and
    /// fresh memory is much of what loading costs.
    fn finish(self, opts: &LoadOptions) -> Loaded {
        let mut warnings = Vec::new();
        let keep = latest_of_each(&self.objects, &mut warnings);
        let mut given = fold::Given::default();
        for (placed, kept) in self.objects.into_iter().flatten().zip(keep) {
            if kept {
                given.add(placed.converted);
            }
        }
        let mut cluster = fold::fold(given, opts.granularity);
        let undeclared = namespaces::undeclared(&cluster);
        cluster.add_implicit_namespaces();
        warnings.extend(namespaces::warning(&cluster, &undeclared));
        // Sorted by id (`namespace/Kind/name`) without building the ids:
        // their bytes compared in place (the same order as the strings).
        fn id_bytes(w: &kubefence_core::Workload) -> impl Iterator<Item = u8> + '_ {
            w.namespace
                .bytes()
                .chain(std::iter::once(b'/'))
                .chain(w.kind.as_str().bytes())
                .chain(std::iter::once(b'/'))
                .chain(w.name.bytes())
        }
        let id_order = |a: &kubefence_core::Workload, b: &kubefence_core::Workload| {
            id_bytes(a).cmp(id_bytes(b))
        };
        cluster.workloads.sort_by(id_order);
        cluster
            .workloads
            .dedup_by(|a, b| id_order(a, b) == std::cmp::Ordering::Equal);
        cluster
            .services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        cluster
            .ingresses
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        cluster
            .config_maps
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        cluster
            .policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Loaded {
            cluster,
            errors: self.errors,
            warnings,
            skipped: self.skipped,
        }
    }
}

fn append<T>(to: &mut Vec<T>, more: Vec<T>) {
    if to.is_empty() {
        *to = more;
    } else {
        to.extend(more);
    }
}

/// Which objects are kept once duplicates are resolved: of two objects with
/// the same kind, namespace and name the later one, as `kubectl apply` of
/// both would leave it, and a warning names both places.
fn latest_of_each(runs: &[Vec<Placed>], warnings: &mut Vec<Diagnostic>) -> Vec<bool> {
    let count = runs.iter().map(Vec::len).sum();
    let mut latest: HashMap<(&str, &str, &str), (usize, &Placed)> = HashMap::with_capacity(count);
    for (i, placed) in runs.iter().flatten().enumerate() {
        let key = (
            placed.kind.as_str(),
            placed.namespace.as_str(),
            placed.name.as_str(),
        );
        if let Some((_, earlier)) = latest.insert(key, (i, placed)) {
            warnings.push(Diagnostic {
                location: placed.location.clone(),
                message: format!(
                    "duplicate: the same object is also given at {}; the later one is used",
                    Location {
                        object: None,
                        ..earlier.location.clone()
                    }
                ),
            });
        }
    }
    let mut keep = vec![false; count];
    for (i, _) in latest.into_values() {
        keep[i] = true;
    }
    keep
}
