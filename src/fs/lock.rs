//! The writers' lock of an index (flock, through `std::fs::File::lock`): one build or append at a time per
//! index. The kernel drops a flock when its holder ends, however it ends, so a killed run never leaves a lock
//! held.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{beside, cleanup, try_lock};

/// Waits for an exclusive lock on an open file (a signal that interrupts the wait does not end it).
fn lock(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
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
    /// The lock file of the index `dir`: `.NAME.lock` beside the folder it names (`e4/.` is `e4`, a symlink
    /// leads to its target, as a writer resolves it).
    pub fn path_for(dir: &Path) -> PathBuf {
        let dir = super::follow_links(&dir.components().collect::<PathBuf>());
        let (parent, name) = beside(&dir);
        parent.join(format!(".{name}.lock"))
    }

    /// Waits until no other writer holds the lock of the index `dir`, calling `waiting` once if it must wait
    /// (a front end says so: a run that stops without a word looks hung), and takes it. `None` when the
    /// directory that would hold the index does not exist: there is then no index, and nothing for another
    /// writer to be doing there.
    pub(crate) fn acquire(dir: &Path, waiting: impl FnOnce()) -> Result<Option<WriterLock>> {
        let (parent, name) = beside(dir);
        let mut waiting = Some(waiting);
        let path = parent.join(format!(".{name}.lock"));
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
                if let Some(waiting) = waiting.take() {
                    waiting();
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
