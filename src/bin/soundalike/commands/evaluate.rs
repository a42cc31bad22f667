//! `evaluate`: how good and how fast an index's answers are, measured on a seeded sample of its own clips.
//!
//! The exact scan is the ground truth. For the default search and each `--search-k` given: recall@k against it,
//! label precision@k (the share of neighbours carrying one of the query's music labels other than "Music": about
//! 0.01 for random neighbours, 0.313 for the exact ten on bal_train, see BENCHMARKS.md), and the latency of each
//! query. Queries are timed one at a time on one thread,
//! with the index already open: what a batch pays per query, without process start and JSON output.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::clip::{self, ClipRecord};
use crate::index::projection::{ClipForm, QueryVector};
use crate::index::records::Records;
use crate::index::search::{Search, Searcher, Target};
use crate::index::store::Store;
use crate::index::store::with_distance;
use crate::labels::{self, LabelSet};
use crate::output::Output;
use crate::progress::Progress;

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

pub struct EvaluateOptions {
    pub dir: PathBuf,
    pub queries: QueryCount,
    pub count: usize,
    /// Tree searches to measure besides the default.
    pub search_k: Vec<NonZeroUsize>,
    /// Graph walks to measure besides the default.
    pub ef: Vec<NonZeroUsize>,
    pub seed: u64,
    /// Where to write the sampled queries' video_ids, one per line (a `recommend --batch` file).
    pub save_queries: Option<PathBuf>,
    /// Candidates re-ranked by their frames; `None`: the index's default (as `recommend`).
    pub rerank: Option<usize>,
    pub json: bool,
    pub quiet: bool,
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
    /// The breadth the walk used: `ef`, or more when a re-rank needs more candidates (see `Searcher::walk_breadth`).
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

pub fn run(options: &EvaluateOptions) -> Result<()> {
    let (store, settings) = Store::open(&options.dir)?;
    let reports = with_distance!(settings.metric, D => evaluate::<D>(&store, options))?;
    let mut out = std::io::stdout().lock();
    if let Some(first) = reports.first()
        && !options.quiet
    {
        match first.queries_in_projection_fit {
            Some(0) => {}
            Some(n) => eprintln!(
                "note: {n} of the {} queries took part in fitting the index's projection, {}: their label \
                 precision is in-sample; give held-out clips with --queries FILE",
                first.queries, first.projection
            ),
            None => eprintln!(
                "note: the index's projection, {}, does not record the clips it was fit on, so whether the \
                 queries took part is unknown",
                first.projection
            ),
        }
    }
    if options.json {
        if let [report] = &reports[..] {
            serde_json::to_writer(&mut out, report)?;
        } else {
            serde_json::to_writer(&mut out, &reports)?;
        }
        writeln!(out)?;
    } else {
        write_table(&mut out, &reports)?;
    }
    Ok(())
}

/// One query clip: its item (or its vector, held out) and the music labels (other than "Music") that make a
/// neighbour relevant.
struct QueryClip {
    item: Option<u32>,
    vector: Option<QueryVector>,
    video_id: String,
    relevant: Vec<i64>,
}

fn evaluate<D: arroy::Distance>(store: &Store, options: &EvaluateOptions) -> Result<Vec<Report>> {
    let rtxn = store.env.read_txn()?;
    let settings = &store.read_settings(&rtxn)?;
    let records = store.load_records(&rtxn, settings)?;
    let form = store.clip_form(&rtxn, settings)?;
    let clips = match &options.queries {
        QueryCount::File(path) => held_out(store, &rtxn, &form, path)?,
        _ => sample(store, &rtxn, &records, options)?,
    };
    let in_fit = match &form.projection {
        None => Some(0),
        Some(p) if p.fit_ids.is_empty() => None,
        Some(p) => Some(clips.iter().filter(|c| p.is_fit_on(&c.video_id)).count()),
    };
    if let Some(path) = &options.save_queries {
        let mut file = Output::create(Some(path))?;
        for clip in &clips {
            file.put(clip.video_id.as_bytes())?;
            file.put(b"\n")?;
        }
        file.finish()?;
    }

    let progress = Progress::items(Some(clips.len() as u64), options.quiet, "queries");
    progress.stage("exact scan (ground truth)");
    let targets: Vec<Target> = clips
        .iter()
        .map(|c| match (&c.vector, c.item) {
            (Some(vector), _) => Target::Vector(vector),
            (None, item) => Target::Item(item.unwrap_or_default()),
        })
        .collect();
    // All queries at once: the scan runs them in parallel groups.
    let truth = Searcher::<D>::open(store, &rtxn, settings, Search::Exact, options.count, None)?
        .with_rerank(options.rerank, settings)?
        .nearest(&targets)?;

    let default = Search::choose(false, None, None, options.count, settings);
    let mut searches = vec![default];
    searches.extend(options.search_k.iter().map(|&k| Search::Trees(k)));
    searches.extend(options.ef.iter().map(|&ef| Search::Graph(ef)));
    let mut reports = Vec::with_capacity(searches.len());
    for (n, &search) in searches.iter().enumerate() {
        progress.set(0);
        progress.stage(format!("timing the search: {}", search.describe()));
        let mut searcher =
            Searcher::<D>::open(store, &rtxn, settings, search, options.count, None)?
                .with_rerank(options.rerank, settings)?;
        let rerank = searcher.rerank_depth();
        // One query untimed first: it maps the index's pages into this process, a cost each one-shot `recommend`
        // pays once and a batch pays once in total, not per query.
        searcher.nearest(&targets[..1])?;
        let mut latencies = Vec::with_capacity(clips.len());
        let mut answers = Vec::with_capacity(clips.len());
        let started = Instant::now();
        for target in &targets {
            let begun = Instant::now();
            let hits = searcher
                .nearest(std::slice::from_ref(target))?
                .pop()
                .unwrap_or_default();
            latencies.push(begun.elapsed());
            answers.push(hits);
            progress.inc(1);
        }
        let total = started.elapsed();
        reports.push(Report {
            k: options.count,
            queries: clips.len(),
            search: search.kind(),
            search_k: match search {
                Search::Trees(k) => Some(k.get()),
                _ => None,
            },
            ef: match search {
                Search::Graph(ef) => Some(ef.get()),
                _ => None,
            },
            walk: match search {
                Search::Graph(ef) => Some(searcher.walk_breadth(ef.get())),
                _ => None,
            },
            default: n == 0,
            recall: recall(&answers, &truth),
            label_precision: label_precision(&records, &clips, &answers, options.count)?,
            latency_ms: percentiles(&mut latencies),
            qps: (clips.len() as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE)).round(),
            rerank,
            held_out: matches!(options.queries, QueryCount::File(_)),
            projection: settings.projection.describe(),
            queries_in_projection_fit: in_fit,
        });
    }
    progress.finish();
    Ok(reports)
}

/// The query clips: every clip with a music label other than "Music", or a seeded sample of them.
fn sample(
    store: &Store,
    rtxn: &heed::RoTxn,
    records: &Records,
    options: &EvaluateOptions,
) -> Result<Vec<QueryClip>> {
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
                item: Some(item),
                vector: None,
                video_id: meta.video_id,
                relevant,
            })
        })
        .collect()
}

/// Held-out query clips from a file: each clip with a music label other than "Music", none of them in the
/// index (a clip that is would find itself), each made into a vector as the index makes its own.
fn held_out(
    store: &Store,
    rtxn: &heed::RoTxn,
    form: &ClipForm,
    path: &Path,
) -> Result<Vec<QueryClip>> {
    let music = LabelSet::music_ontology();
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot read {name}"))?;
    let mut clips = Vec::new();
    clip::read_clips(BufReader::new(file), &name, |clip: ClipRecord, at| {
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
            item: None,
            vector: Some(vector),
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

/// The share of the exact scan's neighbours that a search also found.
fn recall(answers: &[Vec<(u32, f32)>], truth: &[Vec<(u32, f32)>]) -> f64 {
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

/// The share of the k neighbours (missing ones count as wrong) carrying one of their query's relevant labels.
fn label_precision(
    records: &Records,
    clips: &[QueryClip],
    answers: &[Vec<(u32, f32)>],
    k: usize,
) -> Result<f64> {
    let mut relevant = 0usize;
    for (clip, answer) in clips.iter().zip(answers) {
        for (item, _) in answer {
            let meta = records.get(*item)?;
            if meta.labels.iter().any(|l| clip.relevant.contains(l)) {
                relevant += 1;
            }
        }
    }
    Ok(relevant as f64 / (k * clips.len()).max(1) as f64)
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

fn write_table(out: &mut impl Write, reports: &[Report]) -> Result<()> {
    let Some(first) = reports.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "{} {}queries, k = {}; ground truth: the exact scan{}; one query at a time on one thread",
        first.queries,
        if first.held_out { "held-out " } else { "" },
        first.k,
        if first.rerank > 0 {
            format!(", both re-ranking the top {} by frames", first.rerank)
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "{:<34}  {:>9}  {:>14}  {:>8}  {:>8}  {:>8}  {:>9}",
        "search",
        format!("recall@{}", first.k),
        format!("label prec@{}", first.k),
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "queries/s"
    )?;
    for report in reports {
        let mut name = match (report.search_k, report.ef) {
            (Some(k), _) => format!("trees, search_k {k}"),
            (_, Some(ef)) => match report.walk {
                Some(walk) if walk != ef => format!("graph, ef {ef} (walks {walk})"),
                _ => format!("graph, ef {ef}"),
            },
            _ => "exact scan".to_string(),
        };
        if report.default {
            name = format!("default: {name}");
        }
        writeln!(
            out,
            "{name:<34}  {:>9.4}  {:>14.4}  {:>8.3}  {:>8.3}  {:>8.3}  {:>9.0}",
            report.recall,
            report.label_precision,
            report.latency_ms.p50,
            report.latency_ms.p95,
            report.latency_ms.p99,
            report.qps
        )?;
    }
    Ok(())
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
