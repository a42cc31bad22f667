//! `recommend`: nearest clips for a clip id, an embedding file, or a batch of either, as a table or JSON.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::index::records::{ClipMeta, Records};
use crate::index::scan;
use crate::index::search::{Search, Searcher, Target};
use crate::index::store::{Settings, Store};
use crate::index::vector::{self, Metric};
use crate::labels;
use crate::with_distance;

/// What to find neighbours of.
pub enum Query {
    Id(String),
    /// An embedding file (or `-`).
    EmbeddingFile(PathBuf),
    /// One query per line: a video_id or a one-line JSON embedding.
    Batch(PathBuf),
}

pub struct RecommendOptions {
    pub dir: PathBuf,
    pub query: Query,
    pub count: usize,
    pub search_k: Option<NonZeroUsize>,
    pub ef: Option<NonZeroUsize>,
    pub exact: bool,
    /// Only clips carrying one of these labels.
    pub labels: Vec<u16>,
    /// First embedding row to use.
    pub start: usize,
    pub json: bool,
}

/// One query as resolved: a clip of the index, or a vector.
enum Resolved {
    Item { video_id: String, item: u32 },
    Vector { source: String, vector: Vec<f32> },
}

#[derive(Serialize)]
struct Hit<'a> {
    rank: usize,
    video_id: &'a str,
    distance: f32,
    labels: &'a [i64],
    label_names: Vec<&'static str>,
    start_time: f64,
    end_time: f64,
    url: String,
}

#[derive(Serialize)]
struct Answer<'a> {
    query: &'a str,
    results: Vec<Hit<'a>>,
}

pub fn run(options: &RecommendOptions) -> Result<()> {
    let (store, settings) = Store::open(&options.dir)?;
    with_distance!(settings.metric, D => answer::<D>(&store, &settings, options))
}

fn answer<D: arroy::Distance>(
    store: &Store,
    settings: &Settings,
    options: &RecommendOptions,
) -> Result<()> {
    let rtxn = store.env.read_txn()?;
    let labels = if options.labels.is_empty() {
        None
    } else {
        let mut items = RoaringBitmap::new();
        for &label in &options.labels {
            items |= store.label_items(&rtxn, label)?;
        }
        Some(items)
    };
    let search = Search::choose(
        options.exact,
        options.search_k,
        options.ef,
        options.count,
        settings,
    );
    let mut searcher = Searcher::<D>::open(store, &rtxn, settings, search, options.count, labels)?;
    let records = store.load_records(&rtxn, settings)?;
    let mut nearest = |group: &[Resolved]| -> Result<Vec<Vec<(u32, f32)>>> {
        let targets: Vec<Target> = group
            .iter()
            .map(|q| match q {
                Resolved::Item { item, .. } => Target::Item(*item),
                Resolved::Vector { vector, .. } => Target::Vector(vector),
            })
            .collect();
        searcher.nearest(&targets)
    };

    let mut out = BufWriter::new(io::stdout().lock());
    let mut write = |group: &[Resolved]| -> Result<()> {
        for (query, hits) in group.iter().zip(nearest(group)?) {
            let name = match query {
                Resolved::Item { video_id, .. } => video_id.as_str(),
                Resolved::Vector { source, .. } => source.as_str(),
            };
            write_answer(
                &mut out,
                &records,
                name,
                &hits,
                options.json,
                settings.metric,
            )?;
        }
        Ok(())
    };

    let resolve_id = |video_id: &str| -> Result<Resolved> {
        let item = store
            .ids
            .get(&rtxn, video_id)?
            .ok_or_else(|| anyhow!("no clip '{video_id}' in index {}", store.dir.display()))?;
        Ok(Resolved::Item {
            video_id: video_id.to_string(),
            item,
        })
    };
    // Errors get their location from the caller: the file, or the batch file and line.
    let resolve_vector = |text: &str, source: String| -> Result<Resolved> {
        let rows = embedding_rows(text)?;
        let vector = vector::from_rows(&rows, options.start, settings.frames, settings.vector)?;
        Ok(Resolved::Vector { source, vector })
    };

    match &options.query {
        Query::Id(video_id) => write(&[resolve_id(video_id)?])?,
        Query::EmbeddingFile(path) => {
            let (text, name) = read_input(path)?;
            write(&[resolve_vector(&text, name.clone()).context(name)?])?
        }
        Query::Batch(path) => {
            let (reader, name): (Box<dyn BufRead>, String) = if path.as_os_str() == "-" {
                (Box::new(io::stdin().lock()), "<stdin>".into())
            } else {
                let file =
                    File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
                (Box::new(BufReader::new(file)), path.display().to_string())
            };
            // Enough queries at a time for the exact scan to give each thread a group.
            let group_size = scan::GROUP * rayon::current_num_threads();
            let mut group = Vec::with_capacity(group_size);
            for (number, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {name}"))?;
                let query = line.trim();
                if query.is_empty() {
                    continue;
                }
                let resolved = if query.starts_with('{') || query.starts_with('[') {
                    resolve_vector(query, format!("{name}:{}", number + 1))
                } else {
                    resolve_id(query)
                };
                group.push(resolved.with_context(|| format!("{name}: line {}", number + 1))?);
                if group.len() == group_size {
                    write(&group)?;
                    group.clear();
                }
            }
            write(&group)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes one query's answer as a JSON line or a table.
fn write_answer(
    out: &mut impl Write,
    records: &Records,
    query: &str,
    hits: &[(u32, f32)],
    json: bool,
    metric: Metric,
) -> Result<()> {
    let metas: Vec<ClipMeta> = hits
        .iter()
        .map(|&(item, _)| records.get(item))
        .collect::<Result<_>>()?;
    let results: Vec<Hit> = hits
        .iter()
        .zip(&metas)
        .enumerate()
        .map(|(rank, ((_, distance), meta))| Hit {
            rank: rank + 1,
            video_id: &meta.video_id,
            distance: *distance,
            labels: &meta.labels,
            label_names: meta
                .labels
                .iter()
                .filter_map(|&l| labels::class_name(l))
                .collect(),
            start_time: meta.start_time,
            end_time: meta.end_time,
            url: youtube_url(&meta.video_id, meta.start_time),
        })
        .collect();
    let answer = Answer { query, results };
    if json {
        serde_json::to_writer(&mut *out, &answer)?;
        writeln!(out)?;
    } else {
        write_table(out, &answer, metric)?;
    }
    Ok(())
}

fn read_input(path: &PathBuf) -> Result<(String, String)> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        Ok((text, "<stdin>".into()))
    } else {
        File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok((text, path.display().to_string()))
    }
}

/// The rows of an embedding given as a clip written by `ingest`, a 2-D array, or the IBM MAX Audio Embedding
/// Generator's response (`{"status":"ok","embedding":[[...],...]}`).
pub fn embedding_rows(text: &str) -> Result<Vec<Vec<f32>>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
    let rows = match &value {
        serde_json::Value::Array(_) => &value,
        serde_json::Value::Object(map) => {
            if let Some(status) = map
                .get("status")
                .and_then(|s| s.as_str())
                .filter(|s| *s != "ok")
            {
                bail!("the embedding service answered status '{status}'");
            }
            map.get("embedding")
                .ok_or_else(|| anyhow!("no \"embedding\" key"))?
        }
        _ => bail!("expected an embedding: a clip, a 2-D array, or an embedding service response"),
    };
    serde_json::from_value::<Vec<Vec<f32>>>(rows.clone())
        .map_err(|e| anyhow!("the embedding is not a 2-D array of numbers: {e}"))
}

pub fn youtube_url(video_id: &str, start_time: f64) -> String {
    format!(
        "https://www.youtube.com/watch?v={video_id}&t={}s",
        start_time.max(0.0).floor() as u64
    )
}

fn write_table(out: &mut impl Write, answer: &Answer, metric: Metric) -> Result<()> {
    let (heading, score): (&str, fn(f32) -> f32) = match metric {
        // Arroy's angular distance is (1 - cos) / 2; people read cosine similarity.
        Metric::Angular => ("similarity", |d| 1.0 - 2.0 * d),
        _ => ("distance", |d| d),
    };
    writeln!(out, "neighbours of {}", answer.query)?;
    if answer.results.is_empty() {
        writeln!(out, "  (no clip qualifies)")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>4}  {:<11}  {heading:>10}  {:<40}  link",
        "rank", "video_id", "labels"
    )?;
    for hit in &answer.results {
        let mut names = hit.label_names.join(", ");
        if names.chars().count() > 40 {
            names = names.chars().take(39).collect::<String>() + "…";
        }
        writeln!(
            out,
            "{:>4}  {:<11}  {:>10.4}  {names:<40}  {}",
            hit.rank,
            hit.video_id,
            score(hit.distance),
            hit.url
        )?;
    }
    Ok(())
}
