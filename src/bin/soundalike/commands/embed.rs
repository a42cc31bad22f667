//! `embed`: audio files in, one clip per file out, in the schema `ingest` writes, so that `index` and
//! `recommend --embedding` take it unchanged.
//!
//! Every input is decoded and checked before the weights are loaded or anything is written: a bad file among
//! many fails the run at once, naming it, with nothing written. A clip made from a local file has the
//! video_id `file:` followed by the file's absolute path, which `recommend` shows as a `file://` link rather
//! than a YouTube URL, and no labels.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use rayon::prelude::*;

use soundalike::UsageError;
use soundalike::audio::EXAMPLE_SECONDS;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source::{self, SourceOptions};
use soundalike::clip::file_id;
use soundalike::ingest::ClipFormat as Format;

use crate::output::Output;
use crate::progress::Progress;
use crate::stderr::say;

pub struct EmbedOptions {
    pub inputs: Vec<PathBuf>,
    pub window: Window,
    /// The weights, or the service.
    pub source: SourceOptions,
    /// `None` writes to stdout.
    pub output: Option<PathBuf>,
    pub format: Format,
    pub quiet: bool,
}

/// Counts for the summary.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub files: usize,
    pub seconds_of_audio: f64,
    pub examples: usize,
}

impl Stats {
    pub fn summary(&self, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64();
        format!(
            "embed: {} file{}, {:.1} s of audio, {} examples in {seconds:.2} s ({:.1}x real time)",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.seconds_of_audio,
            self.examples,
            self.seconds_of_audio / seconds.max(1e-9),
        )
    }
}

/// Runs `embed`; returns the counts.
///
/// Two passes: every input is decoded and checked first (in parallel; the first error in input order is the
/// one reported), before the weights load or anything is written; then each file is decoded again and
/// embedded, one at a time, so that memory holds one file's audio however many files there are. Decoding is a
/// few percent of the cost of embedding.
pub fn run(options: &EmbedOptions) -> Result<Stats> {
    let started = Instant::now();
    crate::process::keep_freed_memory();
    options.window.check().map_err(UsageError::new)?;
    let located = options.source.locate()?;
    // Every file read is an input the output must not replace: the audio, and the weights (`-o W --weights W`
    // would overwrite the model with JSON).
    let mut inputs: Vec<&Path> = options.inputs.iter().map(PathBuf::as_path).collect();
    if let source::Located::Local { weights, pca } = &located {
        inputs.extend([weights.as_path(), pca.as_path()]);
    }
    let mut output = Output::create_apart_from(options.output.as_deref(), &inputs)?;
    let ids = options
        .inputs
        .iter()
        .map(|p| file_id(p))
        .collect::<Result<Vec<_>, _>>()?;

    let progress = Progress::items(Some(options.inputs.len() as u64), options.quiet, "files");
    progress.stage("checking");
    let seconds = options
        .inputs
        .par_iter()
        .map(|path| {
            let seconds = source::check(path, options.window);
            progress.inc(1);
            seconds
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<soundalike::Result<Vec<f64>>>()?;
    progress.finish();

    let quiet = options.quiet;
    let source = located.load(|warning| {
        if !quiet {
            progress.warn(&format!("warning: {warning}"));
        }
    })?;
    let mut stats = Stats {
        files: 0,
        seconds_of_audio: seconds.iter().sum(),
        examples: 0,
    };
    // Each 0.96 s is an example (the last partial one dropped): the bar's total, before the files say.
    let expected: f64 = seconds.iter().map(|s| (s / EXAMPLE_SECONDS).floor()).sum();
    let progress = Progress::items(Some(expected as u64), options.quiet, "examples");
    let logmel = LogMel::new();
    if output.is_stream() {
        crate::process::streaming_clips(true);
    }
    let written = (|| -> Result<()> {
        if options.format == Format::Json {
            output.put(b"[\n")?;
        }
        for (i, (id, path)) in ids.iter().zip(&options.inputs).enumerate() {
            let embedded =
                source.embed_file(path, options.window, &logmel, |n| progress.inc(n as u64))?;
            stats.files += 1;
            stats.examples += embedded.rows.len();
            if i > 0 && options.format == Format::Json {
                output.put(b",\n")?;
            }
            output.put(&embedded.clip_json(id))?;
            if options.format == Format::Jsonl {
                output.put(b"\n")?;
            }
        }
        if options.format == Format::Json {
            output.put(b"\n]\n")?;
        }
        Ok(())
    })();
    if let Err(error) = written {
        // A file stays as it was; a stream gets the mark that makes `index` refuse it.
        output.abandon(&error);
        return Err(error);
    }
    crate::process::streaming_clips(false);
    output.finish()?;
    progress.finish();
    if !options.quiet {
        say!("{}", stats.summary(started.elapsed()));
    }
    Ok(stats)
}
