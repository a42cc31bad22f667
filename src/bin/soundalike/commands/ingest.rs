//! `ingest`: TFRecords in, music clips out as JSON, to stdout or a file replaced atomically.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use soundalike::ingest::{Ingest, IngestEvent, IngestOptions, Stats};
use soundalike::labels::LabelSet;

use crate::args::{Format, Quiet};

use crate::output::Output;
use crate::progress::{self, Progress};
use crate::stderr::say;

/// `soundalike ingest`'s arguments.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// TFRecord files, directories, tar or tar.gz archives, or - for stdin.
    ///
    /// TFRecord files, directories (every *.tfrecord below, sorted by path), tar or tar.gz archives such as the
    /// release's features.tar.gz (read as a stream), or - for stdin. Processed in the order given.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Which clips are music: a rule or a list of labels.
    ///
    /// Which clips are music: "ontology" (Music and its ontology subtree, 150 labels), "names" (display name
    /// contains "music", the original notebook's rule, 44 labels), "all", or a comma-separated list of label
    /// indices and names, e.g. "Jazz,Blues,216".
    #[arg(long, default_value = "ontology", value_name = "RULE", value_parser = parse_music)]
    pub music: LabelSet,

    /// Keep the first N one-second frames.
    ///
    /// Music clips with fewer are dropped.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub frames: u16,

    /// Write here instead of stdout.
    ///
    /// Atomically: a failed run leaves any existing file untouched.
    #[arg(short, long, default_value = "-", value_name = "PATH")]
    pub output: PathBuf,

    /// Form of the output.
    ///
    /// The form of the clips written: jsonl, one clip per line; json, one JSON array (what `index` and
    /// `recommend --embedding` read either way).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,

    /// Skip corrupt records instead of stopping at the first.
    ///
    /// They are counted and reported.
    #[arg(long)]
    pub skip_corrupt: bool,

    #[command(flatten)]
    pub quiet: Quiet,
}

fn parse_music(spec: &str) -> Result<LabelSet, String> {
    LabelSet::from_rule(spec).map_err(|e| e.to_string())
}

impl IngestArgs {
    fn options(&self) -> IngestOptions {
        IngestOptions {
            music: self.music.clone(),
            frames: usize::from(self.frames),
            format: self.format.clips(),
            skip_corrupt: self.skip_corrupt,
        }
    }
}

/// Runs ingest; returns the counts. Errors name the file and record.
pub fn run(args: &IngestArgs) -> Result<Stats> {
    let started = Instant::now();
    let ingest = Ingest::open(&args.inputs)?;
    let progress = Progress::bytes(ingest.size(), args.quiet.quiet);
    // What is read, refused as the output: `/dev/stdin` leads to the file that stdin was redirected from.
    let mut output = Output::create_apart_from(Some(&args.output), &ingest.paths())?;
    if output.is_stream() {
        crate::process::streaming_clips(true);
    }
    let stats = ingest.run(&args.options(), &mut output, |event| match event {
        IngestEvent::Read(bytes) => progress.set(bytes),
        IngestEvent::Skipped { input, problem } => {
            progress.warn(&format!("warning: {input}: {problem} (skipped)"))
        }
    });
    let stats = match stats {
        Ok(stats) => stats,
        Err(error) => {
            let error = anyhow::Error::from(error);
            output.abandon(&error);
            return Err(error);
        }
    };
    crate::process::streaming_clips(false);
    output.finish()?;
    progress.finish();
    if !args.quiet.quiet {
        say!("{}", summary(&stats, started.elapsed()));
    }
    Ok(stats)
}

/// The one-paragraph summary printed on stderr at the end.
fn summary(stats: &Stats, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let mb = stats.bytes as f64 / 1e6;
    format!(
        "ingest: {}, {} ({}) in {seconds:.2} s, {:.0} MB/s: kept {}; \
         dropped {} not music, {} too short; skipped {} corrupt",
        progress::counted(stats.files, "file"),
        progress::counted(stats.records, "record"),
        progress::size(stats.bytes),
        mb / seconds.max(1e-9),
        progress::counted(stats.kept, "clip"),
        stats.not_music,
        stats.too_short,
        stats.corrupt,
    )
}
