//! The VGGish network in candle, and the whole path from weights and examples to AudioSet's 8-bit embeddings.
//!
//! The layers follow the TensorFlow reference (`vggish_slim`), which AudioSet's released embeddings came from,
//! rather than torchvggish where the two differ: the last fully connected layer has no ReLU (torchvggish keeps
//! one by mistake), and the convolutions' output is flattened in TensorFlow's height-width-channel order.

use anyhow::{Context, Result, anyhow};
use candle_core::{D, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear};

use super::logmel::{EXAMPLE_FRAMES, Example, MEL_BANDS};
use super::weights::{EMBEDDING_LEN, Weights};

/// Examples per forward pass. Large batches amortise the fully connected layers' weight reads (72M parameters,
/// read once per batch); 32 was the fastest in a trial on 2 cores, and keeps activations under ~300 MB.
pub const BATCH: usize = 32;

/// One raw embedding: the network's 128 outputs before PCA.
pub type RawEmbedding = [f32; EMBEDDING_LEN];

/// The network, ready to run on the CPU.
pub struct Vggish {
    /// The six convolutions, each followed by ReLU, and whether a 2x2 max-pool follows.
    convs: Vec<(Conv2d, bool)>,
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
        let conv_config = Conv2dConfig {
            padding: 1,
            ..Conv2dConfig::default()
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
            let conv = Conv2d::new(
                tensor(&format!("features.{index}.weight"))?,
                Some(tensor(&format!("features.{index}.bias"))?),
                conv_config,
            );
            convs.push((conv, pool));
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
            let flat: Vec<f32> = batch
                .iter()
                .flat_map(|example| example.iter().flatten().copied())
                .collect();
            // [N, 1, 96, 64]: one channel, time as the height.
            let input = Tensor::from_vec(
                flat,
                (batch.len(), 1, EXAMPLE_FRAMES, MEL_BANDS),
                &Device::Cpu,
            )?;
            let output = self
                .forward(&input)
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

    /// `[N, 1, 96, 64]` log-mel examples to `[N, 128]` raw embeddings.
    pub fn forward(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = input.clone();
        for (conv, pool) in &self.convs {
            x = conv.forward(&x)?.relu()?;
            if *pool {
                x = x.max_pool2d(2)?;
            }
        }
        // [N, 512, 6, 4] to TensorFlow's [N, 6, 4, 512] before flattening: the first fully connected layer's
        // weights expect that order.
        let mut x = x.permute((0, 2, 3, 1))?.contiguous()?.flatten_from(1)?;
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
