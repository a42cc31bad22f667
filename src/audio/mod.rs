//! The audio front end: from samples to the log-mel examples VGGish takes.
//!
//! It copies the TensorFlow reference step by step, because small departures (another resampler, a symmetric
//! window, power instead of magnitude) move the 8-bit embeddings that AudioSet's index holds. `resample` brings
//! any rate to 16 kHz as resampy's `kaiser_best` does, and `logmel` turns 16 kHz audio into 0.96 s examples.
//! Decoding files and the network itself live elsewhere.

pub mod logmel;
pub mod resample;

pub use logmel::{EXAMPLE_FRAMES, Example, LogMel, MEL_BANDS, SAMPLE_RATE};

/// Mono samples at any rate to VGGish's examples: resampled to 16 kHz unless already there, then framed.
pub fn examples(samples: &[f64], sample_rate: u32, logmel: &LogMel) -> Vec<Example> {
    if sample_rate == SAMPLE_RATE {
        logmel.examples(samples)
    } else {
        logmel.examples(&resample::resample(samples, sample_rate, SAMPLE_RATE))
    }
}
