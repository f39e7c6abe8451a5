//! The file-system side of a restore: checking the destination, syncing what was written, and
//! hashing the bytes as they are read.
//! Must not: rename anything into place (that is the last step of `restore`, once all checks passed).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::RestoreError;

/// Checks that `dir` does not exist or is an empty directory; creates its parent. Returns the
/// parent, where the staging directory goes (the same file system, so the rename is atomic).
pub(super) fn prepare_directory(dir: &Path) -> Result<PathBuf, RestoreError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(RestoreError::Destination {
                path: dir.to_path_buf(),
                message: "exists and is not a directory".into(),
            });
        }
        Ok(_) => {
            let mut items = std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
            if items.next().is_some() {
                return Err(RestoreError::Destination {
                    path: dir.to_path_buf(),
                    message:
                        "is not empty; restore into a new or empty directory (nothing was changed)"
                            .into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dir, &e)),
    }
    let parent = parent_of(dir);
    std::fs::create_dir_all(&parent).map_err(|e| io_error(&parent, &e))?;
    Ok(parent)
}

pub(super) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs every file and directory under `root`, so that a restore that says done is on disk.
pub(super) fn sync_tree(root: &Path) -> Result<(), RestoreError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, &e))? {
            let item = item.map_err(|e| io_error(&dir, &e))?;
            let kind = item.file_type().map_err(|e| io_error(&item.path(), &e))?;
            if kind.is_dir() {
                stack.push(item.path());
            } else if kind.is_file() {
                std::fs::File::open(item.path())
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_error(&item.path(), &e))?;
            }
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(dir, &e))
}

pub(super) fn io_error(path: &Path, e: &std::io::Error) -> RestoreError {
    RestoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Hashes (and counts) the compressed bytes as the decoder reads them.
pub(super) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Hashing<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub(super) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.size)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hasher.update(&out[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
