//! `ingest`: TFRecords in, music clips out as JSON, to stdout or a file replaced atomically.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use soundalike::ingest::{Ingest, IngestEvent, IngestOptions, Stats};

use crate::output::Output;
use crate::progress::{self, Progress};
use crate::stderr::say;

/// Everything `ingest` needs, as parsed from the command line.
pub struct IngestArgs {
    pub inputs: Vec<PathBuf>,
    pub options: IngestOptions,
    /// `None` writes to stdout.
    pub output: Option<PathBuf>,
    pub quiet: bool,
}

/// Runs ingest; returns the counts. Errors name the file and record.
pub fn run(args: &IngestArgs) -> Result<Stats> {
    let started = Instant::now();
    let ingest = Ingest::open(&args.inputs)?;
    let progress = Progress::bytes(ingest.size(), args.quiet);
    // What is read, refused as the output: `/dev/stdin` leads to the file that stdin was redirected from.
    let mut output = Output::create_apart_from(args.output.as_deref(), &ingest.paths())?;
    if output.is_stream() {
        crate::process::streaming_clips(true);
    }
    let stats = ingest.run(&args.options, &mut output, |event| match event {
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
    if !args.quiet {
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
