//! The VGGish network in candle, and the whole path from weights and examples to AudioSet's 8-bit embeddings.
//!
//! The layers follow the TensorFlow reference (`vggish_slim`), which AudioSet's released embeddings came from,
//! rather than torchvggish where the two differ: the last fully connected layer has no ReLU (torchvggish keeps
//! one by mistake), and the convolutions' output is flattened in TensorFlow's height-width-channel order.
//!
//! The convolutions run channels-last (as TensorFlow's do): each is our own im2col, which gathers a pixel's 3x3
//! neighbourhood as nine contiguous runs of channels, then one candle matrix product with the kernel laid out
//! to match. candle 0.11's own `conv2d` (a tiled im2col over channels-first tensors) spent a large share of a
//! song's embedding time gathering, and this one spends a small share (docs/bench-log.md, "Audio in: `embed`
//! against torchvggish", its table of stages). Channels-last also makes the final flatten TensorFlow's order
//! with no permute.

use anyhow::{Context, Result, anyhow};
use candle_core::{D, Device, Module, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use super::logmel::{EXAMPLE_FRAMES, Example, MEL_BANDS};
use super::weights::{EMBEDDING_LEN, Weights};

/// Examples per forward pass. Large batches amortise the fully connected layers' weight reads (72M parameters,
/// read once per batch); 32 was the fastest size in a trial, made before the convolutions took `CONV_CHUNK`
/// examples at a time. Time a change with `scripts/bench_audio.py` (BENCHMARKS.md, "Audio in: `embed`").
pub const BATCH: usize = 32;

/// Examples per pass through the convolutions: at 8 the largest buffer (the second layer's im2col, 28 MB) stays
/// under glibc's largest mmap threshold, so that where a host keeps freed blocks in the heap (the command line
/// does: `keep_freed_memory` in its main.rs) no pass maps fresh pages.
const CONV_CHUNK: usize = 8;

/// One raw embedding: the network's 128 outputs before PCA.
pub type RawEmbedding = [f32; EMBEDDING_LEN];

/// A 3x3 convolution with padding 1, ReLU, and optionally a 2x2 max-pool, on channels-last activations.
struct Conv {
    /// `[9 * c_in, c_out]`: rows in the order im2col writes a neighbourhood (kernel row, kernel column, channel).
    kernel: Tensor,
    bias: Tensor,
    c_in: usize,
    c_out: usize,
    pool: bool,
}

/// Activations of a batch, channels-last: `[n, height, width, channels]` flattened.
struct Activations {
    data: Vec<f32>,
    n: usize,
    height: usize,
    width: usize,
    channels: usize,
}

impl Conv {
    /// From torchvggish's `[c_out, c_in, 3, 3]` weight and `[c_out]` bias.
    fn new(weight: &Tensor, bias: Tensor, pool: bool) -> Result<Conv> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        if (kh, kw) != (3, 3) {
            return Err(anyhow!("a VGGish convolution is 3x3, not {kh}x{kw}"));
        }
        let kernel = weight
            .permute((2, 3, 1, 0))?
            .contiguous()?
            .reshape((9 * c_in, c_out))?;
        Ok(Conv {
            kernel,
            bias,
            c_in,
            c_out,
            pool,
        })
    }

    fn forward(&self, x: &Activations) -> Result<Activations> {
        debug_assert_eq!(x.channels, self.c_in);
        let (h, w, c) = (x.height, x.width, x.channels);
        let row = 9 * c;
        // Each output pixel's row: its 3x3 neighbourhood, zeros outside the image (padding 1).
        let mut columns = vec![0f32; x.n * h * w * row];
        columns
            .par_chunks_mut(w * row)
            .enumerate()
            .for_each(|(line, out)| {
                let (image, y) = (line / h, line % h);
                let source = &x.data[image * h * w * c..(image + 1) * h * w * c];
                for xx in 0..w {
                    let pixel = &mut out[xx * row..(xx + 1) * row];
                    for ky in 0..3 {
                        let Some(sy) = (y + ky).checked_sub(1).filter(|&sy| sy < h) else {
                            continue;
                        };
                        for kx in 0..3 {
                            let Some(sx) = (xx + kx).checked_sub(1).filter(|&sx| sx < w) else {
                                continue;
                            };
                            let at = (sy * w + sx) * c;
                            let to = (ky * 3 + kx) * c;
                            pixel[to..to + c].copy_from_slice(&source[at..at + c]);
                        }
                    }
                }
            });
        let pixels = x.n * h * w;
        let columns = Tensor::from_vec(columns, (pixels, row), &Device::Cpu)?;
        let out = columns
            .matmul(&self.kernel)?
            .broadcast_add(&self.bias)?
            .relu()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let out = Activations {
            data: out,
            n: x.n,
            height: h,
            width: w,
            channels: self.c_out,
        };
        Ok(if self.pool { out.max_pool() } else { out })
    }
}

impl Activations {
    /// 2x2 max-pool with stride 2 (the sizes here are all even).
    fn max_pool(&self) -> Activations {
        let (h, w, c) = (self.height / 2, self.width / 2, self.channels);
        let mut data = vec![0f32; self.n * h * w * c];
        data.par_chunks_mut(w * c)
            .enumerate()
            .for_each(|(line, out)| {
                let (image, y) = (line / h, line % h);
                let at = |yy: usize, xx: usize| {
                    let start = ((image * self.height + yy) * self.width + xx) * c;
                    &self.data[start..start + c]
                };
                for xx in 0..w {
                    let cell = &mut out[xx * c..(xx + 1) * c];
                    let quad = [
                        at(2 * y, 2 * xx),
                        at(2 * y, 2 * xx + 1),
                        at(2 * y + 1, 2 * xx),
                        at(2 * y + 1, 2 * xx + 1),
                    ];
                    for (k, v) in cell.iter_mut().enumerate() {
                        *v = quad[0][k].max(quad[1][k]).max(quad[2][k]).max(quad[3][k]);
                    }
                }
            });
        Activations {
            data,
            n: self.n,
            height: h,
            width: w,
            channels: c,
        }
    }
}

/// The network, ready to run on the CPU.
pub struct Vggish {
    /// The six convolutions, each followed by ReLU, four of them by a 2x2 max-pool.
    convs: Vec<Conv>,
    /// The three fully connected layers; ReLU after all but the last.
    fcs: Vec<Linear>,
}

impl Vggish {
    pub fn new(weights: &Weights) -> Result<Vggish> {
        let tensor = |name: &str| -> Result<Tensor> {
            weights
                .tensors
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow!("the weights have no {name}"))
        };
        let mut convs = Vec::new();
        // torchvggish's `features` indices; a pool follows 0, 3, 8 and 13.
        for (index, pool) in [
            (0, true),
            (3, true),
            (6, false),
            (8, true),
            (11, false),
            (13, true),
        ] {
            convs.push(Conv::new(
                &tensor(&format!("features.{index}.weight"))?,
                tensor(&format!("features.{index}.bias"))?,
                pool,
            )?);
        }
        let fcs = [0, 2, 4]
            .iter()
            .map(|index| {
                Ok(Linear::new(
                    tensor(&format!("embeddings.{index}.weight"))?,
                    Some(tensor(&format!("embeddings.{index}.bias"))?),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vggish { convs, fcs })
    }

    /// The raw embeddings of up to any number of examples, one forward pass per [`BATCH`] of them; `done` is
    /// called with the number of examples finished after each pass.
    pub fn embed(
        &self,
        examples: &[Example],
        mut done: impl FnMut(usize),
    ) -> Result<Vec<RawEmbedding>> {
        let mut out = Vec::with_capacity(examples.len());
        for batch in examples.chunks(BATCH) {
            let output = self
                .forward(batch)
                .context("VGGish's forward pass failed")?;
            for row in output.to_vec2::<f32>()? {
                let mut embedding = [0f32; EMBEDDING_LEN];
                embedding.copy_from_slice(&row);
                out.push(embedding);
            }
            done(batch.len());
        }
        Ok(out)
    }

    /// Log-mel examples (96 frames of 64 bands: time is the height, one channel) to `[N, 128]` raw embeddings.
    pub fn forward(&self, examples: &[Example]) -> Result<Tensor> {
        // The convolutions take a few examples at a time (see CONV_CHUNK); the fully connected layers all.
        let mut features = Vec::new();
        for chunk in examples.chunks(CONV_CHUNK) {
            let mut x = Activations {
                data: chunk
                    .iter()
                    .flat_map(|example| example.iter().flatten().copied())
                    .collect(),
                n: chunk.len(),
                height: EXAMPLE_FRAMES,
                width: MEL_BANDS,
                channels: 1,
            };
            for conv in &self.convs {
                x = conv.forward(&x)?;
            }
            // [n, 6, 4, 512], already TensorFlow's order for the first fully connected layer.
            features.extend_from_slice(&x.data);
        }
        let width = features.len() / examples.len().max(1);
        let mut x = Tensor::from_vec(features, (examples.len(), width), &Device::Cpu)?;
        let last = self.fcs.len() - 1;
        for (i, fc) in self.fcs.iter().enumerate() {
            x = fc.forward(&x)?;
            // No ReLU after the last layer: the reference's fc2 has activation_fn=None.
            if i < last {
                x = x.relu()?;
            }
        }
        debug_assert_eq!(x.dim(D::Minus1).ok(), Some(EMBEDDING_LEN));
        Ok(x)
    }
}
