//! The default breadth of a walk for a vector the index does not hold (an upload, a new song, a held-out clip),
//! measured on the index itself when it is built, rather than fitted once on one generator's data.
//!
//! How wide a walk must be to find a new vector's ten nearest clips depends on the data as much as on its size:
//! one breadth fitted on one generator's clips fell short on another's (docs/bench-log.md, "A breadth measured
//! on the index"). So the build asks the index questions it does not hold the answers to, and stores the
//! narrowest breadth whose walks found [`PROBE_RECALL`] of the exact scan's neighbours. Each question is one of
//! the index's own clips asked as if it were held out: its vector, from the upper layers down, through a graph
//! without it ([`Target::Absent`]). Why: a held-out clip of the same data is exactly that. Probes made by moving
//! a clip towards another (before) were up to 0.01 easier than held-out clips on one family and far harder on
//! another, where the breadth chosen from them was several times what was needed (docs/bench-log.md, "The start:
//! a greedy descent", "The probes asked as held out").

use std::num::NonZeroUsize;

use anyhow::Result;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::damaged;
use crate::index::entry;
use crate::index::plan::{QueryOptions, SearchMethod, SearchPlan, scans_by_default};
use crate::index::search::{Searcher, Target};
use crate::index::store::{Calibration, Settings, Store, with_distance};
use crate::index::tables::{Needs, Tables};

/// The recall@10 asked of real held-out queries at the stored breadth.
pub const TARGET_RECALL: f64 = 0.95;

/// The recall@10 the stored breadth must reach on the probes: the target and a margin. Why a margin: a clip held
/// out of a graph built with it is not quite a clip the build never saw; on `synth --mix 3` these probes were up
/// to 0.011 easier than its held-out clips at the same breadth, on the other families measured within 0.008
/// either way (docs/bench-log.md, "The start: a greedy descent", "The probes asked as held out").
pub const PROBE_RECALL: f64 = TARGET_RECALL + 0.01;

/// Clips asked: enough that the measured recall moves by less than the margin from one seed to another.
const PROBES: usize = 600;

/// The breadths tried, narrowest first; the widest is kept when none reaches the target.
const LADDER: [usize; 13] = [16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256];

/// Neighbours per probe, as recall@10 counts them.
const COUNT: usize = 10;

/// Measures the breadth on the index as committed in `store` and records it in its settings; `None` (and
/// nothing written) when the index's default search is the exact scan, not the graph.
pub fn calibrate(store: &Store) -> Result<Option<Calibration>> {
    let calibration = {
        let rtxn = store.env.read_txn()?;
        let settings = store.read_settings(&rtxn)?;
        if scans_by_default(&settings) {
            return Ok(None);
        }
        with_distance!(settings.metric, D => measure::<D>(store, &rtxn, &settings))?
    };
    let mut wtxn = store.env.write_txn()?;
    let mut settings = store.read_settings(&wtxn)?;
    settings.held_out = Some(calibration);
    store.write_settings(&mut wtxn, &settings)?;
    wtxn.commit()?;
    Ok(Some(calibration))
}

fn measure<D: arroy::Distance>(
    store: &Store,
    rtxn: &heed::RoTxn,
    settings: &Settings,
) -> Result<Calibration> {
    // Mapped once for the exact scans and every walk of the ladder.
    let mut tables = Tables::default();
    let needs = Needs {
        vectors: true,
        walk: true,
        frames: false,
    };
    tables.load(store, rtxn, settings, needs)?;
    if tables.vectors.is_none() {
        return Err(damaged(&store.dir, "its vectors table is missing"));
    }
    let mut items = Vec::with_capacity(settings.clips as usize);
    for entry in store.ids.iter(rtxn)? {
        items.push(entry?.1);
    }
    items.sort_unstable();
    // The same index gives the same probes, so a rebuild of the same clips stores the same breadth. Never a
    // clip of an upper layer: the descent would land on it, which a held-out clip's cannot.
    let eligible: Vec<u32> = items
        .iter()
        .copied()
        .filter(|&item| !entry::in_upper_layers(item))
        .collect();
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x36);
    let probes: Vec<u32> = (0..PROBES.min(eligible.len()))
        .map(|_| eligible[rng.random_range(0..eligible.len())])
        .collect();
    let nearest = |search: SearchMethod, targets: &[Target]| {
        let options = QueryOptions {
            count: COUNT,
            search,
            rerank: Some(0),
            ..QueryOptions::default()
        };
        let plan = SearchPlan::resolve(&options, settings, 0)?;
        Searcher::<D>::open(store, rtxn, &tables, settings, plan, None)?.nearest(targets)
    };
    let own: Vec<Target> = probes.iter().map(|&item| Target::Item(item)).collect();
    let truth = nearest(SearchMethod::Exact, &own)?;
    let absent: Vec<Target> = probes.iter().map(|&item| Target::Absent(item)).collect();
    let mut measured = Calibration {
        breadth: 0,
        recall: 0.0,
        probes: probes.len(),
    };
    for breadth in LADDER {
        let ef = NonZeroUsize::new(breadth).unwrap_or(NonZeroUsize::MIN);
        measured.breadth = breadth;
        measured.recall = recall(&nearest(SearchMethod::Graph { ef }, &absent)?, &truth);
        if measured.recall >= PROBE_RECALL {
            break;
        }
    }
    Ok(measured)
}

/// The share of the exact scan's neighbours (`truth`) that a search's `answers` also found (1 when there are
/// none): recall@k as `evaluate` reports it and the build measures it.
pub fn recall(answers: &[Vec<(u32, f32)>], truth: &[Vec<(u32, f32)>]) -> f64 {
    let mut found = 0usize;
    let mut wanted = 0usize;
    for (answer, exact) in answers.iter().zip(truth) {
        wanted += exact.len();
        found += exact
            .iter()
            .filter(|(item, _)| answer.iter().any(|(a, _)| a == item))
            .count();
    }
    if wanted == 0 {
        return 1.0;
    }
    found as f64 / wanted as f64
}
