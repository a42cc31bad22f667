//! The command line: argument definitions and the dispatch to each subcommand's library code.

use std::path::PathBuf;

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};

use std::num::NonZeroUsize;

use soundalike::audio::Window;
use soundalike::evaluate::{EvaluateOptions, QueryCount};
use soundalike::labels::{self, LabelSet};
use soundalike::{Query, QueryOptions, SearchMethod, UsageError};

use crate::args::{AudioSource, IndexDir, Json, Quiet};
use crate::commands::embed::{self, EmbedArgs};
use crate::commands::evaluate::{self, EvaluateArgs as Evaluate};
use crate::commands::index::{self, IndexArgs};
use crate::commands::info::{self, InfoArgs};
use crate::commands::ingest::{self, IngestArgs};
use crate::commands::recommend::{self, QueryArg, RecommendArgs as Recommend};
use crate::serve::{self, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "soundalike",
    version,
    about = "Recommend music by how it sounds, from AudioSet's VGGish embeddings"
)]
#[command(after_help = "Exit codes: 0 success, 1 error (bad input, missing file), 2 usage error.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Count {
    /// Neighbours per query.
    #[arg(short = 'k', long = "count", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=QueryOptions::MAX_COUNT as i64))]
    pub count: u32,
}

const INGEST_EXAMPLES: &str = "Examples:
  soundalike ingest features.tar.gz -o music.jsonl
  soundalike ingest audioset_v1_embeddings/bal_train audioset_v1_embeddings/eval > clips.jsonl
  cat shard.tfrecord | soundalike ingest --music \"Jazz,Blues\" --format json - > jazz.json";

const INDEX_EXAMPLES: &str = "Examples:
  soundalike ingest features.tar.gz | soundalike index --index music.idx
  soundalike index --index music.idx clips.jsonl more.json
  soundalike index --index music.idx --append new.jsonl";

const RECOMMEND_EXAMPLES: &str = "Examples:
  soundalike recommend --index music.idx --id xtGmrLOsjHk -k 20 --label \"Jazz,Blues\"
  soundalike recommend --index music.idx --batch ids.txt --json > answers.jsonl
  soundalike recommend --index music.idx --audio song.mp3 --start 60 --end 90";

const INFO_EXAMPLES: &str = "Examples:
  soundalike info --index music.idx
  soundalike info --index music.idx --json
  soundalike info --index music.idx --check";

const EVALUATE_EXAMPLES: &str = "Examples:
  soundalike evaluate --index music.idx
  soundalike evaluate --index music.idx --queries all --ef 10 --ef 32 --search-k 8000 --json";

const SERVE_EXAMPLES: &str = "Examples:
  soundalike serve --index music.idx
  soundalike serve --index music.idx --listen 127.0.0.1:0 --max-upload 20
  soundalike serve --index music.idx --weights vggish.safetensors --pca vggish_pca_params.npz";

const EMBED_EXAMPLES: &str = "Examples:
  soundalike embed song.mp3 --start 30 --end 40 > song.jsonl
  soundalike embed ~/Music/*.flac -o mine.jsonl && soundalike index --index mine.idx mine.jsonl
  soundalike embed song.wav | soundalike recommend --index music.idx --embedding -";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read AudioSet embedding TFRecords and write the music clips as JSON.
    #[command(after_help = INGEST_EXAMPLES)]
    Ingest(IngestArgs),
    /// Build (or --append to) an on-disk nearest-neighbour index.
    ///
    /// It indexes the clips written by `ingest`.
    #[command(after_help = INDEX_EXAMPLES)]
    Index(IndexArgs),
    /// Find the clips that sound most like a query.
    ///
    /// The query is a clip, an embedding, an audio file, or each of a batch of them.
    #[command(after_help = RECOMMEND_EXAMPLES)]
    Recommend(RecommendArgs),
    /// Show an index's settings, size and most common labels.
    #[command(after_help = INFO_EXAMPLES)]
    Info(InfoArgs),
    /// Measure an index's recall, label precision and latency.
    ///
    /// Measured on a seeded sample of the index's own clips.
    #[command(after_help = EVALUATE_EXAMPLES)]
    Evaluate(EvaluateArgs),
    /// Compute VGGish embeddings of audio files as clips `index` takes.
    ///
    /// The audio files are WAV, FLAC, MP3 or Ogg Vorbis.
    #[command(after_help = EMBED_EXAMPLES)]
    Embed(EmbedArgs),
    /// Serve the upload page and an HTTP API.
    ///
    /// One index and the VGGish weights are loaded once and shared by every request.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print a shell completion script to stdout.
    ///
    /// For bash, zsh, fish, elvish or powershell.
    #[command(after_help = "Examples:
  soundalike completions bash > ~/.local/share/bash-completion/completions/soundalike
  soundalike completions zsh > ~/.zfunc/_soundalike")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    #[command(after_help = "Examples:
  soundalike manpage > ~/.local/share/man/man1/soundalike.1
  soundalike manpage | man -l -")]
    Manpage,
}

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
    /// graph with ef max(16, k), or for an embedding or audio (a query not in the index) at least 32, and 32
    /// more for each doubling of the clips past 250,000 (96 at 1,000,000; 16 more when re-ranked, the
    /// default: 64 at 1,000,000).
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

    #[command(flatten)]
    pub json: Json,

    #[command(flatten)]
    pub quiet: Quiet,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub index: IndexDir,

    /// How many queries to sample, "all", or a FILE.
    ///
    /// How many query clips to sample (with --seed) from the index's clips with a music label other than Music,
    /// or "all" of them; or a FILE of held-out clips (clip lines as `ingest` writes them, none of them in the
    /// index) to measure out of sample (write ./100 for a file named like a number).
    #[arg(long, default_value = "1000", value_name = "N|all|FILE", value_parser = parse_query_count)]
    pub queries: QueryCount,

    #[command(flatten)]
    pub count: Count,

    /// Also measure the trees with this search-k (repeatable).
    ///
    /// Also measure the trees with this many nodes inspected per query (repeatable).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub search_k: Vec<u64>,

    /// Also measure the graph walk with this breadth (repeatable).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub ef: Vec<u64>,

    /// Seed for the sample of queries.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Write the queries' video_ids here, one per line.
    ///
    /// Replay them with `recommend --batch`.
    #[arg(long, value_name = "FILE")]
    pub save_queries: Option<PathBuf>,

    /// Re-rank the top N candidates by their frames.
    ///
    /// In each search and in the ground truth alike, as `recommend --rerank` [default: 20 on an angular
    /// index, 0 on others].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub rerank: Option<u32>,

    /// Results as JSON for scripts instead of a table.
    ///
    /// One JSON object, or an array of them when --search-k or --ef is given.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub quiet: Quiet,
}

/// `--queries`: a number, `all`, or else a file of held-out clips (`./all` or `./100` for a file of that name).
fn parse_query_count(text: &str) -> Result<QueryCount, String> {
    if text == "all" {
        return Ok(QueryCount::All);
    }
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        return text
            .parse::<NonZeroUsize>()
            .map(QueryCount::Sample)
            .map_err(|_| {
                format!(
                    "expected a number of queries (1 or more), \"all\", or a file, got {text:?}"
                )
            });
    }
    if text.is_empty() {
        return Err("expected a number of queries (1 or more), \"all\", or a file".into());
    }
    Ok(QueryCount::File(PathBuf::from(text)))
}

fn parse_labels(text: &str) -> Result<LabelSet, String> {
    labels::parse_label_list(text).map_err(|e| e.to_string())
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ingest(args) => {
            ingest::run(&args)?;
            Ok(())
        }
        Command::Index(args) => {
            index::run(&args)?;
            Ok(())
        }
        Command::Recommend(args) => {
            if args.audio.is_none()
                && let Some(option) = args
                    .source
                    .given()
                    .or(args.end.is_some().then_some("--end"))
                    .or(args.max_seconds.is_some().then_some("--max-seconds"))
            {
                return Err(UsageError::new(format!("{option} goes with --audio")).into());
            }
            // --start is seconds into an audio file, or a row of an embedding.
            let start_row = match args.start {
                Some(row) if args.audio.is_none() => Query::start_row(row).ok_or_else(|| {
                    UsageError::new(format!(
                        "--start {row}: with --embedding or --batch it is a row number (0, 1, ...)"
                    ))
                })?,
                _ => 0,
            };
            let query = match (args.id, args.embedding, args.batch, args.audio) {
                (Some(id), ..) => QueryArg::Id(id),
                (_, Some(file), ..) => QueryArg::EmbeddingFile(file),
                (_, _, Some(file), _) => QueryArg::Batch(file),
                (.., Some(path)) => QueryArg::Audio {
                    path,
                    window: Window {
                        start: args.start,
                        end: args.end,
                        max_seconds: args.max_seconds,
                    },
                    source: args.source.options(),
                },
                // clap's group requires exactly one.
                _ => {
                    return Err(
                        UsageError::new("give one of --id, --embedding, --batch, --audio").into(),
                    );
                }
            };
            let search = match (args.exact, args.search_k, args.ef) {
                (true, ..) => SearchMethod::Exact,
                (_, Some(k), _) => SearchMethod::Trees {
                    search_k: nonzero(k),
                },
                (_, _, Some(ef)) => SearchMethod::Graph { ef: nonzero(ef) },
                _ => SearchMethod::Default,
            };
            recommend::run(&Recommend {
                dir: args.index.index,
                query,
                options: QueryOptions {
                    count: args.count.count as usize,
                    labels: asked_labels(&args.label),
                    search,
                    rerank: args.rerank.map(|n| n as usize),
                },
                start: start_row,
                json: args.json.json,
                quiet: args.quiet.quiet,
            })
        }
        Command::Info(args) => info::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Embed(args) => {
            embed::run(&args)?;
            Ok(())
        }
        Command::Evaluate(args) => evaluate::run(&Evaluate {
            dir: args.index.index,
            options: EvaluateOptions {
                queries: args.queries,
                count: args.count.count as usize,
                searches: (args.search_k.iter())
                    .map(|&k| SearchMethod::Trees {
                        search_k: nonzero(k),
                    })
                    .chain(
                        args.ef
                            .iter()
                            .map(|&ef| SearchMethod::Graph { ef: nonzero(ef) }),
                    )
                    .collect(),
                seed: args.seed,
                rerank: args.rerank.map(|n| n as usize),
            },
            save_queries: args.save_queries,
            json: args.json,
            quiet: args.quiet.quiet,
        }),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "soundalike", &mut out);
            write_stdout(&out)
        }
        Command::Manpage => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            write_stdout(&out)
        }
    }
}

/// A count clap has already checked to be at least 1.
fn nonzero(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(n as usize).unwrap_or(NonZeroUsize::MIN)
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

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
