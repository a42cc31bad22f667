//! How good and how fast an index's answers are, measured on a seeded sample of its own clips or on held-out
//! clips, through the same sessions that answer users' questions.
//!
//! The exact scan is the ground truth. For the default search and each tree or graph search asked: recall@k
//! against it, label precision@k (the share of neighbours carrying one of the query's music labels other than
//! "Music": near zero for random neighbours; what the exact neighbours and the defaults reach is in BENCHMARKS.md,
//! "Label precision"), and the latency of each query. Queries are resolved first, then timed one at a time on one thread, with the index
//! already open: what a batch pays per query, without process start and output.

use std::fs::File;
use std::io::BufReader;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::clip::{self, ClipRecord};
use crate::index::calibrate::recall;
use crate::index::plan::Search;
use crate::index::records::Records;
use crate::labels::{self, LabelSet};
use crate::query::{Index, QueryOptions, Reader, Resolved, SearchMethod};

type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// Which query clips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryCount {
    /// A seeded sample of the index's own clips.
    Sample(NonZeroUsize),
    /// Every eligible clip of the index.
    All,
    /// Held-out clips from a file (clip lines as `ingest` writes them), none of them in the index.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub queries: QueryCount,
    pub count: usize,
    /// Searches to measure besides the default (tree searches, graph walks), in this order.
    pub searches: Vec<SearchMethod>,
    pub seed: u64,
    /// Candidates re-ranked by their frames; `None`: the index's default (as a question's).
    pub rerank: Option<usize>,
}

/// What an evaluation tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluateEvent<'a> {
    /// A stage begins: the ground truth, or the timing of one search.
    Stage(&'a str),
    /// One more query answered in the stage.
    Answered,
}

/// An evaluation's results: one report per search, and the queries asked.
#[derive(Debug)]
pub struct Evaluation {
    pub reports: Vec<Report>,
    /// The queries' video_ids, in the order asked.
    pub query_ids: Vec<String>,
}

/// The figures for one way of searching.
#[derive(Debug, Serialize)]
pub struct Report {
    pub k: usize,
    pub queries: usize,
    /// "exact", "trees" or "graph".
    pub search: &'static str,
    /// The trees' budget; `None` for the other searches.
    pub search_k: Option<usize>,
    /// The graph walk's breadth as asked (`--ef`); `None` for the other searches.
    pub ef: Option<usize>,
    /// The breadth the walk used: `ef`, or more when a re-rank needs more candidates or the queries are held
    /// out (see [`crate::SearchPlan`]).
    pub walk: Option<usize>,
    /// Whether this is what `recommend` does without `--exact` or `--search-k`.
    pub default: bool,
    pub recall: f64,
    pub label_precision: f64,
    pub latency_ms: Latency,
    pub qps: f64,
    /// Candidates re-ranked by their frames (0: none), in this search and in the ground truth alike.
    pub rerank: usize,
    /// Whether the queries came from a file of clips outside the index (`--queries FILE`).
    pub held_out: bool,
    /// The index's projection, as `info` names it.
    pub projection: String,
    /// How many queries took part in fitting the projection: their label precision is in-sample. `None` when
    /// that is unknown (a projection read from a JSON file).
    pub queries_in_projection_fit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Evaluates `index` (see the module's documentation).
pub fn evaluate(
    index: &Index,
    options: &EvaluateOptions,
    mut events: impl FnMut(EvaluateEvent),
) -> crate::Result<Evaluation> {
    Ok(run(index, options, &mut events)?)
}

fn run(
    index: &Index,
    options: &EvaluateOptions,
    events: &mut dyn FnMut(EvaluateEvent),
) -> Result<Evaluation> {
    let reader = index.reader()?;
    let settings = reader.settings().clone();
    let asked = |search: SearchMethod| QueryOptions {
        count: options.count,
        labels: Vec::new(),
        search,
        rerank: options.rerank,
        explain: false,
    };
    let truth_session = reader.session(&asked(SearchMethod::Exact))?;
    let clips = match &options.queries {
        QueryCount::File(path) => held_out(&reader, path)?,
        _ => sample(&reader, truth_session.records(), options)?,
    };
    let in_fit = match &reader.form().projection {
        None => Some(0),
        Some(p) if p.fit_ids.is_empty() => None,
        Some(p) => Some(clips.iter().filter(|c| p.is_fit_on(&c.video_id)).count()),
    };
    let resolved: Vec<Resolved> = clips.iter().map(|c| c.resolved.clone()).collect();

    events(EvaluateEvent::Stage("exact scan (ground truth)"));
    // All queries at once: the scan runs them in parallel groups.
    let mut truth_session = truth_session;
    let truth = truth_session.nearest(&resolved)?;
    let records = truth_session.records();

    let held_out = matches!(options.queries, QueryCount::File(_));
    let searches = std::iter::once(SearchMethod::Default).chain(options.searches.iter().copied());
    let mut reports = Vec::with_capacity(options.searches.len() + 1);
    for method in searches {
        let mut session = reader.session(&asked(method))?;
        let plan = *session.plan();
        events(EvaluateEvent::Stage(&format!(
            "timing the search: {}",
            plan.describe(held_out)
        )));
        // Every query once untimed first: it maps the pages of the index this search reads into the process, a
        // cost a batch or a server pays once in total, not per query (one-shot questions are measured apart).
        // With a single query untimed, the first graph search timed (the default) paid for mapping most of the
        // graph and codes of a large index and looked slower than a wider walk timed after it
        // (BENCHMARKS.md, "A new song's query (held out) against the peers", note (e)).
        session.nearest(&resolved)?;
        let mut latencies = Vec::with_capacity(clips.len());
        let mut answers = Vec::with_capacity(clips.len());
        let started = Instant::now();
        for query in &resolved {
            let begun = Instant::now();
            let hits = session
                .nearest(std::slice::from_ref(query))?
                .pop()
                .unwrap_or_default();
            latencies.push(begun.elapsed());
            answers.push(hits);
            events(EvaluateEvent::Answered);
        }
        let total = started.elapsed();
        reports.push(Report {
            k: options.count,
            queries: clips.len(),
            search: plan.search.kind(),
            search_k: match plan.search {
                Search::Trees(k) => Some(k.get()),
                _ => None,
            },
            ef: plan.breadth.map(|b| b.asked),
            walk: plan.walk(held_out),
            default: plan.default,
            recall: recall(&answers, &truth),
            label_precision: label_precision(records, &clips, &answers, &truth)?,
            latency_ms: percentiles(&mut latencies),
            qps: (clips.len() as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE)).round(),
            rerank: plan.rerank,
            held_out,
            projection: settings.projection.describe(),
            queries_in_projection_fit: in_fit,
        });
    }
    Ok(Evaluation {
        reports,
        query_ids: clips.into_iter().map(|c| c.video_id).collect(),
    })
}

/// One query clip: its item (or its vector, held out) and the music labels (other than "Music") that make a
/// neighbour relevant.
struct QueryClip {
    resolved: Resolved,
    video_id: String,
    relevant: Vec<i64>,
}

/// The query clips: every clip with a music label other than "Music", or a seeded sample of them.
fn sample(reader: &Reader, records: &Records, options: &EvaluateOptions) -> Result<Vec<QueryClip>> {
    let (store, rtxn) = (reader.store(), reader.rtxn());
    let music = LabelSet::music_ontology();
    let mut eligible = RoaringBitmap::new();
    for label in music.indices().filter(|&l| l != labels::MUSIC) {
        eligible |= store.label_items(rtxn, label)?;
    }
    if eligible.is_empty() {
        bail!(
            "index {} has no clip with a music label other than Music (137) to evaluate with",
            store.dir.display()
        );
    }
    let mut items: Vec<u32> = eligible.iter().collect();
    if let QueryCount::Sample(n) = options.queries {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let (chosen, _) = items.partial_shuffle(&mut rng, n.get());
        items = chosen.to_vec();
    }
    items
        .into_iter()
        .map(|item| {
            let meta = records.get(item)?;
            let relevant = meta
                .labels
                .iter()
                .copied()
                .filter(|&l| l != i64::from(labels::MUSIC) && music.contains(l))
                .collect();
            Ok(QueryClip {
                resolved: Resolved::Item(item),
                video_id: meta.video_id,
                relevant,
            })
        })
        .collect()
}

/// Held-out query clips from a file: each clip with a music label other than "Music", none of them in the
/// index (a clip that is would find itself), each made into a vector as the index makes its own.
fn held_out(reader: &Reader, path: &Path) -> Result<Vec<QueryClip>> {
    let (store, rtxn, form) = (reader.store(), reader.rtxn(), reader.form());
    let music = LabelSet::music_ontology();
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot read {name}"))?;
    let mut clips = Vec::new();
    clip::stream_clips(BufReader::new(file), &name, |clip: ClipRecord, at| {
        if store.ids.get(rtxn, &clip.video_id)?.is_some() {
            bail!(
                "{name}: {at}: clip {} is in index {}: held-out queries must be clips outside the index",
                clip::shortened(&clip.video_id),
                store.dir.display()
            );
        }
        let relevant: Vec<i64> = clip
            .labels
            .iter()
            .copied()
            .filter(|&l| l != i64::from(labels::MUSIC) && music.contains(l))
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        let vector = form.query(&clip.embedding, 0).map_err(|e| {
            anyhow!(
                "{name}: {at}: clip {}: {e}",
                clip::shortened(&clip.video_id)
            )
        })?;
        clips.push(QueryClip {
            resolved: Resolved::Vector(vector),
            video_id: clip.video_id,
            relevant,
        });
        Ok(())
    })?;
    if clips.is_empty() {
        bail!("{name} has no clip with a music label other than Music (137) to evaluate with");
    }
    Ok(clips)
}

/// The share of the k neighbours (missing ones count as wrong) carrying one of their query's relevant labels.
fn label_precision(
    records: &Records,
    clips: &[QueryClip],
    answers: &[Vec<(u32, f32)>],
    truth: &[Vec<(u32, f32)>],
) -> Result<f64> {
    let mut relevant = 0usize;
    // Out of the neighbours there are: k, or fewer where the index holds fewer (the exact scan's count), so
    // that `-k 10000` on 779 clips is not divided by 10,000. A search that finds fewer than the scan still
    // counts the missing ones as wrong.
    let possible: usize = truth.iter().map(Vec::len).sum();
    for (clip, answer) in clips.iter().zip(answers) {
        for (item, _) in answer {
            let meta = records.get(*item)?;
            if meta.labels.iter().any(|l| clip.relevant.contains(l)) {
                relevant += 1;
            }
        }
    }
    Ok(relevant as f64 / possible.max(1) as f64)
}

/// Nearest-rank percentiles in milliseconds.
fn percentiles(latencies: &mut [Duration]) -> Latency {
    latencies.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        // Milliseconds to the microsecond: finer is noise.
        latencies
            .get(rank.saturating_sub(1))
            .map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1000.0)
    };
    Latency {
        p50: at(50.0),
        p95: at(95.0),
        p99: at(99.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_exact_neighbours_found() {
        let truth = vec![vec![(1, 0.1), (2, 0.2)], vec![(3, 0.1), (4, 0.2)]];
        let answers = vec![vec![(2, 0.2), (9, 0.3)], vec![(3, 0.1), (4, 0.2)]];
        assert_eq!(recall(&answers, &truth), 0.75);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        latencies.reverse();
        let p = percentiles(&mut latencies);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
    }
}
