//! The audio front end: from samples to the log-mel examples VGGish takes.
//!
//! It copies the TensorFlow reference step by step, because small departures (another resampler, a symmetric
//! window, power instead of magnitude) move the 8-bit embeddings that AudioSet's index holds. `resample` brings
//! any rate to 16 kHz as resampy's `kaiser_best` does, and `logmel` turns 16 kHz audio into 0.96 s examples.
//! `decode` reads audio files to 16 kHz mono samples, resampling as it decodes; `source` turns a file into its
//! embedding, in-process or through the MAX `service`.
//!
//! The public part is what a host hands around: [`source`] (where an embedding comes from), the [`Window`] of a
//! file to read, decoded [`Audio`], an [`Embedder`] and the [`LogMel`] front end it is fed through. The stages
//! themselves (the network, its weights, the resampler, the filterbank) are the crate's own.

crate::internal_modules! {
    mod decode;
    mod logmel;
    mod resample;
    mod service;
    mod vggish;
    mod weights;
}
pub mod source;

pub use decode::{Audio, DecodeError, Window, decode, decode_bytes};
pub use logmel::{EXAMPLE_FRAMES, EXAMPLE_SECONDS, Example, LogMel, MEL_BANDS, SAMPLE_RATE};
pub use service::Service;
pub use weights::EMBEDDING_LEN;

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
    // The tests compare each stage with the reference's (the `fuzzing` feature, see `internal_modules!`).
    #[cfg(feature = "fuzzing")]
    pub vggish: vggish::Vggish,
    #[cfg(not(feature = "fuzzing"))]
    vggish: vggish::Vggish,
    #[cfg(feature = "fuzzing")]
    pub pca: weights::Pca,
    #[cfg(not(feature = "fuzzing"))]
    pca: weights::Pca,
}

impl Embedder {
    /// Loads and checks both files; errors name the file.
    pub fn load(weights: &std::path::Path, pca: &std::path::Path) -> crate::Result<Embedder> {
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
    ) -> crate::Result<Vec<[u8; weights::EMBEDDING_LEN]>> {
        let raw = self.vggish.embed(examples, done)?;
        Ok(raw.iter().map(|r| self.pca.quantize(r)).collect())
    }
}
