//! An append: clips added to an existing index in one write transaction, the forest updated and each new clip
//! linked into the neighbour graph.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use roaring::RoaringBitmap;

use crate::fs::lock::WriterLock;
use crate::index::build::input::{BuildInputs, ClipInput, DistinctClips, each_clip, input_size};
use crate::index::build::options::BuildOptions;
use crate::index::build::report::{BuildEvent, Built, Progress};
use crate::index::build::write::{LabelChanges, build_forest, finish, store_clip};
use crate::index::calibrate;
use crate::index::scan;
use crate::index::store::{self, ARROY_INDEX, Settings, Store, VECTOR_BLOCK_ROWS, with_distance};
use crate::index::{dir as index_dir, graph};

/// Adds clips to an existing index in one write transaction; arroy updates the trees incrementally.
pub(super) fn append(
    dir: &Path,
    options: &BuildOptions,
    progress: Progress,
    inputs: Vec<ClipInput>,
) -> Result<Built> {
    let dir = index_dir::resolve(dir)?;
    // Taken before the index is opened, so that an append started during a rebuild waits for it and then adds to
    // the new index, and two appends never give out the same item numbers.
    let _writer = WriterLock::acquire(&dir, || (progress.report)(BuildEvent::Waiting))?;
    let data = dir.join("data.mdb");
    let size_before = std::fs::metadata(&data).map(|m| m.len()).ok();
    append_locked(&dir, options, progress, inputs).map_err(|e| {
        // Asked before the file shrinks back, while the file system is as full as the write found it.
        let e = store::explain_full_disk(e, &dir, &dir);
        if let Some(size) = size_before {
            store::shrink_back(&data, size);
        }
        e
    })
}

/// [`append`] once it holds the writer lock.
fn append_locked(
    dir: &Path,
    options: &BuildOptions,
    progress: Progress,
    inputs: Vec<ClipInput>,
) -> Result<Built> {
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
    let reading = BuildInputs {
        inputs,
        dir,
        progress,
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
    // Measured again after every append that wrote: the graph and the clips it must reach have changed.
    let held_out = if built.added > 0 {
        progress.stage("measuring the default breadth for new vectors");
        calibrate::calibrate(&store)?
    } else {
        None
    };
    Ok(Built {
        bytes: store.disk_size(),
        held_out,
        ..built
    })
}

/// Adds clips to an existing index in one write transaction: arroy updates the trees incrementally, and each
/// new (or replaced) clip is linked into the graph by a walk from the forest's nearest clips. The input is taken
/// in batches of [`APPEND_BATCH`] clips, so memory holds one batch of it and the numbers of the clips added,
/// however long it is.
fn write_more<D: arroy::Distance>(
    store: &Store,
    settings: Settings,
    options: &BuildOptions,
    reading: BuildInputs,
) -> Result<Built> {
    let progress = reading.progress;
    let before = settings.clone();
    let mut wtxn = store.env.write_txn()?;
    // The index's own projection, applied to every clip added.
    let form = store.clip_form(&wtxn, &settings)?;
    let mut adding = AppendWriter {
        store,
        writer: arroy::Writer::<D>::new(store.arroy::<D>(), ARROY_INDEX, settings.dimensions),
        settings,
        labels: LabelChanges::new(),
        items: Vec::new(),
        linked: RoaringBitmap::new(),
        replaced: 0,
    };
    let mut batch = DistinctClips::default();
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
    let AppendWriter {
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
            held_out: None,
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
    store.write_graph(&mut wtxn, &settings, &lists, dirty)?;
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
struct AppendWriter<'s, D: arroy::Distance> {
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

impl<D: arroy::Distance> AppendWriter<'_, D> {
    /// Writes a batch of clips: their numbers, forest items, labels, records and vectors.
    fn add(&mut self, wtxn: &mut heed::RwTxn, batch: DistinctClips) -> Result<()> {
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
        store.write_frames(wtxn, &self.settings, &frame_codes)?;
        Ok(())
    }
}
