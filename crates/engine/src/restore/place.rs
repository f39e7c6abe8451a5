//! The file-system side of a restore: checking the destination, the staging directory a
//! directory restore is written into ([`Staged`]), syncing what was written, and hashing the
//! bytes as they are read.
//! Must not: put anything in place on its own: `restore` calls [`Staged::put_in_place`] only
//! once every check has passed.

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

/// Bytes written to an archive file between two early syncs.
const EARLY_SYNC_BYTES: u64 = 64 << 20;

/// Starts a written file's trip to disk while the restore goes on, so that the last fsync has
/// little left to wait for: every [`EARLY_SYNC_BYTES`], a handle on the same open file is
/// fdatasync'ed on its own thread (one at a time). Its result is kept: a write-back error
/// reported to the early sync is not reported again to the last one, so it must not be lost.
pub(super) struct EarlySync {
    file: std::fs::File,
    path: PathBuf,
    unsynced: u64,
    running: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    failed: Option<std::io::Error>,
}

impl EarlySync {
    pub(super) fn new(file: &std::fs::File, path: &Path) -> Result<Self, RestoreError> {
        Ok(Self {
            file: file.try_clone().map_err(|e| io_error(path, &e))?,
            path: path.to_path_buf(),
            unsynced: 0,
            running: None,
            failed: None,
        })
    }

    /// Notes `n` more bytes written; may start a sync.
    pub(super) fn wrote(&mut self, n: u64) {
        self.unsynced += n;
        if self.unsynced < EARLY_SYNC_BYTES
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        self.collect();
        if let Ok(clone) = self.file.try_clone() {
            self.running = Some(std::thread::spawn(move || clone.sync_data()));
            self.unsynced = 0;
        }
    }

    fn collect(&mut self) {
        if let Some(h) = self.running.take() {
            let result = h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread panicked")));
            if let Err(e) = result {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Waits for the sync in flight, then syncs the rest; any error of any sync fails it.
    pub(super) fn finish(mut self) -> Result<(), RestoreError> {
        self.collect();
        if let Some(e) = self.failed.take() {
            return Err(io_error(&self.path, &e));
        }
        self.file.sync_all().map_err(|e| io_error(&self.path, &e))
    }
}

/// fsyncs each unpacked file on a thread of its own as soon as it is written, so that the
/// disk works while the download goes on; [`SyncQueue::finish`] waits for all of them.
pub(super) struct SyncQueue {
    tx: Option<std::sync::mpsc::Sender<PathBuf>>,
    worker: std::thread::JoinHandle<Result<(), RestoreError>>,
}

impl SyncQueue {
    pub(super) fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let worker = std::thread::spawn(move || {
            let mut first_error = None;
            for path in rx {
                if first_error.is_none()
                    && let Err(e) = std::fs::File::open(&path).and_then(|f| f.sync_all())
                {
                    first_error = Some(io_error(&path, &e));
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        Self {
            tx: Some(tx),
            worker,
        }
    }

    /// Queues a file that was written.
    pub(super) fn push(&self, path: PathBuf) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(path);
        }
    }

    /// Waits until every queued file is on disk.
    pub(super) fn finish(mut self) -> Result<(), RestoreError> {
        self.tx = None;
        self.worker.join().unwrap_or_else(|_| {
            Err(RestoreError::Io {
                path: PathBuf::new(),
                message: "the sync thread panicked".into(),
            })
        })
    }
}

/// fsyncs every directory under `root` (their files were synced as they were written), so that
/// the names are on disk too.
pub(super) fn sync_directories(root: &Path) -> Result<(), RestoreError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, &e))? {
            let item = item.map_err(|e| io_error(&dir, &e))?;
            let kind = item.file_type().map_err(|e| io_error(&item.path(), &e))?;
            if kind.is_dir() {
                stack.push(item.path());
            }
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

/// Moves every entry of `staging` (inside `dir`) up into `dir`: renames within one file
/// system. On failure, what was moved is removed again, so `dir` is left as empty as it was.
pub(super) fn move_entries_up(staging: &Path, dir: &Path) -> Result<(), RestoreError> {
    let mut moved = Vec::new();
    let result = (|| {
        for item in std::fs::read_dir(staging).map_err(|e| io_error(staging, &e))? {
            let item = item.map_err(|e| io_error(staging, &e))?;
            let to = dir.join(item.file_name());
            std::fs::rename(item.path(), &to).map_err(|e| io_error(&to, &e))?;
            moved.push(to);
        }
        Ok(())
    })();
    if result.is_err() {
        for path in moved {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    result
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

/// A directory restore in the making: nothing shows at `dir` until [`Staged::put_in_place`].
pub(super) struct Staged {
    dir: PathBuf,
    parent: PathBuf,
    existing: bool,
    staging: tempfile::TempDir,
}

impl Staged {
    /// A new directory is staged beside `dir` and renamed into place; an existing (empty) one,
    /// which may be a mount point of its own file system (or `.`), is staged inside it and the
    /// entries moved up at the end, so the data never lands on the parent's file system.
    pub(super) fn new(dir: &Path) -> Result<Self, RestoreError> {
        let parent = prepare_directory(dir)?;
        let existing = dir.is_dir();
        let (stage_in, prefix) = if existing {
            (dir.to_path_buf(), ".restoring-".to_owned())
        } else {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "restore".into());
            (parent.clone(), format!(".{name}.restoring-"))
        };
        let staging = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&stage_in)
            .map_err(|e| io_error(&stage_in, &e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            parent,
            existing,
            staging,
        })
    }

    pub(super) fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Every check has passed: make the restore visible at `dir`, durably.
    pub(super) fn put_in_place(self) -> Result<(), RestoreError> {
        sync_directories(self.staging.path())?;
        if self.existing {
            move_entries_up(self.staging.path(), &self.dir)?;
            drop(self.staging);
            sync_dir(&self.dir)
        } else {
            // The staging directory is the complete restore: one rename puts it in place.
            let staged = self.staging.keep();
            std::fs::rename(&staged, &self.dir).map_err(|e| {
                let _ = std::fs::remove_dir_all(&staged);
                io_error(&self.dir, &e)
            })?;
            sync_dir(&self.parent)
        }
    }
}
