//! The default breadth of a walk for a vector the index does not hold (an upload, a new song, a held-out clip),
//! measured on the index itself when it is built, rather than fitted once on one generator's data.
//!
//! How wide a walk must be to find a new vector's ten nearest clips depends on the data as much as on its size:
//! one breadth fitted on one generator's clips fell short on another's (docs/bench-log.md, "A breadth measured
//! on the index"). So the build asks the index questions it does not hold the answers to, and stores the
//! narrowest breadth whose walks found [`TARGET_RECALL`] of the exact scan's neighbours. The questions are made
//! from the index's own vectors, each as a new song would lie: as far from a clip as that clip's nearest other
//! clip lies from it, or a little farther ([`AWAY`]), in the direction of another clip (so within the space the
//! clips span, not off it). Probes nearer their clip (a fraction of the way to another clip) were easier than
//! real held-out queries on one set, which is the one thing a probe must not be; these were as hard or harder on
//! every set measured.

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::index::plan::{EXACT_SCAN_LIMIT, QueryOptions, SearchMethod, SearchPlan};
use crate::index::projection::QueryVector;
use crate::index::search::{Searcher, Target};
use crate::index::store::{Calibration, Settings, Store, with_distance};
use crate::index::tables::Tables;

/// The recall@10 the stored breadth reaches on the probes: the 0.95 asked of real held-out queries, the
/// probes' being at least as hard the margin (docs/bench-log.md, "A breadth measured on the index").
pub const TARGET_RECALL: f64 = 0.95;

/// Probes asked: enough that the measured recall moves by less than the margin from one seed to another.
const PROBES: usize = 600;

/// How far a probe lies from its first clip, in units of that clip's distance to its nearest other clip: drawn
/// evenly between these, towards a second clip.
const AWAY: (f32, f32) = (1.0, 1.5);

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
    let mut pairs = Vec::with_capacity(PROBES);
    while pairs.len() < PROBES {
        let a = items[rng.random_range(0..items.len())];
        let b = items[rng.random_range(0..items.len())];
        if a != b && matrix.row(a).is_some() && matrix.row(b).is_some() {
            pairs.push((a, b, AWAY.0 + rng.random::<f32>() * (AWAY.1 - AWAY.0)));
        }
    }
    let nearest = |search: SearchMethod, count: usize, targets: &[Target]| {
        let options = QueryOptions {
            count,
            search,
            rerank: Some(0),
            ..QueryOptions::default()
        };
        let plan = SearchPlan::resolve(&options, settings, 0)?;
        Searcher::<D>::open(store, rtxn, &tables, settings, plan, None)?.nearest(targets)
    };
    let row = |item: u32| matrix.row(item).unwrap_or(&[]);
    // Each first clip's nearest other clip, exactly: how far a new point must lie from it to be as far as a
    // clip of the index lies from its nearest.
    let own: Vec<Target> = pairs.iter().map(|&(a, _, _)| Target::Item(a)).collect();
    let first = nearest(SearchMethod::Exact, 1, &own)?;
    let probes: Vec<QueryVector> = pairs
        .iter()
        .zip(first)
        .map(|(&(a, b, away), nearest)| {
            let (from, towards) = (row(a), row(b));
            let near = nearest.first().map_or(from, |&(item, _)| row(item));
            let step = away * euclidean(from, near) / euclidean(from, towards).max(f32::EPSILON);
            QueryVector {
                vector: from
                    .iter()
                    .zip(towards)
                    .map(|(x, y)| x + step * (y - x))
                    .collect(),
                codes: Vec::new(),
            }
        })
        .collect();
    let targets: Vec<Target> = probes.iter().map(Target::Vector).collect();
    let nearest = |search: SearchMethod| nearest(search, COUNT, &targets);
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

fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
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
