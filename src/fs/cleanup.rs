//! What an interrupted run removes: the hidden paths a writer makes beside its destination (the temporary file of
//! an output, the directory of an index being built, the lock beside an index) are registered here while they
//! exist, and [`remove_registered`] removes them.
//!
//! The library installs no signal handler: a host process (the command line, a server, an interpreter) decides
//! what an interrupt does. The command line calls [`remove_registered`] from its signal thread before it exits
//! with 130 or 143, the codes a shell gives a run those signals ended. SIGKILL cannot be caught; what it leaves is
//! removed by the next run that writes the same destination (see [`super::sweep`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A path to remove on an interrupt, and when.
struct Entry {
    path: PathBuf,
    when: When,
}

enum When {
    /// A path this process created under a fresh name: always.
    Always,
    /// A lock file: only if this process holds its lock, through this duplicate of the descriptor that locks it
    /// (a duplicate shares the lock; see [`register_lock`]).
    Held(File),
    /// A lock file whose descriptor could not be duplicated: never (the next run reuses or removes it).
    Never,
}

/// Paths to remove on an interrupt. [`remove_registered`] holds this lock from the signal to the exit, so a step
/// taken under it (see [`Guard::commit`]) is either done and forgotten before the removal, or never started.
static REGISTERED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn registered() -> MutexGuard<'static, Vec<Entry>> {
    // A panic elsewhere while holding the lock leaves the list as it was: still the right list.
    REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every registered path this process may remove, newest first, and holds the registry until the
/// process ends: a step under way in [`Guard::commit`] is either done and forgotten already, or never starts.
/// For a signal handler's thread, which exits right after.
pub fn remove_registered() {
    let entries = registered();
    for entry in entries.iter().rev() {
        let remove_it = match &entry.when {
            When::Always => true,
            When::Held(file) => holds(file, &entry.path),
            When::Never => false,
        };
        if remove_it {
            remove(&entry.path);
        }
    }
    // Never released: the caller exits next, and no guard may commit after the removal.
    std::mem::forget(entries);
}

/// Removes a registered path: a file, or a directory with all it holds. Only paths this process created under
/// a fresh unique name are registered, so a directory holds nothing but what the process wrote there.
fn remove(path: &Path) {
    let _ = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

/// Whether this process holds the flock of `file` and `path` still names it: a lock file may then be removed.
/// Another run's lock is left alone. The lock is taken here if no one holds it: the process ends next.
fn holds(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    super::try_lock(file).unwrap_or(false)
        && file.metadata().is_ok_and(|own| {
            std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (own.dev(), own.ino()))
        })
}

/// A path that an interrupt removes, until the guard is dropped or committed.
#[must_use = "the path is forgotten when the guard is dropped"]
pub struct Guard {
    path: PathBuf,
}

/// Creates a path with `make` (a new file or directory under a fresh unique name) and registers it for removal
/// if the run is interrupted, the registry held throughout: registered after its creation instead, an interrupt
/// arriving in between left it behind (a SIGHUP sent as soon as a build's hidden directory appeared did, once
/// in a CI run).
pub fn create<T, E>(
    make: impl FnOnce() -> Result<T, E>,
    path: impl Fn(&T) -> &Path,
) -> Result<(T, Guard), E> {
    let mut entries = registered();
    let made = make()?;
    let path = path(&made).to_path_buf();
    entries.push(Entry {
        path: path.clone(),
        when: When::Always,
    });
    Ok((made, Guard { path }))
}

/// Registers a lock file, open as `file`, before it is locked: an interrupt removes it only if this process
/// holds its lock by then. Registered before locking, so that no moment passes in which this process holds the
/// lock and an interrupt would leave the file. A duplicate of `file` is kept until the guard is dropped or
/// committed, so the lock is seen through it however `file` is used meanwhile.
pub fn register_lock(path: &Path, file: &File) -> Guard {
    add(path, file.try_clone().map_or(When::Never, When::Held))
}

fn add(path: &Path, when: When) -> Guard {
    registered().push(Entry {
        path: path.to_path_buf(),
        when,
    });
    Guard {
        path: path.to_path_buf(),
    }
}

impl Guard {
    /// Runs `step`, the one that moves the path into place or removes it, and forgets the path, with no
    /// interrupt in between: otherwise an interrupt just after a rename would remove whatever then has the old
    /// name (another run's new lock file, or an old index swapped there).
    pub fn commit<T>(self, step: impl FnOnce() -> T) -> T {
        let mut entries = registered();
        let result = step();
        forget(&mut entries, &self.path);
        // Released before `self` is dropped, whose `Drop` takes the lock again (and finds nothing to forget).
        drop(entries);
        result
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        forget(&mut registered(), &self.path);
    }
}

fn forget(entries: &mut Vec<Entry>, path: &Path) {
    if let Some(at) = entries.iter().rposition(|e| e.path == path) {
        entries.remove(at);
    }
}
