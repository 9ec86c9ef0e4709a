//! Records the git commit the binary is built from, for `kubefence version`:
//! `KUBEFENCE_GIT_COMMIT` when set (a build from a source archive, or a
//! container build without `.git`), else `git rev-parse HEAD` with
//! `-dirty` when the work tree has changes, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo::rerun-if-env-changed=KUBEFENCE_GIT_COMMIT");
    let commit = match std::env::var("KUBEFENCE_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => match git(&["rev-parse", "HEAD"]) {
            Some(head) => {
                // A new commit or a change in the index rebuilds the stamp.
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    println!("cargo::rerun-if-changed={dir}/HEAD");
                    println!("cargo::rerun-if-changed={dir}/index");
                    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                        println!("cargo::rerun-if-changed={dir}/{reference}");
                    }
                }
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{head}-dirty") } else { head }
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo::rustc-env=KUBEFENCE_GIT_COMMIT={commit}");
    if let Ok(target) = std::env::var("TARGET") {
        println!("cargo::rustc-env=KUBEFENCE_TARGET={target}");
    }
}
