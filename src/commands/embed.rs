//! `embed`: audio files in, one clip per file out, in the schema `ingest` writes, so that `index` and
//! `recommend --embedding` take it unchanged.
//!
//! Every input is decoded and cut into examples before the weights are loaded or anything is written: a bad
//! file among many fails the run at once, naming it, with nothing written. A clip made from a local file has the
//! video_id `file:` followed by the file's absolute path, which `recommend` shows as a `file://` link rather
//! than a YouTube URL, and no labels.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rayon::prelude::*;

use crate::audio::decode::Window;
use crate::audio::{self, Embedder, LogMel, Prepared, weights};
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
    pub weights: Option<PathBuf>,
    pub pca: Option<PathBuf>,
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
pub fn clip_json(video_id: &str, prepared: &Prepared, rows: &[[u8; 128]]) -> Vec<u8> {
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
        start_time: prepared.start,
        end_time: prepared.start + prepared.seconds,
        labels: [],
        embedding: rows.iter().map(|r| &r[..]).collect(),
    };
    // Serializing plain numbers and a str cannot fail.
    serde_json::to_vec(&clip).unwrap_or_default()
}

/// Runs `embed`; returns the counts.
pub fn run(options: &EmbedOptions) -> Result<Stats> {
    let started = Instant::now();
    options.window.check().map_err(UsageError::new)?;
    let (weights_path, pca_path) =
        weights::locate(options.weights.as_deref(), options.pca.as_deref())?;
    let inputs: Vec<&Path> = options.inputs.iter().map(PathBuf::as_path).collect();
    let mut output = Output::create_apart_from(options.output.as_deref(), &inputs)?;
    let ids = options
        .inputs
        .iter()
        .map(|p| file_id(p))
        .collect::<Result<Vec<_>>>()?;

    let progress = Progress::items(Some(options.inputs.len() as u64), options.quiet, "files");
    progress.stage("decoding");
    let logmel = LogMel::new();
    // Files decode in parallel; the first error in input order is the one reported.
    let prepared = options
        .inputs
        .par_iter()
        .map(|path| {
            let prepared = audio::prepare(path, options.window, &logmel);
            progress.inc(1);
            prepared
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Result<Vec<Prepared>>>()?;
    progress.finish();

    let embedder = load_embedder(&weights_path, &pca_path, options.quiet)?;
    let stats = Stats {
        files: prepared.len(),
        seconds_of_audio: prepared.iter().map(|p| p.seconds).sum(),
        examples: prepared.iter().map(|p| p.examples.len()).sum(),
    };
    let progress = Progress::items(Some(stats.examples as u64), options.quiet, "examples");
    if options.format == Format::Json {
        output.put(b"[\n")?;
    }
    for (i, (id, file)) in ids.iter().zip(&prepared).enumerate() {
        let rows = embedder.embed(&file.examples, |n| progress.inc(n as u64))?;
        if i > 0 && options.format == Format::Json {
            output.put(b",\n")?;
        }
        output.put(&clip_json(id, file, &rows))?;
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

/// Loads the network and PCA, warning (unless quiet) when a file named like an official one does not hash as
/// its name says. The hash is computed beside the loading, which reads the same bytes.
pub fn load_embedder(weights_path: &Path, pca_path: &Path, quiet: bool) -> Result<Embedder> {
    let (embedder, mismatch) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| weights::hash_mismatch(weights_path));
        let embedder = Embedder::load(weights_path, pca_path);
        let mismatch = hashing
            .join()
            .unwrap_or_else(|_| Err(anyhow!("hashing panicked")));
        (embedder, mismatch)
    });
    let embedder = embedder?;
    if let Ok(Some((expected, actual))) = mismatch
        && !quiet
    {
        eprintln!(
            "warning: {}: its SHA-256 starts {actual}, not {expected} as its name says: it is not the official \
             file (a damaged download?)",
            weights_path.display()
        );
    }
    Ok(embedder)
}
