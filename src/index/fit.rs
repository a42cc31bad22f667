//! Learning a projection from labelled clips: a logistic regression from a clip's VGGish frames to each of
//! AudioSet's music labels, whose probabilities become the dimensions the index compares.
//!
//! Why this model: label precision is about sharing a label, and a clip's probabilities of the 149 music labels
//! say that directly. Fit on half of bal_train's music clips and measured on the other half, the mean of the
//! frames' probabilities scores a higher label precision@10 than raw VGGish or the LDA projection to 32
//! dimensions this replaced, with and without the frame-level re-rank (BENCHMARKS.md, "Label precision";
//! docs/bench-log.md, "Projection and re-rank (issue 13)").
//!
//! The fit, one model per label, all solved together: a clip's input is the mean of its de-quantized frames,
//! standardised (each dimension centred and divided by its spread over the fitting clips); its target is 1
//! for each music label other than "Music" (137) it carries, else 0. Each label's weights minimise the summed
//! log loss plus `|w|^2 / (2 C)` with `C` [`INVERSE_REGULARISATION`] (scikit-learn's convention; the
//! intercept is not penalised), by [`ITERATIONS`] steps of Nesterov's accelerated gradient with the step and
//! momentum the problem's curvature bounds give. A fixed number of steps in f64 on the clips in a fixed
//! order (by id hash) makes the same clips give the same model on one machine (the compiled default is
//! checked against a refit by `tests/it/projection.rs`); at 200 steps the largest gradient is below 1e-4 and
//! label precision has stopped moving (100 steps gave the same to 0.001).
//!
//! Applied to a frame `x` the model gives `sigmoid(W (x - mean) + bias)`, one probability per label; a label
//! with fewer than [`MIN_CLIPS`] clips on either side gets no model (weights zero, probability about 0).

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};

use crate::index::projection::{Activation, Projection, id_hash};
use crate::index::vector::dequantize;
use crate::labels::{self, LabelSet};
use crate::tfrecord::sequence_example::FRAME_LEN;

/// Output dimensions: one per music label of the ontology other than "Music" itself.
pub const DIMENSIONS: usize = 149;
/// scikit-learn's `C`: the best of the values from 0.01 to 0.3 tried on the half split (numpy prototype, before
/// the re-rank; docs/bench-log.md, "Projection and re-rank (issue 13)"; `scripts/prototypes/`).
pub const INVERSE_REGULARISATION: f64 = 0.05;
pub const ITERATIONS: usize = 200;
/// Clips a label needs, carrying it and not carrying it, to get a model.
pub const MIN_CLIPS: usize = 5;
/// The most clips a fit holds (51 MB of means): beyond it, those with the smallest id hashes, a sample that
/// does not depend on the input's order. bal_train has 6,320.
pub const MAX_CLIPS: usize = 100_000;
/// The bias of a label without a model: sigmoid(-30) is 1e-13.
const NO_MODEL_BIAS: f32 = -30.0;

/// The labels a fit uses from a clip: its music labels other than "Music" itself.
fn fit_labels<'a>(labels: &'a [i64], music: &'a LabelSet) -> impl Iterator<Item = u16> + 'a {
    labels
        .iter()
        .filter(move |&&l| l != i64::from(labels::MUSIC) && music.contains(l))
        .filter_map(|&l| u16::try_from(l).ok())
}

/// The labels in output order: the ontology's music labels other than "Music", ascending.
pub fn output_labels() -> Vec<u16> {
    let music = LabelSet::music_ontology();
    (0..labels::CLASS_COUNT as u16)
        .filter(|&l| l != labels::MUSIC && music.contains(l.into()))
        .collect()
}

struct Sample {
    hash: u64,
    mean: [f32; FRAME_LEN],
    /// Output columns of its labels.
    columns: Vec<u16>,
}

/// The clips of a fit, gathered one at a time.
pub struct Fit {
    music: LabelSet,
    /// Output column by class index.
    column: Vec<Option<u16>>,
    samples: Vec<Sample>,
}

impl Default for Fit {
    fn default() -> Self {
        let mut column = vec![None; labels::CLASS_COUNT];
        for (i, l) in output_labels().into_iter().enumerate() {
            column[usize::from(l)] = Some(i as u16);
        }
        Fit {
            music: LabelSet::music_ontology(),
            column,
            samples: Vec::new(),
        }
    }
}

impl Fit {
    /// Adds a clip: `rows` are its frames' raw values (`frames` x 128, 0..=255), of which the mean is taken.
    pub fn add(&mut self, video_id: &str, labels: &[i64], rows: &[f32]) {
        let columns: Vec<u16> = fit_labels(labels, &self.music)
            .filter_map(|l| self.column[usize::from(l)])
            .collect();
        if columns.is_empty() || rows.len() < FRAME_LEN {
            return;
        }
        let frames = rows.len() / FRAME_LEN;
        let mut sum = [0f64; FRAME_LEN];
        for row in rows.chunks_exact(FRAME_LEN) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(dequantize(v));
            }
        }
        let mut mean = [0f32; FRAME_LEN];
        for (m, s) in mean.iter_mut().zip(sum) {
            *m = (s / frames as f64) as f32;
        }
        self.samples.push(Sample {
            hash: id_hash(video_id),
            mean,
            columns,
        });
        if self.samples.len() >= 2 * MAX_CLIPS {
            self.keep_sample();
        }
    }

    /// Clips that took part so far (carried a label the fit uses), up to `MAX_CLIPS` (100,000).
    pub fn clips(&self) -> u64 {
        self.samples.len().min(MAX_CLIPS) as u64
    }

    /// Keeps the [`MAX_CLIPS`] clips with the smallest id hashes, in hash order (input order among equals).
    fn keep_sample(&mut self) {
        self.samples.sort_by_key(|s| s.hash);
        self.samples.truncate(MAX_CLIPS);
    }

    /// The model. Fails unless at least two labels have `MIN_CLIPS` (5) clips on each side.
    pub fn finish(self) -> crate::Result<Projection> {
        Ok(self.fit()?)
    }

    /// [`Fit::finish`], its errors as the crate makes them.
    fn fit(mut self) -> Result<Projection> {
        self.keep_sample();
        let n = self.samples.len();
        let mut counts = vec![0usize; DIMENSIONS];
        for sample in &self.samples {
            for &c in &sample.columns {
                counts[usize::from(c)] += 1;
            }
        }
        let fitted: Vec<usize> = (0..DIMENSIONS)
            .filter(|&c| counts[c] >= MIN_CLIPS && n - counts[c] >= MIN_CLIPS)
            .collect();
        if fitted.len() < 2 {
            bail!(
                "cannot learn a projection: {n} of the clips carr{} a music label other than Music (137); the \
                 fit needs at least two such labels on {MIN_CLIPS} clips each, and {MIN_CLIPS} clips without \
                 each (use --projection default or none)",
                if n == 1 { "ies" } else { "y" }
            );
        }
        let (centre, spread) = standardisation(&self.samples);
        let inputs: Vec<f64> = self
            .samples
            .iter()
            .flat_map(|s| {
                s.mean
                    .iter()
                    .zip(&centre)
                    .zip(&spread)
                    .map(|((&x, m), s)| (f64::from(x) - m) / s)
            })
            .collect();
        let mut targets = vec![0f64; n * fitted.len()];
        let slot: Vec<Option<usize>> = (0..DIMENSIONS)
            .map(|c| fitted.iter().position(|&f| f == c))
            .collect();
        for (i, sample) in self.samples.iter().enumerate() {
            for &c in &sample.columns {
                if let Some(j) = slot[usize::from(c)] {
                    targets[i * fitted.len() + j] = 1.0;
                }
            }
        }
        let (weights, bias) = logistic(inputs, targets, n, fitted.len())?;
        let mut matrix = vec![0f32; DIMENSIONS * FRAME_LEN];
        let mut biases = vec![NO_MODEL_BIAS; DIMENSIONS];
        for (j, &c) in fitted.iter().enumerate() {
            for (k, s) in spread.iter().enumerate() {
                // On the raw scale: w (x - centre) / spread.
                matrix[c * FRAME_LEN + k] = (weights[k * fitted.len() + j] / s) as f32;
            }
            biases[c] = bias[j] as f32;
        }
        let mut fit_ids: Vec<u64> = self.samples.iter().map(|s| s.hash).collect();
        fit_ids.sort_unstable();
        fit_ids.dedup();
        Ok(Projection {
            mean: centre.iter().map(|&v| v as f32).collect(),
            matrix,
            bias: biases,
            activation: Activation::Logistic,
            dimensions: DIMENSIONS,
            fit_ids,
        })
    }
}

/// Each input dimension's mean and standard deviation over the samples (1 where it does not vary).
fn standardisation(samples: &[Sample]) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len() as f64;
    let mut centre = vec![0f64; FRAME_LEN];
    for s in samples {
        centre
            .iter_mut()
            .zip(&s.mean)
            .for_each(|(c, &x)| *c += f64::from(x) / n);
    }
    let mut spread = vec![0f64; FRAME_LEN];
    for s in samples {
        for ((v, &x), c) in spread.iter_mut().zip(&s.mean).zip(&centre) {
            *v += (f64::from(x) - c).powi(2) / n;
        }
    }
    spread
        .iter_mut()
        .for_each(|v| *v = if *v > 1e-12 { v.sqrt() } else { 1.0 });
    (centre, spread)
}

/// Fits `labels` logistic regressions on `n` standardised inputs of 128 values (row-major) and their 0/1
/// targets (`n` x `labels`): the weights (128 x `labels`, row-major) and the intercepts.
fn logistic(
    inputs: Vec<f64>,
    targets: Vec<f64>,
    n: usize,
    labels: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let device = Device::Cpu;
    let x = Tensor::from_vec(inputs, (n, FRAME_LEN), &device)?;
    let xt = x.t()?.contiguous()?;
    let prior: Vec<f64> = (0..labels)
        .map(|j| {
            let positive = (0..n).map(|i| targets[i * labels + j]).sum::<f64>() / n as f64;
            (positive / (1.0 - positive)).ln()
        })
        .collect();
    let y = Tensor::from_vec(targets, (n, labels), &device)?;
    // The mean loss's gradient is Lipschitz with constant at most a quarter of the inputs' largest covariance
    // eigenvalue (a sigmoid's slope is at most 1/4), plus the penalty's; the penalty makes it strongly convex.
    let penalty = 1.0 / (INVERSE_REGULARISATION * n as f64);
    let covariance = (xt.matmul(&x)? / n as f64)?;
    let lipschitz = 0.25 * largest_eigenvalue(&covariance)? + penalty;
    let condition = (lipschitz / penalty).sqrt();
    let momentum = (condition - 1.0) / (condition + 1.0);
    let mut w = Tensor::zeros((FRAME_LEN, labels), DType::F64, &device)?;
    let mut b = Tensor::from_vec(prior, (1, labels), &device)?;
    let (mut w_before, mut b_before) = (w.clone(), b.clone());
    for _ in 0..ITERATIONS {
        let w_ahead = (&w + ((&w - &w_before)? * momentum)?)?;
        let b_ahead = (&b + ((&b - &b_before)? * momentum)?)?;
        let logits = x.matmul(&w_ahead)?.broadcast_add(&b_ahead)?;
        let residual = ((logits.neg()?.exp()? + 1.0)?.recip()? - &y)?;
        let w_gradient = ((xt.matmul(&residual)? / n as f64)? + (&w_ahead * penalty)?)?;
        let b_gradient = (residual.sum_keepdim(0)? / n as f64)?;
        w_before = w;
        b_before = b;
        w = (w_ahead - (w_gradient / lipschitz)?)?;
        b = (b_ahead - (b_gradient / lipschitz)?)?;
    }
    Ok((w.flatten_all()?.to_vec1()?, b.flatten_all()?.to_vec1()?))
}

/// The largest eigenvalue of a symmetric positive semi-definite matrix, by power iteration (the matrix is
/// 128 x 128; 300 steps from a vector of ones settle it far below what the step size needs).
fn largest_eigenvalue(matrix: &Tensor) -> Result<f64> {
    let size = matrix.dim(0)?;
    let mut v = Tensor::ones((size, 1), DType::F64, matrix.device())?;
    let mut value = 0.0;
    for _ in 0..300 {
        let next = matrix.matmul(&v)?;
        value = next.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        if value == 0.0 {
            break;
        }
        v = (next / value)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_output_per_music_label_but_music() {
        let labels = output_labels();
        assert_eq!(labels.len(), DIMENSIONS);
        assert!(!labels.contains(&labels::MUSIC));
    }

    #[test]
    fn the_fit_separates_two_labels_and_says_when_it_cannot() {
        // Two labels told apart by the first dimension (raw 200 or 50), the rest noise-free constants.
        let (guitar, piano) = (140i64, 153i64);
        let mut fit = Fit::default();
        for i in 0..40 {
            let (label, value) = if i % 2 == 0 {
                (guitar, 200.0)
            } else {
                (piano, 50.0)
            };
            let mut rows = vec![128f32; FRAME_LEN];
            rows[0] = value + (i % 5) as f32;
            fit.add(&format!("clip{i}"), &[137, label], &rows);
        }
        assert_eq!(fit.clips(), 40);
        let model = fit.finish().unwrap();
        let columns = output_labels();
        let column = |l: i64| columns.iter().position(|&c| i64::from(c) == l).unwrap();
        // 40 clips are few: the penalty keeps the probabilities away from 0 and 1, not their order.
        let probabilities = |first: f32| {
            let mut rows = vec![128f32; FRAME_LEN];
            rows[0] = first;
            let mut out = vec![0f32; DIMENSIONS];
            model.project_raw(&rows, &mut out);
            (out[column(guitar)], out[column(piano)], out[column(30)])
        };
        let (g, p, none) = probabilities(201.0);
        assert!(g > 0.6 && p < 0.4, "guitar-like: {g} {p}");
        assert!(none < 1e-9, "a label without clips has no model: {none}");
        let (g, p, _) = probabilities(52.0);
        assert!(g < 0.4 && p > 0.6, "piano-like: {g} {p}");

        let mut one = Fit::default();
        one.add("a", &[137, guitar], &[1.0; FRAME_LEN]);
        let error = one.finish().unwrap_err().to_string();
        assert!(error.contains("1 of the clips carries"), "{error}");
    }
}
