//! `recommend`: nearest clips for a clip id, an embedding file, or a batch of either, as a table or JSON.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::audio::LogMel;
use crate::audio::decode::Window;
use crate::audio::logmel::EXAMPLE_SECONDS;
use crate::audio::source::{Embedded, SourceOptions};
use crate::clip;
use crate::error::UsageError;
use crate::index::projection::ClipForm;
use crate::index::projection::QueryVector;
use crate::index::records::{ClipMeta, Records};
use crate::index::scan;
use crate::index::search::{Search, Searcher, Target};
use crate::index::store::Store;
use crate::index::store::with_distance;
use crate::index::vector::{Form, Metric};
use crate::labels;
use crate::progress::Progress;

/// What to find neighbours of.
pub enum Query {
    Id(String),
    /// An embedding file (or `-`).
    EmbeddingFile(PathBuf),
    /// One query per line: a video_id or a one-line JSON embedding.
    Batch(PathBuf),
    /// An audio file, embedded here (or by a service) and asked window by window.
    Audio {
        path: PathBuf,
        window: Window,
        source: SourceOptions,
    },
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
    /// Candidates re-ranked by their frames; `None`: the default for the index.
    pub rerank: Option<usize>,
    pub json: bool,
    /// No `warning:` lines for a batch's bad lines in table mode (the final count is still an error).
    pub quiet: bool,
}

/// One query as resolved: a clip of the index, or a vector.
enum Resolved {
    Item {
        video_id: String,
        item: u32,
    },
    Vector {
        source: String,
        vector: QueryVector,
    },
    /// A batch line that cannot be asked: answered with its error, in its place.
    Failed {
        query: String,
        line: usize,
        error: String,
    },
}

/// A batch line's answer when it cannot be asked.
#[derive(Serialize)]
struct Failure<'a> {
    query: &'a str,
    line: usize,
    error: &'a str,
}

#[derive(Serialize)]
struct Hit<'a> {
    rank: usize,
    video_id: &'a str,
    distance: f32,
    /// Cosine similarity, for the angular metric: what the table shows, and what people read.
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<f32>,
    labels: &'a [i64],
    label_names: Vec<&'static str>,
    start_time: f64,
    end_time: f64,
    url: String,
    /// For an audio query: where in the file (seconds) the window this clip matched best starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_at: Option<f64>,
}

#[derive(Serialize)]
struct Answer<'a> {
    query: &'a str,
    results: Vec<Hit<'a>>,
}

pub fn run(options: &RecommendOptions) -> Result<()> {
    let (store, settings) = Store::open(&options.dir)?;
    with_distance!(settings.metric, D => answer::<D>(&store, options))
}

fn answer<D: arroy::Distance>(store: &Store, options: &RecommendOptions) -> Result<()> {
    let rtxn = store.env.read_txn()?;
    let settings = &store.read_settings(&rtxn)?;
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
    // An audio file's own clip may be in the index: one more neighbour per window leaves room to drop it.
    let per_query = options.count + usize::from(matches!(options.query, Query::Audio { .. }));
    let resolver = Resolver {
        store,
        rtxn: &rtxn,
        form: store.clip_form(&rtxn, settings)?,
        start: options.start,
    };
    let mut responder = Responder {
        searcher: Searcher::<D>::open(store, &rtxn, settings, search, per_query, labels)?
            .with_rerank(options.rerank, settings)?,
        records: store.load_records(&rtxn, settings)?,
        out: BufWriter::new(io::stdout().lock()),
        options,
        metric: settings.metric,
        failed: 0,
    };
    match &options.query {
        Query::Id(video_id) => {
            // An id no index can hold is a mistake on the command line, not in the data.
            if let Err(problem) = clip::check_id(video_id) {
                return Err(UsageError::new(format!("--id: {problem}")).into());
            }
            responder.answer(&[resolver.id(video_id)?])?
        }
        Query::EmbeddingFile(path) => {
            let (text, name) = read_input(path)?;
            responder.answer(&[resolver.vector(&text, name.clone()).context(name)?])?
        }
        Query::Batch(path) => answer_batch(&mut responder, &resolver, path)?,
        Query::Audio {
            path,
            window,
            source,
        } => answer_audio(&mut responder, &resolver, path, *window, source)?,
    }
    responder.out.flush()?;
    Ok(())
}

/// Turns what a user gave into queries the index can answer.
struct Resolver<'t> {
    store: &'t Store,
    rtxn: &'t heed::RoTxn<'t>,
    /// How the index turns rows into its vectors (its projection, frames and form).
    form: ClipForm,
    /// `--start ROW` for embeddings.
    start: usize,
}

impl Resolver<'_> {
    fn id(&self, video_id: &str) -> Result<Resolved> {
        clip::check_id(video_id).map_err(|problem| anyhow!("not a video_id: {problem}"))?;
        let item = self.store.ids.get(self.rtxn, video_id)?.ok_or_else(|| {
            anyhow!(
                "no clip '{}' in index {}",
                clip::shortened(video_id),
                self.store.dir.display()
            )
        })?;
        Ok(Resolved::Item {
            video_id: video_id.to_string(),
            item,
        })
    }

    /// An embedding's text. Errors get their location from the caller: the file, or the batch file and line.
    fn vector(&self, text: &str, source: String) -> Result<Resolved> {
        let rows = embedding_rows(text)?;
        let vector = self.form.query(&rows, self.start)?;
        Ok(Resolved::Vector { source, vector })
    }

    /// A batch line: a one-line JSON embedding, or a video_id.
    fn line(&self, line: &str, source: String) -> Result<Resolved> {
        let query = line.trim();
        if query.is_empty() {
            bail!("an empty line")
        } else if query.starts_with('{') || query.starts_with('[') {
            self.vector(query, source)
        } else {
            self.id(query)
        }
    }
}

/// Asks the searcher and writes the answers, in the order asked.
struct Responder<'t, D: arroy::Distance> {
    searcher: Searcher<'t, D>,
    records: Records<'t>,
    out: BufWriter<io::StdoutLock<'static>>,
    options: &'t RecommendOptions,
    metric: Metric,
    /// Queries answered with their error.
    failed: usize,
}

impl<D: arroy::Distance> Responder<'_, D> {
    /// Answers a group of queries at once (the exact scan shares its passes over the vectors among them); a
    /// failed one gets its error in its place.
    fn answer(&mut self, group: &[Resolved]) -> Result<()> {
        let targets: Vec<Target> = group
            .iter()
            .filter_map(|q| match q {
                Resolved::Item { item, .. } => Some(Target::Item(*item)),
                Resolved::Vector { vector, .. } => Some(Target::Vector(vector)),
                Resolved::Failed { .. } => None,
            })
            .collect();
        let mut answers = self.searcher.nearest(&targets)?.into_iter();
        for query in group {
            let name = match query {
                Resolved::Item { video_id, .. } => video_id.as_str(),
                Resolved::Vector { source, .. } => source.as_str(),
                Resolved::Failed { query, line, error } => {
                    self.failed += 1;
                    if self.options.json {
                        let failure = Failure {
                            query,
                            line: *line,
                            error,
                        };
                        serde_json::to_writer(&mut self.out, &failure)?;
                        writeln!(self.out)?;
                    } else if !self.options.quiet {
                        eprintln!("warning: line {line}: {error}");
                    }
                    continue;
                }
            };
            let hits = answers.next().unwrap_or_default();
            self.write(name, &hits, None)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        query: &str,
        hits: &[(u32, f32)],
        matched_at: Option<&[f64]>,
    ) -> Result<()> {
        write_answer(
            &mut self.out,
            &self.records,
            query,
            hits,
            matched_at,
            self.options,
            self.metric,
        )
    }
}

/// One answer per line of a batch file, in order, so that output line N answers input line N; a line that
/// cannot be asked gets its error in its place, and the run fails at the end with their count.
fn answer_batch<D: arroy::Distance>(
    responder: &mut Responder<D>,
    resolver: &Resolver,
    path: &Path,
) -> Result<()> {
    let (reader, name): (Box<dyn BufRead>, String) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), "<stdin>".into())
    } else {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        (Box::new(BufReader::new(file)), path.display().to_string())
    };
    // Enough queries at a time for the exact scan to give each thread a group.
    let group_size = scan::GROUP * rayon::current_num_threads();
    let mut group = Vec::with_capacity(group_size);
    let mut lines = CappedLines::new(reader);
    let mut number = 0;
    while let Some(line) = lines.next_line() {
        number += 1;
        let resolved = match line {
            Ok(line) => resolver
                .line(&line, format!("{name}:{number}"))
                .unwrap_or_else(|e| Resolved::Failed {
                    query: clip::shortened(line.trim()).into_owned(),
                    line: number,
                    error: format!("{e:#}"),
                }),
            // A line too long to keep, or not text.
            Err(e) => Resolved::Failed {
                query: String::new(),
                line: number,
                error: format!("{e:#}"),
            },
        };
        group.push(resolved);
        if group.len() == group_size {
            responder.answer(&group)?;
            group.clear();
        }
    }
    responder.answer(&group)?;
    responder.out.flush()?;
    if responder.failed > 0 {
        bail!(
            "{name}: {} of {number} queries failed (see their answers)",
            responder.failed
        );
    }
    Ok(())
}

/// An audio file: embedded, asked window by window, and the answers merged, each clip scoring its best window.
fn answer_audio<D: arroy::Distance>(
    responder: &mut Responder<D>,
    resolver: &Resolver,
    path: &Path,
    window: Window,
    source: &SourceOptions,
) -> Result<()> {
    window.check().map_err(UsageError::new)?;
    let source = source.locate()?.load(responder.options.quiet)?;
    let progress = Progress::items(None, responder.options.quiet, "examples");
    let embedded = source.embed_file(path, window, &LogMel::new(), |n| progress.inc(n as u64))?;
    progress.finish();
    let windows =
        audio_windows(&embedded, &resolver.form).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let targets: Vec<Target> = windows.iter().map(|(_, v)| Target::Vector(v)).collect();
    let answers = responder.searcher.nearest(&targets)?;
    // The file's own clip, made by `embed`, is the file itself: not a recommendation.
    let own = match crate::commands::embed::file_id(path) {
        Ok(id) => resolver.store.ids.get(resolver.rtxn, &id)?,
        Err(_) => None,
    };
    let mut best: HashMap<u32, (f32, f64)> = HashMap::new();
    for ((at, _), hits) in windows.iter().zip(answers) {
        for (item, distance) in hits {
            let entry = best.entry(item).or_insert((distance, *at));
            if distance < entry.0 {
                *entry = (distance, *at);
            }
        }
    }
    let mut merged: Vec<(u32, f32, f64)> = best
        .into_iter()
        .filter(|(item, _)| Some(*item) != own)
        .map(|(item, (distance, at))| (item, distance, at))
        .collect();
    merged.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    merged.truncate(responder.options.count);
    let hits: Vec<(u32, f32)> = merged.iter().map(|&(i, d, _)| (i, d)).collect();
    let at: Vec<f64> = merged.iter().map(|&(_, _, at)| at).collect();
    responder.write(&path.display().to_string(), &hits, Some(&at))
}

/// An audio file's query vectors: one per window of the index's `frames` rows (10 of 0.96 s: about 10 s), side
/// by side from the start, and one more ending at the last row when the rows do not divide evenly, each with
/// the time in the file where it starts. Audio shorter than one window is one window of the rows there are
/// when the index's vectors are means; concatenated frames need them all, and the error says so.
fn audio_windows(embedded: &Embedded, form: &ClipForm) -> Result<Vec<(f64, QueryVector)>> {
    let frames = form.frames;
    let rows: Vec<Vec<f32>> = embedded
        .rows
        .iter()
        .map(|row| row.iter().map(|&v| f32::from(v)).collect())
        .collect();
    let n = rows.len();
    if n < frames {
        if form.form == Form::Flat {
            bail!(
                "{:.1} s of audio gives {n} example{} of 0.96 s; this index's vectors are {frames} frames \
                 concatenated (--vector flat), so it needs at least {:.2} s (or an index built with --vector mean)",
                embedded.seconds,
                if n == 1 { "" } else { "s" },
                frames as f64 * 0.96
            );
        }
        return Ok(vec![(embedded.start, form.query_rows(&rows, 0, n)?)]);
    }
    let mut starts: Vec<usize> = (0..=n - frames).step_by(frames).collect();
    if !n.is_multiple_of(frames) {
        starts.push(n - frames);
    }
    starts
        .into_iter()
        .map(|start| {
            let at = embedded.start + start as f64 * EXAMPLE_SECONDS;
            Ok((at, form.query(&rows, start)?))
        })
        .collect()
}

/// Writes one query's answer as a JSON line or a table.
fn write_answer(
    out: &mut impl Write,
    records: &Records,
    query: &str,
    hits: &[(u32, f32)],
    matched_at: Option<&[f64]>,
    options: &RecommendOptions,
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
            similarity: similarity(metric, *distance),
            labels: &meta.labels,
            label_names: meta
                .labels
                .iter()
                .filter_map(|&l| labels::class_name(l))
                .collect(),
            start_time: meta.start_time,
            end_time: meta.end_time,
            url: clip_url(&meta.video_id, meta.start_time),
            matched_at: matched_at.and_then(|at| at.get(rank).copied()),
        })
        .collect();
    let answer = Answer { query, results };
    if options.json {
        serde_json::to_writer(&mut *out, &answer)?;
        writeln!(out)?;
    } else {
        write_table(out, &answer, &options.labels)?;
    }
    Ok(())
}

/// The cosine similarity behind arroy's angular distance, (1 - cos) / 2; other metrics have none.
fn similarity(metric: Metric, distance: f32) -> Option<f32> {
    (metric == Metric::Angular).then_some(1.0 - 2.0 * distance)
}

/// An embedding file's text, refused past [`MAX_LINE`] bytes (see there).
fn read_input(path: &Path) -> Result<(String, String)> {
    let (reader, name): (Box<dyn Read>, String) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), "<stdin>".into())
    } else {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        (Box::new(file), path.display().to_string())
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_LINE as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() > MAX_LINE {
        bail!(
            "{name}: longer than {} MiB: not an embedding",
            MAX_LINE >> 20
        );
    }
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{name}: not UTF-8 text"))?;
    Ok((text, name))
}

/// The most bytes one query may take (a batch line, an embedding file): ten rows of 128 numbers are about 15
/// KB as text, and without a cap a hostile 100 MB line took 3.35 GB of memory.
const MAX_LINE: usize = 4 << 20;

/// A batch file's lines, each refused past [`MAX_LINE`] bytes (then skipped to its end, without keeping it).
struct CappedLines<R> {
    reader: R,
    done: bool,
}

impl<R: BufRead> CappedLines<R> {
    fn new(reader: R) -> Self {
        CappedLines {
            reader,
            done: false,
        }
    }

    fn next_line(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Err(e) => {
                self.done = true;
                Some(Err(e.into()))
            }
            Ok(0) => {
                self.done = true;
                None
            }
            Ok(_) if line.len() > MAX_LINE && line.last() != Some(&b'\n') => {
                // Skip the rest of the line in bounded pieces.
                loop {
                    let mut rest = Vec::new();
                    match (&mut self.reader)
                        .take(1 << 16)
                        .read_until(b'\n', &mut rest)
                    {
                        Ok(0) => break,
                        Ok(_) if rest.last() == Some(&b'\n') => break,
                        Ok(_) => {}
                        Err(e) => return Some(Err(e.into())),
                    }
                }
                Some(Err(anyhow!(
                    "longer than {} MiB: not a query",
                    MAX_LINE >> 20
                )))
            }
            Ok(_) => Some(String::from_utf8(line).map_err(|_| anyhow!("not UTF-8 text"))),
        }
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

/// Where a result can be played: a clip `embed` made from a local file (video_id `file:PATH`) links to the file,
/// any other to YouTube.
pub fn clip_url(video_id: &str, start_time: f64) -> String {
    match video_id.strip_prefix(crate::commands::embed::FILE_ID_PREFIX) {
        Some(path) => {
            let mut url = String::from("file://");
            for byte in path.bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
                    url.push(char::from(byte));
                } else {
                    url.push_str(&format!("%{byte:02X}"));
                }
            }
            url
        }
        None => youtube_url(video_id, start_time),
    }
}

/// The clip's place on YouTube; the id percent-encoded, so that whatever an index holds stays one URL.
pub fn youtube_url(video_id: &str, start_time: f64) -> String {
    let mut id = String::with_capacity(video_id.len());
    for byte in video_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            id.push(char::from(byte));
        } else {
            id.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "https://www.youtube.com/watch?v={id}&t={}s",
        start_time.max(0.0).floor() as u64
    )
}

/// `text` with control characters shown as escapes, so that an id or label from the data cannot move the
/// cursor, clear the screen or break the table's lines.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The label column's width: what the terminal leaves beside the other columns (at least 20), or 40 when
/// stdout is not a terminal, so that a file or a pipe gets the same table wherever it was made.
fn label_width() -> usize {
    // rank, video_id, score and the separators, and a YouTube link with its time.
    const OTHER_COLUMNS: usize = 4 + 2 + 11 + 2 + 10 + 2 + 2 + 52;
    match terminal_size::terminal_size_of(io::stdout()) {
        Some((terminal_size::Width(width), _)) => {
            usize::from(width).saturating_sub(OTHER_COLUMNS).max(20)
        }
        None => 40,
    }
}

/// A hit's label names for the table: the labels asked for with `--label` first, then the rest in stored order.
fn label_column(hit: &Hit, asked: &[u16], width: usize) -> String {
    let is_asked = |label: &i64| asked.iter().any(|&a| i64::from(a) == *label);
    let ordered = hit
        .labels
        .iter()
        .filter(|l| is_asked(l))
        .chain(hit.labels.iter().filter(|l| !is_asked(l)));
    let names: Vec<&str> = ordered.filter_map(|&l| labels::class_name(l)).collect();
    let mut text = printable(&names.join(", ")).into_owned();
    if text.chars().count() > width {
        text = text.chars().take(width - 1).collect::<String>() + "…";
    }
    text
}

fn write_table(out: &mut impl Write, answer: &Answer, asked: &[u16]) -> Result<()> {
    writeln!(out, "neighbours of {}", printable(answer.query))?;
    if answer.results.is_empty() {
        writeln!(out, "  (no clip qualifies)")?;
        return Ok(());
    }
    // People read cosine similarity where there is one; other metrics show their distance.
    let heading = if answer.results[0].similarity.is_some() {
        "similarity"
    } else {
        "distance"
    };
    let width = label_width();
    // YouTube ids are 11 characters; a clip `embed` made from a file is named by its path, and the columns
    // after it should still line up.
    let id_width = answer
        .results
        .iter()
        .map(|hit| printable(hit.video_id).chars().count())
        .max()
        .unwrap_or(0)
        .max(11);
    // An audio query's answers say where in the file each matched.
    let at_column = answer.results[0].matched_at.is_some();
    let at_heading = if at_column { "   at  " } else { "" };
    writeln!(
        out,
        "{:>4}  {:<id_width$}  {heading:>10}  {at_heading}{:<width$}  link",
        "rank", "video_id", "labels"
    )?;
    for hit in &answer.results {
        let names = label_column(hit, asked, width);
        let at = match hit.matched_at {
            Some(seconds) => {
                let whole = seconds.max(0.0).round() as u64;
                format!("{:>2}:{:02}  ", whole / 60, whole % 60)
            }
            None => String::new(),
        };
        writeln!(
            out,
            "{:>4}  {:<id_width$}  {:>10.4}  {at}{names:<width$}  {}",
            hit.rank,
            printable(hit.video_id),
            hit.similarity.unwrap_or(hit.distance),
            hit.url
        )?;
    }
    Ok(())
}
