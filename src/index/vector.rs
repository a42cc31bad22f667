//! From embedding rows to the vectors the index holds, and the exact distances the ground truth uses.
//!
//! Rows are de-quantized to VGGish's float range (`value / 255 * 4 - 2`) first: cosine over the raw bytes is
//! dominated by their common offset near 128. Measured on bal_train's music clips with an exact cosine search,
//! the de-quantized mean scores a higher label precision@10 (see `evaluate`) than the raw bytes of ten frames or
//! the same frames de-quantized, so it is the default form (the mean's figure: docs/bench-log.md,
//! "index and recommend (real bal_train music clips)").

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::tfrecord::sequence_example::FRAME_LEN;

/// How a clip's frames become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Names for the values of the settings' enums: what a user types (`--metric angular`), what `info` shows and
/// what the settings store (serde's lowercase names, the same words).
macro_rules! named {
    ($type:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every value, in the order a help text lists them.
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.name() == text).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                    format!("expected one of {}, got {text:?}", names.join(", "))
                })
            }
        }
    };
}

named!(Form { Mean => "mean", Flat => "flat" });
named!(Metric { Angular => "angular", Euclidean => "euclidean", Manhattan => "manhattan", Dot => "dot" });

/// The distance the index ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    if start.checked_add(frames).is_none_or(|end| rows.len() < end) {
        bail!(
            "the embedding has {} row{}; {frames} are needed{}",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
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
