//! `recommend`: nearest clips for a clip id, an embedding file, an audio file, or a batch of ids and
//! embeddings, as a table or JSON; the library answers, this module reads the queries and writes the answers.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source::SourceOptions;
use soundalike::clip::CappedLines;
use soundalike::explain;
use soundalike::labels::LabelSet;
use soundalike::{
    Answer, Hit, Index, Query, QueryOptions, Ranked, SearchMethod, UsageError, clip, labels,
};

use crate::args::{AudioSource, Count, IndexDir, Json, Quiet, nonzero};
use crate::progress::Progress;
use crate::stderr::printable;
use crate::stderr::say;

/// `soundalike recommend`'s arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["id", "embedding", "batch", "audio"])))]
pub struct RecommendArgs {
    #[command(flatten)]
    pub index: IndexDir,

    /// Neighbours of this clip of the index (it is never among them).
    // YouTube ids may start with '-' ("-0FHUc78Gqo").
    #[arg(long, value_name = "VIDEO_ID", allow_hyphen_values = true)]
    pub id: Option<String>,

    /// Neighbours of an embedding in FILE (- for stdin).
    ///
    /// The embedding is a clip from `ingest`, a 2-D array of rows, or an IBM MAX Audio Embedding Generator
    /// response; - for stdin.
    #[arg(long, value_name = "FILE")]
    pub embedding: Option<PathBuf>,

    /// One query per line; one answer per query, in order.
    ///
    /// A query is a video_id or a one-line JSON embedding.
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,

    /// Neighbours of an audio file (WAV, FLAC, MP3, Ogg Vorbis).
    ///
    /// It is embedded as `embed` does. Each 10-second window (the index's frames) is asked and the answers
    /// merged, a clip scoring its best match; the table and JSON say which window matched. The file's own
    /// clip, if indexed, is left out.
    #[arg(long, value_name = "FILE")]
    pub audio: Option<PathBuf>,

    #[command(flatten)]
    pub count: Count,

    /// Walk the neighbour graph with this breadth (hnswlib's ef).
    ///
    /// More is slower and more accurate. Without --ef, --search-k or --exact the search is the exact scan up
    /// to 2M stored floats (about 16,000 clips of 128 dimensions), where it is fast, and above that the
    /// graph with ef max(16, k), or for an embedding or audio (a query not in the index) re-ranked (the
    /// default) at least 40, and 16 more for each doubling of the clips past 250,000 (72 at 1,000,000);
    /// with --rerank 0 the breadth the build measured on the index (`info` shows it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with_all = ["exact", "search_k"])]
    pub ef: Option<u64>,

    /// Search the random-projection trees. Never the default.
    ///
    /// The trees (arroy, as Annoy does) are searched instead of the graph, inspecting N tree nodes per query
    /// (Annoy's search_k): more is slower and more accurate.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "exact")]
    pub search_k: Option<u64>,

    /// Scan every vector: exact, the ground truth.
    #[arg(long)]
    pub exact: bool,

    /// Only recommend clips with one of these labels.
    ///
    /// Names or indices, comma-separated as `ingest --music` takes them ("Jazz,Blues,216"); repeatable. The
    /// table lists these labels first.
    #[arg(long, value_name = "LABELS", value_parser = parse_labels)]
    pub label: Vec<LabelSet>,

    /// Seconds into the --audio file, or the first embedding row to use.
    ///
    /// With --audio: start this many seconds into the file. With --embedding or --batch: use embedding rows
    /// from this one on (a clip of the index is always its own vector).
    #[arg(long, value_name = "S|ROW", conflicts_with = "id")]
    pub start: Option<f64>,

    /// With --audio: stop this many seconds into the file.
    #[arg(long, value_name = "S")]
    pub end: Option<f64>,

    /// With --audio: the most seconds of audio embedded [default: 1200].
    ///
    /// A longer file (or part) is refused, from its header where it states its length, before its samples are
    /// held.
    #[arg(long, value_name = "S")]
    pub max_seconds: Option<f64>,

    #[command(flatten)]
    pub source: AudioSource,

    /// Re-rank the search's top N candidates by their frames.
    ///
    /// Symmetric Chamfer similarity of the projected, normalised frames; 0 turns it off [default: 20 on an
    /// angular index, 0 on others]. The results' distance is then the frames' one, (1 - similarity) / 2.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub rerank: Option<u32>,

    /// Say why each hit is a neighbour.
    ///
    /// The labels with the largest shares of its similarity, and the query's and the hit's seconds that
    /// matched best: a "why" column in the table ("Jazz, Saxophone; 0:03 ~ 0:07"), an "explain" object in
    /// --json. An index built with --projection none has no labels: the seconds alone.
    #[arg(long)]
    pub explain: bool,

    #[command(flatten)]
    pub json: Json,

    #[command(flatten)]
    pub quiet: Quiet,
}

impl RecommendArgs {
    /// What to find neighbours of, refusing the audio options without --audio.
    fn query(&self) -> Result<QueryArg<'_>, UsageError> {
        if self.audio.is_none()
            && let Some(option) = self
                .source
                .given()
                .or(self.end.is_some().then_some("--end"))
                .or(self.max_seconds.is_some().then_some("--max-seconds"))
        {
            return Err(UsageError::new(format!("{option} goes with --audio")));
        }
        let query = match (&self.id, &self.embedding, &self.batch, &self.audio) {
            (Some(id), ..) => QueryArg::Id(id),
            (_, Some(file), ..) => QueryArg::EmbeddingFile(file),
            (_, _, Some(file), _) => QueryArg::Batch(file),
            (.., Some(path)) => QueryArg::Audio {
                path,
                window: Window {
                    start: self.start,
                    end: self.end,
                    max_seconds: self.max_seconds,
                },
                source: self.source.options(),
            },
            // clap's group requires exactly one.
            _ => {
                return Err(UsageError::new(
                    "give one of --id, --embedding, --batch, --audio",
                ));
            }
        };
        Ok(query)
    }

    /// The first embedding row to use: --start is seconds into an audio file, or a row of an embedding.
    fn start_row(&self) -> Result<usize, UsageError> {
        match self.start {
            Some(row) if self.audio.is_none() => Query::start_row(row).ok_or_else(|| {
                UsageError::new(format!(
                    "--start {row}: with --embedding or --batch it is a row number (0, 1, ...)"
                ))
            }),
            _ => Ok(0),
        }
    }

    /// How each query is answered: --exact before --search-k before --ef (clap refuses them together).
    fn options(&self) -> QueryOptions {
        let search = match (self.exact, self.search_k, self.ef) {
            (true, ..) => SearchMethod::Exact,
            (_, Some(k), _) => SearchMethod::Trees {
                search_k: nonzero(k),
            },
            (_, _, Some(ef)) => SearchMethod::Graph { ef: nonzero(ef) },
            _ => SearchMethod::Default,
        };
        QueryOptions {
            count: self.count.count as usize,
            labels: asked_labels(&self.label),
            search,
            rerank: self.rerank.map(|n| n as usize),
            explain: self.explain,
        }
    }
}

fn parse_labels(text: &str) -> Result<LabelSet, String> {
    labels::parse_label_list(text).map_err(|e| e.to_string())
}

/// The labels of every `--label`, each once, in the order asked.
fn asked_labels(sets: &[LabelSet]) -> Vec<u16> {
    let mut asked = Vec::new();
    for label in sets.iter().flat_map(LabelSet::indices) {
        if !asked.contains(&label) {
            asked.push(label);
        }
    }
    asked
}

/// What to find neighbours of.
enum QueryArg<'a> {
    Id(&'a str),
    /// An embedding file (or `-`).
    EmbeddingFile(&'a Path),
    /// One query per line: a video_id or a one-line JSON embedding.
    Batch(&'a Path),
    /// An audio file, embedded here (or by a service) and asked window by window.
    Audio {
        path: &'a Path,
        window: Window,
        source: SourceOptions,
    },
}

/// A batch line's answer when it cannot be asked.
#[derive(Serialize)]
struct Failure<'a> {
    query: &'a str,
    line: usize,
    error: &'a str,
}

pub fn run(args: &RecommendArgs) -> Result<()> {
    let query = args.query()?;
    let start = args.start_row()?;
    let options = args.options();
    let dir = &args.index.index;
    crate::bus_error::report_for(dir);
    let index = Index::open(dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match query {
        QueryArg::Id(video_id) => {
            // An id no index can hold is a mistake on the command line, not in the data.
            if let Err(problem) = clip::check_id(video_id) {
                return Err(UsageError::new(format!("--id: {problem}")).into());
            }
            let hits = index.recommend(&Query::Id(video_id.to_string()), &options)?;
            write_answer(&mut out, video_id, &hits, args, &options)?;
        }
        QueryArg::EmbeddingFile(path) => {
            let (text, name) = read_input(path)?;
            let hits = clip::embedding_rows(&text)
                .and_then(|rows| {
                    let query = Query::Embedding { rows, start };
                    index.recommend(&query, &options)
                })
                .with_context(|| name.clone())?;
            write_answer(&mut out, &name, &hits, args, &options)?;
        }
        QueryArg::Batch(path) => answer_batch(&index, &mut out, path, args, &options, start)?,
        QueryArg::Audio {
            path,
            window,
            source,
        } => {
            window.check().map_err(UsageError::new)?;
            crate::process::keep_freed_memory();
            let quiet = args.quiet.quiet;
            let source = source.locate()?.load(|warning| {
                if !quiet {
                    say!("warning: {warning}");
                }
            })?;
            let progress = Progress::items(None, quiet, "examples");
            let embedded =
                source.embed_file(path, window, &LogMel::new(), |n| progress.inc(n as u64))?;
            progress.finish();
            let query = Query::Audio {
                audio: embedded,
                file: Some(path.to_path_buf()),
            };
            let hits = index.recommend(&query, &options)?;
            write_answer(&mut out, &path.display().to_string(), &hits, args, &options)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One answer per line of a batch file, in order, so that output line N answers input line N; a line that
/// cannot be asked gets its error in its place, and the run fails at the end with their count.
fn answer_batch(
    index: &Index,
    out: &mut impl Write,
    path: &Path,
    args: &RecommendArgs,
    options: &QueryOptions,
    start: usize,
) -> Result<()> {
    let (reader, name): (Box<dyn BufRead>, String) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), "<stdin>".into())
    } else {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        (Box::new(BufReader::new(file)), path.display().to_string())
    };
    let reader_view = index.reader()?;
    let mut session = reader_view.session(options)?;
    // Enough queries at a time for the exact scan to give each thread a group of its own.
    let group_size = GROUP * rayon::current_num_threads();
    let mut lines = CappedLines::new(reader, MAX_LINE);
    let mut number = 0;
    let mut failed = 0;
    let mut group: Vec<Line> = Vec::with_capacity(group_size);
    let mut answer = |group: &mut Vec<Line>, failed: &mut usize| -> Result<()> {
        let queries: Vec<Query> = group
            .iter()
            .filter_map(|line| line.query.as_ref().ok().cloned())
            .collect();
        let mut answers = session.recommend_many(&queries)?.into_iter();
        for line in group.drain(..) {
            let result = match line.query {
                Ok(_) => answers
                    .next()
                    .unwrap_or_else(|| Err(anyhow!("no answer").into()))
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(hits) => write_answer(out, &line.name, &hits, args, options)?,
                Err(error) => {
                    *failed += 1;
                    let error = format!("{error:#}");
                    if args.json.json {
                        let failure = Failure {
                            query: &line.text,
                            line: line.number,
                            error: &error,
                        };
                        serde_json::to_writer(&mut *out, &failure)?;
                        writeln!(out)?;
                    } else if !args.quiet.quiet {
                        say!("warning: line {}: {error}", line.number);
                    }
                }
            }
        }
        Ok(())
    };
    while let Some(read) = lines.next_line() {
        number += 1;
        let line = match read {
            Ok(text) => {
                let query = Query::parse(&text, start).map_err(anyhow::Error::from);
                Line {
                    number,
                    // An answer names its query: the id, or where the embedding was.
                    name: match &query {
                        Ok(Query::Id(id)) => id.clone(),
                        _ => format!("{name}:{number}"),
                    },
                    text: clip::shortened(text.trim()).into_owned(),
                    query,
                }
            }
            // A line too long to keep, or not text.
            Err(e) => Line {
                number,
                name: String::new(),
                text: String::new(),
                query: Err(anyhow::Error::from(e).context("not a query")),
            },
        };
        group.push(line);
        if group.len() == group_size {
            answer(&mut group, &mut failed)?;
        }
    }
    answer(&mut group, &mut failed)?;
    out.flush()?;
    if failed > 0 {
        bail!("{name}: {failed} of {number} queries failed (see their answers)");
    }
    Ok(())
}

/// A batch line as read: where it was, how its answer is named, its text for a failure, and its query.
struct Line {
    number: usize,
    name: String,
    text: String,
    query: Result<Query>,
}

/// Queries per thread in a group of a batch: the exact scan shares one pass over the vectors among them (its
/// own group size).
const GROUP: usize = 64;

/// Writes one query's answer as a JSON line or a table.
fn write_answer(
    out: &mut impl Write,
    query: &str,
    hits: &[Hit],
    args: &RecommendArgs,
    options: &QueryOptions,
) -> Result<()> {
    let answer = Answer::new(query, hits);
    if args.json.json {
        writeln!(out, "{}", answer.to_json())?;
    } else {
        write_table(out, &answer, &options.labels)?;
    }
    Ok(())
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
/// KB as text, and without a cap a hostile line took many times its length in memory.
const MAX_LINE: usize = 4 << 20;

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
fn label_column(hit: &Ranked, asked: &[u16], width: usize) -> String {
    let is_asked = |label: &i64| asked.iter().any(|&a| i64::from(a) == *label);
    let ordered = hit
        .labels
        .iter()
        .filter(|l| is_asked(l))
        .chain(hit.labels.iter().filter(|l| !is_asked(l)));
    let names: Vec<&str> = ordered.filter_map(|&l| labels::class_name(l)).collect();
    fitted(&names.join(", "), width)
}

/// The width of the table's "why" column (`--explain`): two label names and a pair of times.
const WHY_WIDTH: usize = 36;

/// `text` made printable and cut to `width` characters, an ellipsis marking the cut.
fn fitted(text: &str, width: usize) -> String {
    let mut text = printable(text).into_owned();
    if text.chars().count() > width {
        text = text
            .chars()
            .take(width.saturating_sub(1))
            .collect::<String>()
            + "…";
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
    // With --explain, a column of each hit's reasons, out of the labels' room.
    let why = answer.results[0].explain.is_some();
    let width = if why {
        label_width().saturating_sub(WHY_WIDTH + 2).max(20)
    } else {
        label_width()
    };
    let why_heading = if why {
        format!("{:<WHY_WIDTH$}  ", "why")
    } else {
        String::new()
    };
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
        "{:>4}  {:<id_width$}  {heading:>10}  {at_heading}{:<width$}  {why_heading}link",
        "rank", "video_id", "labels"
    )?;
    for hit in &answer.results {
        let names = label_column(hit, asked, width);
        let at = match hit.matched_at {
            Some(seconds) => format!("{:>5}  ", explain::clock(seconds)),
            None => String::new(),
        };
        let reasons = match hit.explain {
            Some(explanation) => {
                format!("{:<WHY_WIDTH$}  ", fitted(&explanation.brief(), WHY_WIDTH))
            }
            None => String::new(),
        };
        writeln!(
            out,
            "{:>4}  {:<id_width$}  {:>10.4}  {at}{names:<width$}  {reasons}{}",
            hit.rank,
            printable(hit.video_id),
            hit.similarity.unwrap_or(hit.distance),
            hit.url
        )?;
    }
    Ok(())
}
