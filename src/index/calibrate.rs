//! The default breadth of a walk for a vector the index does not hold (an upload, a new song, a held-out clip),
//! measured on the index itself when it is built, rather than fitted once on one generator's data.
//!
//! How wide a walk must be to find a new vector's ten nearest clips depends on the data as much as on its size:
//! one breadth fitted on one generator's clips fell short on another's (docs/bench-log.md, "A breadth measured
//! on the index"). So the build asks the index questions it does not hold the answers to, and stores the
//! narrowest breadth whose walks found [`TARGET_RECALL`] of the exact scan's neighbours. The questions are made
//! from the index's own vectors: each a point on the segment from one clip towards another, a random fraction up
//! to [`MIX`] of the way. Near its first clip such a probe is a near copy (an easy question); part of the way
//! across, it lies between two sounds, where a new song that mixes what the catalogue holds lies. On every set
//! measured these probes were harder than real held-out queries, by a margin the target allows for.

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::index::plan::{EXACT_SCAN_LIMIT, QueryOptions, SearchMethod, SearchPlan};
use crate::index::projection::QueryVector;
use crate::index::search::{Searcher, Target};
use crate::index::store::{Calibration, Settings, Store, with_distance};
use crate::index::tables::Tables;

/// The recall@10 the stored breadth reaches on the probes: the 0.95 asked of real held-out queries. The probes
/// are harder than those on every set and size measured, which is the margin (for their own sampling error, and
/// for data whose new vectors are harder than its probes): at a target a little below this, one set's held-out
/// recall came within 0.002 of 0.95 (docs/bench-log.md, "A breadth measured on the index").
pub const TARGET_RECALL: f64 = 0.95;

/// Probes asked: enough that the measured recall moves by less than the margin from one seed to another.
const PROBES: usize = 600;

/// The farthest a probe lies from its first clip towards its second (0.5: half-way).
const MIX: f32 = 0.65;

/// The breadths tried, narrowest first; the widest is kept when none reaches the target.
const LADDER: [usize; 13] = [16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256];

/// Neighbours per probe, as recall@10 counts them.
const COUNT: usize = 10;

/// Measures the breadth on the index as committed in `store` and records it in its settings; `None` (and
/// nothing written) when the index's default search is not the graph (up to [`EXACT_SCAN_LIMIT`] floats the
/// default is the exact scan) or it has too few clips to probe.
pub fn calibrate(store: &Store) -> Result<Option<Calibration>> {
    let calibration = {
        let rtxn = store.env.read_txn()?;
        let settings = store.read_settings(&rtxn)?;
        if settings.clips * settings.dimensions as u64 <= EXACT_SCAN_LIMIT || settings.clips < 2 {
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
    let tables = Tables::default();
    let matrix = store.load_vectors(rtxn, settings)?;
    let mut items = Vec::with_capacity(settings.clips as usize);
    for entry in store.ids.iter(rtxn)? {
        items.push(entry?.1);
    }
    items.sort_unstable();
    // The same index gives the same probes, so a rebuild of the same clips stores the same breadth.
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x36);
    let mut probes = Vec::with_capacity(PROBES);
    while probes.len() < PROBES {
        let a = items[rng.random_range(0..items.len())];
        let b = items[rng.random_range(0..items.len())];
        let (Some(from), Some(to)) = (matrix.row(a), matrix.row(b)) else {
            continue;
        };
        if a == b {
            continue;
        }
        let t = rng.random::<f32>() * MIX;
        let vector = from.iter().zip(to).map(|(x, y)| x + t * (y - x)).collect();
        probes.push(QueryVector {
            vector,
            codes: Vec::new(),
        });
    }
    let targets: Vec<Target> = probes.iter().map(Target::Vector).collect();
    let nearest = |search: SearchMethod| -> Result<Vec<Vec<(u32, f32)>>> {
        let options = QueryOptions {
            count: COUNT,
            search,
            rerank: Some(0),
            ..QueryOptions::default()
        };
        let plan = SearchPlan::resolve(&options, settings, 0)?;
        Searcher::<D>::open(store, rtxn, &tables, settings, plan, None)?.nearest(&targets)
    };
    let truth = nearest(SearchMethod::Exact)?;
    let mut last = None;
    for breadth in LADDER {
        let ef = std::num::NonZeroUsize::new(breadth).unwrap_or(std::num::NonZeroUsize::MIN);
        let found = nearest(SearchMethod::Graph { ef })?;
        let recall = recall(&found, &truth);
        last = Some(Calibration {
            breadth,
            recall,
            probes: PROBES,
        });
        if recall >= TARGET_RECALL {
            break;
        }
    }
    Ok(last.unwrap_or(Calibration {
        breadth: LADDER[LADDER.len() - 1],
        recall: 0.0,
        probes: 0,
    }))
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
