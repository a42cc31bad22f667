//! The audio front end: from samples to the log-mel examples VGGish takes.
//!
//! It copies the TensorFlow reference step by step, because small departures (another resampler, a symmetric
//! window, power instead of magnitude) move the 8-bit embeddings that AudioSet's index holds. `resample` brings
//! any rate to 16 kHz as resampy's `kaiser_best` does, and `logmel` turns 16 kHz audio into 0.96 s examples.
//! `decode` reads audio files to 16 kHz mono samples, resampling as it decodes; `source` turns a file into its
//! embedding, in-process or through the MAX `service`.

pub mod decode;
pub mod logmel;
pub mod resample;
pub mod service;
pub mod source;
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
