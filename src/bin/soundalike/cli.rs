//! The command line: argument definitions and the dispatch to each subcommand's library code.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::embed::{self, EmbedArgs};
use crate::commands::evaluate::{self, EvaluateArgs};
use crate::commands::index::{self, IndexArgs};
use crate::commands::info::{self, InfoArgs};
use crate::commands::ingest::{self, IngestArgs};
use crate::commands::recommend::{self, RecommendArgs};
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
        Command::Recommend(args) => recommend::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Embed(args) => {
            embed::run(&args)?;
            Ok(())
        }
        Command::Evaluate(args) => evaluate::run(&args),
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

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
