//! Writing files so that nothing a user had is lost or half-written: locks ([`lock`]), the paths an
//! interrupted run must remove ([`cleanup`]), and the hidden siblings a writer makes beside its destination and
//! renames into place. A leaf: it knows nothing of what the files hold (the index's own policy, which
//! directories may be replaced, is `index::dir`'s).

pub mod cleanup;
pub mod lock;

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Takes an exclusive lock on an open file or directory if no one else holds one: `false` when another does.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Opens `path` (a file or a directory) and locks it if no one else holds it: `None` when another process does
/// (or it cannot be opened). Held until the returned handle is dropped: the holder may then remove the path
/// knowing no run uses it.
pub fn hold_if_unused(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    try_lock(&file).ok()?.then_some(file)
}

/// The directory holding `path` (`.` for a bare name) and its file name: where and under what name to create a
/// temporary sibling that is later renamed over `path` (a rename is atomic only within one file system).
pub fn beside(path: &Path) -> (PathBuf, String) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden siblings add up to 17 bytes (`.` + `.building-` + 6 random characters) to the name, and a name
    // may have 255: a valid 245-byte output name must not fail for its temporary's sake.
    if name.len() > MAX_SIBLING_STEM {
        let mut end = MAX_SIBLING_STEM;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    (dir, name)
}

/// The most bytes of a name that hidden siblings (temporary files, build directories, locks) start with.
const MAX_SIBLING_STEM: usize = 200;

/// tempfile's errors name the hidden temporary path, which the user never gave and cannot act on: the OS error
/// alone, for a message that names the user's own path.
pub fn without_temp_path(error: io::Error) -> io::Error {
    let os = error
        .get_ref()
        .and_then(|inner| inner.source())
        .and_then(|source| source.downcast_ref::<io::Error>());
    match os {
        Some(os) => match os.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(os.kind(), os.to_string()),
        },
        None => error,
    }
}

/// Where `path` leads: the file its symlinks point to, followed to the end (relative links are relative to the
/// link's directory), or `path` itself when it is not a symlink. Replacing the target rather than the link keeps
/// the link, as `sort -o` does. A link that leads nowhere gives the path it names, which is then created.
pub fn follow_links(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    // As the kernel does: past 40 links, a loop; the caller's open then reports it.
    for _ in 0..40 {
        let Ok(link) = fs::read_link(&at) else {
            return at;
        };
        at = match at.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
    }
    path.to_path_buf()
}

/// How old an unlocked hidden sibling must be before a later run removes it: one just created has no lock yet.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(2);

/// Removes the hidden siblings in `dir` that `is_ours` recognises by name, that no run holds (each writer locks
/// its own while it works) and that are at least [`ABANDONED_AFTER`] old: what a killed run left. `remove` does
/// the removal (a file, or a directory's own files). Best effort: what cannot be removed is left for the next
/// run.
pub fn sweep(dir: &Path, is_ours: impl Fn(&str) -> bool, remove: impl Fn(&Path)) {
    let Ok(entries) = dir.read_dir() else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry.file_name().to_str().is_some_and(&is_ours);
        let path = entry.path();
        let settled = fs::symlink_metadata(&path).is_ok_and(|m| {
            (m.is_file() || m.is_dir())
                && m.modified()
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= ABANDONED_AFTER))
        });
        if ours
            && settled
            && let Some(_held) = hold_if_unused(&path)
        {
            remove(&path);
        }
    }
}

/// `mode` less the process's umask: the permissions a file (0o666) or directory (0o777) the user creates gets.
pub fn less_umask(mode: u32) -> u32 {
    mode & !umask()
}

fn umask() -> u32 {
    // /proc tells it without changing it (Linux 4.7 on). Elsewhere it is read by setting it and putting it
    // back, which is right where this is asked: no other thread of the process is creating files then.
    let from_proc = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
            u32::from_str_radix(value.trim(), 8).ok()
        });
    from_proc.unwrap_or_else(|| {
        use rustix::process::umask;
        let mask = umask(rustix::fs::Mode::from_raw_mode(0o077));
        umask(mask);
        mask.as_raw_mode()
    })
}
