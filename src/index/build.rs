//! Building an index: clips in, the store written beside the old index and swapped in (a rebuild), or added
//! in one write transaction (an append). The builder reports its stages through a callback and stops when its
//! cancel callback says so, leaving the old index as it was.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use roaring::RoaringBitmap;

use crate::clip::{self, ClipRecord};
use crate::error::UsageError;
use crate::fs::cleanup;
use crate::fs::lock::WriterLock;
use crate::index::codes::Quantizer;
use crate::index::fit::{self, Fit};
use crate::index::projection::{ClipForm, Kind, Projection, QueryVector, Summary};
use crate::index::records::ClipMeta;
use crate::index::scan::{self, Matrix};
use crate::index::store::with_distance;
use crate::index::store::{
    self, ARROY_INDEX, FORMAT_VERSION, FRAME_ROWS_PER_WRITE, Settings, Store, VECTOR_BLOCK_ROWS,
};
use crate::index::vector::{self, Form, Metric};
use crate::index::{dir as index_dir, entry, graph, rptree};
use crate::tfrecord::record::masked_crc;

type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// How a new index is built; an append takes the index's own and checks that these agree with it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    pub metric: Metric,
    pub form: Form,
    /// Frames per clip used for the vector (the first N rows; clips with fewer are refused).
    pub frames: usize,
    /// Trees in the forest; `None`: 10 for a new index, the index's own for an append.
    pub trees: Option<usize>,
    /// The same input and seed give the same index (with one thread).
    pub seed: u64,
    /// Threads building the trees: 1 for a reproducible index; more is faster, but the trees then depend on
    /// thread timing. (The neighbour graph takes every core either way: it does not depend on them.)
    pub threads: usize,
    /// `None`: the default model for a new index; an append always applies the index's own.
    pub projection: Option<ProjectionChoice>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            metric: Metric::Angular,
            form: Form::Mean,
            frames: 10,
            trees: None,
            seed: 42,
            threads: 1,
            projection: None,
        }
    }
}

/// Where clips come from: a file of clips as `ingest` writes them (JSON Lines or JSON arrays), any reader of
/// the same (stdin, a pipe), or clips already in memory (a host's own values: the Python package's dicts),
/// which are not written as text for the builder to parse back.
pub enum ClipInput<'a> {
    Path(PathBuf),
    Reader {
        /// For messages: "<stdin>".
        name: String,
        reader: Box<dyn BufRead + 'a>,
    },
    Clips {
        /// For messages: "clips" (a clip is then "clips[3]", from 0).
        name: String,
        /// Each clip in turn; an error ends the build with it.
        clips: Box<dyn Iterator<Item = crate::Result<ClipRecord>> + 'a>,
    },
}

/// What a build tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEvent<'a> {
    /// Another build or append holds the index's writers' lock: this one waits for it (said once).
    Waiting,
    /// One more clip read.
    ClipRead,
    /// A stage begins ("read; building the trees and the neighbour graph").
    Stage(&'a str),
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

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
        Ok(self.explain_map_full(rebuild(self, inputs))?)
    }

    /// Adds the clips of `inputs` to the existing index in one write transaction, replacing clips with the same
    /// video_id. A failed append leaves the index as it was.
    pub fn append(&self, inputs: Vec<ClipInput>) -> crate::Result<Built> {
        self.check_options()?;
        Ok(self.explain_map_full(append(self, inputs))?)
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

/// The builder's callbacks, as the stages use them.
#[derive(Clone, Copy)]
struct Progress<'p> {
    report: &'p (dyn Fn(BuildEvent) + Sync),
    cancel: &'p (dyn Fn() -> bool + Sync),
}

impl Progress<'_> {
    fn stage(&self, stage: impl AsRef<str>) {
        (self.report)(BuildEvent::Stage(stage.as_ref()));
    }

    fn clip_read(&self) -> Result<()> {
        (self.report)(BuildEvent::ClipRead);
        self.check()
    }

    /// Fails once the cancel callback says so.
    fn check(&self) -> Result<()> {
        if (self.cancel)() {
            bail!("cancelled; the index was left as it was");
        }
        Ok(())
    }
}

/// `index --projection`: which projection a new index applies to every frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionChoice {
    /// VGGish's 128 dimensions as they are: the vectors of format version 3.
    None,
    /// The compiled-in fit on bal_train's music clips.
    Default,
    /// Fit on the input's own labelled clips.
    Learn,
    /// A JSON matrix, or the projection of another index (or of this one, to keep it through a rebuild).
    File(PathBuf),
}

impl ProjectionChoice {
    pub fn parse(text: &str) -> ProjectionChoice {
        match text {
            "none" => ProjectionChoice::None,
            "default" => ProjectionChoice::Default,
            "learn" => ProjectionChoice::Learn,
            path => ProjectionChoice::File(PathBuf::from(path)),
        }
    }
}

/// The projection a rebuild applies: known before the input is read, or learned from it.
enum Plan {
    Ready(Option<Projection>, Summary),
    Learn,
}

/// Resolves `--projection` before anything is read or created, so that a bad file fails first.
fn plan_projection(choice: &ProjectionChoice) -> Result<Plan> {
    Ok(match choice {
        ProjectionChoice::None => Plan::Ready(None, Summary::none()),
        ProjectionChoice::Learn => Plan::Learn,
        ProjectionChoice::Default => {
            let p = Projection::default_fit().clone();
            let summary = Summary {
                kind: Some(Kind::Default),
                source: None,
                dimensions: p.dimensions,
                fit_clips: p.fit_ids.len() as u64,
            };
            Plan::Ready(Some(p), summary)
        }
        ProjectionChoice::File(path) => {
            let (projection, kind) = if path.is_dir() {
                // Another index's projection (or this index's own, before the rebuild replaces it).
                let (store, _) = Store::open(path)?;
                let rtxn = store.env.read_txn()?;
                let settings = store.read_settings(&rtxn)?;
                let projection = store.projection(&rtxn, &settings)?.ok_or_else(|| {
                    anyhow!(
                        "index {} has no projection to take (it was built with --projection none)",
                        path.display()
                    )
                })?;
                let kind = match settings.projection.kind {
                    Some(Kind::Default) if &projection == Projection::default_fit() => {
                        Kind::Default
                    }
                    _ => Kind::File,
                };
                (projection, kind)
            } else {
                (Projection::from_json_file(path)?, Kind::File)
            };
            let summary = Summary {
                source: (kind == Kind::File).then(|| path.display().to_string()),
                kind: Some(kind),
                dimensions: projection.dimensions,
                fit_clips: projection.fit_ids.len() as u64,
            };
            Plan::Ready(Some(projection), summary)
        }
    })
}

/// Builds a new index in a sibling directory, then swaps it into place.
fn rebuild(builder: &IndexBuilder, inputs: Vec<ClipInput>) -> Result<Built> {
    let options = &builder.options;
    let dir = &index_dir::resolve(&builder.dir)?;
    // Held from before the old index is looked at until the new one is in place: an append waiting for it then
    // adds to the new index, not to the old one about to be swapped out.
    let _writer = WriterLock::acquire(dir, || (builder.report)(BuildEvent::Waiting))?;
    index_dir::check_replaceable(dir)?;
    let (parent, name) = crate::fs::beside(dir);
    let prefix = format!(".{name}.building-");
    index_dir::remove_abandoned_builds(&parent, &prefix);
    let (building, cleanup) = cleanup::create(
        || tempfile::Builder::new().prefix(&prefix).tempdir_in(&parent),
        tempfile::TempDir::path,
    )
    .map_err(crate::fs::without_temp_path)
    .with_context(|| format!("cannot build the index {}", dir.display()))?;
    // Held until the build ends: it tells a later build that this directory is in use.
    let _lock = crate::fs::hold_if_unused(building.path())
        .ok_or_else(|| anyhow!("cannot lock {}", building.path().display()))?;
    let plan = plan_projection(
        options
            .projection
            .as_ref()
            .unwrap_or(&ProjectionChoice::Default),
    )?;
    let summary = match &plan {
        Plan::Ready(_, summary) => summary.clone(),
        Plan::Learn => Summary {
            kind: Some(Kind::Learned),
            source: None,
            dimensions: fit::DIMENSIONS,
            fit_clips: 0,
        },
    };
    let dimensions = match options.form {
        Form::Mean => summary.dimensions,
        Form::Flat => summary.dimensions * options.frames,
    };
    let store = Store::create(building.path(), input_size(&inputs))?;
    let settings = Settings {
        format_version: FORMAT_VERSION,
        metric: options.metric,
        vector: options.form,
        dimensions,
        frames: options.frames,
        trees: 0,
        graph_degree: graph::DEGREE,
        seed: options.seed,
        clips: 0,
        next_item: 0,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        projection: summary,
    };
    let progress = builder.progress_of();
    let reading = Reading {
        inputs,
        dir,
        progress,
    };
    let built = with_distance!(options.metric, D => write_new::<D>(&store, settings, plan, options, reading))
        .map_err(|e| store::explain_full_disk(e, dir, building.path()))?;
    drop(store);
    progress.check()?;
    index_dir::swap_into_place(building.keep(), dir, cleanup)?;
    Ok(Built {
        bytes: store::dir_size(dir),
        ..built
    })
}

/// Adds clips to an existing index in one write transaction; arroy updates the trees incrementally.
fn append(builder: &IndexBuilder, inputs: Vec<ClipInput>) -> Result<Built> {
    let dir = index_dir::resolve(&builder.dir)?;
    // Taken before the index is opened, so that an append started during a rebuild waits for it and then adds to
    // the new index, and two appends never give out the same item numbers.
    let _writer = WriterLock::acquire(&dir, || (builder.report)(BuildEvent::Waiting))?;
    let data = dir.join("data.mdb");
    let size_before = std::fs::metadata(&data).map(|m| m.len()).ok();
    append_locked(builder, &dir, inputs).map_err(|e| {
        // Asked before the file shrinks back, while the file system is as full as the write found it.
        let e = store::explain_full_disk(e, &dir, &dir);
        if let Some(size) = size_before {
            store::shrink_back(&data, size);
        }
        e
    })
}

/// [`append`] once it holds the writer lock.
fn append_locked(builder: &IndexBuilder, dir: &Path, inputs: Vec<ClipInput>) -> Result<Built> {
    let options = &builder.options;
    let (store, settings) = Store::open_with_room(dir, input_size(&inputs))?;
    let mut mismatches = Vec::new();
    if settings.metric != options.metric {
        mismatches.push(format!(
            "--metric {} (index: {})",
            options.metric, settings.metric
        ));
    }
    if settings.vector != options.form {
        mismatches.push(format!(
            "--vector {} (index: {})",
            options.form, settings.vector
        ));
    }
    if settings.frames != options.frames {
        mismatches.push(format!(
            "--frames {} (index: {})",
            options.frames, settings.frames
        ));
    }
    if options.projection.is_some() {
        mismatches.push(format!(
            "--projection (an append applies the index's own: {})",
            settings.projection.describe()
        ));
    }
    if !mismatches.is_empty() {
        bail!(
            "--append settings differ from index {}: {}",
            dir.display(),
            mismatches.join(", ")
        );
    }
    let reading = Reading {
        inputs,
        dir,
        progress: builder.progress_of(),
    };
    with_distance!(settings.metric, D => check_before_writing::<D>(&store, &settings))?;
    // arroy's writer trusts the trees it updates: a node damaged in a way the check above cannot see panics
    // there (an unwrap). The transaction is dropped, so nothing is written, and the panic becomes an error.
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || with_distance!(settings.metric, D => write_more::<D>(&store, settings.clone(), options, reading)),
    ));
    let built = written.map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a check failed while writing".into());
        crate::error::damaged(dir, format!("{why}; it was left as it was"))
    })??;
    Ok(Built {
        bytes: store.disk_size(),
        ..built
    })
}

/// A clip read from the input, as it will be stored: its metadata, and its vector (arroy's form, before
/// [`scan::prepare`]) and frame codes, or, while a projection is still to be learned, its rows.
struct Incoming {
    meta: ClipMeta,
    data: Data,
}

enum Data {
    Ready(QueryVector),
    /// The rows' values (frames x 128), as bytes when they are whole numbers, as `ingest` writes them.
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

impl Incoming {
    fn ready(&self) -> Result<&QueryVector> {
        match &self.data {
            Data::Ready(ready) => Ok(ready),
            _ => Err(anyhow!("clip {} has no vector yet", self.meta.video_id)),
        }
    }

    /// Moves the frame codes out of a clip with its vector, leaving it the vector alone.
    fn take_codes(&mut self) -> Option<Vec<i8>> {
        match &mut self.data {
            Data::Ready(ready) => Some(std::mem::take(&mut ready.codes)),
            _ => None,
        }
    }

    fn raw(&self) -> Option<Cow<'_, [f32]>> {
        match &self.data {
            Data::Ready(_) => None,
            Data::Bytes(bytes) => Some(Cow::Owned(bytes.iter().map(|&b| f32::from(b)).collect())),
            Data::Floats(floats) => Some(Cow::Borrowed(floats)),
        }
    }
}

/// The inputs of a build, read once, and where the clips go.
struct Reading<'r, 'p> {
    inputs: Vec<ClipInput<'r>>,
    /// The index, for messages.
    dir: &'r Path,
    progress: Progress<'p>,
}

/// Calls `each` with every clip of the inputs in turn, as it is read.
fn each_clip(
    reading: Reading,
    settings: &Settings,
    form: Option<&ClipForm>,
    mut each: impl FnMut(Incoming) -> Result<()>,
) -> Result<()> {
    let progress = reading.progress;
    // One clip in, wherever it came from; `at` says where, for messages ("clips.jsonl: line 3").
    let mut take = |clip: ClipRecord, at: &dyn std::fmt::Display| -> Result<()> {
        let located = |e: anyhow::Error| anyhow!("{at}: clip {}: {e}", clip.video_id);
        let data = match form {
            Some(form) => {
                let ready = form.query(&clip.embedding, 0).map_err(located)?;
                usable(&ready).map_err(located)?;
                Data::Ready(ready)
            }
            None => {
                vector::from_rows(&clip.embedding, 0, settings.frames, settings.vector)
                    .map_err(located)?;
                let rows = &clip.embedding[..settings.frames];
                if rows.iter().flatten().all(|v| v.fract() == 0.0) {
                    Data::Bytes(rows.iter().flatten().map(|&v| v as u8).collect())
                } else {
                    Data::Floats(rows.iter().flatten().copied().collect())
                }
            }
        };
        each(Incoming {
            meta: ClipMeta {
                video_id: clip.video_id,
                labels: clip.labels,
                start_time: clip.start_time,
                end_time: clip.end_time,
            },
            data,
        })?;
        progress.clip_read()
    };
    for input in reading.inputs {
        let (mut reader, source): (Box<dyn BufRead>, String) = match input {
            ClipInput::Reader { name, reader } => (reader, name),
            ClipInput::Path(path) => {
                let file =
                    File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
                (
                    Box::new(BufReader::with_capacity(1 << 20, file)),
                    path.display().to_string(),
                )
            }
            ClipInput::Clips { name, clips } => {
                for (n, clip) in clips.enumerate() {
                    let clip = clip.map_err(anyhow::Error::from)?;
                    // The same check a clip read from text passes (`clip::read_clips`).
                    match clip.check() {
                        Err(problem) if clip.video_id.is_empty() => bail!("{name}[{n}]: {problem}"),
                        Err(problem) => bail!(
                            "{name}[{n}]: clip {}: {problem}",
                            clip::shortened(&clip.video_id)
                        ),
                        Ok(()) => {}
                    }
                    take(clip, &format_args!("{name}[{n}]"))?;
                }
                continue;
            }
        };
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read {source}"))?;
        if let Some(kind) = not_clips(head) {
            bail!(
                "{source} is {kind}, not clips: `index` reads the JSON `ingest` writes \
                 (`soundalike ingest {source} | soundalike index --index {}`)",
                reading.dir.display()
            );
        }
        clip::read_clips(reader, &source, |clip: ClipRecord, at| {
            take(clip, &format_args!("{source}: {at}"))
        })?;
    }
    Ok(())
}

/// Refuses a clip's vector that no search can rank: a projection that overflows (not finite) or maps everything
/// to zero (no direction) would build an index answering NaN or the same distance for every clip.
fn usable(vector: &QueryVector) -> Result<()> {
    if vector.vector.iter().any(|v| !v.is_finite()) {
        bail!("the projection makes its vector not finite (an overflowing projection?)");
    }
    if vector.vector.iter().all(|&v| v == 0.0) {
        bail!("the projection makes its vector all zeros (a projection of zeros?)");
    }
    Ok(())
}

/// Clips with distinct video_ids, a video_id seen twice keeping its last clip in the place of its first.
#[derive(Default)]
struct Distinct {
    clips: Vec<Incoming>,
    at: HashMap<String, usize>,
    /// Clips that replaced an earlier one with their video_id.
    replaced: u64,
}

impl Distinct {
    /// Keeps `clip`; returns its place among the clips kept.
    fn push(&mut self, clip: Incoming) -> usize {
        match self.at.get(&clip.meta.video_id) {
            Some(&at) => {
                self.replaced += 1;
                self.clips[at] = clip;
                at
            }
            None => {
                let at = self.clips.len();
                self.at.insert(clip.meta.video_id.clone(), at);
                self.clips.push(clip);
                at
            }
        }
    }
}

/// The frame codes of a rebuild's clips, row `i` the `i`th clip kept, in one allocation. A million clips' codes
/// take 1.5 GB (ten frames of 149 codes each), twice the vectors: held in one piece, they go back to the system
/// at once when written, instead of leaving a million small holes between the vectors' allocations.
#[derive(Default)]
struct FrameRows {
    codes: Vec<i8>,
    width: usize,
}

impl FrameRows {
    fn put(&mut self, at: usize, codes: &[i8]) {
        self.width = codes.len();
        let start = at * self.width;
        if start == self.codes.len() {
            self.codes.extend_from_slice(codes);
        } else {
            self.codes[start..start + self.width].copy_from_slice(codes);
        }
    }

    fn row(&self, at: usize) -> &[i8] {
        &self.codes[at * self.width..][..self.width]
    }
}

/// Every clip of the inputs, distinct, their frame codes apart, and how many were replaced so. A million clips
/// of 149 dimensions take about 700 MB here and their codes 1.5 GB: the rebuild needs the vectors to lay the
/// clips out and to build the graph, and the codes until they are written in the clips' new order.
fn read_inputs(
    reading: Reading,
    settings: &Settings,
    form: Option<&ClipForm>,
) -> Result<(Vec<Incoming>, FrameRows, u64)> {
    let mut distinct = Distinct::default();
    let mut frames = FrameRows::default();
    each_clip(reading, settings, form, |mut clip| {
        let codes = clip.take_codes();
        let at = distinct.push(clip);
        if let Some(codes) = codes {
            frames.put(at, &codes);
        }
        Ok(())
    })?;
    Ok((distinct.clips, frames, distinct.replaced))
}

/// Writes a new index: the clips laid out in the order of a random-projection tree's leaves (so that clips
/// near one another in sound sit in nearby pages, and a walk from one clip touches few pages of the map), the
/// forest, and the neighbour graph, built at the same time on other threads; all in one write transaction.
fn write_new<D: arroy::Distance>(
    store: &Store,
    mut settings: Settings,
    plan: Plan,
    options: &BuildOptions,
    reading: Reading,
) -> Result<Built> {
    let progress = reading.progress;
    let form_with = |projection: Option<Projection>| ClipForm {
        projection,
        frames: settings.frames,
        form: settings.vector,
    };
    let known = match &plan {
        Plan::Ready(projection, _) => Some(form_with(projection.clone())),
        Plan::Learn => None,
    };
    let (mut clips, mut frames, replaced) = read_inputs(reading, &settings, known.as_ref())?;
    if clips.is_empty() {
        bail!("nothing to index: the input holds no clips");
    }
    let form = match known {
        Some(form) => form,
        None => {
            // `--projection learn`: fit on the distinct clips read, then give each its vector.
            progress.stage("read; learning the projection");
            let mut fit = Fit::default();
            for clip in &clips {
                if let Some(raw) = clip.raw() {
                    fit.add(&clip.meta.video_id, &clip.meta.labels, &raw);
                }
            }
            let projection = fit.finish()?;
            settings.projection.fit_clips = projection.fit_ids.len() as u64;
            let form = form_with(Some(projection));
            for (at, clip) in clips.iter_mut().enumerate() {
                if let Some(raw) = clip.raw() {
                    let ready = form.clip(&raw);
                    usable(&ready).map_err(|e| anyhow!("clip {}: {e}", clip.meta.video_id))?;
                    clip.data = Data::Ready(ready);
                }
                if let Some(codes) = clip.take_codes() {
                    frames.put(at, &codes);
                }
            }
            form
        }
    };
    let count = clips.len();
    let dimensions = settings.dimensions;
    let frame_width = settings.frames * settings.projection.dimensions;
    progress.stage("read; laying the clips out");
    let mut search_form: Vec<f32> = Vec::with_capacity(count * dimensions);
    for clip in &clips {
        let start = search_form.len();
        search_form.extend_from_slice(&clip.ready()?.vector);
        scan::prepare(settings.metric, &mut search_form[start..]);
    }
    let layout = {
        let matrix = Matrix::new(
            dimensions,
            settings.metric,
            vec![Cow::Borrowed(&search_form[..])],
            count,
        );
        rptree::forest(&matrix, count, 1, graph::LEAF_SIZE, settings.seed)
            .pop()
            .ok_or_else(|| anyhow!("no layout tree"))?
    };
    // A rebuild writes in transactions of its own, committed as each part is written: LMDB holds a
    // transaction's large values in memory until it commits (at a million clips, 1.5 GB of frame codes and 0.8 GB
    // of vectors), and the index's directory is the build's own, read by nobody before the swap and removed whole
    // if the build stops; its settings, written last, are what make it an index. The frame codes go first, in the
    // new order and a slice per transaction, so that their memory is back before the graph's lists and the
    // forest need room.
    for first in (0..count).step_by(FRAME_ROWS_PER_WRITE) {
        let mut wtxn = store.env.write_txn()?;
        let items = first..count.min(first + FRAME_ROWS_PER_WRITE);
        store.write_frame_rows(&mut wtxn, frame_width, items, |item| {
            Ok(frames.row(layout.items[item] as usize))
        })?;
        wtxn.commit()
            .context("cannot write the index's frame codes")?;
        progress.check()?;
    }
    drop(frames);
    let mut laid_out: Vec<f32> = Vec::with_capacity(count * dimensions);
    for &at in &layout.items {
        let start = at as usize * dimensions;
        laid_out.extend_from_slice(&search_form[start..start + dimensions]);
    }
    drop(search_form);
    // The same tree in the new numbering: its leaves are now runs of consecutive items.
    let tree = rptree::Tree {
        items: (0..count as u32).collect(),
        leaf_ends: layout.leaf_ends,
    };
    let vectors = Matrix::new(
        dimensions,
        settings.metric,
        vec![Cow::Borrowed(&laid_out[..])],
        count,
    );

    type Graphs = (Vec<u32>, Vec<(usize, Vec<u32>)>);
    let ((lists, layers), mut wtxn) =
        std::thread::scope(|scope| -> Result<(Graphs, heed::RwTxn)> {
            // The graphs do not depend on the number of threads, so they take every core; the forest builds on
            // the global pool (`--threads`) meanwhile.
            let graph = scope.spawn(|| -> Result<Graphs> {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()?;
                let report = |stage: &str| progress.stage(stage);
                Ok(pool.install(|| {
                    let lists = graph::build(&vectors, count, &tree, settings.seed, &report);
                    report("building the upper layers");
                    (lists, entry::build(&vectors, count, settings.seed))
                }))
            });
            let mut wtxn = store.env.write_txn()?;
            let writer = arroy::Writer::<D>::new(store.arroy::<D>(), ARROY_INDEX, dimensions);
            let mut labels = LabelChanges::new();
            for (item, &at) in layout.items.iter().enumerate() {
                let item = item as u32;
                let clip = &clips[at as usize];
                store.ids.put(&mut wtxn, &clip.meta.video_id, &item)?;
                store_clip(&mut wtxn, &writer, item, clip, &mut labels)?;
            }
            store.write_records(
                &mut wtxn,
                layout
                    .items
                    .iter()
                    .enumerate()
                    .map(|(item, &at)| (item as u32, Cow::Borrowed(&clips[at as usize].meta))),
            )?;
            // The clips are in the transaction now; the forest and the graph need only the vectors.
            drop(clips);
            release_freed_memory();
            settings.clips = count as u64;
            settings.next_item = count as u32;
            store.update_labels(&mut wtxn, &labels)?;
            store.write_vector_rows(&mut wtxn, dimensions, &laid_out)?;
            let quantizer = Quantizer::fit(&laid_out, dimensions);
            store.write_code_rows(&mut wtxn, &quantizer, &laid_out)?;
            if let Some(projection) = &form.projection {
                store.write_projection(&mut wtxn, projection)?;
            }
            wtxn.commit().context("cannot write the index's clips")?;
            let mut wtxn = store.env.write_txn()?;
            progress.stage("read; building the trees and the neighbour graph");
            let trees = options.trees.unwrap_or(DEFAULT_TREES);
            build_forest(
                &writer,
                &mut wtxn,
                settings.seed,
                trees,
                options.threads,
                progress,
            )?;
            let lists = graph
                .join()
                .map_err(|_| anyhow!("the neighbour graph's build failed"))??;
            Ok((lists, wtxn))
        })?;
    let blocks = count.div_ceil(VECTOR_BLOCK_ROWS as usize) as u32;
    store.write_graph(&mut wtxn, settings.graph_degree, &lists, 0..blocks)?;
    store.write_layers(&mut wtxn, entry::DEGREE, &layers)?;
    store.write_layer_codes(&mut wtxn, &settings)?;
    let read = count as u64 + replaced;
    finish::<D>(
        store,
        wtxn,
        settings,
        progress,
        [read, count as u64, replaced],
    )
}

/// Adds clips to an existing index in one write transaction: arroy updates the trees incrementally, and each
/// new (or replaced) clip is linked into the graph by a walk from the forest's nearest clips. The input is taken
/// in batches of [`APPEND_BATCH`] clips, so memory holds one batch of it and the numbers of the clips added,
/// however long it is.
fn write_more<D: arroy::Distance>(
    store: &Store,
    settings: Settings,
    options: &BuildOptions,
    reading: Reading,
) -> Result<Built> {
    let progress = reading.progress;
    let before = settings.clone();
    let mut wtxn = store.env.write_txn()?;
    // The index's own projection, applied to every clip added.
    let form = store.clip_form(&wtxn, &settings)?;
    let mut adding = Adding {
        store,
        writer: arroy::Writer::<D>::new(store.arroy::<D>(), ARROY_INDEX, settings.dimensions),
        settings,
        labels: LabelChanges::new(),
        items: Vec::new(),
        linked: RoaringBitmap::new(),
        replaced: 0,
    };
    let mut batch = Distinct::default();
    let mut read = 0u64;
    each_clip(reading, &before, Some(&form), |clip| {
        read += 1;
        batch.push(clip);
        if batch.clips.len() == APPEND_BATCH {
            adding.add(&mut wtxn, std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    adding.add(&mut wtxn, batch)?;
    let Adding {
        writer,
        settings,
        labels,
        items,
        replaced,
        ..
    } = adding;
    if read == 0 {
        // Appending nothing leaves the index exactly as it was (rebuilding the trees would renumber them).
        return Ok(Built {
            clips: settings.clips,
            read: 0,
            added: 0,
            replaced,
            trees: settings.trees,
            bytes: 0,
        });
    }
    progress.stage("read; updating the trees");
    store.update_labels(&mut wtxn, &labels)?;
    // The forest keeps the size it was built with, unless `--trees` says otherwise.
    build_forest(
        &writer,
        &mut wtxn,
        settings.seed,
        options.trees.unwrap_or(settings.trees),
        options.threads,
        progress,
    )?;

    progress.stage("read; linking the new clips into the neighbour graph");
    let mut lists = store.read_graph(&wtxn, &before)?;
    let degree = settings.graph_degree;
    let mut dirty = BTreeSet::new();
    {
        let matrix = store.load_vectors(&wtxn, &settings)?;
        let distance = scan::pair_distance(settings.metric);
        let reader = arroy::Reader::<D>::open(&wtxn, ARROY_INDEX, store.arroy::<D>())?;
        let mut walk = graph::Walk::default();
        for &item in &items {
            let vector = reader
                .item_vector(&wtxn, item)?
                .ok_or_else(|| anyhow!("clip {item} was added to the forest but is not in it"))?;
            let mut forest = reader.nns(graph::ENTRY_POINTS);
            forest.search_k(graph::entry_search_k());
            let entries: Vec<u32> = forest
                .by_vector(&wtxn, &vector)?
                .into_iter()
                .map(|(i, _)| i)
                .filter(|&i| i != item)
                .collect();
            let changed = graph::insert(
                &mut lists,
                degree,
                &matrix,
                distance,
                item,
                &entries,
                graph::INSERT_EF,
                &mut walk,
            );
            dirty.extend(changed.into_iter().map(|n| n / VECTOR_BLOCK_ROWS));
        }
    }
    store.write_graph(&mut wtxn, degree, &lists, dirty)?;
    if replaced > 0 {
        // A replaced clip may be a node of an upper layer, whose copy of its code is now stale.
        store.write_layer_codes(&mut wtxn, &settings)?;
    }
    finish::<D>(
        store,
        wtxn,
        settings,
        progress,
        [read, items.len() as u64, replaced],
    )
}

/// Reads everything an append will change, as a reader would, before anything is written: every table's blocks,
/// every clip's record, and every node of every tree (arroy's writer unwraps what it finds, and a damaged node
/// would make it panic or write into the damage). Errors say the index is damaged.
fn check_before_writing<D: arroy::Distance>(store: &Store, settings: &Settings) -> Result<()> {
    let rtxn = store.env.read_txn()?;
    store.check_overflow_pages(&rtxn)?;
    let vectors = store.load_vectors(&rtxn, settings)?;
    if (0..settings.next_item).any(|item| {
        vectors
            .row(item)
            .is_some_and(|row| row.iter().any(|v| !v.is_finite()))
    }) {
        return Err(crate::error::damaged(
            &store.dir,
            "its vectors table holds values that are not numbers",
        ));
    }
    store.load_codes(&rtxn, settings)?;
    store.load_graph(&rtxn, settings)?;
    store.load_layers(&rtxn, settings)?;
    store.load_frames(&rtxn, settings)?;
    let records = store.load_records(&rtxn, settings)?;
    for (_, item) in store.ids.iter(&rtxn)?.collect::<heed::Result<Vec<_>>>()? {
        records.get(item)?;
    }
    let damaged = |detail: String| crate::error::damaged(&store.dir, detail);
    let trees = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = arroy::Reader::<D>::open(&rtxn, ARROY_INDEX, store.arroy::<D>())?;
        reader.stats(&rtxn).map(|_| ())
    }));
    match trees {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(damaged(format!("its trees cannot be read: {e}"))),
        Err(_) => Err(damaged("a tree refers to a node that is not there".into())),
    }
}

/// Clips an append writes into its transaction at a time.
const APPEND_BATCH: usize = 4096;

/// An append under way: what it has written into the transaction so far.
struct Adding<'s, D: arroy::Distance> {
    store: &'s Store,
    writer: arroy::Writer<D>,
    settings: Settings,
    labels: LabelChanges,
    /// The clips added or replaced, in input order, each once: they are linked into the graph at the end.
    items: Vec<u32>,
    linked: RoaringBitmap,
    /// Clips that replaced one of the index's or an earlier one of the input.
    replaced: u64,
}

impl<D: arroy::Distance> Adding<'_, D> {
    /// Writes a batch of clips: their numbers, forest items, labels, records and vectors.
    fn add(&mut self, wtxn: &mut heed::RwTxn, batch: Distinct) -> Result<()> {
        let store = self.store;
        self.replaced += batch.replaced;
        if batch.clips.is_empty() {
            return Ok(());
        }
        let clips = batch.clips;
        // The labels of the clips about to be replaced, read before their records are rewritten.
        let old_labels: HashMap<u32, Vec<i64>> = {
            let records = store.load_records(wtxn, &self.settings)?;
            let mut old = HashMap::new();
            for clip in &clips {
                if let Some(item) = store.ids.get(wtxn, &clip.meta.video_id)? {
                    old.insert(item, records.get(item)?.labels);
                }
            }
            old
        };
        // Vectors in search form, written in blocks, so replacing a clip rewrites only its block.
        let mut vectors: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut frame_codes: BTreeMap<u32, Vec<i8>> = BTreeMap::new();
        let mut items = Vec::with_capacity(clips.len());
        for clip in &clips {
            let item = match store.ids.get(wtxn, &clip.meta.video_id)? {
                Some(item) => {
                    // The last clip with a video_id wins: forget the old one's labels.
                    self.replaced += 1;
                    let old = old_labels.get(&item).map_or(&[][..], Vec::as_slice);
                    for label in old.iter().filter_map(|&l| u16::try_from(l).ok()) {
                        let entry = self.labels.entry(label).or_default();
                        entry.1.insert(item);
                        entry.0.remove(item);
                    }
                    item
                }
                None => {
                    let item = self.settings.next_item;
                    self.settings.next_item = item
                        .checked_add(1)
                        .ok_or_else(|| anyhow!("more than 2^32 clips"))?;
                    self.settings.clips += 1;
                    store.ids.put(wtxn, &clip.meta.video_id, &item)?;
                    item
                }
            };
            store_clip(wtxn, &self.writer, item, clip, &mut self.labels)?;
            let ready = clip.ready()?;
            let mut search_form = ready.vector.clone();
            scan::prepare(self.settings.metric, &mut search_form);
            vectors.insert(item, search_form);
            frame_codes.insert(item, ready.codes.clone());
            items.push(item);
            if self.linked.insert(item) {
                self.items.push(item);
            }
        }
        store.write_records(
            wtxn,
            clips
                .iter()
                .zip(&items)
                .map(|(clip, &item)| (item, Cow::Borrowed(&clip.meta))),
        )?;
        store.write_vectors(wtxn, &self.settings, &vectors)?;
        let width = self.settings.frames * self.settings.projection.dimensions;
        store.write_frames(wtxn, width, &frame_codes)?;
        Ok(())
    }
}

/// The most trees a forest may have: each takes about as much room as the vectors, and 100,000 trees ran for a
/// minute before the map was full. The forest only gives walks their start and answers `--search-k`.
const MAX_TREES: usize = 1000;

/// Trees in the forest of a new index when `--trees` is not given. The graph answers by default; the forest
/// gives a walk for an embedding its entry points and answers `--search-k`, and arroy's own default (about
/// 40 trees from 10,000 clips on) took 6 of the 10 minutes a million-clip build may take (BENCHMARKS.md).
const DEFAULT_TREES: usize = 10;

/// Builds (or, after an append, updates) the forest with `trees` trees, seeded, on a pool of `threads`
/// threads of its own: arroy builds on rayon's current pool, and with more than one thread the trees depend on
/// scheduling (the same seed gave different answers from run to run). A pool of its own leaves the process's
/// global pool, which a host may use for other work, as it was.
fn build_forest<D: arroy::Distance>(
    writer: &arroy::Writer<D>,
    wtxn: &mut heed::RwTxn,
    seed: u64,
    trees: usize,
    threads: usize,
    progress: Progress,
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut builder = writer.builder(&mut rng);
    builder.n_trees(trees.max(1));
    let cancel = progress.cancel;
    builder.cancel(cancel);
    pool.install(|| builder.build(wtxn))?;
    progress.check()
}

/// Gives the heap's free pages back to the kernel. The clips were read on one thread: a million small blocks
/// (each clip's vector and metadata) in that thread's arena. Freed, glibc keeps them for that arena alone, where
/// the graph's and the forest's threads, which allocate in arenas of their own, never reuse them; so they stayed
/// in the build's RSS to its end (at 200,000 clips, 80 MB of the graph's stage). This returns memory only, and
/// changes no setting of the allocator.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's lock and only releases pages no allocation holds; glibc allows it
    // from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Each label's clips added (`.0`) and removed (`.1`) by a write, applied at its end.
type LabelChanges = BTreeMap<u16, (RoaringBitmap, RoaringBitmap)>;

/// Stores a clip as `item`: its vector in the forest and its labels (its record is written with the others').
fn store_clip<D: arroy::Distance>(
    wtxn: &mut heed::RwTxn,
    writer: &arroy::Writer<D>,
    item: u32,
    clip: &Incoming,
    labels: &mut LabelChanges,
) -> Result<()> {
    writer.add_item(wtxn, item, &clip.ready()?.vector)?;
    for label in clip
        .meta
        .labels
        .iter()
        .filter_map(|&l| u16::try_from(l).ok())
    {
        let entry = labels.entry(label).or_default();
        entry.0.insert(item);
        entry.1.remove(item);
    }
    Ok(())
}

/// Records the settings and commits the write transaction.
fn finish<D: arroy::Distance>(
    store: &Store,
    mut wtxn: heed::RwTxn,
    mut settings: Settings,
    progress: Progress,
    [read, added, replaced]: [u64; 3],
) -> Result<Built> {
    settings.trees = arroy::Reader::<D>::open(&wtxn, ARROY_INDEX, store.arroy::<D>())?.n_trees();
    store.write_settings(&mut wtxn, &settings)?;
    progress.check()?;
    progress.stage("read; writing to disk");
    wtxn.commit().context("cannot commit the index")?;
    Ok(Built {
        clips: settings.clips,
        read,
        added,
        replaced,
        trees: settings.trees,
        bytes: 0,
    })
}

/// What an input is when its first bytes show that it is AudioSet's records rather than clips, the mistake of
/// skipping `ingest`: JSON's error ("stream did not contain valid UTF-8") would not say so.
fn not_clips(head: &[u8]) -> Option<&'static str> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    if head.starts_with(&GZIP_MAGIC) {
        return Some("gzip-compressed (a features.tar.gz of TFRecords?)");
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some("a tar archive (of TFRecords?)");
    }
    let header = head.first_chunk::<12>()?;
    let stored = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (masked_crc(&header[..8]) == stored).then_some("a TFRecord file")
}

/// The inputs' total size in bytes, or `None` when one is a reader (its size is unknown).
fn input_size(inputs: &[ClipInput]) -> Option<u64> {
    // An unreadable input fails later with its own error; it needs no room.
    inputs
        .iter()
        .map(|input| match input {
            ClipInput::Path(path) => Some(std::fs::metadata(path).map_or(0, |m| m.len())),
            ClipInput::Reader { .. } | ClipInput::Clips { .. } => None,
        })
        .sum()
}
