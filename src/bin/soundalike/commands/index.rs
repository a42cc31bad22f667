//! `index`: clips from `ingest` into an index, rebuilt beside the old one and swapped in, or appended in one
//! write transaction.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use soundalike::{
    BuildEvent, BuildOptions, Built, ClipInput, Form, IndexBuilder, Metric, ProjectionChoice,
    UsageError,
};

use crate::args::{IndexDir, Quiet, named};

use crate::progress::Progress;
use crate::stderr::say;

/// `soundalike index`'s arguments.
#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub index: IndexDir,

    /// Clips written by `ingest`; none or - reads stdin.
    ///
    /// Clips written by `ingest` (JSON Lines or a JSON array); none or - reads stdin (a pipe or a file, not a
    /// terminal). A rebuild replaces the index atomically.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Distance between clip vectors.
    #[arg(long, default_value_t = Metric::Angular, value_parser = named::<Metric>(Metric::ALL.iter().map(|m| m.name())))]
    pub metric: Metric,

    /// How a clip's frames become its vector.
    ///
    /// mean: the average of the de-quantized frames (128 dimensions); flat: the frames concatenated.
    #[arg(long = "vector", default_value_t = Form::Mean, value_parser = named::<Form>(Form::ALL.iter().map(|f| f.name())))]
    pub form: Form,

    /// Frames per clip used for the vector.
    ///
    /// The first N rows; clips with fewer are refused. Goes with `ingest --frames`, which drops clips
    /// shorter than its N.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub frames: u16,

    /// Trees in the random-projection forest (default 10).
    ///
    /// The neighbour graph answers by default; the trees give its walks from an embedding their starting
    /// points, and answer `recommend --search-k`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub trees: Option<u32>,

    /// Random seed for the trees.
    ///
    /// The same input and seed give the same index.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Add the clips to the existing index, in one transaction.
    ///
    /// Clips with the same video_id are replaced.
    #[arg(long)]
    pub append: bool,

    /// Threads building the trees.
    ///
    /// More is faster, but the trees then depend on thread timing, so the same seed no longer gives the
    /// same index.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,

    /// The projection applied to every frame [default: default].
    ///
    /// It is applied before the vectors are made. `default`: the compiled-in model of the 149 music labels
    /// fit on AudioSet bal_train's music clips (a frame becomes its label probabilities); `learn`: the same
    /// fit on the input's own clips with music labels other than Music (137); `none`: VGGish's 128
    /// dimensions as they are; or FILE: a JSON projection ({"matrix": [[128 numbers], ...], "mean": [128
    /// numbers], "bias": [...], "activation": "linear"|"logistic"}) or an index directory, whose projection
    /// is taken (the index's own path keeps its projection through a rebuild; ./learn for a file named like
    /// a keyword). An --append always applies the index's own.
    #[arg(
        long,
        value_name = "none|default|learn|FILE",
        conflicts_with = "append"
    )]
    pub projection: Option<String>,

    #[command(flatten)]
    pub quiet: Quiet,
}

impl IndexArgs {
    fn options(&self) -> BuildOptions {
        BuildOptions {
            metric: self.metric,
            form: self.form,
            frames: usize::from(self.frames),
            trees: self.trees.map(|t| t as usize),
            seed: self.seed,
            threads: usize::from(self.threads),
            projection: self.projection.as_deref().map(ProjectionChoice::parse),
        }
    }
}

pub fn run(args: &IndexArgs) -> Result<Built> {
    let started = Instant::now();
    // Nothing given and nothing piped in: reading the terminal would wait silently for clips no one will type.
    if args.inputs.is_empty() && io::stdin().is_terminal() {
        return Err(UsageError::new(format!(
            "no input: give the clip files `soundalike ingest` wrote, or pipe them in \
             (`soundalike ingest features.tar.gz | soundalike index --index {}`)",
            args.index.index.display()
        ))
        .into());
    }
    crate::process::remove_on_interrupt();
    crate::bus_error::report_for(&args.index.index);
    crate::bus_error::also_remove(&soundalike::fs::lock::WriterLock::path_for(
        &args.index.index,
    ));
    let progress = Progress::items(None, args.quiet.quiet, "clips");
    let dir = args.index.index.display().to_string();
    let report = |event: BuildEvent| match event {
        BuildEvent::ClipRead => progress.inc(1),
        BuildEvent::Stage(stage) => progress.stage(stage.to_string()),
        // The build's peak memory: what it read, freed on one thread, stays in its RSS to the end otherwise.
        BuildEvent::ClipsReleased => crate::process::give_back_freed_memory(),
        // Even with -q: a run that stops without a word looks hung.
        BuildEvent::Waiting => progress.say(&format!(
            "index: waiting for another `index` run on {dir} to finish"
        )),
    };
    let builder = IndexBuilder::new(&args.index.index)
        .options(args.options())
        .progress(report);
    let built = if args.append {
        builder.append(inputs(&args.inputs))
    } else {
        builder.rebuild(inputs(&args.inputs))
    }?;
    progress.finish();
    if !args.quiet.quiet {
        say!(
            "index: {} clips read ({} of them replacing a clip with the same video_id); {} clips in {} ({} trees, \
             {:.1} MB) in {:.2} s",
            built.read,
            built.replaced,
            built.clips,
            args.index.index.display(),
            built.trees,
            built.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        if let Some(measured) = built.held_out {
            say!(
                "index: a new vector's walk takes {} by default (recall@10 {:.3} on {} of its clips asked \
                 as held out)",
                measured.breadth,
                measured.recall,
                measured.probes
            );
        }
    }
    Ok(built)
}

/// The clip files, `-` (or none) being stdin.
fn inputs(paths: &[PathBuf]) -> Vec<ClipInput<'static>> {
    let stdin = || ClipInput::Reader {
        name: "<stdin>".into(),
        reader: Box::new(io::stdin().lock()),
    };
    if paths.is_empty() {
        return vec![stdin()];
    }
    paths
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                stdin()
            } else {
                ClipInput::Path(path.clone())
            }
        })
        .collect()
}
