//! `--out-dir DIR`: one file per object, `DIR/<namespace>/<name>.<ext>`,
//! never anywhere else.
//!
//! Namespace and name come from the input, so they are checked here on
//! their own (whatever the loader validated): each must be a plain name
//! (lower-case letters, digits, `-` and `.`, starting and ending with a
//! letter or digit), so no `..`, `/`, absolute path or hidden name can take
//! a write out of DIR. A namespace directory that is a symbolic link is not
//! written through; a file that is a symbolic link is replaced, not
//! followed. Each file is written to a new temporary file beside it and
//! renamed into place, so an interrupted run leaves no half-written file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One file to write.
pub struct Entry<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// What it is, for messages: `NetworkPolicy shop/kf-baseline-…`.
    pub object: String,
    pub text: String,
}

/// An object that was not written, and why.
#[derive(Debug)]
pub struct Refused {
    pub object: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub written: usize,
    pub refused: Vec<Refused>,
    /// Symbolic links that were replaced by a written file.
    pub replaced_links: Vec<PathBuf>,
}

/// Longest name a path component may have (a DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;

/// Why `s` is not a plain file or directory name, if it is not.
pub fn check_plain_name(s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if s.is_empty() {
        return Err("it is empty".to_string());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !s.chars().all(ok_char) || !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err(
            "it is not a plain name (lower-case letters, digits, '-' and '.', starting and \
             ending with a letter or digit); written as a path it would leave --out-dir"
                .to_string(),
        );
    }
    Ok(())
}

/// Writes every entry as `dir/<namespace>/<name>.<extension>`. An entry
/// that would leave `dir` or go through a symbolic link is refused and the
/// others are still written; an I/O failure stops the run.
pub fn write_all<'a>(
    dir: &Path,
    extension: &str,
    entries: impl IntoIterator<Item = Entry<'a>>,
) -> anyhow::Result<Outcome> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut outcome = Outcome::default();
    for entry in entries {
        match target_path(dir, &entry, extension) {
            Ok(path) => {
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    outcome.replaced_links.push(path.clone());
                }
                write_atomically(&path, &entry.text)?;
                outcome.written += 1;
            }
            Err(reason) => outcome.refused.push(Refused {
                object: entry.object,
                reason,
            }),
        }
    }
    Ok(outcome)
}

/// Where an entry goes, its namespace directory created; or why not.
fn target_path(dir: &Path, entry: &Entry<'_>, extension: &str) -> Result<PathBuf, String> {
    check_plain_name(entry.namespace)
        .map_err(|why| format!("the namespace {:?} is refused: {why}", entry.namespace))?;
    check_plain_name(entry.name)
        .map_err(|why| format!("the name {:?} is refused: {why}", entry.name))?;
    let ns_dir = dir.join(entry.namespace);
    match fs::symlink_metadata(&ns_dir) {
        Ok(m) if m.is_symlink() => {
            return Err(format!(
                "{} is a symbolic link; kubefence does not write through links in --out-dir",
                ns_dir.display()
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "{} exists and is not a directory",
                ns_dir.display()
            ));
        }
        Ok(_) => {}
        Err(_) => fs::create_dir(&ns_dir)
            .map_err(|e| format!("cannot create {}: {e}", ns_dir.display()))?,
    }
    let path = ns_dir.join(format!("{}.{extension}", entry.name));
    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
        return Err(format!("{} is a directory", path.display()));
    }
    Ok(path)
}

/// Writes `text` to a new temporary file beside `path` (created exclusively,
/// so no existing file or link is written through) and renames it over
/// `path` (which replaces a link rather than following it).
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for good in [
            "default",
            "kube-system",
            "kf-baseline-deployment-web",
            "a.b",
            "0",
        ] {
            assert_eq!(check_plain_name(good), Ok(()), "{good}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", "/", ".hidden", "x.", "-x", "x-", "A", "a b",
            "a\\b", "a\0b", "é",
        ] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_plain_name(&"a".repeat(254)).is_err());
    }

    fn entry<'a>(namespace: &'a str, name: &'a str) -> Entry<'a> {
        Entry {
            namespace,
            name,
            object: format!("NetworkPolicy {namespace}/{name}"),
            text: "kind: NetworkPolicy\n".to_string(),
        }
    }

    #[test]
    fn hostile_paths_are_refused_and_the_rest_written() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let absolute = root.path().join("abs");
        let abs = absolute.to_str().unwrap();
        let entries = vec![
            entry("default", "ok"),
            entry("..", "up"),
            entry("../..", "up-two"),
            entry(abs, "absolute"),
            entry("default", "../escape"),
            entry("default", "a/../../b"),
            entry(".", "dot"),
        ];
        let outcome = write_all(&out, "yaml", entries).unwrap();
        assert_eq!(outcome.written, 1);
        assert_eq!(outcome.refused.len(), 6, "{outcome:?}");
        let mut found: Vec<PathBuf> = Vec::new();
        for e in walkdir_like(root.path()) {
            found.push(e.strip_prefix(root.path()).unwrap().to_path_buf());
        }
        assert_eq!(found, [PathBuf::from("out/default/ok.yaml")]);
    }

    /// Every file under `dir`, not following links.
    fn walkdir_like(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir_like(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
