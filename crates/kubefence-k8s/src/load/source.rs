//! Reading sources: files, directories (recursively) and stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Diagnostic, Location, Source};

/// Extensions read when walking a directory.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The texts of a source, each with the label that names it in errors.
pub(crate) fn read(source: &Source) -> Result<Vec<(String, String)>, Diagnostic> {
    match source {
        Source::Stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| io_error("<stdin>", &e))?;
            Ok(vec![("<stdin>".to_string(), text)])
        }
        Source::Path(path) if path.is_dir() => {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(|e| io_error(&path.display().to_string(), &e))?;
            files.sort();
            files
                .into_iter()
                .map(|f| {
                    let label = f.display().to_string();
                    std::fs::read_to_string(&f)
                        .map(|text| (label.clone(), text))
                        .map_err(|e| io_error(&label, &e))
                })
                .collect()
        }
        Source::Path(path) => {
            let label = path.display().to_string();
            std::fs::read_to_string(path)
                .map(|text| vec![(label.clone(), text)])
                .map_err(|e| io_error(&label, &e))
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn io_error(label: &str, error: &std::io::Error) -> Diagnostic {
    Diagnostic {
        location: Location {
            file: label.to_string(),
            ..Location::default()
        },
        message: format!("cannot read: {error}"),
    }
}
