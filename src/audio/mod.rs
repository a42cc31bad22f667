//! The audio front end: from samples to the log-mel examples VGGish takes.
//!
//! It copies the TensorFlow reference step by step, because small departures (another resampler, a symmetric
//! window, power instead of magnitude) move the 8-bit embeddings that AudioSet's index holds. `resample` brings
//! any rate to 16 kHz as resampy's `kaiser_best` does, and `logmel` turns 16 kHz audio into 0.96 s examples.
//! `decode` reads audio files to mono samples.

pub mod decode;
pub mod logmel;
pub mod resample;
pub mod vggish;
pub mod weights;

pub use logmel::{EXAMPLE_FRAMES, Example, LogMel, MEL_BANDS, SAMPLE_RATE};

/// Mono samples at any rate to VGGish's examples: resampled to 16 kHz unless already there, then framed.
pub fn examples(samples: &[f64], sample_rate: u32, logmel: &LogMel) -> Vec<Example> {
    if sample_rate == SAMPLE_RATE {
        logmel.examples(samples)
    } else {
        logmel.examples(&resample::resample(samples, sample_rate, SAMPLE_RATE))
    }
}

/// A file made ready for the network: its examples, and the stretch of it they came from.
pub struct Prepared {
    pub examples: Vec<Example>,
    /// Where the decoded audio starts in the file (`--start`, or 0), in seconds.
    pub start: f64,
    /// Seconds of audio decoded.
    pub seconds: f64,
}

/// Decodes `path` (within `window`) and cuts it into log-mel examples; an error, naming the file, when there is
/// not enough audio for one example.
pub fn prepare(
    path: &std::path::Path,
    window: decode::Window,
    logmel: &LogMel,
) -> anyhow::Result<Prepared> {
    let audio =
        decode::decode(path, window).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let examples = examples(&audio.samples, audio.sample_rate, logmel);
    if examples.is_empty() {
        // 96 frames of 10 ms need 400 + 95 * 160 samples at 16 kHz: 0.975 s.
        anyhow::bail!(
            "{}: {:.3} s of audio is shorter than one 0.96 s example (VGGish needs 0.975 s)",
            path.display(),
            audio.seconds()
        );
    }
    Ok(Prepared {
        examples,
        start: window.start.unwrap_or(0.0),
        seconds: audio.seconds(),
    })
}

/// The network and its post-processing: log-mel examples in, AudioSet's 8-bit embeddings out.
pub struct Embedder {
    pub vggish: vggish::Vggish,
    pub pca: weights::Pca,
}

impl Embedder {
    /// Loads and checks both files; errors name the file.
    pub fn load(weights: &std::path::Path, pca: &std::path::Path) -> anyhow::Result<Embedder> {
        let loaded = weights::Weights::load(weights)?;
        Ok(Embedder {
            vggish: vggish::Vggish::new(&loaded)?,
            pca: weights::Pca::load(pca)?,
        })
    }

    /// One 8-bit row per example; `done` hears how many examples each forward pass finished.
    pub fn embed(
        &self,
        examples: &[Example],
        done: impl FnMut(usize),
    ) -> anyhow::Result<Vec<[u8; weights::EMBEDDING_LEN]>> {
        let raw = self.vggish.embed(examples, done)?;
        Ok(raw.iter().map(|r| self.pca.quantize(r)).collect())
    }
}
