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

use clap::Args;
use soundalike::UsageError;
use soundalike::audio::EXAMPLE_SECONDS;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source;
use soundalike::clip::file_id;
use soundalike::ingest::ClipFormat;

use crate::args::{AudioSource, Format, Quiet};
use crate::output::Output;
use crate::progress::Progress;
use crate::stderr::say;

/// `soundalike embed`'s arguments.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Audio files: WAV, FLAC, MP3 or Ogg Vorbis.
    ///
    /// One clip each, one 8-bit row per 0.96 s.
    #[arg(required = true, value_name = "AUDIO")]
    pub inputs: Vec<PathBuf>,

    /// Start this many seconds into each file.
    #[arg(long, value_name = "S")]
    pub start: Option<f64>,

    /// Stop this many seconds into each file.
    #[arg(long, value_name = "E")]
    pub end: Option<f64>,

    /// The most seconds of audio embedded per file [default: 1200].
    ///
    /// A file (or the part --start and --end take) longer than this is refused, from its header where it
    /// states its length, before its samples are held: a header claiming a day of audio would otherwise take
    /// gigabytes. Raise it for long recordings.
    #[arg(long, value_name = "S")]
    pub max_seconds: Option<f64>,

    #[command(flatten)]
    pub source: AudioSource,

    /// Write here instead of stdout.
    ///
    /// Atomically: a failed run leaves any existing file untouched.
    #[arg(short, long, default_value = "-", value_name = "PATH")]
    pub output: PathBuf,

    /// Form of the output.
    ///
    /// jsonl: one clip per line; json: one JSON array.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,

    #[command(flatten)]
    pub quiet: Quiet,
}

impl EmbedArgs {
    fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
            max_seconds: self.max_seconds,
        }
    }
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
pub fn run(args: &EmbedArgs) -> Result<Stats> {
    let started = Instant::now();
    let (window, format, quiet) = (args.window(), args.format.clips(), args.quiet.quiet);
    crate::process::keep_freed_memory();
    window.check().map_err(UsageError::new)?;
    let located = args.source.options().locate()?;
    // Every file read is an input the output must not replace: the audio, and the weights (`-o W --weights W`
    // would overwrite the model with JSON).
    let mut inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    if let source::Located::Local { weights, pca } = &located {
        inputs.extend([weights.as_path(), pca.as_path()]);
    }
    let mut output = Output::create_apart_from(Some(&args.output), &inputs)?;
    let ids = args
        .inputs
        .iter()
        .map(|p| file_id(p))
        .collect::<Result<Vec<_>, _>>()?;

    let progress = Progress::items(Some(args.inputs.len() as u64), quiet, "files");
    progress.stage("checking");
    let seconds = args
        .inputs
        .par_iter()
        .map(|path| {
            let seconds = source::check(path, window);
            progress.inc(1);
            seconds
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<soundalike::Result<Vec<f64>>>()?;
    progress.finish();

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
    let progress = Progress::items(Some(expected as u64), quiet, "examples");
    let logmel = LogMel::new();
    if output.is_stream() {
        crate::process::streaming_clips(true);
    }
    let written = (|| -> Result<()> {
        if format == ClipFormat::Json {
            output.put(b"[\n")?;
        }
        for (i, (id, path)) in ids.iter().zip(&args.inputs).enumerate() {
            let embedded = source.embed_file(path, window, &logmel, |n| progress.inc(n as u64))?;
            stats.files += 1;
            stats.examples += embedded.rows.len();
            if i > 0 && format == ClipFormat::Json {
                output.put(b",\n")?;
            }
            output.put(&embedded.clip_json(id))?;
            if format == ClipFormat::Jsonl {
                output.put(b"\n")?;
            }
        }
        if format == ClipFormat::Json {
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
    if !quiet {
        say!("{}", stats.summary(started.elapsed()));
    }
    Ok(stats)
}
