//! Sample-rate conversion that reproduces resampy's `kaiser_best` filter, the resampler VGGish's reference front
//! end uses.
//!
//! A generic resampler shifts VGGish's log-mel by 1e-3 to 4e-3 on average, enough to move 8-bit embeddings, so
//! this is a port of resampy 0.4 rather than a choice of our own: the same windowed-sinc table, the same linear
//! interpolation between its entries, and the same output length (see [`resample`] for how the sums are arranged).

use std::sync::OnceLock;

use rayon::prelude::*;

/// Zero crossings of the sinc kept on each side (resampy's `kaiser_best`).
const NUM_ZEROS: usize = 50;
/// Table entries per zero crossing: `2^precision` with precision 13.
const NUM_TABLE: usize = 1 << 13;
/// Cut-off as a fraction of Nyquist.
const ROLLOFF: f64 = 0.917_347_371_260_876_1;
/// The Kaiser window's shape parameter.
const BETA: f64 = 12.984_585_247_040_012;

/// The right wing of the interpolation filter, `NUM_ZEROS * NUM_TABLE + 1` entries.
///
/// resampy ships this table precomputed (`data/kaiser_best.npz`, made by its `sinc_window`); building it from the
/// same formula costs a few milliseconds once and keeps 3 MB of data out of the repository.
fn kaiser_best() -> &'static [f64] {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let n = NUM_ZEROS * NUM_TABLE;
        let i0_beta = bessel_i0(BETA);
        (0..=n)
            .map(|k| {
                // np.linspace(0, num_zeros, n + 1): the step is 1 / NUM_TABLE, a power of two, so this is exact.
                let x = k as f64 / NUM_TABLE as f64;
                let sinc = ROLLOFF * sinc(ROLLOFF * x);
                // The right half of scipy's symmetric Kaiser window of 2n + 1 points.
                let r = k as f64 / n as f64;
                let taper = bessel_i0(BETA * (1.0 - r * r).sqrt()) / i0_beta;
                taper * sinc
            })
            .collect()
    })
}

/// numpy's normalised sinc, `sin(pi x) / (pi x)`, 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = std::f64::consts::PI * x;
        y.sin() / y
    }
}

/// The modified Bessel function of the first kind, order 0, by its power series.
///
/// For the arguments the window needs (0 to 13) the terms are all positive and the series converges in under 50
/// of them, so the sum is accurate to a few ulps, as good as scipy's Chebyshev expansion.
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-18 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// The number of samples resampy returns: `int(n * (sr_new / sr_orig))`, computed in f64 the way it does.
pub fn output_len(n: usize, sr_orig: u32, sr_new: u32) -> usize {
    (n as f64 * (f64::from(sr_new) / f64::from(sr_orig))) as usize
}

/// Resamples `x` from `sr_orig` to `sr_new` Hz as `resampy.resample(x, sr_orig, sr_new)` does.
///
/// Equal rates return a copy, as resampy does. Both rates must be positive.
///
/// resampy interpolates its filter table afresh for every output sample (two table reads a filter tap, far
/// apart in a 6 MB table). The rates' ratio is rational, so the output's position between input samples repeats
/// every `sr_new / gcd` samples (160 for 44.1 kHz to 16 kHz): the interpolated filter of each of those phases is
/// computed once, from the exact phase, and every output sample is then two dot products over contiguous
/// samples. That took a 3.5-minute 44.1 kHz song's resampling from about 4 s of CPU to a few tenths
/// (BENCHMARKS.md, "Audio in"). The filter and its interpolation are resampy's; the sums are accumulated in four
/// lanes rather than one, and the phase is exact rather than `t * increment` in floating point, which moves
/// the output by at most a few 1e-12 (3.5e-12 on the golden signal, whose target is 1e-6).
pub fn resample(x: &[f64], sr_orig: u32, sr_new: u32) -> Vec<f64> {
    assert!(sr_orig > 0 && sr_new > 0, "sample rates must be positive");
    if sr_orig == sr_new {
        return x.to_vec();
    }
    let sample_ratio = f64::from(sr_new) / f64::from(sr_orig);
    let n_out = output_len(x.len(), sr_orig, sr_new);

    // When downsampling, the filter is widened in time by 1 / ratio (through `scale` below) and scaled down by
    // the ratio so that it keeps unit gain.
    let base = kaiser_best();
    let win: Vec<f64> = if sample_ratio < 1.0 {
        base.iter().map(|w| w * sample_ratio).collect()
    } else {
        base.to_vec()
    };
    // np.diff(interp_win, append=interp_win[-1]): the last slope is 0.
    let delta: Vec<f64> = (0..win.len())
        .map(|i| win.get(i + 1).map_or(0.0, |next| next - win[i]))
        .collect();

    let scale = sample_ratio.min(1.0);
    let index_step = (scale * NUM_TABLE as f64) as usize;
    let nwin = win.len();
    // One wing's interpolated taps for a fractional position `frac` (in units of the filter's zero crossings).
    let wing = |frac: f64| -> Vec<f64> {
        let index_frac = frac * NUM_TABLE as f64;
        let offset = index_frac as usize;
        let eta = index_frac - offset as f64;
        (0..(nwin - offset) / index_step)
            .map(|i| {
                let j = offset + i * index_step;
                win[j] + eta * delta[j]
            })
            .collect()
    };

    let divisor = gcd(sr_orig, sr_new);
    let (input_period, period) = ((sr_orig / divisor) as usize, (sr_new / divisor) as usize);
    let phases: Vec<Phase> = (0..period)
        .map(|p| {
            // Output p of a period sits at p * sr_orig / sr_new input samples: whole part and exact fraction.
            let position = p as u64 * u64::from(sr_orig);
            let whole = (position / u64::from(sr_new)) as usize;
            let frac = scale * (position % u64::from(sr_new)) as f64 / f64::from(sr_new);
            let mut left = wing(frac);
            // Stored far end first, so that x[n - i] for i = 0, 1, ... reads forward.
            left.reverse();
            Phase {
                whole,
                left,
                right: wing(scale - frac),
            }
        })
        .collect();

    let n_orig = x.len();
    // Every output sample is an independent sum, so the samples are shared out over all cores.
    (0..n_out)
        .into_par_iter()
        .map(|t| {
            let phase = &phases[t % period];
            let n = t / period * input_period + phase.whole;
            // Left wing: x[n], x[n - 1], ... as far as the filter or the signal reaches.
            let m = phase.left.len().min(n + 1);
            let left = dot(&phase.left[phase.left.len() - m..], &x[n + 1 - m..=n]);
            // Right wing: x[n + 1], x[n + 2], ...
            let m = phase.right.len().min(n_orig.saturating_sub(n + 1));
            left + dot(&phase.right[..m], &x[n + 1..n + 1 + m])
        })
        .collect()
}

/// The interpolated filter of one output phase.
struct Phase {
    /// The input sample at or before the output, relative to the period's first.
    whole: usize,
    /// Taps for x[n], x[n - 1], ..., stored in reverse (the farthest first).
    left: Vec<f64>,
    /// Taps for x[n + 1], x[n + 2], ...
    right: Vec<f64>,
}

/// The dot product of two equally long slices, in four lanes so that the sums do not wait on each other.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            lanes[k] += x[k] * y[k];
        }
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_is_resampys() {
        assert_eq!(output_len(220_500, 44_100, 16_000), 80_000);
        assert_eq!(output_len(10, 16_000, 16_000), 10);
        assert_eq!(output_len(3, 44_100, 16_000), 1);
    }

    #[test]
    fn filter_table_starts_at_rolloff_and_ends_near_zero() {
        let w = kaiser_best();
        assert_eq!(w.len(), NUM_ZEROS * NUM_TABLE + 1);
        assert!((w[0] - ROLLOFF).abs() < 1e-15);
        assert!(w[w.len() - 1].abs() < 1e-6);
    }

    #[test]
    fn bessel_i0_known_values() {
        // Reference values of I0 (Abramowitz and Stegun, table 9.8; scipy.special.i0).
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-16);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-15);
        assert!((bessel_i0(10.0) / 2_815.716_628_466_254 - 1.0).abs() < 1e-14);
    }

    #[test]
    fn dc_keeps_its_level_away_from_the_edges() {
        let x = vec![0.25; 4410];
        let y = resample(&x, 44_100, 16_000);
        assert_eq!(y.len(), 1600);
        for v in &y[100..1500] {
            assert!((v - 0.25).abs() < 1e-4, "{v}");
        }
    }
}
