//! A rebuild: a new index written in a sibling directory, the clips laid out in the order of a tree's leaves,
//! then swapped into place.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use crate::fs::cleanup;
use crate::fs::lock::WriterLock;
use crate::index::build::input::{
    BuildInputs, ClipInput, VectorOrRows, input_size, read_inputs, usable,
};
use crate::index::build::options::{BuildOptions, DEFAULT_TREES, ProjectionChoice};
use crate::index::build::report::{BuildEvent, Built, Progress};
use crate::index::build::write::{LabelChanges, build_forest, finish, store_clip};
use crate::index::calibrate;
use crate::index::codes::Quantizer;
use crate::index::fit::{self, Fit};
use crate::index::projection::{ClipForm, Kind, Projection, Summary};
use crate::index::scan::{self, Matrix};
use crate::index::store::{
    self, ARROY_INDEX, FORMAT_VERSION, FRAME_ROWS_PER_WRITE, Settings, Store, VECTOR_BLOCK_ROWS,
    with_distance,
};
use crate::index::vector::Form;
use crate::index::{dir as index_dir, entry, graph, rptree};

/// The projection a rebuild applies: known before the input is read, or learned from it.
enum ProjectionPlan {
    Ready(Option<Projection>, Summary),
    Learn,
}

/// Resolves `--projection` before anything is read or created, so that a bad file fails first.
fn plan_projection(choice: &ProjectionChoice) -> Result<ProjectionPlan> {
    Ok(match choice {
        ProjectionChoice::None => ProjectionPlan::Ready(None, Summary::none()),
        ProjectionChoice::Learn => ProjectionPlan::Learn,
        ProjectionChoice::Default => {
            let p = Projection::default_fit().clone();
            let summary = Summary {
                kind: Some(Kind::Default),
                source: None,
                dimensions: p.dimensions,
                fit_clips: p.fit_ids.len() as u64,
            };
            ProjectionPlan::Ready(Some(p), summary)
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
            ProjectionPlan::Ready(Some(projection), summary)
        }
    })
}

/// Builds a new index in a sibling directory, then swaps it into place.
pub(super) fn rebuild(
    dir: &Path,
    options: &BuildOptions,
    progress: Progress,
    inputs: Vec<ClipInput>,
) -> Result<Built> {
    let dir = &index_dir::resolve(dir)?;
    // Held from before the old index is looked at until the new one is in place: an append waiting for it then
    // adds to the new index, not to the old one about to be swapped out.
    let _writer = WriterLock::acquire(dir, || (progress.report)(BuildEvent::Waiting))?;
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
        ProjectionPlan::Ready(_, summary) => summary.clone(),
        ProjectionPlan::Learn => Summary {
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
        held_out: None,
    };
    let reading = BuildInputs {
        inputs,
        dir,
        progress,
    };
    let built = with_distance!(options.metric, D => write_new::<D>(&store, settings, plan, options, reading))
        .map_err(|e| store::explain_full_disk(e, dir, building.path()))?;
    progress.stage("measuring the default breadth for new vectors");
    let held_out = calibrate::calibrate(&store)?;
    drop(store);
    progress.check()?;
    index_dir::swap_into_place(building.keep(), dir, cleanup)?;
    Ok(Built {
        bytes: store::dir_size(dir),
        held_out,
        ..built
    })
}

/// Writes a new index: the clips laid out in the order of a random-projection tree's leaves (so that clips
/// near one another in sound sit in nearby pages, and a walk from one clip touches few pages of the map), the
/// forest, and the neighbour graph, built at the same time on other threads; all in one write transaction.
fn write_new<D: arroy::Distance>(
    store: &Store,
    mut settings: Settings,
    plan: ProjectionPlan,
    options: &BuildOptions,
    reading: BuildInputs,
) -> Result<Built> {
    let progress = reading.progress;
    let form_with = |projection: Option<Projection>| ClipForm {
        projection,
        frames: settings.frames,
        form: settings.vector,
    };
    let known = match &plan {
        ProjectionPlan::Ready(projection, _) => Some(form_with(projection.clone())),
        ProjectionPlan::Learn => None,
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
                    clip.data = VectorOrRows::Vector(ready);
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
        store.write_frame_rows(&mut wtxn, &settings, frame_width, items, |item| {
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
            (progress.report)(BuildEvent::ClipsReleased);
            settings.clips = count as u64;
            settings.next_item = count as u32;
            store.update_labels(&mut wtxn, &labels)?;
            store.write_vector_rows(&mut wtxn, &settings, &laid_out)?;
            let quantizer = Quantizer::fit(&laid_out, dimensions);
            store.write_code_rows(&mut wtxn, &settings, &quantizer, &laid_out)?;
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
    store.write_graph(&mut wtxn, &settings, &lists, 0..blocks)?;
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
