//! Stamps the git commit into the binaries' `--version` (env `COCOON_GIT_COMMIT`).
//!
//! The commit comes from `COCOON_GIT_COMMIT` when set (image and release builds pass it; a
//! developer may set it to anything to skip the rebuild that a new commit otherwise causes), else
//! from `git rev-parse`, else `unknown` (a source tarball without git).

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=COCOON_GIT_COMMIT");
    let commit = match std::env::var("COCOON_GIT_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => {
            // Rerun when HEAD moves: HEAD itself, the branch it names, and packed refs.
            if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
                let dir = PathBuf::from(dir);
                let mut watch = vec![dir.join("HEAD"), dir.join("packed-refs")];
                if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(dir.join(head));
                }
                for path in watch.iter().filter(|p| Path::exists(p)) {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=COCOON_GIT_COMMIT={commit}");
}
