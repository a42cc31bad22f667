//! File locks (flock, through `std::fs::File::lock`): one `index` writer at a time per index, and the marks that
//! tell a later run that a temporary file or build directory is still in use. The kernel drops a flock when its
//! holder ends, however it ends, so a killed run never leaves a lock held.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cleanup;
use crate::output;

/// Takes an exclusive lock on an open file or directory if no one else holds one: `false` when another does.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Waits for an exclusive lock on an open file (a signal that interrupts the wait does not end it).
fn lock(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

/// Opens `path` (a file or a directory) and locks it if no one else holds it: `None` when another process does
/// (or it cannot be opened). Held until the returned handle is dropped: the holder may then remove the path
/// knowing no run uses it.
pub fn hold_if_unused(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    try_lock(&file).ok()?.then_some(file)
}

/// The lock of an index's writers: `index` rebuilds and appends of one index run one at a time. It is a hidden
/// file beside the index, `.NAME.lock`, because the index's own directory is swapped away by a rebuild, and a
/// lock inside it would be left behind with the old directory. The file exists only while a writer holds it:
/// the holder removes it before unlocking, and a waiter that then gets the lock on the removed file sees that the
/// name no longer leads to it and starts over (the usual protocol for lock files that are removed).
pub struct WriterLock {
    path: PathBuf,
    /// The locked file, and its registration for removal on an interrupt (taken apart in `Drop`).
    held: Option<(File, cleanup::Guard)>,
}

impl WriterLock {
    /// Waits until no other writer holds the lock of the index `dir`, saying once on stderr that it waits, and
    /// takes it. `None` when the directory that would hold the index does not exist: there is then no index,
    /// and nothing for another writer to be doing there.
    pub fn acquire(dir: &Path) -> Result<Option<WriterLock>> {
        cleanup::install();
        let (parent, name) = output::beside(dir);
        let path = parent.join(format!(".{name}.lock"));
        let mut said = false;
        loop {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !parent.exists() => {
                    return Ok(None);
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot create the lock file {} for index {}",
                            path.display(),
                            dir.display()
                        )
                    });
                }
            };
            let guard = cleanup::register_lock(&path, &file);
            let lock_error = || format!("cannot lock {}", path.display());
            if !try_lock(&file).with_context(lock_error)? {
                if !said {
                    // Even with -q: a run that stops without a word looks hung.
                    eprintln!(
                        "index: waiting for another `index` run on {} to finish",
                        dir.display()
                    );
                    said = true;
                }
                lock(&file).with_context(lock_error)?;
            }
            let same = |meta: std::fs::Metadata| {
                file.metadata()
                    .is_ok_and(|own| (own.dev(), own.ino()) == (meta.dev(), meta.ino()))
            };
            if std::fs::metadata(&path).is_ok_and(same) {
                return Ok(Some(WriterLock {
                    path,
                    held: Some((file, guard)),
                }));
            }
            drop(guard);
            // The writer before removed the file we waited on; a newer run may hold a new one by that name.
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Some((file, guard)) = self.held.take() {
            // Removed while still locked, so that no waiter can take a lock on it that a newer run would not see.
            guard.commit(|| std::fs::remove_file(&self.path)).ok();
            drop(file);
        }
    }
}
