//! What a build tells its host: the events as it goes, and what it did; and the host's callbacks as the stages
//! use them.

use anyhow::{Result, bail};

/// What a build tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEvent<'a> {
    /// Another build or append holds the index's writers' lock: this one waits for it (said once).
    Waiting,
    /// One more clip read.
    ClipRead,
    /// A stage begins ("read; building the trees and the neighbour graph").
    Stage(&'a str),
    /// A rebuild has stored the clips it read and freed them, before it builds the graph and the forest: the
    /// moment for a host that returns freed heap to the system (glibc's `malloc_trim`) to do so. The clips were
    /// read on one thread, a million small blocks in that thread's arena; glibc keeps them for that arena alone,
    /// which the graph's and the forest's threads never reuse, so untrimmed they stay in the build's RSS to its
    /// end (docs/bench-log.md, "Again, after the joins' blocks and the heap given back"). The library leaves
    /// process-wide acts to its host.
    ClipsReleased,
}

/// What a build did.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// Clips in the index now.
    pub clips: u64,
    /// Clips read from the inputs, duplicates included.
    pub read: u64,
    /// Clips read and stored (after duplicates within the input are merged).
    pub added: u64,
    /// Clips that replaced one with the same video_id (in the index or earlier in the input).
    pub replaced: u64,
    pub trees: usize,
    /// The index's size on disk.
    pub bytes: u64,
    /// The default breadth for a new vector, measured on the index after this write (`None`: the index's default
    /// is the exact scan, or nothing was written).
    pub held_out: Option<crate::index::store::Calibration>,
}

/// The builder's callbacks, as the stages use them.
#[derive(Clone, Copy)]
pub(super) struct Progress<'p> {
    pub(super) report: &'p (dyn Fn(BuildEvent) + Sync),
    pub(super) cancel: &'p (dyn Fn() -> bool + Sync),
}

impl Progress<'_> {
    pub(super) fn stage(&self, stage: impl AsRef<str>) {
        (self.report)(BuildEvent::Stage(stage.as_ref()));
    }

    pub(super) fn clip_read(&self) -> Result<()> {
        (self.report)(BuildEvent::ClipRead);
        self.check()
    }

    /// Fails once the cancel callback says so.
    pub(super) fn check(&self) -> Result<()> {
        if (self.cancel)() {
            bail!("cancelled; the index was left as it was");
        }
        Ok(())
    }
}
