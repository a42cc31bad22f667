//! The options several subcommands take, declared once so that they are spelled and explained alike.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use soundalike::QueryOptions;
use soundalike::audio::source::SourceOptions;

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

/// `-k`/`--count`: neighbours per query, for `recommend` and `evaluate` alike.
#[derive(Debug, Args)]
pub struct Count {
    /// Neighbours per query.
    #[arg(short = 'k', long = "count", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=QueryOptions::MAX_COUNT as i64))]
    pub count: u32,
}

/// A count clap has already checked to be at least 1 (`--search-k`, `--ef`).
pub fn nonzero(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(n as usize).unwrap_or(NonZeroUsize::MIN)
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

/// Where audio's embeddings come from: the network in-process, or a MAX Audio Embedding Generator service.
#[derive(Debug, Args)]
pub struct AudioSource {
    /// VGGish's weights, a .pth or safetensors file.
    ///
    /// VGGish's weights (torchvggish's vggish-10086976.pth, a zip .pth or safetensors); default:
    /// $SOUNDALIKE_WEIGHTS, else vggish-10086976.pth in ~/.local/share/soundalike.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// VGGish's PCA parameters (vggish_pca_params.npz).
    ///
    /// VGGish's PCA parameters (Google's vggish_pca_params.npz); default: $SOUNDALIKE_PCA, else
    /// vggish_pca_params.npz in ~/.local/share/soundalike.
    #[arg(long, value_name = "FILE")]
    pub pca: Option<PathBuf>,

    /// Embed through a MAX Audio Embedding Generator service at URL.
    ///
    /// Embed through a running IBM MAX Audio Embedding Generator (http://HOST:PORT; the audio is sent as a
    /// 16-bit WAV to /model/predict) instead of in-process: no weight files needed.
    #[arg(long, value_name = "URL", conflicts_with_all = ["weights", "pca"])]
    pub service: Option<String>,
}

impl AudioSource {
    pub fn options(&self) -> SourceOptions {
        SourceOptions {
            weights: self.weights.clone(),
            pca: self.pca.clone(),
            service: self.service.clone(),
        }
    }

    /// The first of these options given, for "--weights goes with --audio".
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.weights.is_some(), "--weights"),
            (self.pca.is_some(), "--pca"),
            (self.service.is_some(), "--service"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}
