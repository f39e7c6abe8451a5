//! One process per journal: an exclusive advisory lock on `<journal>.lock`, which also holds the
//! holder's pid for the error message of the second process. The OS drops the lock when the
//! process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::JournalError;

/// Held for as long as the journal is open for writing.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
}

impl JournalLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(journal: &Path) -> Result<Self, JournalError> {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        let io = |e: std::io::Error| JournalError::Io {
            path: path.display().to_string(),
            detail: format!("cannot open lock file: {e}"),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(JournalError::Locked {
                    path: journal.display().to_string(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
    }
}
