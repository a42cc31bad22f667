//! The index the server answers from, reopened when a rebuild swaps a new one into its directory.
//!
//! An append needs nothing: it commits to the same LMDB environment, and each question opens a read transaction
//! of its own, which sees the last commit. A rebuild writes a new directory and swaps it in atomically; the open
//! handle still reads the old files (unlinked but mapped) until it is dropped, and LMDB opens a path once per
//! process, so the new index can only be opened after the old handle is gone. The handle therefore sits behind a
//! read-write lock: questions hold it for reading while they search (milliseconds); the reopen takes it for
//! writing, which waits for those in flight, drops the old handle and opens the new one. Questions arriving
//! meanwhile wait for the few milliseconds an open takes, and are answered from the new index: never from half
//! of one, never with an error.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use anyhow::Result;
use soundalike::Index;

use super::errors::ApiError;

pub struct LiveIndex {
    dir: PathBuf,
    /// The open index, or why it could not be reopened (the next look tries again).
    current: RwLock<std::result::Result<Index, String>>,
}

impl LiveIndex {
    /// Opens the index; an error here ends the run (there is nothing to serve).
    pub fn open(dir: &Path) -> Result<LiveIndex> {
        let index = Index::open(dir)?;
        Ok(LiveIndex {
            dir: dir.to_path_buf(),
            current: RwLock::new(Ok(index)),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, std::result::Result<Index, String>> {
        // A panic while the lock was held cannot leave the handle half changed: it is replaced whole.
        self.current
            .read()
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

    /// Reopens the index when a rebuild has replaced it (or when the last reopen failed), returning a line to
    /// log when something changed. Blocking.
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
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another look may have reopened it while this one waited for the lock.
        if current.as_ref().is_ok_and(|index| !index.replaced()) {
            return None;
        }
        let failed_before = current.as_ref().err().cloned();
        // The old handle is dropped first: the new index cannot be opened while it lives.
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
