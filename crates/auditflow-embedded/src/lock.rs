//! The data-directory lock: one process at a time.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::EmbeddedError;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive advisory lock (`flock`) on `<dir>/LOCK`, held while this
/// value lives. The kernel drops it when the process dies, even by `kill -9`.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, EmbeddedError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| EmbeddedError::Io {
                context: "cannot open lock file",
                path: path.clone(),
                source,
            })?;
        // Fully qualified: std's inherent `File::try_lock` is newer than our MSRV.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(DirLock { file, path }),
            Err(fs4::TryLockError::WouldBlock) => Err(EmbeddedError::Locked {
                dir: dir.to_path_buf(),
                lock_file: path,
            }),
            Err(fs4::TryLockError::Error(source)) => Err(EmbeddedError::Io {
                context: "cannot lock",
                path,
                source,
            }),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlock explicitly so the
        // intent is visible. Nothing useful can be done with an error here.
        let _ = fs4::FileExt::unlock(&self.file);
        let _ = &self.path;
    }
}
