//! Where a file's embedding comes from: VGGish run in-process (the default), or a MAX Audio Embedding Generator
//! service (`--service`). `embed` and `recommend --audio` both go through here, so both take the same options,
//! give the same errors, and check a file before anything costly happens.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::Result;

use super::decode::{self, Window};
use super::service::{Pcm16, Service};
use super::weights::{self, EMBEDDING_LEN};
use super::{Embedder, LogMel};
use crate::error::UsageError;

/// `--weights`, `--pca` and `--service` as given.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    pub weights: Option<PathBuf>,
    pub pca: Option<PathBuf>,
    pub service: Option<String>,
}

/// A source found but not loaded yet: the weights load only once the inputs have been checked.
pub enum Located {
    Local { weights: PathBuf, pca: PathBuf },
    Service(Service),
}

/// A source ready to embed.
pub enum Source {
    Local(Box<Embedder>),
    Service(Service),
}

/// One file's embedding: 8-bit rows, one per 0.96 s, and the stretch of the file they cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub rows: Vec<[u8; EMBEDDING_LEN]>,
    /// Where the embedded audio starts in the file (`--start`, or 0), in seconds.
    pub start: f64,
    /// Seconds of audio embedded.
    pub seconds: f64,
}

impl Embedded {
    /// One clip as JSON (no newline), keys in the order `ingest` writes them.
    pub fn clip_json(&self, video_id: &str) -> Vec<u8> {
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
            start_time: self.start,
            end_time: self.start + self.seconds,
            labels: [],
            embedding: self.rows.iter().map(|r| &r[..]).collect(),
        };
        // Serializing plain numbers and a str cannot fail.
        serde_json::to_vec(&clip).unwrap_or_default()
    }
}

/// 96 frames of 10 ms need 400 + 95 * 160 samples at 16 kHz.
const SHORTEST: f64 = 0.975;

impl SourceOptions {
    /// The service, or the weight files (an error naming what is missing and where to get it). A malformed
    /// `--service` URL is a usage error.
    pub fn locate(&self) -> Result<Located> {
        match &self.service {
            Some(url) => Ok(Located::Service(
                Service::new(url).map_err(UsageError::new)?,
            )),
            None => {
                let (weights, pca) = weights::locate(self.weights.as_deref(), self.pca.as_deref())?;
                Ok(Located::Local { weights, pca })
            }
        }
    }
}

impl Located {
    /// Loads the network and PCA (a service needs nothing), calling `warn` with a warning when a file named like
    /// an official one does not hash as its name says. The hash is computed beside the loading, which reads the
    /// same bytes.
    pub fn load(self, warn: impl FnOnce(String)) -> Result<Source> {
        let (weights_path, pca_path) = match self {
            Located::Service(service) => return Ok(Source::Service(service)),
            Located::Local { weights, pca } => (weights, pca),
        };
        let (embedder, mismatch) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| weights::hash_mismatch(&weights_path));
            let embedder = Embedder::load(&weights_path, &pca_path);
            let mismatch = hashing
                .join()
                .unwrap_or_else(|_| Err(anyhow!("hashing panicked")));
            (embedder, mismatch)
        });
        let embedder = embedder?;
        if let Ok(Some((expected, actual))) = mismatch {
            warn(format!(
                "{}: its SHA-256 starts {actual}, not {expected} as its name says: it is not the official file \
                 (a damaged download?)",
                weights_path.display()
            ));
        }
        Ok(Source::Local(Box::new(embedder)))
    }
}

/// Decodes `path` within `window` and checks there is enough audio for one example; returns its length in
/// seconds. Errors name the file. A cheap first pass: the samples are decoded and dropped, neither resampled
/// nor held, and decoding is a few percent of embedding's cost.
pub fn check(path: &Path, window: Window) -> Result<f64> {
    let seconds = decode::decode_with(path, window, |_| ())
        .map_err(|e| file_error(path, e))?
        .seconds();
    if let Some(why) = short(seconds) {
        return Err(anyhow!("{}: {why}", path.display()).into());
    }
    Ok(seconds)
}

/// A decoding error as the message a user sees, naming the file.
fn file_error(path: &Path, error: decode::DecodeError) -> anyhow::Error {
    let message = format!("{}: {error}", path.display());
    // A file that is not there is marked so (a host's FileNotFoundError); every other failure is the file's
    // content or its reading.
    match &error {
        decode::DecodeError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            crate::error::not_found(message)
        }
        _ => anyhow!(message),
    }
}

/// Why `audio` is too short to embed, if it is.
pub fn too_short(audio: &decode::Audio) -> Option<String> {
    short(audio.seconds())
}

fn short(seconds: f64) -> Option<String> {
    (seconds < SHORTEST).then(|| {
        format!("{seconds:.3} s of audio is shorter than one 0.96 s example (VGGish needs 0.975 s)")
    })
}

impl Source {
    /// The embedding of `path` within `window`; `done` hears how many examples each step finished. Errors name
    /// the file.
    pub fn embed_file(
        &self,
        path: &Path,
        window: Window,
        logmel: &LogMel,
        mut done: impl FnMut(usize),
    ) -> Result<Embedded> {
        let start = window.start.unwrap_or(0.0);
        let embedded = match self {
            Source::Local(_) => {
                let audio = decode::decode(path, window).map_err(|e| file_error(path, e))?;
                if let Some(why) = too_short(&audio) {
                    return Err(anyhow!("{}: {why}", path.display()).into());
                }
                self.embed_audio(&audio, start, logmel, done)
                    .map_err(anyhow::Error::from)
            }
            // The service is sent the file at its own rate and resamples it itself, as the reference does.
            Source::Service(service) => {
                let decoded = decode::decode_with(path, window, |_| Pcm16::default())
                    .map_err(|e| file_error(path, e))?;
                if let Some(why) = short(decoded.seconds()) {
                    return Err(anyhow!("{}: {why}", path.display()).into());
                }
                service.embed(&decoded.sink, decoded.rate).and_then(|rows| {
                    done(rows.len());
                    embedded(rows, start, decoded.seconds())
                })
            }
        };
        Ok(embedded.map_err(|e| anyhow!("{}: {e:#}", path.display()))?)
    }

    /// The embedding of audio already decoded (by [`decode::decode_bytes`], for a server that holds an upload in
    /// memory), which starts `start` seconds into its source; a service is sent it at its rate. Errors do not
    /// name the audio: the caller knows what it was.
    pub fn embed_audio(
        &self,
        audio: &decode::Audio,
        start: f64,
        logmel: &LogMel,
        mut done: impl FnMut(usize),
    ) -> Result<Embedded> {
        if let Some(why) = too_short(audio) {
            return Err(anyhow!(why).into());
        }
        let rows = match self {
            Source::Local(embedder) => {
                let examples = super::examples(&audio.samples, audio.sample_rate, logmel);
                embedder.embed(&examples, done)?
            }
            Source::Service(service) => {
                let rows =
                    service.embed(&Pcm16::from_samples(&audio.samples), audio.sample_rate)?;
                done(rows.len());
                rows
            }
        };
        Ok(embedded(rows, start, audio.seconds())?)
    }
}

/// The embedding of `seconds` of audio from `start`, refused when it has no rows.
fn embedded(rows: Vec<[u8; EMBEDDING_LEN]>, start: f64, seconds: f64) -> anyhow::Result<Embedded> {
    if rows.is_empty() {
        anyhow::bail!("no embedding rows for {seconds:.3} s of audio");
    }
    Ok(Embedded {
        rows,
        start,
        seconds,
    })
}
