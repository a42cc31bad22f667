//! VGGish's input: log-mel spectrogram examples of 96 frames by 64 bands (0.96 s each) from 16 kHz audio.
//!
//! Every parameter is the TensorFlow reference's (`vggish_params`, `mel_features`, `vggish_input`), and the
//! arithmetic is done in f64 as numpy does it, rounding to f32 only at the end, so the examples agree with the
//! reference to float precision rather than merely resembling it.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// The rate VGGish's front end works at.
pub const SAMPLE_RATE: u32 = 16_000;
/// STFT window: 25 ms.
pub const WINDOW_LEN: usize = 400;
/// STFT hop: 10 ms.
pub const HOP_LEN: usize = 160;
/// FFT size: the window length rounded up to a power of two.
pub const FFT_LEN: usize = 512;
/// Magnitude bins of a real FFT of `FFT_LEN` points.
pub const SPECTRUM_BINS: usize = FFT_LEN / 2 + 1;
/// Mel bands per frame.
pub const MEL_BANDS: usize = 64;
/// Frames per example: 0.96 s at 100 frames a second; examples do not overlap.
pub const EXAMPLE_FRAMES: usize = 96;
/// Seconds of audio per example, and between the starts of successive examples.
pub const EXAMPLE_SECONDS: f64 = 0.96;
/// Lower and upper edges of the mel filter bank, in Hz.
const MEL_MIN_HZ: f64 = 125.0;
const MEL_MAX_HZ: f64 = 7500.0;
/// Added before the logarithm so that silence gives ln(0.01), not minus infinity.
const LOG_OFFSET: f64 = 0.01;

/// One log-mel frame: 64 bands.
pub type Frame = [f32; MEL_BANDS];
/// One network input: 96 frames of 64 bands, time first.
pub type Example = [Frame; EXAMPLE_FRAMES];

/// The STFT plan, window and mel filter bank, built once and reused for every file.
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    /// `[SPECTRUM_BINS][MEL_BANDS]`, as `mel_features.spectrogram_to_mel_matrix` lays it out.
    mel: Vec<[f64; MEL_BANDS]>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_LEN);
        // A periodic Hann window (the reference's `periodic_hann`), not numpy's symmetric `hanning`.
        let window = (0..WINDOW_LEN)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / WINDOW_LEN as f64).cos())
            .collect();
        LogMel {
            fft,
            window,
            mel: mel_matrix(),
        }
    }

    /// The log-mel frames of `samples` (mono, 16 kHz): `1 + (N - 400) / 160` of them, none if N < 400.
    ///
    /// There is no centring or padding: a frame starts at every hop where a whole window fits.
    pub fn frames(&self, samples: &[f64]) -> Vec<[f64; MEL_BANDS]> {
        if samples.len() < WINDOW_LEN {
            return Vec::new();
        }
        let count = 1 + (samples.len() - WINDOW_LEN) / HOP_LEN;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut magnitude = [0.0f64; SPECTRUM_BINS];
        (0..count)
            .map(|f| {
                let start = f * HOP_LEN;
                for (dst, (s, w)) in input
                    .iter_mut()
                    .zip(samples[start..start + WINDOW_LEN].iter().zip(&self.window))
                {
                    *dst = s * w;
                }
                // The FFT is longer than the window: the rest is zero padding, which process() may have scrambled.
                input[WINDOW_LEN..].fill(0.0);
                self.fft
                    .process(&mut input, &mut spectrum)
                    .expect("buffers come from the plan");
                for (m, c) in magnitude.iter_mut().zip(&spectrum) {
                    *m = c.norm();
                }
                let mut bands = [0.0f64; MEL_BANDS];
                for (m, row) in magnitude.iter().zip(&self.mel) {
                    for (b, w) in bands.iter_mut().zip(row) {
                        *b += m * w;
                    }
                }
                bands.map(|b| (b + LOG_OFFSET).ln())
            })
            .collect()
    }

    /// The examples VGGish embeds: consecutive runs of 96 frames, an incomplete last run dropped.
    pub fn examples(&self, samples: &[f64]) -> Vec<Example> {
        self.frames(samples)
            .chunks_exact(EXAMPLE_FRAMES)
            .map(|chunk| {
                let mut example = [[0.0f32; MEL_BANDS]; EXAMPLE_FRAMES];
                for (dst, src) in example.iter_mut().zip(chunk) {
                    *dst = src.map(|v| v as f32);
                }
                example
            })
            .collect()
    }
}

/// HTK's mel scale.
fn hz_to_mel(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

/// The mel filter bank: 64 triangles, evenly spaced in mel between 125 and 7500 Hz, evaluated at the FFT bins'
/// frequencies, not normalised, and with the DC bin's row zeroed (as `spectrogram_to_mel_matrix` does).
fn mel_matrix() -> Vec<[f64; MEL_BANDS]> {
    let nyquist = f64::from(SAMPLE_RATE) / 2.0;
    let bin_mel: Vec<f64> = linspace(0.0, nyquist, SPECTRUM_BINS)
        .into_iter()
        .map(hz_to_mel)
        .collect();
    let edges = linspace(hz_to_mel(MEL_MIN_HZ), hz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2);
    let mut matrix = vec![[0.0f64; MEL_BANDS]; SPECTRUM_BINS];
    for (band, e) in edges.windows(3).enumerate() {
        let (lower, center, upper) = (e[0], e[1], e[2]);
        for (row, &m) in matrix.iter_mut().zip(&bin_mel) {
            let lower_slope = (m - lower) / (center - lower);
            let upper_slope = (upper - m) / (upper - center);
            row[band] = 0.0f64.max(lower_slope.min(upper_slope));
        }
    }
    matrix[0] = [0.0; MEL_BANDS];
    matrix
}

/// numpy's `linspace(start, stop, num)` with its endpoint: `start + i * step`, the last value exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
    v[num - 1] = stop;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_example_counts() {
        let lm = LogMel::new();
        assert!(lm.frames(&[0.0; 399]).is_empty());
        assert_eq!(lm.frames(&[0.0; 400]).len(), 1);
        assert_eq!(lm.frames(&[0.0; 16_000]).len(), 98);
        // 0.975 s is the least that makes one example: 400 + 95 * 160 samples.
        assert_eq!(lm.examples(&[0.0; 15_600]).len(), 1);
        assert!(lm.examples(&[0.0; 15_599]).is_empty());
    }

    #[test]
    fn silence_is_log_offset() {
        let lm = LogMel::new();
        for frame in lm.examples(&[0.0; 16_000]) {
            for row in frame {
                for v in row {
                    assert_eq!(v, (LOG_OFFSET as f32).ln());
                }
            }
        }
    }

    #[test]
    fn mel_matrix_dc_row_is_zero_and_bands_are_triangles() {
        let m = mel_matrix();
        assert_eq!(m.len(), SPECTRUM_BINS);
        assert!(m[0].iter().all(|&w| w == 0.0));
        for band in 0..MEL_BANDS {
            let peak = m.iter().map(|row| row[band]).fold(0.0, f64::max);
            assert!(peak > 0.0 && peak <= 1.0, "band {band}: {peak}");
        }
    }
}
