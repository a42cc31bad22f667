//! The options several subcommands take, declared once so that they are spelled and explained alike.

use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

#[derive(Debug, Args)]
pub struct IndexDir {
    /// The index directory.
    ///
    /// One LMDB environment, made by `soundalike index`.
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,
}

#[derive(Debug, Args)]
pub struct Quiet {
    /// No progress bar, warnings or summary on stderr.
    ///
    /// Errors are still reported.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--json`: results as JSON for scripts. (`ingest --format json` is another thing: the form of the clips it
/// writes, a JSON array instead of JSON Lines.)
#[derive(Debug, Args)]
pub struct Json {
    /// Results as JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How clips are written: the `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array.
    Json,
}

impl Format {
    pub fn clips(self) -> soundalike::ingest::ClipFormat {
        match self {
            Format::Jsonl => soundalike::ingest::ClipFormat::Jsonl,
            Format::Json => soundalike::ingest::ClipFormat::Json,
        }
    }
}

/// A parser for a library enum with names ([`Metric`], [`Form`]): clap lists the names in the help.
pub fn named<T>(names: impl IntoIterator<Item = &'static str>) -> impl TypedValueParser<Value = T>
where
    T: Clone + Send + Sync + 'static + std::str::FromStr<Err = String>,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}
