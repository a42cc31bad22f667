//! `recommend`: nearest clips for a clip id, an embedding file, an audio file, or a batch of ids and
//! embeddings, as a table or JSON; the library answers, this module reads the queries and writes the answers.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source::SourceOptions;
use soundalike::clip::CappedLines;
use soundalike::{Answer, Hit, Index, Query, QueryOptions, Ranked, UsageError, clip, labels};

use crate::progress::Progress;
use crate::stderr::printable;
use crate::stderr::say;

/// What to find neighbours of.
pub enum QueryArg {
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

pub struct RecommendArgs {
    pub dir: PathBuf,
    pub query: QueryArg,
    pub options: QueryOptions,
    /// First embedding row to use.
    pub start: usize,
    pub json: bool,
    /// No `warning:` lines for a batch's bad lines in table mode (the final count is still an error).
    pub quiet: bool,
}

/// A batch line's answer when it cannot be asked.
#[derive(Serialize)]
struct Failure<'a> {
    query: &'a str,
    line: usize,
    error: &'a str,
}

pub fn run(args: &RecommendArgs) -> Result<()> {
    crate::bus_error::report_for(&args.dir);
    let index = Index::open(&args.dir)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match &args.query {
        QueryArg::Id(video_id) => {
            // An id no index can hold is a mistake on the command line, not in the data.
            if let Err(problem) = clip::check_id(video_id) {
                return Err(UsageError::new(format!("--id: {problem}")).into());
            }
            let hits = index.recommend(&Query::Id(video_id.clone()), &args.options)?;
            write_answer(&mut out, video_id, &hits, args)?;
        }
        QueryArg::EmbeddingFile(path) => {
            let (text, name) = read_input(path)?;
            let hits = clip::embedding_rows(&text)
                .and_then(|rows| {
                    let query = Query::Embedding {
                        rows,
                        start: args.start,
                    };
                    index.recommend(&query, &args.options)
                })
                .with_context(|| name.clone())?;
            write_answer(&mut out, &name, &hits, args)?;
        }
        QueryArg::Batch(path) => answer_batch(&index, &mut out, path, args)?,
        QueryArg::Audio {
            path,
            window,
            source,
        } => {
            window.check().map_err(UsageError::new)?;
            crate::process::keep_freed_memory();
            let quiet = args.quiet;
            let source = source.locate()?.load(|warning| {
                if !quiet {
                    say!("warning: {warning}");
                }
            })?;
            let progress = Progress::items(None, args.quiet, "examples");
            let embedded =
                source.embed_file(path, *window, &LogMel::new(), |n| progress.inc(n as u64))?;
            progress.finish();
            let query = Query::Audio {
                audio: embedded,
                file: Some(path.clone()),
            };
            let hits = index.recommend(&query, &args.options)?;
            write_answer(&mut out, &path.display().to_string(), &hits, args)?;
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
) -> Result<()> {
    let (reader, name): (Box<dyn BufRead>, String) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), "<stdin>".into())
    } else {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        (Box::new(BufReader::new(file)), path.display().to_string())
    };
    let reader_view = index.reader()?;
    let mut session = reader_view.session(&args.options)?;
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
                Ok(hits) => write_answer(out, &line.name, &hits, args)?,
                Err(error) => {
                    *failed += 1;
                    let error = format!("{error:#}");
                    if args.json {
                        let failure = Failure {
                            query: &line.text,
                            line: line.number,
                            error: &error,
                        };
                        serde_json::to_writer(&mut *out, &failure)?;
                        writeln!(out)?;
                    } else if !args.quiet {
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
                let query = Query::parse(&text, args.start).map_err(anyhow::Error::from);
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
) -> Result<()> {
    let answer = Answer::new(query, hits);
    if args.json {
        writeln!(out, "{}", answer.to_json())?;
    } else {
        write_table(out, &answer, &args.options.labels)?;
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
