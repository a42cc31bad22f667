//! The default breadth of a walk for a vector the index does not hold (an upload, a new song, a held-out clip),
//! measured on the index itself when it is built, rather than fitted once on one generator's data.
//!
//! How wide a walk must be to find a new vector's ten nearest clips depends on the data as much as on its size:
//! one breadth fitted on one generator's clips fell short on another's (docs/bench-log.md, "A breadth measured
//! on the index"). So the build asks the index questions it does not hold the answers to, and stores the
//! narrowest breadth whose walks found [`PROBE_RECALL`] of the exact scan's neighbours. The questions are made
//! from the index's own vectors, each as a new song would lie: as far from a clip as that clip's nearest other
//! clip lies from it, or a little farther ([`AWAY`]), in the direction of another clip (so within the space the
//! clips span, not off it). Probes nearer their clip (a fraction of the way to another clip) were easier than
//! real held-out queries on one set, which is the one thing a probe must not be; these were as hard or harder on
//! every set measured.

use std::num::NonZeroUsize;

use anyhow::Result;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::damaged;
use crate::index::plan::{QueryOptions, SearchMethod, SearchPlan, scans_by_default};
use crate::index::projection::QueryVector;
use crate::index::search::{Searcher, Target};
use crate::index::store::{Calibration, Settings, Store, with_distance};
use crate::index::tables::{Needs, Tables};

/// The recall@10 asked of real held-out queries at the stored breadth.
pub const TARGET_RECALL: f64 = 0.95;

/// The recall@10 the stored breadth must reach on the probes: the target and a margin. Why a margin: on
/// `synth --mix 3` the probes were up to 0.01 easier than its held-out clips once the graph was refined along
/// walks' paths (at 100,000 clips 0.956 on the probes where the held-out clips found 0.946 at the same breadth),
/// while on every other set measured they were as hard or harder (docs/bench-log.md, "Islands: the graph refined
/// along the paths").
pub const PROBE_RECALL: f64 = TARGET_RECALL + 0.01;

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
    let Some(matrix) = tables.vectors.as_ref() else {
        return Err(damaged(&store.dir, "its vectors table is missing"));
    };
    let row = |item: u32| {
        matrix
            .row(item)
            .ok_or_else(|| damaged(&store.dir, format!("its vectors table has no row {item}")))
    };
    let mut items = Vec::with_capacity(settings.clips as usize);
    for entry in store.ids.iter(rtxn)? {
        items.push(entry?.1);
    }
    items.sort_unstable();
    // The same index gives the same probes, so a rebuild of the same clips stores the same breadth. An index
    // scanned by default has more clips than the two a probe needs.
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x36);
    let mut pairs = Vec::with_capacity(PROBES);
    while pairs.len() < PROBES && items.len() > 1 {
        let a = items[rng.random_range(0..items.len())];
        let b = items[rng.random_range(0..items.len())];
        if a != b {
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
    // Each first clip's nearest other clip, exactly: how far a new point must lie from it to be as far as a
    // clip of the index lies from its nearest.
    let own: Vec<Target> = pairs.iter().map(|&(a, _, _)| Target::Item(a)).collect();
    let first = nearest(SearchMethod::Exact, 1, &own)?;
    let probes = pairs
        .iter()
        .zip(first)
        .map(|(&(a, b, away), nearest)| {
            let (from, towards) = (row(a)?, row(b)?);
            let near = match nearest.first() {
                Some(&(item, _)) => row(item)?,
                None => from,
            };
            let step = away * euclidean(from, near) / euclidean(from, towards).max(f32::EPSILON);
            Ok(QueryVector {
                vector: from
                    .iter()
                    .zip(towards)
                    .map(|(x, y)| x + step * (y - x))
                    .collect(),
                codes: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let targets: Vec<Target> = probes.iter().map(Target::Vector).collect();
    let nearest = |search: SearchMethod| nearest(search, COUNT, &targets);
    let truth = nearest(SearchMethod::Exact)?;
    let mut measured = Calibration {
        breadth: 0,
        recall: 0.0,
        probes: probes.len(),
    };
    for breadth in LADDER {
        let ef = NonZeroUsize::new(breadth).unwrap_or(NonZeroUsize::MIN);
        measured.breadth = breadth;
        measured.recall = recall(&nearest(SearchMethod::Graph { ef })?, &truth);
        if measured.recall >= PROBE_RECALL {
            break;
        }
    }
    Ok(measured)
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
