//! Reading sources: files, directories (recursively) and stdin.
//!
//! A directory walk follows symbolic links but enters every directory once
//! (by device and inode), so a symlink cycle ends; skips hidden entries
//! (`.git`, `.github`, `.pre-commit-config.yaml`) unless asked to include
//! them: they hold no manifests and their YAML would only be errors; and
//! reads what it can: an unreadable file
//! is one error and its siblings are still read. A Helm chart, or a file that
//! is a Go template, is not read: it gets one hint to render it first,
//! instead of one YAML error per document.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::{Diagnostic, Location, Source};

/// Extensions read when walking a directory.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The file that makes a directory a Helm chart.
const CHART_FILES: [&str; 2] = ["Chart.yaml", "Chart.yml"];

/// What a source held: its texts (label, text) in a stable order, and the
/// errors of what could not be read.
#[derive(Debug, Default)]
pub(crate) struct SourceTexts {
    pub texts: Vec<(String, String)>,
    pub errors: Vec<Diagnostic>,
}

/// The label that names `source` in diagnostics.
pub(crate) fn label(source: &Source) -> String {
    match source {
        Source::Stdin => "<stdin>".to_string(),
        Source::Path(path) => path.display().to_string(),
    }
}

/// The texts of a source, each with the label that names it in errors.
/// `include_hidden`: a directory walk also reads hidden entries.
pub(crate) fn read(source: &Source, include_hidden: bool) -> SourceTexts {
    let mut out = SourceTexts::default();
    match source {
        Source::Stdin => {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => out.push_text("<stdin>".to_string(), text),
                Err(e) => out.errors.push(io_error("<stdin>", None, &e)),
            }
        }
        Source::Path(path) if path.is_dir() => walk(path, include_hidden, &mut out),
        Source::Path(path) => match read_text(path) {
            Ok(text) => out.push_text(path.display().to_string(), text),
            Err(diagnostic) => out.errors.push(diagnostic),
        },
    }
    out
}

/// The error for a source that held no Kubernetes object at all: an empty
/// file or stdin, a file of comments, a List without items, a directory
/// without manifest files.
pub(crate) fn nothing_in(source: &Source, include_hidden: bool) -> Diagnostic {
    let what = match source {
        Source::Stdin => "no Kubernetes object on stdin (it was empty or closed)".to_string(),
        Source::Path(path) if path.is_dir() => {
            let extensions = MANIFEST_EXTENSIONS.map(|e| format!(".{e}")).join(", ");
            let hidden = if include_hidden {
                ""
            } else {
                ", hidden ones left out,"
            };
            format!(
                "no Kubernetes object in this directory (its {extensions} files{hidden} are \
                 empty or there are none)"
            )
        }
        Source::Path(_) => {
            "no Kubernetes object in this file (it is empty, only comments, or a List without \
             items)"
                .to_string()
        }
    };
    Diagnostic {
        location: at(&label(source)),
        message: what,
    }
}

impl SourceTexts {
    /// Keeps `text`, unless it is a Go template (Helm): then one hint.
    fn push_text(&mut self, label: String, text: String) {
        match template_line(&text) {
            Some(line) => self.errors.push(Diagnostic {
                location: at(&label),
                message: format!(
                    "a Go/Helm template (`{{{{` at line {line}), not a manifest: render it first \
                     (`helm template`) and read the output; not read"
                ),
            }),
            None => self.texts.push((label, text)),
        }
    }
}

/// Walks `root`: every manifest file once, in name order, depth first;
/// hidden entries only when `include_hidden`.
fn walk(root: &Path, include_hidden: bool, out: &mut SourceTexts) {
    // A directory named directly that is a chart's `templates/`: the chart.
    if let Some(chart) = chart_of_templates(root) {
        out.errors.push(chart_hint(&chart));
        return;
    }
    let mut visited_dirs: HashSet<(u64, u64)> = HashSet::new();
    let mut visited_files: HashSet<(u64, u64)> = HashSet::new();
    let mut charts: Vec<PathBuf> = Vec::new();
    let mut templates: Vec<(String, String)> = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            // The root itself is read whatever its name: it was named.
            let hidden = entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
            if hidden && !include_hidden {
                tracing::debug!(path = %entry.path().display(), "hidden: skipped");
                return false;
            }
            if !entry.file_type().is_dir() {
                return true;
            }
            // With follow_links, metadata is the target's: a directory
            // reached twice (a cycle, or two links to it) is entered once.
            if let Ok(meta) = entry.metadata()
                && !visited_dirs.insert((meta.dev(), meta.ino()))
            {
                tracing::debug!(path = %entry.path().display(), "already walked: skipped");
                return false;
            }
            if is_chart(entry.path()) {
                charts.push(entry.path().to_path_buf());
                return false;
            }
            true
        });
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                walk_error(root, &e, out);
                continue;
            }
        };
        if entry.file_type().is_dir() || !is_manifest(entry.path()) {
            continue;
        }
        if !entry.file_type().is_file() {
            // A FIFO would block the read forever; a device is no manifest.
            out.errors.push(Diagnostic {
                location: at(&entry.path().display().to_string()),
                message: "not a regular file (a FIFO, socket or device); not read".to_string(),
            });
            continue;
        }
        if let Ok(meta) = entry.metadata()
            && !visited_files.insert((meta.dev(), meta.ino()))
        {
            tracing::debug!(path = %entry.path().display(), "same file as one already read");
            continue;
        }
        match read_text(entry.path()) {
            Ok(text) => {
                let label = entry.path().display().to_string();
                match template_line(&text) {
                    Some(line) => templates.push((label, format!("line {line}"))),
                    None => out.texts.push((label, text)),
                }
            }
            Err(diagnostic) => out.errors.push(diagnostic),
        }
    }
    out.errors.extend(charts.iter().map(|c| chart_hint(c)));
    match templates.as_slice() {
        [] => {}
        [(file, line)] => out.errors.push(Diagnostic {
            location: at(file),
            message: format!(
                "a Go/Helm template (`{{{{` at {line}), not a manifest: render it first (`helm \
                 template`) and read the output; not read"
            ),
        }),
        [(first, line), ..] => out.errors.push(Diagnostic {
            location: at(&root.display().to_string()),
            message: format!(
                "{} files are Go/Helm templates (the first: {first}, `{{{{` at {line}), not \
                 manifests: render them first (`helm template`) and read the output; not read",
                templates.len()
            ),
        }),
    }
}

/// An error of the walk itself: a directory or link that cannot be
/// followed. A link back to a directory being walked is not an error: its
/// files are read once through the other path.
fn walk_error(root: &Path, e: &walkdir::Error, out: &mut SourceTexts) {
    let path = e.path().unwrap_or(root);
    if let Some(ancestor) = e.loop_ancestor() {
        tracing::warn!(
            file = %path.display(),
            "symlink loop: leads back to {}, which is read once",
            ancestor.display()
        );
        return;
    }
    let message = match e.io_error() {
        Some(io) => describe(path, io),
        None => e.to_string(),
    };
    out.errors.push(Diagnostic {
        location: at(&path.display().to_string()),
        message,
    });
}

/// A file's text; a file that is not UTF-8 is an error that says so.
fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_error(&label, Some(path), &e))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Diagnostic {
            location: at(&label),
            message: format!(
                "not UTF-8 text (an invalid byte at line {line}, byte offset {offset}); \
                 Kubernetes manifests are UTF-8"
            ),
        }
    })
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_chart(dir: &Path) -> bool {
    CHART_FILES.iter().any(|f| dir.join(f).is_file())
}

/// The chart whose `templates/` directory `dir` is.
fn chart_of_templates(dir: &Path) -> Option<PathBuf> {
    let parent = dir.parent()?;
    (dir.file_name()? == "templates" && is_chart(parent)).then(|| parent.to_path_buf())
}

fn chart_hint(chart: &Path) -> Diagnostic {
    let dir = chart.display();
    Diagnostic {
        location: at(&dir.to_string()),
        message: format!(
            "a Helm chart (Chart.yaml): its templates are not manifests until rendered; run \
             `helm template RELEASE {dir}` and read the output (e.g. `helm template RELEASE \
             {dir} | kubefence analyze -f -`); not read"
        ),
    }
}

/// The line of the first `{{` when `text` is a Go template rather than
/// YAML: it has `{{` and does not parse. A manifest that merely holds a
/// template in a string (an Alertmanager ConfigMap) parses, and is read.
fn template_line(text: &str) -> Option<usize> {
    let at = text.find("{{")?;
    let start = text.trim_start();
    if start.starts_with('[') || (start.starts_with('{') && !start.starts_with("{{")) {
        // JSON: `{{` is not how a template begins there.
        return None;
    }
    if serde_saphyr::from_multiple::<serde_json::Value>(text).is_ok() {
        return None;
    }
    Some(text[..at].matches('\n').count() + 1)
}

fn at(label: &str) -> Location {
    Location {
        file: label.to_string(),
        ..Location::default()
    }
}

/// `ELOOP`: too many levels of symbolic links.
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;

/// An I/O error in words: what went wrong with `path`, not an errno.
fn describe(path: &Path, e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(ELOOP) {
        return "symlink loop: too many levels of symbolic links; not read".to_string();
    }
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied; not read".to_string(),
        std::io::ErrorKind::NotFound if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("broken symbolic link: its target {target} does not exist; not read")
        }
        _ => format!("cannot read: {e}"),
    }
}

fn io_error(label: &str, path: Option<&Path>, error: &std::io::Error) -> Diagnostic {
    Diagnostic {
        location: at(label),
        message: describe(path.unwrap_or(Path::new(label)), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_told_from_manifests_that_hold_templates() {
        assert_eq!(
            template_line("kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"),
            Some(3)
        );
        assert_eq!(
            template_line("{{- if .Values.x }}\nkind: Pod\n{{- end }}\n"),
            Some(1)
        );
        let config_map = "kind: ConfigMap\ndata:\n  t: |\n    {{ range .Alerts }}x{{ end }}\n";
        assert_eq!(template_line(config_map), None);
        assert_eq!(template_line("kind: Pod\n"), None);
        assert_eq!(template_line("{\"kind\": \"Pod\", \"x\": \"{{\"}"), None);
    }

    #[test]
    fn io_errors_are_said_in_words() {
        let x = Path::new("x.yaml");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(describe(x, &denied).starts_with("permission denied"));
        let eloop = std::io::Error::from_raw_os_error(ELOOP);
        assert!(describe(x, &eloop).starts_with("symlink loop"));
    }
}
