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
/// Equal rates return a copy, as resampy does. Both rates must be positive, and their ratio at most
/// [`MAX_RATIO`].
///
/// resampy interpolates its filter table afresh for every output sample (two table reads a filter tap, far
/// apart in a 6 MB table). The rates' ratio is rational, so the output's position between input samples repeats
/// every `sr_new / gcd` samples (160 for 44.1 kHz to 16 kHz): the interpolated filter of each of those phases is
/// computed once, from the exact phase, and every output sample is then two dot products over contiguous
/// samples. Computing each phase's filter once, rather than for every output sample, is what keeps resampling
/// a small share of `embed`'s time (docs/bench-log.md, "Audio in: `embed` against torchvggish", its table of
/// stages). The filter and its interpolation are resampy's; the sums are accumulated in four lanes rather than
/// one, and the phase is exact rather than `t * increment` in floating point, which moves the output by at most
/// a few 1e-12 (3.5e-12 on the golden signal, whose target is 1e-6).
///
/// [`Resampler`] computes the same samples from input given in pieces, holding only the filter's reach of it.
pub fn resample(x: &[f64], sr_orig: u32, sr_new: u32) -> Vec<f64> {
    if sr_orig == sr_new {
        return x.to_vec();
    }
    let filter = Filter::new(sr_orig, sr_new);
    let n_out = output_len(x.len(), sr_orig, sr_new);
    // Every output sample is an independent sum, so the samples are shared out over all cores.
    (0..n_out)
        .into_par_iter()
        .map(|t| filter.output(t, x, 0, Some(x.len())))
        .collect()
}

/// The largest ratio of the input's rate to the output's: past it the filter, widened by the ratio, would step
/// through resampy's table by less than one entry (and each output would read millions of inputs).
pub const MAX_RATIO: u32 = 4096;

/// Outputs computed at once by a [`Resampler`]: enough that sharing them over the cores pays (a few
/// milliseconds of work), few enough that the input they need stays small (0.5 s at 16 kHz; 98,000 samples,
/// 786 KB, of a 192 kHz input).
const CHUNK: usize = 8192;

/// The phase table's largest size, in taps (8 bytes each): a rate prime to 16,000 has 16,000 phases, which at
/// 192,001 Hz would be 150 MB of taps. Past this each output's taps are interpolated as it is computed, the
/// same numbers at about twice the cost.
const TABLE_TAPS: usize = 1 << 21;

/// Resamples input that arrives in pieces (a decoder's packets) to exactly what [`resample`] returns for the
/// whole of it, bit for bit: each output is the same two dot products over the same inputs, computed once the
/// filter's reach of inputs has arrived (or, at [`Resampler::finish`], the input has ended). Only the inputs
/// some later output still reads are kept, so memory is the output plus `O(filter)`, whatever the input's rate.
pub struct Resampler {
    /// `None` for equal rates: the input is the output.
    filter: Option<Filter>,
    /// Input samples from index `base` of the whole input on.
    buffer: Vec<f64>,
    base: usize,
    /// Input samples received.
    received: usize,
    output: Vec<f64>,
}

impl Resampler {
    /// A resampler from `sr_orig` to `sr_new` Hz, under the same conditions as [`resample`].
    pub fn new(sr_orig: u32, sr_new: u32) -> Resampler {
        Resampler {
            filter: (sr_orig != sr_new).then(|| Filter::new(sr_orig, sr_new)),
            buffer: Vec::new(),
            base: 0,
            received: 0,
            output: Vec::new(),
        }
    }

    /// Takes the next input samples; computes the outputs they complete once there are [`CHUNK`] of them.
    pub fn push(&mut self, x: &[f64]) {
        let Some(filter) = &self.filter else {
            self.output.extend_from_slice(x);
            return;
        };
        self.buffer.extend_from_slice(x);
        self.received += x.len();
        let ready = filter.ready(self.received);
        if ready >= self.output.len() + CHUNK {
            self.run(ready, None);
        }
    }

    /// The output for all the input pushed, as [`resample`] returns it.
    pub fn finish(mut self) -> Vec<f64> {
        if let Some(filter) = &self.filter {
            let n_out = output_len(self.received, filter.sr_orig, filter.sr_new);
            self.run(n_out, Some(self.received));
        }
        self.output
    }

    /// Computes the outputs up to `until` (`total`: the input's length, once it has ended), then lets go of the
    /// inputs no later output reads.
    fn run(&mut self, until: usize, total: Option<usize>) {
        let Some(filter) = &self.filter else { return };
        let (buffer, base) = (&self.buffer, self.base);
        self.output.par_extend(
            (self.output.len()..until)
                .into_par_iter()
                .map(|t| filter.output(t, buffer, base, total)),
        );
        let keep = filter
            .first_input(until)
            .clamp(base, base + self.buffer.len());
        // Moved down only once half the buffer is spent, so that each input is moved about once.
        if keep - base > self.buffer.len() / 2 {
            self.buffer.drain(..keep - base);
            self.base = keep;
        }
    }
}

/// resampy's filter for one pair of rates, arranged by output phase (see [`resample`]).
struct Filter {
    sr_orig: u32,
    sr_new: u32,
    /// The input samples and output samples in one period of the phases.
    input_period: usize,
    period: usize,
    /// The filter table, scaled, and its slopes between entries.
    win: Vec<f64>,
    delta: Vec<f64>,
    /// The filter's width relative to the table's (below 1 when downsampling) and the table step it makes.
    scale: f64,
    index_step: usize,
    /// The most taps a wing has: the reach of the filter on either side, in input samples.
    reach: usize,
    /// Each phase's taps, unless there are more than [`TABLE_TAPS`] of them.
    phases: Option<Vec<Phase>>,
}

impl Filter {
    fn new(sr_orig: u32, sr_new: u32) -> Filter {
        assert!(sr_orig > 0 && sr_new > 0, "sample rates must be positive");
        assert!(
            sr_orig / sr_new <= MAX_RATIO,
            "a ratio of rates above MAX_RATIO"
        );
        let sample_ratio = f64::from(sr_new) / f64::from(sr_orig);
        // When downsampling, the filter is widened in time by 1 / ratio (through `scale` below) and scaled down
        // by the ratio so that it keeps unit gain.
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
        let divisor = gcd(sr_orig, sr_new);
        let mut filter = Filter {
            sr_orig,
            sr_new,
            input_period: (sr_orig / divisor) as usize,
            period: (sr_new / divisor) as usize,
            // A wing at offset 0 is the longest.
            reach: win.len() / index_step,
            win,
            delta,
            scale,
            index_step,
            phases: None,
        };
        if filter.period * 2 * filter.reach <= TABLE_TAPS {
            filter.phases = Some((0..filter.period).map(|p| filter.phase(p)).collect());
        }
        filter
    }

    /// The taps of phase `p`: output `p` of a period sits at `p * sr_orig / sr_new` input samples.
    fn phase(&self, p: usize) -> Phase {
        // The whole part and the exact fraction of the output's position.
        let position = p as u64 * u64::from(self.sr_orig);
        let whole = (position / u64::from(self.sr_new)) as usize;
        let frac = self.scale * (position % u64::from(self.sr_new)) as f64 / f64::from(self.sr_new);
        let mut left = self.wing(frac);
        // Stored far end first, so that x[n - i] for i = 0, 1, ... reads forward.
        left.reverse();
        Phase {
            whole,
            left,
            right: self.wing(self.scale - frac),
        }
    }

    /// One wing's interpolated taps for a fractional position `frac` (in units of the filter's zero crossings).
    fn wing(&self, frac: f64) -> Vec<f64> {
        let index_frac = frac * NUM_TABLE as f64;
        let offset = index_frac as usize;
        let eta = index_frac - offset as f64;
        (0..(self.win.len() - offset) / self.index_step)
            .map(|i| {
                let j = offset + i * self.index_step;
                self.win[j] + eta * self.delta[j]
            })
            .collect()
    }

    /// The input sample at or before output `t`.
    fn center(&self, t: usize) -> usize {
        // t / period * input_period + phase.whole, in one step: floor(t * sr_orig / sr_new).
        (t as u64 * u64::from(self.sr_orig) / u64::from(self.sr_new)) as usize
    }

    /// The first input sample output `t` reads.
    fn first_input(&self, t: usize) -> usize {
        (self.center(t) + 1).saturating_sub(self.reach)
    }

    /// How many outputs the first `received` inputs complete whatever follows them: those whose filter reaches
    /// no further, and no more than the shortest output the input's length could give.
    fn ready(&self, received: usize) -> usize {
        // center(t) + 1 + reach <= received, i.e. t * sr_orig < (received - reach) * sr_new.
        let room = received.saturating_sub(self.reach) as u64;
        let complete = (room * u64::from(self.sr_new)).div_ceil(u64::from(self.sr_orig)) as usize;
        complete.min(output_len(received, self.sr_orig, self.sr_new))
    }

    /// Output `t` from the inputs in `x`, which starts at input `base`; `total` is the input's length once it
    /// has ended (outputs near the end read only what there is), `None` while the filter's reach of inputs past
    /// `t` is known to be in `x`.
    fn output(&self, t: usize, x: &[f64], base: usize, total: Option<usize>) -> f64 {
        let computed;
        let phase = match &self.phases {
            Some(phases) => &phases[t % self.period],
            None => {
                computed = self.phase(t % self.period);
                &computed
            }
        };
        let n = t / self.period * self.input_period + phase.whole;
        // Left wing: x[n], x[n - 1], ... as far as the filter or the signal reaches.
        let m = phase.left.len().min(n + 1);
        let left = dot(
            &phase.left[phase.left.len() - m..],
            &x[n + 1 - m - base..=n - base],
        );
        // Right wing: x[n + 1], x[n + 2], ...
        let rest = total.map_or(phase.right.len(), |total| total.saturating_sub(n + 1));
        let m = phase.right.len().min(rest);
        left + dot(&phase.right[..m], &x[n + 1 - base..n + 1 + m - base])
    }
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

    /// A reproducible test signal: a slow sine and white noise.
    fn signal(n: usize) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                0.5 * (i as f64 * 0.013).sin() + 0.3 * ((state >> 11) as f64 / 2f64.powi(53) - 0.5)
            })
            .collect()
    }

    #[test]
    fn pieces_give_the_whole_buffers_samples_bit_for_bit() {
        // 44,101 and 192,001 Hz are prime to 16 kHz: 16,000 phases, computed per output rather than tabled.
        for rate in [
            8_000, 16_000, 22_050, 44_100, 44_101, 48_000, 192_000, 192_001,
        ] {
            for n in [0, 1, 399, rate as usize / 3, 2 * rate as usize + 7] {
                let x = signal(n);
                let whole = resample(&x, rate, 16_000);
                assert_eq!(whole.len(), output_len(n, rate, 16_000));
                for piece in [1, 1_152, 16_384] {
                    let mut resampler = Resampler::new(rate, 16_000);
                    for part in x.chunks(piece) {
                        resampler.push(part);
                    }
                    let streamed = resampler.finish();
                    let same = streamed.len() == whole.len()
                        && streamed
                            .iter()
                            .zip(&whole)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{rate} Hz, {n} samples in pieces of {piece}");
                }
            }
        }
    }

    #[test]
    fn a_resampler_holds_only_the_filters_reach_of_its_input() {
        // 10 s of 192 kHz in decoder-sized packets: the buffer holds a chunk's input, the filter's reach and a
        // packet, up to twice over (it is moved down once half is spent) in up to twice the room (a Vec
        // doubles), however long the input.
        let mut resampler = Resampler::new(192_000, 16_000);
        let packet = signal(16_384);
        let mut most = 0;
        for _ in 0..120 {
            resampler.push(&packet);
            most = most.max(resampler.buffer.capacity());
        }
        let reach = resampler.filter.as_ref().unwrap().reach;
        let bound = 4 * (CHUNK * 12 + 2 * reach + packet.len());
        assert!(most <= bound, "{most} inputs held, more than {bound}");
        assert_eq!(resampler.finish().len(), 120 * 16_384 / 12);
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
