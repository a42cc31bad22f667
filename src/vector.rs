//! From embedding rows to the vectors the index holds, and the exact distances the ground truth uses.
//!
//! Rows are de-quantized to VGGish's float range (`value / 255 * 4 - 2`) first: cosine over the raw bytes is
//! dominated by their common offset near 128 (label precision@10 0.24 raw against 0.31 de-quantized, measured
//! on bal_train; see `../shared/notes/audioset.md`).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::sequence_example::FRAME_LEN;

/// How a clip's frames become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// The mean of the de-quantized frames: 128 dimensions.
    Mean,
    /// The de-quantized frames concatenated: frames x 128 dimensions.
    Flat,
}

impl Form {
    pub fn dimensions(self, frames: usize) -> usize {
        match self {
            Form::Mean => FRAME_LEN,
            Form::Flat => FRAME_LEN * frames,
        }
    }
}

/// The distance the index ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine distance, reported as (1 - cos) / 2 in [0, 1] (Annoy's "angular" ranks the same).
    Angular,
    Euclidean,
    Manhattan,
    /// Larger dot product is nearer; reported as the negated dot product.
    Dot,
}

pub fn dequantize(value: f32) -> f32 {
    value / 255.0 * 4.0 - 2.0
}

/// Checks embedding rows (128 values in 0..=255 each, at least `frames` of them, starting at `start`) and turns
/// the `frames` rows from `start` on into a vector of the given form. The error says what is wrong.
pub fn from_rows(rows: &[Vec<f32>], start: usize, frames: usize, form: Form) -> Result<Vec<f32>> {
    if rows.len() < start + frames {
        bail!(
            "the embedding has {} rows; {frames} are needed{}",
            rows.len(),
            if start > 0 {
                format!(" from row {start}")
            } else {
                String::new()
            }
        );
    }
    let rows = &rows[start..start + frames];
    for (i, row) in rows.iter().enumerate() {
        if row.len() != FRAME_LEN {
            bail!(
                "embedding row {} has {} values, not {FRAME_LEN}",
                start + i,
                row.len()
            );
        }
        if let Some(v) = row.iter().find(|v| !(0.0..=255.0).contains(*v)) {
            bail!("embedding row {} holds {v}, outside 0..255", start + i);
        }
    }
    Ok(match form {
        Form::Flat => rows.iter().flatten().map(|&v| dequantize(v)).collect(),
        Form::Mean => {
            let mut mean = vec![0f32; FRAME_LEN];
            for row in rows {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += dequantize(v);
                }
            }
            mean.iter_mut().for_each(|m| *m /= frames as f32);
            mean
        }
    })
}

/// Vectors stored contiguously for the exact scan, pre-normalized for the angular metric so that each distance
/// is one dot product the compiler vectorizes.
pub struct Matrix {
    pub dimensions: usize,
    pub metric: Metric,
    data: Vec<f32>,
    pub items: Vec<u32>,
}

impl Matrix {
    pub fn new(dimensions: usize, metric: Metric) -> Self {
        Matrix {
            dimensions,
            metric,
            data: Vec::new(),
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, item: u32, vector: &[f32]) {
        self.items.push(item);
        self.data.extend_from_slice(vector);
        if self.metric == Metric::Angular {
            let start = self.data.len() - vector.len();
            normalize(&mut self.data[start..]);
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `count` nearest items to `query` among those `keep` accepts, nearest first, with distances on the
    /// same scale as the index reports.
    pub fn nearest(
        &self,
        query: &[f32],
        count: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let mut query = query.to_vec();
        if self.metric == Metric::Angular {
            normalize(&mut query);
        }
        let mut scored: Vec<(u32, f32)> = self
            .data
            .chunks_exact(self.dimensions)
            .zip(&self.items)
            .filter(|(_, item)| keep(**item))
            .map(|(row, &item)| (item, distance(self.metric, row, &query)))
            .collect();
        let count = count.min(scored.len());
        if count == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(count - 1, |a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        scored.truncate(count);
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        scored
    }
}

fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The distance between two vectors (the first of them normalized already for angular).
pub fn distance(metric: Metric, row: &[f32], query: &[f32]) -> f32 {
    match metric {
        Metric::Angular => (1.0 - dot(row, query).clamp(-1.0, 1.0)) / 2.0,
        Metric::Euclidean => row
            .iter()
            .zip(query)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt(),
        Metric::Manhattan => row.iter().zip(query).map(|(a, b)| (a - b).abs()).sum(),
        Metric::Dot => -dot(row, query),
    }
}
