//! Building an index: clips in, the store written beside the old index and swapped in (a rebuild), or added
//! in one write transaction (an append). The builder reports its stages through a callback and stops when its
//! cancel callback says so, leaving the old index as it was.

mod append;
mod input;
mod options;
mod rebuild;
mod report;
mod write;

use std::path::PathBuf;

use anyhow::anyhow;

use crate::error::UsageError;
use crate::index::store;

pub use input::ClipInput;
use options::MAX_TREES;
pub use options::{BuildOptions, ProjectionChoice};
use report::Progress;
pub use report::{BuildEvent, Built};

type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// Builds or extends the index in one directory.
///
/// ```no_run
/// use soundalike::{BuildEvent, BuildOptions, ClipInput, IndexBuilder};
/// use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
/// let (read, stop) = (AtomicU64::new(0), AtomicBool::new(false));
/// let built = IndexBuilder::new("music.idx")
///     .options(BuildOptions::default())
///     .progress(|event| {
///         if event == BuildEvent::ClipRead {
///             read.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .cancel(|| stop.load(Ordering::Relaxed))
///     .rebuild(vec![ClipInput::Path("clips.jsonl".into())])?;
/// assert_eq!(built.added, read.into_inner());
/// # Ok::<(), soundalike::Error>(())
/// ```
pub struct IndexBuilder<'a> {
    dir: PathBuf,
    options: BuildOptions,
    report: Box<dyn Fn(BuildEvent) + Sync + 'a>,
    cancel: Box<dyn Fn() -> bool + Sync + 'a>,
}

impl<'a> IndexBuilder<'a> {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IndexBuilder {
            dir: dir.into(),
            options: BuildOptions::default(),
            report: Box::new(|_| {}),
            cancel: Box::new(|| false),
        }
    }

    pub fn options(mut self, options: BuildOptions) -> Self {
        self.options = options;
        self
    }

    /// Called at each clip read and each stage (from the building thread and the graph's threads).
    pub fn progress(mut self, report: impl Fn(BuildEvent) + Sync + 'a) -> Self {
        self.report = Box::new(report);
        self
    }

    /// Asked between clips and stages (and by the forest's build): `true` stops the build, which then fails
    /// with an error and leaves the index as it was.
    pub fn cancel(mut self, cancel: impl Fn() -> bool + Sync + 'a) -> Self {
        self.cancel = Box::new(cancel);
        self
    }

    /// Builds a new index from `inputs` in a sibling directory, then swaps it into place, so readers see the
    /// old index or the new one, never a half-built one, and a failed build leaves the old one whole. A
    /// symlinked index is rebuilt where the link leads, and the link kept.
    pub fn rebuild(&self, inputs: Vec<ClipInput>) -> crate::Result<Built> {
        self.check_options()?;
        Ok(self.explain_map_full(rebuild::rebuild(
            &self.dir,
            &self.options,
            self.progress_of(),
            inputs,
        ))?)
    }

    /// Adds the clips of `inputs` to the existing index in one write transaction, replacing clips with the same
    /// video_id. A failed append leaves the index as it was.
    pub fn append(&self, inputs: Vec<ClipInput>) -> crate::Result<Built> {
        self.check_options()?;
        Ok(self.explain_map_full(append::append(
            &self.dir,
            &self.options,
            self.progress_of(),
            inputs,
        ))?)
    }

    /// Refuses options no build can meet, before anything is read or written.
    fn check_options(&self) -> crate::Result<()> {
        let options = &self.options;
        let refuse = |message: String| Err(anyhow::Error::new(UsageError::new(message)).into());
        if let Some(trees) = options.trees
            && !(1..=MAX_TREES).contains(&trees)
        {
            return refuse(format!(
                "{trees} trees: a forest has 1 to {MAX_TREES} (each tree takes about as much room as the vectors)"
            ));
        }
        if options.frames == 0 || options.threads == 0 {
            return refuse("frames and threads must be at least 1".into());
        }
        Ok(())
    }

    fn explain_map_full(&self, built: Result<Built>) -> Result<Built> {
        built.map_err(|e| {
            if store::is_map_full(&e) {
                anyhow!(
                    "the index {} outgrew the space reserved for it (from the input's size) and was left as \
                     it was; please report this with the input's size",
                    self.dir.display()
                )
            } else {
                e
            }
        })
    }

    fn progress_of(&self) -> Progress<'_> {
        Progress {
            report: &*self.report,
            cancel: &*self.cancel,
        }
    }
}
