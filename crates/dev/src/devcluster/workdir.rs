//! Where a dev cluster keeps its files: a given directory, or a temporary one — on tmpfs when
//! there is a roomy one, because etcd on a disk makes teardown wait for writeback (seconds, at
//! worst half a minute on a busy disk), while on tmpfs everything is gone within milliseconds.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{Error, Result};

/// Overrides the parent directory of temporary work dirs.
pub const TMPDIR_ENV: &str = "COCOON_DEVCLUSTER_TMPDIR";
/// The tmpfs used when it is at least [`MIN_TMPFS_BYTES`] large.
const SHM: &str = "/dev/shm";
/// etcd preallocates 64 MiB write-ahead-log segments; leave room for several and for other users.
const MIN_TMPFS_BYTES: u64 = 1 << 30;

/// The work dir and, when it is temporary, the handle that removes it.
pub fn create(given: Option<&Path>) -> Result<(PathBuf, Option<TempDir>)> {
    if let Some(dir) = given {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        return Ok((dir.to_path_buf(), None));
    }
    let parent = temp_parent();
    let dir = tempfile::Builder::new()
        .prefix("cocoon-devcluster-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(format!("create a work dir in {}", parent.display()), e))?;
    Ok((dir.path().to_path_buf(), Some(dir)))
}

/// `$COCOON_DEVCLUSTER_TMPDIR`, else `/dev/shm` if it is a large enough tmpfs, else the
/// system temp dir (`$TMPDIR`).
fn temp_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os(TMPDIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    match tmpfs_size(&mounts, SHM) {
        Some(size) if size >= MIN_TMPFS_BYTES => PathBuf::from(SHM),
        _ => std::env::temp_dir(),
    }
}

/// The `size=` of the tmpfs mounted at `mount_point`, from `/proc/self/mounts` text. The kernel
/// prints it in KiB (`size=65536k`); without the option a tmpfs may use half the memory.
fn tmpfs_size(mounts: &str, mount_point: &str) -> Option<u64> {
    let line = mounts.lines().rev().find(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(1) == Some(mount_point) && fields.next() == Some("tmpfs")
    })?;
    let options = line.split_whitespace().nth(3)?;
    let Some(size) = options.split(',').find_map(|o| o.strip_prefix("size=")) else {
        return Some(u64::MAX);
    };
    let (digits, unit) = match size.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1024),
        None => (size, 1),
    };
    digits.parse::<u64>().ok().map(|n| n.saturating_mul(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_size_is_read_from_the_mount_options() {
        let mounts = "proc /proc proc rw 0 0\n\
                      shm /dev/shm tmpfs rw,nosuid,nodev,size=65536k,inode64 0 0\n";
        assert_eq!(tmpfs_size(mounts, "/dev/shm"), Some(64 << 20));
    }

    #[test]
    fn a_missing_or_non_tmpfs_mount_has_no_tmpfs_size() {
        assert_eq!(tmpfs_size("/dev/vda / ext4 rw 0 0\n", "/dev/shm"), None);
        assert_eq!(tmpfs_size("/dev/vda /dev/shm ext4 rw 0 0\n", "/dev/shm"), None);
    }

    #[test]
    fn a_tmpfs_without_a_size_option_counts_as_large() {
        assert_eq!(tmpfs_size("tmpfs /dev/shm tmpfs rw,nosuid 0 0\n", "/dev/shm"), Some(u64::MAX));
    }
}
