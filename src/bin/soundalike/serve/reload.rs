//! The index the server answers from, reopened when a rebuild swaps a new one into its directory, and only once
//! the new one has been checked.
//!
//! An append needs nothing: it commits to the same LMDB environment, and each question opens a read transaction
//! of its own, which sees the last commit. A rebuild writes a new directory and swaps it in atomically; the open
//! handle still reads the old files (unlinked but mapped) until it is dropped, and LMDB opens a path once per
//! process, so the new index can only be opened after the old handle is gone. The handle therefore sits behind a
//! read-write lock: questions hold it for reading while they search (milliseconds); the reopen takes it for
//! writing, which waits for those in flight, drops the old handle and opens the new one. Questions arriving
//! meanwhile wait for the few milliseconds an open takes, and are answered from the new index: never from half
//! of one, never with an error.
//!
//! What is swapped in may not be an index that answers: a damaged or cut-short `data.mdb` moved in by hand. Once
//! the old handle is dropped it cannot be had back, so the new index is checked first, in a child process
//! (`soundalike info --check`): this process cannot open the new files while it holds the old ones (LMDB's rule
//! above), and a page missing from a cut-short file faults the process that reads it (SIGBUS), which must not be
//! the server. Only when the check passes is the old handle given up. When it fails, the server keeps answering
//! from the old handle, says so once, and checks again when the data file changes (a new file, or the same one
//! written to).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use soundalike::Index;

use super::errors::ApiError;

/// How long a replaced index's check may take before it is taken to have failed (its child killed). It maps
/// the tables a question reads and asks one question: milliseconds at a million clips, unless the disk is slow.
const CHECK_DEADLINE: Duration = Duration::from_secs(30);

pub struct LiveIndex {
    dir: PathBuf,
    /// The open index, or why it could not be reopened (the next look tries again).
    current: RwLock<std::result::Result<Index, String>>,
    /// The last data file checked before a reopen, and what its check said (why it failed): a file is checked
    /// once, and again only when it changes.
    checked: Mutex<Option<(Stamp, std::result::Result<(), String>)>>,
}

/// A data file as `stat` sees it: another file, or the same one written to since, has another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl Stamp {
    /// The stamp of the data file in `dir`, following links as opening it does; `None` when there is none.
    fn of(dir: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.join("data.mdb")).ok()?;
        Some(Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

impl LiveIndex {
    /// Opens the index; an error here ends the run (there is nothing to serve). An index that opens but cannot
    /// answer (damaged past its settings) is served all the same: `/healthz` says so with 503, and a rebuild
    /// swapped in is taken up as usual.
    pub fn open(dir: &Path) -> Result<LiveIndex> {
        let index = Index::open(dir)?;
        Ok(LiveIndex {
            dir: dir.to_path_buf(),
            current: RwLock::new(Ok(index)),
            checked: Mutex::new(None),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, std::result::Result<Index, String>> {
        // A panic while the lock was held cannot leave the handle half changed: it is replaced whole.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn last_check(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(Stamp, std::result::Result<(), String>)>> {
        self.checked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `work` on the index as now open (blocking: call it off the async threads).
    pub fn with<T>(
        &self,
        work: impl FnOnce(&Index) -> soundalike::Result<T>,
    ) -> std::result::Result<T, ApiError> {
        match &*self.read() {
            Ok(index) => work(index).map_err(ApiError::from),
            Err(why) => Err(ApiError::unavailable(why.clone())),
        }
    }

    /// Why the data file now in the directory is not answered from, while the server answers from the one
    /// before it: its check failed (`None` when there is no such file).
    pub fn refused(&self) -> Option<String> {
        let now = Stamp::of(&self.dir)?;
        match &*self.last_check() {
            Some((stamp, Err(why))) if *stamp == now => Some(why.clone()),
            _ => None,
        }
    }

    /// Reopens the index when a rebuild has replaced it and the new one passes its check (or when the last
    /// reopen failed), returning a line to log when something changed. Blocking: a check may take up to
    /// [`CHECK_DEADLINE`].
    pub fn reopen_if_replaced(&self) -> Option<String> {
        let stale = match &*self.read() {
            Ok(index) => index.replaced(),
            Err(_) => true,
        };
        if !stale || !soundalike::holds_index(&self.dir) {
            // A directory without an index (a rebuild's swap on a file system without an atomic exchange, or
            // an index deleted by hand): keep answering from the handle we have, which still reads its files.
            return None;
        }
        let candidate = Stamp::of(&self.dir)?;
        let known = self
            .last_check()
            .as_ref()
            .filter(|(stamp, _)| *stamp == candidate)
            .map(|(_, outcome)| outcome.clone());
        match known {
            // Refused already, and said so: looked at again when the file changes.
            Some(Err(_)) => return None,
            // Passed, but the open after it failed (see below): tried again without another check.
            Some(Ok(())) => {}
            None => {
                let outcome = check_in_child(&self.dir);
                // Written to while it was checked (an append, a copy still arriving): checked again next time.
                if Stamp::of(&self.dir) != Some(candidate) {
                    return None;
                }
                *self.last_check() = Some((candidate, outcome.clone()));
                if let Err(why) = outcome {
                    return Some(match &*self.read() {
                        Ok(_) => format!(
                            "warning: index {} was replaced by one that fails its check, so the server keeps \
                             answering from the one before (the new one is checked again when it changes): {why}",
                            self.dir.display()
                        ),
                        Err(_) => format!("warning: index unavailable: {why}"),
                    });
                }
            }
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another look may have reopened it while this one waited for the lock.
        if current.as_ref().is_ok_and(|index| !index.replaced()) {
            return None;
        }
        // Replaced again since the check: that file is checked at the next look, the old handle kept meanwhile.
        if Stamp::of(&self.dir) != Some(candidate) {
            return None;
        }
        let failed_before = current.as_ref().err().cloned();
        // The old handle is dropped first: the new index cannot be opened while it lives. Should the open fail
        // although the check passed (the files changed between the two in a way their stamp does not show, or
        // this process lacks what the child had), there is no handle to go back to: questions get 503 with the
        // reason, and each look tries the open again until it succeeds or the file changes.
        *current = Err(format!("index {} is being reopened", self.dir.display()));
        *current = Index::open(&self.dir).map_err(|e| format!("index unavailable: {e}"));
        match &*current {
            Ok(index) => Some(format!(
                "index {} was rebuilt: answering from the new one ({} clips)",
                self.dir.display(),
                index.len().unwrap_or(0)
            )),
            // Said once, not at every look.
            Err(why) if failed_before.as_ref() == Some(why) => None,
            Err(why) => Some(format!("warning: {why}")),
        }
    }
}

/// Checks the index in `dir` in a child process, `soundalike info --check`, which opens it (its data file
/// against its contents, its settings) and reads what a question reads (`Index::check_dir`); the child's
/// error line is the reason when it fails. A child that has not finished by [`CHECK_DEADLINE`] is killed.
fn check_in_child(dir: &Path) -> std::result::Result<(), String> {
    // The running program even when an upgrade has replaced its file since it started.
    let program = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| format!("cannot check it: {e}"))?
    };
    let mut child = Command::new(program)
        .args(["info", "--check", "--json", "--index"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot check it: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CHECK_DEADLINE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "its check did not finish within {} s",
                    CHECK_DEADLINE.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot check it: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    // One line, written before the child ended: the pipe holds it.
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    let said = said.lines().last().unwrap_or("").trim();
    let said = said.strip_prefix("error: ").unwrap_or(said);
    Err(if said.is_empty() {
        format!("its check failed ({status})")
    } else {
        said.to_string()
    })
}
