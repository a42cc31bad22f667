//! `index`: clips from `ingest` into the store, built beside the old index and swapped in, or appended in one
//! write transaction.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use roaring::RoaringBitmap;

use crate::clip::{self, ClipRecord};
use crate::error::UsageError;
use crate::index::codes::Quantizer;
use crate::index::fit::{self, Fit};
use crate::index::projection::{ClipForm, Kind, Projection, QueryVector, Summary};
use crate::index::records::ClipMeta;
use crate::index::scan::{self, Matrix};
use crate::index::store::with_distance;
use crate::index::store::{self, ARROY_INDEX, FORMAT_VERSION, Settings, Store, VECTOR_BLOCK_ROWS};
use crate::index::vector::{self, Form, Metric};
use crate::index::{graph, rptree};
use crate::lock::{self, WriterLock};
use crate::progress::Progress;
use crate::tfrecord::record::masked_crc;
use crate::{cleanup, index_dir, output};

pub struct IndexOptions {
    pub dir: PathBuf,
    /// Empty or `-` reads stdin.
    pub inputs: Vec<PathBuf>,
    pub metric: Metric,
    pub form: Form,
    pub frames: usize,
    /// `None`: arroy's default, which grows with the number of items.
    pub trees: Option<usize>,
    pub seed: u64,
    pub append: bool,
    /// Threads building the trees: 1 for a reproducible index.
    pub threads: usize,
    /// `--projection`; `None`: not given (the default for a new index, the index's own for an append).
    pub projection: Option<ProjectionChoice>,
    pub quiet: bool,
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

/// What a build did, for the summary.
pub struct Built {
    pub clips: u64,
    pub added: u64,
    pub replaced: u64,
    pub trees: usize,
    pub bytes: u64,
}

pub fn run(options: &IndexOptions) -> Result<Built> {
    let started = Instant::now();
    // Nothing given and nothing piped in: reading the terminal would wait silently for clips no one will type.
    if options.inputs.is_empty() && io::stdin().is_terminal() {
        return Err(UsageError::new(format!(
            "no input: give the clip files `soundalike ingest` wrote, or pipe them in \
             (`soundalike ingest features.tar.gz | soundalike index --index {}`)",
            options.dir.display()
        ))
        .into());
    }
    // arroy builds trees on rayon's global pool, and with more than one thread the trees depend on scheduling:
    // the same seed gave different answers from run to run. One thread (the default) makes a seed mean the
    // same index. (Fails only if the pool was already set up, which nothing else in an `index` run does.)
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build_global();
    let built = if options.append {
        append(options)
    } else {
        rebuild(options)
    }
    .map_err(|e| {
        if store::is_map_full(&e) {
            anyhow!(
                "the index {} outgrew the space reserved for it (from the input's size) and was left as it was; \
                 please report this with the input's size",
                options.dir.display()
            )
        } else {
            e
        }
    })?;
    if !options.quiet {
        eprintln!(
            "index: {} clips read, {} duplicates replaced; {} clips in {} ({} trees, {:.1} MB) in {:.2} s",
            built.added,
            built.replaced,
            built.clips,
            options.dir.display(),
            built.trees,
            built.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(built)
}

/// Builds a new index in a sibling directory, then swaps it into place so readers see the old index or the
/// new one, never a half-built one, and a killed build leaves the old one whole. A symlinked index is rebuilt
/// where the link leads, and the link kept.
fn rebuild(options: &IndexOptions) -> Result<Built> {
    let dir = &output::follow_links(&options.dir);
    // Held from before the old index is looked at until the new one is in place: an append waiting for it then
    // adds to the new index, not to the old one about to be swapped out.
    let _writer = WriterLock::acquire(dir)?;
    index_dir::check_replaceable(dir)?;
    let (parent, name) = output::beside(dir);
    let prefix = format!(".{name}.building-");
    remove_abandoned_builds(&parent, &prefix);
    let building = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .map_err(output::without_temp_path)
        .with_context(|| format!("cannot build the index {}", dir.display()))?;
    let cleanup = cleanup::register(building.path());
    // Held until this process ends: it tells a later build that this directory is in use.
    let _lock = lock::hold_if_unused(building.path())
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
    let store = Store::create(building.path(), input_size(&options.inputs))?;
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
    let built =
        with_distance!(options.metric, D => write_new::<D>(&store, settings, plan, options))
            .map_err(|e| store::explain_full_disk(e, dir, building.path()))?;
    drop(store);
    swap_into_place(building.keep(), dir, cleanup)?;
    Ok(Built {
        bytes: store::dir_size(dir),
        ..built
    })
}

/// Adds clips to an existing index in one write transaction; arroy updates the trees incrementally.
fn append(options: &IndexOptions) -> Result<Built> {
    let dir = output::follow_links(&options.dir);
    // Taken before the index is opened, so that an append started during a rebuild waits for it and then adds to
    // the new index, and two appends never give out the same item numbers.
    let _writer = WriterLock::acquire(&dir)?;
    let data = dir.join("data.mdb");
    let size_before = std::fs::metadata(&data).map(|m| m.len()).ok();
    append_locked(options).map_err(|e| {
        // Asked before the file shrinks back, while the file system is as full as the write found it.
        let e = store::explain_full_disk(e, &dir, &dir);
        if let Some(size) = size_before {
            store::shrink_back(&data, size);
        }
        e
    })
}

/// [`append`] once it holds the writer lock.
fn append_locked(options: &IndexOptions) -> Result<Built> {
    let (store, settings) = Store::open_with_room(&options.dir, input_size(&options.inputs))?;
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
            options.dir.display(),
            mismatches.join(", ")
        );
    }
    let built = with_distance!(settings.metric, D => write_more::<D>(&store, settings, options))?;
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

    fn raw(&self) -> Option<Cow<'_, [f32]>> {
        match &self.data {
            Data::Ready(_) => None,
            Data::Bytes(bytes) => Some(Cow::Owned(bytes.iter().map(|&b| f32::from(b)).collect())),
            Data::Floats(floats) => Some(Cow::Borrowed(floats)),
        }
    }
}

/// Calls `each` with every clip of the inputs in turn, as it is read.
fn each_clip(
    options: &IndexOptions,
    settings: &Settings,
    form: Option<&ClipForm>,
    progress: &Progress,
    mut each: impl FnMut(Incoming) -> Result<()>,
) -> Result<()> {
    let inputs: Vec<PathBuf> = if options.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        options.inputs.clone()
    };
    for input in &inputs {
        let (mut reader, source): (Box<dyn io::BufRead>, String) = if input.as_os_str() == "-" {
            (Box::new(io::stdin().lock()), "<stdin>".to_string())
        } else {
            let file =
                File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
            (
                Box::new(BufReader::with_capacity(1 << 20, file)),
                input.display().to_string(),
            )
        };
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read {source}"))?;
        if let Some(kind) = not_clips(head) {
            bail!(
                "{source} is {kind}, not clips: `index` reads the JSON `ingest` writes \
                 (`soundalike ingest {} | soundalike index --index {}`)",
                input.display(),
                options.dir.display()
            );
        }
        clip::read_clips(reader, &source, |clip: ClipRecord, at| {
            let located = |e: anyhow::Error| anyhow!("{source}: {at}: clip {}: {e}", clip.video_id);
            let data = match form {
                Some(form) => Data::Ready(form.query(&clip.embedding, 0).map_err(located)?),
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
            progress.inc(1);
            Ok(())
        })?;
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
    fn push(&mut self, clip: Incoming) {
        match self.at.get(&clip.meta.video_id) {
            Some(&at) => {
                self.replaced += 1;
                self.clips[at] = clip;
            }
            None => {
                self.at.insert(clip.meta.video_id.clone(), self.clips.len());
                self.clips.push(clip);
            }
        }
    }
}

/// Every clip of the inputs, distinct, and how many were replaced so. A million clips of 128 dimensions take
/// about 600 MB here: the rebuild needs them all to lay them out and to build the graph.
fn read_inputs(
    options: &IndexOptions,
    settings: &Settings,
    form: Option<&ClipForm>,
    progress: &Progress,
) -> Result<(Vec<Incoming>, u64)> {
    let mut distinct = Distinct::default();
    each_clip(options, settings, form, progress, |clip| {
        distinct.push(clip);
        Ok(())
    })?;
    Ok((distinct.clips, distinct.replaced))
}

/// Writes a new index: the clips laid out in the order of a random-projection tree's leaves (so that clips
/// near one another in sound sit in nearby pages, and a walk from one clip touches few pages of the map), the
/// forest, and the neighbour graph, built at the same time on other threads; all in one write transaction.
fn write_new<D: arroy::Distance>(
    store: &Store,
    mut settings: Settings,
    plan: Plan,
    options: &IndexOptions,
) -> Result<Built> {
    let progress = Progress::items(None, options.quiet, "clips");
    let form_with = |projection: Option<Projection>| ClipForm {
        projection,
        frames: settings.frames,
        form: settings.vector,
    };
    let known = match &plan {
        Plan::Ready(projection, _) => Some(form_with(projection.clone())),
        Plan::Learn => None,
    };
    let (mut clips, replaced) = read_inputs(options, &settings, known.as_ref(), &progress)?;
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
            for clip in &mut clips {
                if let Some(raw) = clip.raw() {
                    clip.data = Data::Ready(form.clip(&raw));
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
    let mut laid_out: Vec<f32> = Vec::with_capacity(count * dimensions);
    for &at in &layout.items {
        let start = at as usize * dimensions;
        laid_out.extend_from_slice(&search_form[start..start + dimensions]);
    }
    drop(search_form);
    let mut laid_codes: Vec<i8> = Vec::with_capacity(count * frame_width);
    for &at in &layout.items {
        laid_codes.extend_from_slice(&clips[at as usize].ready()?.codes);
    }
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

    let mut wtxn = store.env.write_txn()?;
    let lists = std::thread::scope(|scope| -> Result<Vec<u32>> {
        // The graph does not depend on the number of threads, so it takes every core; the forest builds on
        // the global pool (`--threads`) meanwhile.
        let graph = scope.spawn(|| -> Result<Vec<u32>> {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let report = |stage: &str| progress.stage(stage.to_string());
            Ok(pool.install(|| graph::build(&vectors, count, &tree, settings.seed, &report)))
        });
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
        settings.clips = count as u64;
        settings.next_item = count as u32;
        store.update_labels(&mut wtxn, &labels)?;
        store.write_vector_rows(&mut wtxn, dimensions, &laid_out)?;
        let quantizer = Quantizer::fit(&laid_out, dimensions);
        store.write_code_rows(&mut wtxn, &quantizer, &quantizer.encode_all(&laid_out))?;
        store.write_frame_rows(&mut wtxn, frame_width, &laid_codes)?;
        if let Some(projection) = &form.projection {
            store.write_projection(&mut wtxn, projection)?;
        }
        progress.stage("read; building the trees and the neighbour graph");
        let trees = options.trees.unwrap_or(DEFAULT_TREES);
        build_forest(&writer, &mut wtxn, settings.seed, trees)?;
        graph
            .join()
            .map_err(|_| anyhow!("the neighbour graph's build failed"))?
    })?;
    let blocks = count.div_ceil(VECTOR_BLOCK_ROWS as usize) as u32;
    store.write_graph(&mut wtxn, settings.graph_degree, &lists, 0..blocks)?;
    finish::<D>(store, wtxn, settings, &progress, count as u64, replaced)
}

/// Adds clips to an existing index in one write transaction: arroy updates the trees incrementally, and each
/// new (or replaced) clip is linked into the graph by a walk from the forest's nearest clips. The input is taken
/// in batches of [`APPEND_BATCH`] clips, so memory holds one batch of it and the numbers of the clips added,
/// however long it is.
fn write_more<D: arroy::Distance>(
    store: &Store,
    settings: Settings,
    options: &IndexOptions,
) -> Result<Built> {
    let progress = Progress::items(None, options.quiet, "clips");
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
    each_clip(options, &before, Some(&form), &progress, |clip| {
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
    finish::<D>(
        store,
        wtxn,
        settings,
        &progress,
        items.len() as u64,
        replaced,
    )
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

/// Trees in the forest of a new index when `--trees` is not given. The graph answers by default; the forest
/// gives a walk for an embedding its entry points and answers `--search-k`, and arroy's own default (about
/// 40 trees from 10,000 clips on) took 6 of the 10 minutes a million-clip build may take (BENCHMARKS.md).
const DEFAULT_TREES: usize = 10;

/// Builds (or, after an append, updates) the forest with `trees` trees, seeded.
fn build_forest<D: arroy::Distance>(
    writer: &arroy::Writer<D>,
    wtxn: &mut heed::RwTxn,
    seed: u64,
    trees: usize,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut builder = writer.builder(&mut rng);
    builder.n_trees(trees.max(1));
    builder.build(wtxn)?;
    Ok(())
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
    progress: &Progress,
    added: u64,
    replaced: u64,
) -> Result<Built> {
    settings.trees = arroy::Reader::<D>::open(&wtxn, ARROY_INDEX, store.arroy::<D>())?.n_trees();
    store.write_settings(&mut wtxn, &settings)?;
    progress.stage("read; writing to disk");
    wtxn.commit().context("cannot commit the index")?;
    progress.finish();
    Ok(Built {
        clips: settings.clips,
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

/// The inputs' total size in bytes, or `None` when one is stdin (its size is unknown).
fn input_size(inputs: &[PathBuf]) -> Option<u64> {
    if inputs.is_empty() || inputs.iter().any(|p| p.as_os_str() == "-") {
        return None;
    }
    // An unreadable input fails later with its own error; it needs no room.
    Some(
        inputs
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum(),
    )
}

/// Deletes build directories beside the index that no running build holds: what a killed build left behind
/// (killed after its swap, one holds the old index). A directory only seconds old is spared: its build may not
/// have taken its lock yet. Only the index's own files are deleted, and a directory holding anything else is
/// left as it is. Best effort: what cannot be removed is left for the next build.
fn remove_abandoned_builds(parent: &Path, prefix: &str) {
    let settled = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() >= 2))
    };
    let Ok(entries) = parent.read_dir() else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(prefix));
        if ours
            && path.is_dir()
            && settled(&path)
            && let Some(_held) = lock::hold_if_unused(&path)
        {
            let _ = index_dir::remove(&path);
        }
    }
}

/// Moves the freshly built `new` directory to `dir`: an atomic exchange when `dir` exists (Linux
/// renameat2 RENAME_EXCHANGE), then the old index is deleted (its own files only, see [`index_dir::remove`]).
/// An interrupt never comes between the move and `cleanup` forgetting `new`, whose name the old index takes.
fn swap_into_place(new: PathBuf, dir: &Path, cleanup: cleanup::Guard) -> Result<()> {
    if !dir.exists() {
        return cleanup
            .commit(|| std::fs::rename(&new, dir))
            .with_context(|| format!("cannot move the new index to {}", dir.display()));
    }
    if let Err(e) = cleanup.commit(|| exchange(&new, dir)) {
        // The old index is untouched; the new one is of no use where it cannot be moved in.
        let _ = index_dir::remove(&new);
        return Err(e).with_context(|| format!("cannot replace {}", dir.display()));
    }
    // `new` now holds the old index.
    index_dir::remove(&new).with_context(|| {
        format!(
            "the new index is in place, but the old one's directory was left at {}",
            new.display()
        )
    })
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| {
        if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS {
            // The file system (or an old kernel) cannot exchange two names atomically.
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the file system holding it cannot swap two directories atomically (renameat2 \
                     RENAME_EXCHANGE: {e}); build the index on a local file system such as ext4, XFS, Btrfs or \
                     tmpfs, or delete the old index first"
                ),
            )
        } else {
            e.into()
        }
    })
}

/// Elsewhere: move the old index aside, then the new one in (a short window without an index).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside)?;
    std::fs::rename(a, b)?;
    std::fs::rename(&aside, a)
}
