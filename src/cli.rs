//! The command line: argument definitions and the dispatch to each subcommand's library code.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::ingest::{self, Format, IngestOptions};
use crate::labels::{self, LabelSet};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read AudioSet embedding TFRecords and write the music clips as JSON.
    Ingest(IngestArgs),
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// TFRecord files, directories (every *.tfrecord below, sorted by path), tar or tar.gz archives such as the
    /// release's features.tar.gz (read as a stream), or - for stdin. Processed in the order given.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Which clips are music: "ontology" (Music and its ontology subtree, 150 labels), "names" (display name
    /// contains "music", the original notebook's rule, 44 labels), "all", or a comma-separated list of label
    /// indices and names, e.g. "Jazz,Blues,216".
    #[arg(long, default_value = "ontology", value_name = "RULE", value_parser = parse_music)]
    pub music: LabelSet,

    /// Keep the first N one-second frames; music clips with fewer are dropped.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub frames: u16,

    /// Write here instead of stdout (atomically: a failed run leaves any existing file untouched).
    #[arg(short, long, default_value = "-", value_name = "PATH")]
    pub output: PathBuf,

    /// jsonl: one clip per line; json: one JSON array.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,

    /// Skip corrupt records (counted and reported) instead of stopping at the first.
    #[arg(long)]
    pub skip_corrupt: bool,

    /// No progress bar, warnings or summary.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_music(spec: &str) -> Result<LabelSet, String> {
    match spec {
        "ontology" => Ok(LabelSet::music_ontology()),
        "names" => Ok(LabelSet::music_by_name()),
        "all" => Ok(LabelSet::all()),
        list => labels::parse_label_list(list).map_err(|e| e.to_string()),
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ingest(args) => {
            ingest::run(&IngestOptions {
                inputs: args.inputs,
                music: args.music,
                frames: usize::from(args.frames),
                output: Some(args.output),
                format: args.format,
                skip_corrupt: args.skip_corrupt,
                quiet: args.quiet,
            })?;
            Ok(())
        }
    }
}
