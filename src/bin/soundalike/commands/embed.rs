//! `embed`: audio files in, one clip per file out, in the schema `ingest` writes, so that `index` and
//! `recommend --embedding` take it unchanged.
//!
//! Every input is decoded and checked before the weights are loaded or anything is written: a bad file among
//! many fails the run at once, naming it, with nothing written. A clip made from a local file has the
//! video_id `file:` followed by the file's absolute path, which `recommend` shows as a `file://` link rather
//! than a YouTube URL, and no labels.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rayon::prelude::*;

use crate::audio::LogMel;
use crate::audio::decode::Window;
use crate::audio::logmel::EXAMPLE_SECONDS;
use crate::audio::source::{self, Embedded, SourceOptions};
use crate::clip;
use crate::commands::ingest::Format;
use crate::error::UsageError;
use crate::output::Output;
use crate::progress::Progress;

/// The prefix of a video_id that names a local file rather than a YouTube video.
pub const FILE_ID_PREFIX: &str = "file:";

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

/// The clip's video_id for a local file: `file:` and its absolute path. Errors when the path cannot be one.
pub fn file_id(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path)
        .map_err(|e| anyhow!("{}: cannot make its path absolute: {e}", path.display()))?;
    let text = absolute.to_str().ok_or_else(|| {
        anyhow!(
            "{}: its path is not UTF-8, which a clip's video_id must be",
            path.display()
        )
    })?;
    let id = format!("{FILE_ID_PREFIX}{text}");
    clip::check_id(&id).map_err(|problem| anyhow!("{}: {problem}", path.display()))?;
    Ok(id)
}

/// One clip as JSON (no newline), keys in the order `ingest` writes them.
pub fn clip_json(video_id: &str, embedded: &Embedded) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Clip<'a> {
        video_id: &'a str,
        start_time: f64,
        end_time: f64,
        labels: [u16; 0],
        embedding: Vec<&'a [u8]>,
    }
    let clip = Clip {
        video_id,
        start_time: embedded.start,
        end_time: embedded.start + embedded.seconds,
        labels: [],
        embedding: embedded.rows.iter().map(|r| &r[..]).collect(),
    };
    // Serializing plain numbers and a str cannot fail.
    serde_json::to_vec(&clip).unwrap_or_default()
}

/// Runs `embed`; returns the counts.
///
/// Two passes: every input is decoded and checked first (in parallel; the first error in input order is the
/// one reported), before the weights load or anything is written; then each file is decoded again and
/// embedded, one at a time, so that memory holds one file's audio however many files there are. Decoding is a
/// few percent of the cost of embedding.
pub fn run(options: &EmbedOptions) -> Result<Stats> {
    let started = Instant::now();
    options.window.check().map_err(UsageError::new)?;
    let located = options.source.locate()?;
    let inputs: Vec<&Path> = options.inputs.iter().map(PathBuf::as_path).collect();
    let mut output = Output::create_apart_from(options.output.as_deref(), &inputs)?;
    let ids = options
        .inputs
        .iter()
        .map(|p| file_id(p))
        .collect::<Result<Vec<_>>>()?;

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
        .collect::<Result<Vec<f64>>>()?;
    progress.finish();

    let source = located.load(options.quiet)?;
    let mut stats = Stats {
        files: 0,
        seconds_of_audio: seconds.iter().sum(),
        examples: 0,
    };
    // Each 0.96 s is an example (the last partial one dropped): the bar's total, before the files say.
    let expected: f64 = seconds.iter().map(|s| (s / EXAMPLE_SECONDS).floor()).sum();
    let progress = Progress::items(Some(expected as u64), options.quiet, "examples");
    let logmel = LogMel::new();
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
        output.put(&clip_json(id, &embedded))?;
        if options.format == Format::Jsonl {
            output.put(b"\n")?;
        }
    }
    if options.format == Format::Json {
        output.put(b"\n]\n")?;
    }
    output.finish()?;
    progress.finish();
    if !options.quiet {
        eprintln!("{}", stats.summary(started.elapsed()));
    }
    Ok(stats)
}
