//! Unpacking an untrusted `.tar.gz` into a directory. Whoever can write the bucket must not be
//! able to write outside it: every entry is checked before the `tar` crate unpacks it (which
//! checks again): no absolute paths, no `..`, nothing written through a symbolic link, links
//! only to places inside, no device files or FIFOs, no owners, no setuid/setgid bits, and a cap
//! on the inflated size so that a decompression bomb cannot fill the disk.
//! Must not: follow a symbolic link, or leave the directory it was given.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::RestoreError;
use super::place::SyncQueue;
use crate::pipeline::validate::{ContentError, ContentFacts, TopLevel};

/// Unpacks the gzip-compressed tar stream `input` into `dir` (which exists and is empty),
/// inflating at most `max_inflated` bytes. Returns what it saw, as the validator records it.
pub(crate) fn extract(
    input: impl Read,
    dir: &Path,
    max_inflated: u64,
) -> Result<ContentFacts, RestoreError> {
    let mut inflated = Capped {
        inner: flate2::read::MultiGzDecoder::new(input),
        count: 0,
        limit: max_inflated,
    };
    // Files are fsynced as they are written (by `SyncQueue`); the caller syncs the directories.
    let mut walk = Walk {
        dir,
        entries: 0,
        top_level: TopLevel::default(),
        files: HashSet::new(),
        links: HashSet::new(),
        dirs: Vec::new(),
        sync: SyncQueue::start(),
    };
    let unpacked = walk.unpack_all(&mut inflated);
    let unpacked = unpacked.and_then(|()| drain_after_end(&mut inflated));
    if inflated.count > inflated.limit {
        return Err(RestoreError::TooLarge {
            limit: inflated.limit,
        });
    }
    unpacked?;
    walk.apply_directory_modes()?;
    walk.sync.finish()?;
    Ok(ContentFacts {
        uncompressed_bytes: inflated.count,
        tar_entries: walk.entries,
        top_level: walk.top_level.into_sorted(),
    })
}

struct Walk<'a> {
    dir: &'a Path,
    entries: u64,
    top_level: TopLevel,
    /// Regular files unpacked so far (hard links may point at these only).
    files: HashSet<PathBuf>,
    /// Symbolic links unpacked so far (nothing may be written through these).
    links: HashSet<PathBuf>,
    /// Directories and their modes, applied at the end (a read-only directory must not stop
    /// its own files from being written).
    dirs: Vec<(PathBuf, u32)>,
    /// Files on their way to disk.
    sync: SyncQueue,
}

impl Walk<'_> {
    fn unpack_all(&mut self, inflated: &mut Capped<impl Read>) -> Result<(), RestoreError> {
        let mut archive = tar::Archive::new(inflated);
        archive.set_preserve_permissions(false);
        archive.set_preserve_ownerships(false);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(false);
        archive.set_preserve_mtime(true);
        let entries = archive.entries().map_err(damaged)?;
        for entry in entries {
            let mut entry = entry.map_err(damaged)?;
            let kind = entry.header().entry_type();
            if kind == EntryType::XGlobalHeader {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.entries += 1;
            self.top_level.add(&name);
            let path = self.checked_path(&name, &entry)?;
            let Some(path) = path else {
                // "./" or "": the directory itself.
                continue;
            };
            let mode = entry.header().mode().unwrap_or(0o644);
            match kind {
                EntryType::Regular | EntryType::Continuous => {
                    self.unpack(&mut entry, &name)?;
                    self.sync.push(self.dir.join(&path));
                    self.files.insert(path);
                }
                EntryType::Directory => {
                    if self.files.contains(&path) || self.links.contains(&path) {
                        return Err(refused(&name, "a directory where a file already is"));
                    }
                    std::fs::create_dir_all(self.dir.join(&path))
                        .map_err(|e| io_error(&self.dir.join(&path), e))?;
                    self.dirs.push((path, mode));
                }
                EntryType::Symlink => {
                    // Only relative targets without `..`: a chain of such links can only
                    // descend, so no link (nor `mongod` following it later) leaves the
                    // directory. A lexical check of `..` is fooled by a chain (`b -> .`,
                    // `c -> b/../outside`).
                    let target = link_target(&entry, &name)?;
                    if relative_inside(&target).is_none() {
                        return Err(refused(
                            &name,
                            &format!(
                                "a symbolic link to {}, which could lead outside the restore directory (only relative links without `..` are allowed)",
                                target.display()
                            ),
                        ));
                    }
                    self.unpack(&mut entry, &name)?;
                    self.links.insert(path);
                }
                EntryType::Link => {
                    let target = link_target(&entry, &name)?;
                    let inside = relative_inside(&target);
                    if !inside.as_ref().is_some_and(|t| self.files.contains(t)) {
                        return Err(refused(
                            &name,
                            &format!(
                                "a hard link to {}, which is not a file unpacked before it inside the restore directory",
                                target.display()
                            ),
                        ));
                    }
                    self.unpack(&mut entry, &name)?;
                    self.files.insert(path);
                }
                EntryType::Char | EntryType::Block => {
                    return Err(refused(&name, "a device file"));
                }
                EntryType::Fifo => return Err(refused(&name, "a FIFO")),
                other => {
                    return Err(refused(
                        &name,
                        &format!(
                            "an entry of tar type {:?}, which a data directory never holds",
                            other.as_byte() as char
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entry's path relative to the directory, or `None` for the directory itself;
    /// refused when it leaves the directory, passes through a symbolic link, or repeats.
    fn checked_path(
        &self,
        name: &str,
        entry: &tar::Entry<'_, impl Read>,
    ) -> Result<Option<PathBuf>, RestoreError> {
        let raw = entry.path().map_err(damaged)?;
        let mut path = PathBuf::new();
        for part in raw.components() {
            match part {
                Component::Normal(p) => path.push(p),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refused(name, "an absolute path"));
                }
                Component::ParentDir => return Err(refused(name, "a `..` component")),
            }
        }
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        if let Some(link) = path.ancestors().skip(1).find(|a| self.links.contains(*a)) {
            return Err(refused(
                name,
                &format!(
                    "a path through the symbolic link {} (nothing is written through a link)",
                    link.display()
                ),
            ));
        }
        let is_dir = entry.header().entry_type() == EntryType::Directory;
        if !is_dir && (self.files.contains(&path) || self.links.contains(&path)) {
            return Err(refused(name, "a second entry for the same path"));
        }
        Ok(Some(path))
    }

    fn unpack(
        &self,
        entry: &mut tar::Entry<'_, impl Read>,
        name: &str,
    ) -> Result<(), RestoreError> {
        match entry.unpack_in(self.dir) {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused(name, "a path outside the restore directory")),
            // The cap or the stream's own damage surfaces here as an I/O error of the reader;
            // anything else is the disk.
            Err(e) if is_stream_error(&e) => Err(damaged(e)),
            Err(e) => Err(RestoreError::Unpack {
                entry: name.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    fn apply_directory_modes(&self) -> Result<(), RestoreError> {
        // Deepest first, so that a parent's mode never stops its child's being set.
        for (path, mode) in self.dirs.iter().rev() {
            let full = self.dir.join(path);
            let perms = std::fs::Permissions::from_mode((mode & 0o777) | 0o700);
            std::fs::set_permissions(&full, perms).map_err(|e| io_error(&full, e))?;
        }
        Ok(())
    }
}

/// After the end-of-archive blocks: only zeros, up to the end of the gzip stream, whose CRC-32
/// and length the decoder checks as it reaches it.
fn drain_after_end(inflated: &mut Capped<impl Read>) -> Result<(), RestoreError> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match inflated.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => {
                return Err(RestoreError::Content(ContentError::Tar {
                    offset: inflated.count,
                    detail: "data after the end-of-archive blocks".into(),
                }));
            }
            Err(e) => return Err(damaged(e)),
        }
    }
}

fn link_target(entry: &tar::Entry<'_, impl Read>, name: &str) -> Result<PathBuf, RestoreError> {
    match entry.link_name().map_err(damaged)? {
        Some(t) if !t.as_os_str().is_empty() => Ok(t.into_owned()),
        _ => Err(refused(name, "a link without a target")),
    }
}

/// A relative path of normal components only, as the archive would name a file it holds.
fn relative_inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn refused(entry: &str, why: &str) -> RestoreError {
    RestoreError::Refused {
        entry: entry.to_owned(),
        why: why.to_owned(),
    }
}

fn damaged(e: std::io::Error) -> RestoreError {
    RestoreError::Damaged {
        detail: e.to_string(),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> RestoreError {
    RestoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Errors the reader raised (the cap, a damaged stream) rather than the file system.
fn is_stream_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::FileTooLarge
    ) || e.get_ref().is_some_and(|inner| {
        inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(is_stream_error)
    })
}

/// Counts inflated bytes and fails the read past `limit`.
struct Capped<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("more than {} bytes inflated", self.limit),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::relative_inside;
    use std::path::Path;

    #[test]
    fn link_targets_are_judged_conservatively() {
        assert_eq!(
            relative_inside(Path::new("./a/b")),
            Some(Path::new("a/b").to_path_buf())
        );
        assert_eq!(relative_inside(Path::new("a/../b")), None);
        assert_eq!(relative_inside(Path::new("../x")), None);
        assert_eq!(relative_inside(Path::new("/etc/passwd")), None);
        assert_eq!(relative_inside(Path::new(".")), None);
    }
}
