//! What a rebuild and an append both write: a clip's forest item and labels, the forest, and the settings that
//! end the write.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use roaring::RoaringBitmap;

use crate::index::build::input::InputClip;
use crate::index::build::report::{Built, Progress};
use crate::index::store::{ARROY_INDEX, Settings, Store};

/// Builds (or, after an append, updates) the forest with `trees` trees, seeded, on a pool of `threads`
/// threads of its own: arroy builds on rayon's current pool, and with more than one thread the trees depend on
/// scheduling (the same seed gave different answers from run to run). A pool of its own leaves the process's
/// global pool, which a host may use for other work, as it was.
pub(super) fn build_forest<D: arroy::Distance>(
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

/// Each label's clips added (`.0`) and removed (`.1`) by a write, applied at its end.
pub(super) type LabelChanges = BTreeMap<u16, (RoaringBitmap, RoaringBitmap)>;

/// Stores a clip as `item`: its vector in the forest and its labels (its record is written with the others').
pub(super) fn store_clip<D: arroy::Distance>(
    wtxn: &mut heed::RwTxn,
    writer: &arroy::Writer<D>,
    item: u32,
    clip: &InputClip,
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
pub(super) fn finish<D: arroy::Distance>(
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
        held_out: None,
    })
}
