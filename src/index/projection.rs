//! The projection: how each VGGish frame is turned into what the index compares, `f(W (x - mean) + bias)`,
//! applied alike to the clips indexed and to every query (ids, embeddings, audio).
//!
//! Why: cosine over the raw VGGish space weighs every direction alike, and many directions (loudness,
//! recording quality) say little about genre or instrument. The default is a model learned from AudioSet's
//! music labels (`fit.rs`): a frame becomes its probabilities of the 149 music labels, and a clip the mean of
//! its frames' probabilities, so that clips compare by what they sound like they are. A projection can also
//! be linear (`f` the identity): one read from a JSON file, or one an index of an earlier version holds.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::index::scan;
use crate::index::vector::{Form, dequantize};
use crate::tfrecord::sequence_example::FRAME_LEN;

/// The most output dimensions a projection may have (a JSON file's rows).
pub const MAX_DIMENSIONS: usize = 1024;

/// The default projection, fit on bal_train's music clips (the first 10 frames of each), in the byte form of
/// [`Projection::to_bytes`]: made by `cargo run --release --example fit_projection`.
const DEFAULT_BYTES: &[u8] = include_bytes!("../data/projection.bin");

const MAGIC: &[u8; 4] = b"SAPJ";

/// Where an index's projection came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Compiled in: fit on AudioSet bal_train's music clips.
    Default,
    /// Fit on the index's own labelled clips when it was built.
    Learned,
    /// Read from a file or another index.
    File,
}

/// What `info` and `evaluate` say about an index's projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `None`: no projection; the vectors are VGGish's 128 dimensions.
    pub kind: Option<Kind>,
    /// A file's or index's path, for `Kind::File`.
    pub source: Option<String>,
    /// The dimensions each frame is projected to (128 without a projection).
    pub dimensions: usize,
    /// How many clips the projection was fit on (0 when unknown, as for a matrix from a JSON file).
    pub fit_clips: u64,
}

impl Summary {
    pub fn none() -> Summary {
        Summary {
            kind: None,
            source: None,
            dimensions: FRAME_LEN,
            fit_clips: 0,
        }
    }

    /// For people: "default (fit on 6320 AudioSet bal_train music clips), 149 dimensions".
    pub fn describe(&self) -> String {
        let fit = |what: &str| format!("fit on {} {what}", self.fit_clips);
        match &self.kind {
            None => "none (VGGish's 128 dimensions)".into(),
            Some(Kind::Default) => format!(
                "default ({}), {} dimensions",
                fit("AudioSet bal_train music clips"),
                self.dimensions
            ),
            Some(Kind::Learned) => format!(
                "learned ({}), {} dimensions",
                fit("labelled clips of this index, when it was built"),
                self.dimensions
            ),
            Some(Kind::File) => format!(
                "from {}{}, {} dimensions",
                self.source.as_deref().unwrap_or("a file"),
                if self.fit_clips > 0 {
                    format!(" ({})", fit("clips"))
                } else {
                    String::new()
                },
                self.dimensions
            ),
        }
    }
}

/// What is applied to `W (x - mean) + bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: a linear map.
    Linear,
    /// The logistic function, one probability per output (the learned label model).
    Logistic,
}

impl Activation {
    /// Its word in the byte form.
    fn code(self) -> u32 {
        match self {
            Activation::Linear => 0,
            Activation::Logistic => 1,
        }
    }

    fn from_code(code: u32) -> Option<Activation> {
        [Activation::Linear, Activation::Logistic]
            .into_iter()
            .find(|a| a.code() == code)
    }

    /// Its name in the JSON form.
    fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Logistic => "logistic",
        }
    }

    fn from_name(name: &str) -> Option<Activation> {
        [Activation::Linear, Activation::Logistic]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// A projection: `y = f(W (x - mean) + bias)` for each de-quantized frame `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// 128 values.
    pub mean: Vec<f32>,
    /// `dimensions` rows of 128 values.
    pub matrix: Vec<f32>,
    /// `dimensions` values.
    pub bias: Vec<f32>,
    pub activation: Activation,
    pub dimensions: usize,
    /// The video_ids it was fit on, as sorted 64-bit FNV-1a hashes: what tells `evaluate` whether a query took
    /// part in the fit (in-sample). Empty when unknown.
    pub fit_ids: Vec<u64>,
}

/// A video_id's hash in [`Projection::fit_ids`].
pub fn id_hash(video_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in video_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Projection {
    /// The compiled-in default.
    pub fn default_fit() -> &'static Projection {
        static DEFAULT: OnceLock<Projection> = OnceLock::new();
        DEFAULT.get_or_init(|| {
            // The file is checked in and tested; it cannot fail to read.
            Projection::from_bytes(DEFAULT_BYTES)
                .unwrap_or_else(|| Projection::linear(identity(), None))
        })
    }

    /// A linear projection of `matrix` (rows of 128 values), centred on `mean` (zero when `None`).
    pub fn linear(matrix: Vec<f32>, mean: Option<Vec<f32>>) -> Projection {
        let dimensions = matrix.len() / FRAME_LEN;
        Projection {
            mean: mean.unwrap_or_else(|| vec![0.0; FRAME_LEN]),
            matrix,
            bias: vec![0.0; dimensions],
            activation: Activation::Linear,
            dimensions,
            fit_ids: Vec::new(),
        }
    }

    /// Projects frames of raw values (0..=255, as stored; 128 a frame) into `out` (`dimensions` values a
    /// frame), the matrix's rows applied to several frames at once by the scan's dot kernel.
    pub fn project_raw(&self, raw: &[f32], out: &mut [f32]) {
        let centred: Vec<f32> = raw
            .chunks_exact(FRAME_LEN)
            .flat_map(|frame| {
                frame
                    .iter()
                    .zip(&self.mean)
                    .map(|(&v, &m)| dequantize(v) - m)
            })
            .collect();
        let frames: Vec<&[f32]> = centred.chunks_exact(FRAME_LEN).collect();
        let mut products = vec![Vec::with_capacity(self.dimensions); frames.len()];
        scan::dot_products(&self.matrix, FRAME_LEN, &frames, &mut products);
        for (out, products) in out.chunks_exact_mut(self.dimensions).zip(&products) {
            for ((o, &y), &b) in out.iter_mut().zip(products).zip(&self.bias) {
                let y = y + b;
                *o = match self.activation {
                    Activation::Linear => y,
                    Activation::Logistic => 1.0 / (1.0 + (-y).exp()),
                };
            }
        }
    }

    pub fn is_fit_on(&self, video_id: &str) -> bool {
        self.fit_ids.binary_search(&id_hash(video_id)).is_ok()
    }

    /// Little-endian: "SAPJ", version 2, dimensions, number of fit ids, activation (0 linear, 1 logistic; u32
    /// each); the mean (128 f32), the matrix (dimensions x 128 f32), the bias (dimensions f32), the fit ids
    /// (u64). Version 1 (format 4 indexes) had no activation word and no bias: linear, bias zero.
    pub fn to_bytes(&self) -> Vec<u8> {
        let floats = self.mean.len() + self.matrix.len() + self.bias.len();
        let mut bytes = Vec::with_capacity(20 + 4 * floats + 8 * self.fit_ids.len());
        bytes.extend_from_slice(MAGIC);
        for word in [
            2u32,
            self.dimensions as u32,
            self.fit_ids.len() as u32,
            self.activation.code(),
        ] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for v in self.mean.iter().chain(&self.matrix).chain(&self.bias) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for id in &self.fit_ids {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Projection> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(*rest.get(at..at + 4)?.first_chunk()?))
        };
        let (version, dimensions, ids) = (word(0)?, word(4)? as usize, word(8)? as usize);
        let (activation, header, bias_len) = match version {
            1 => (Activation::Linear, 12, 0),
            2 => (Activation::from_code(word(12)?)?, 16, dimensions),
            _ => return None,
        };
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return None;
        }
        let floats = FRAME_LEN * (1 + dimensions) + bias_len;
        let body = rest.get(header..)?;
        if body.len() != floats * 4 + ids * 8 {
            return None;
        }
        let (floats, ids) = body.split_at(floats * 4);
        let (mean, rest) = floats.split_at(FRAME_LEN * 4);
        let (matrix, bias) = rest.split_at(FRAME_LEN * dimensions * 4);
        // Each part decoded once into its own vector: a one-shot query's process pays a page fault for each
        // fresh page it writes, and the matrix alone is 19 pages.
        let finite = |bytes: &[u8]| -> Option<Vec<f32>> {
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            values.iter().all(|v| v.is_finite()).then_some(values)
        };
        Some(Projection {
            mean: finite(mean)?,
            matrix: finite(matrix)?,
            bias: if bias.is_empty() {
                vec![0.0; dimensions]
            } else {
                finite(bias)?
            },
            activation,
            dimensions,
            fit_ids: ids
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        })
    }

    /// A projection from a JSON file: `{"matrix": [[128 numbers], ...], "mean": [128 numbers], "bias":
    /// [numbers], "activation": "linear" | "logistic"}` (1 to 1024 rows; `mean` and `bias` optional, zero by
    /// default; `activation` linear by default), or a bare 2-D array (the matrix). The error names what is
    /// wrong.
    pub fn from_json_file(path: &Path) -> crate::Result<Projection> {
        Ok(Self::read_json_file(path)?)
    }

    /// [`Projection::from_json_file`], its errors as the crate makes them.
    fn read_json_file(path: &Path) -> Result<Projection> {
        let name = path.display();
        let text = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        if text.len() > 16 << 20 {
            bail!("{name}: longer than 16 MiB: not a projection");
        }
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            anyhow!(
                "{name}: not a projection: {e} (expected JSON {{\"matrix\": [[128 numbers], ...], \"mean\": [128 \
                 numbers]}}, or an index directory)"
            )
        })?;
        let empty = serde_json::Map::new();
        let (matrix, map) = match &value {
            serde_json::Value::Array(_) => (&value, &empty),
            serde_json::Value::Object(map) => (
                map.get("matrix")
                    .ok_or_else(|| anyhow!("{name}: not a projection: no \"matrix\" key"))?,
                map,
            ),
            _ => bail!("{name}: not a projection: expected a JSON object with a \"matrix\""),
        };
        let rows: Vec<Vec<f32>> = serde_json::from_value(matrix.clone()).map_err(|e| {
            anyhow!("{name}: the projection's matrix is not a 2-D array of numbers: {e}")
        })?;
        if rows.is_empty() || rows.len() > MAX_DIMENSIONS {
            bail!(
                "{name}: the projection has {} rows; it needs 1 to {MAX_DIMENSIONS} rows of {FRAME_LEN} values",
                rows.len()
            );
        }
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != FRAME_LEN) {
            bail!(
                "{name}: the projection's row {i} has {} values, not {FRAME_LEN} (VGGish's dimensions)",
                row.len()
            );
        }
        let numbers = |key: &str, len: usize| -> Result<Vec<f32>> {
            let Some(value) = map.get(key) else {
                return Ok(vec![0.0; len]);
            };
            let numbers: Vec<f32> = serde_json::from_value(value.clone()).map_err(|e| {
                anyhow!("{name}: the projection's {key} is not a list of numbers: {e}")
            })?;
            if numbers.len() != len {
                bail!(
                    "{name}: the projection's {key} has {} values, not {len}",
                    numbers.len()
                );
            }
            Ok(numbers)
        };
        let mean = numbers("mean", FRAME_LEN)?;
        let bias = numbers("bias", rows.len())?;
        let activation = match map.get("activation") {
            None => Activation::Linear,
            Some(value) => value.as_str().and_then(Activation::from_name).ok_or_else(|| {
                anyhow!(
                    "{name}: the projection's activation is {value}; it must be \"linear\" or \"logistic\""
                )
            })?,
        };
        let matrix: Vec<f32> = rows.into_iter().flatten().collect();
        if matrix
            .iter()
            .chain(&mean)
            .chain(&bias)
            .any(|v| !v.is_finite())
        {
            bail!("{name}: the projection holds a value that is not a finite number");
        }
        Ok(Projection {
            activation,
            bias,
            ..Projection::linear(matrix, Some(mean))
        })
    }

    /// The JSON form [`Projection::from_json_file`] reads.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<&[f32]> = self.matrix.chunks_exact(FRAME_LEN).collect();
        serde_json::json!({"mean": self.mean, "matrix": rows, "bias": self.bias, "activation": self.activation.name()})
    }
}

fn identity() -> Vec<f32> {
    let mut m = vec![0f32; FRAME_LEN * FRAME_LEN];
    for i in 0..FRAME_LEN {
        m[i * FRAME_LEN + i] = 1.0;
    }
    m
}

/// How an index turns a clip's rows into what it stores and compares: its vector (for the searches) and its
/// frames' codes (for the re-rank). The same for a clip being indexed and for a query, so that a clip given as
/// an embedding gets exactly the vector it has in the index.
#[derive(Debug, Clone)]
pub struct ClipForm {
    pub projection: Option<Projection>,
    pub frames: usize,
    pub form: Form,
}

/// A query given by its rows, in the index's terms.
#[derive(Debug, Clone)]
pub struct QueryVector {
    /// In arroy's form (before `scan::prepare`), as `vector::from_rows` made it before projections.
    pub vector: Vec<f32>,
    /// Its frames' codes, as the index stores a clip's (see [`ClipForm::frame_codes`]).
    pub codes: Vec<i8>,
}

impl ClipForm {
    /// Dimensions of one projected frame.
    pub fn frame_dimensions(&self) -> usize {
        self.projection.as_ref().map_or(FRAME_LEN, |p| p.dimensions)
    }

    /// Checks rows as `vector::from_rows` does and takes the `frames` rows from `start` on.
    pub fn query(&self, rows: &[Vec<f32>], start: usize) -> Result<QueryVector> {
        self.query_rows(rows, start, self.frames)
    }

    /// As [`ClipForm::query`], with `count` rows instead of the index's frames: fewer only for a mean vector
    /// (an audio excerpt shorter than a clip: the mean of the rows there are, and that many frames to re-rank).
    pub fn query_rows(&self, rows: &[Vec<f32>], start: usize, count: usize) -> Result<QueryVector> {
        // The checks and the unprojected vector: exactly today's arithmetic.
        let plain = crate::index::vector::from_rows(rows, start, count, self.form)?;
        let raw: Vec<f32> = rows[start..start + count]
            .iter()
            .flatten()
            .copied()
            .collect();
        Ok(self.of_raw(&raw, plain))
    }

    /// A clip of `frames` x 128 raw values, already checked (see `vector::from_rows`).
    pub fn clip(&self, raw: &[f32]) -> QueryVector {
        let rows: Vec<Vec<f32>> = raw.chunks_exact(FRAME_LEN).map(<[f32]>::to_vec).collect();
        let plain = crate::index::vector::from_rows(&rows, 0, self.frames, self.form)
            .unwrap_or_else(|_| vec![0.0; self.form.dimensions(self.frames)]);
        self.of_raw(raw, plain)
    }

    fn of_raw(&self, raw: &[f32], plain: Vec<f32>) -> QueryVector {
        let d = self.frame_dimensions();
        let mut projected = vec![0f32; d * (raw.len() / FRAME_LEN)];
        match &self.projection {
            None => {
                for (out, &v) in projected.iter_mut().zip(raw) {
                    *out = dequantize(v);
                }
            }
            Some(p) => p.project_raw(raw, &mut projected),
        }
        let vector = match (&self.projection, self.form) {
            (None, _) => plain,
            // The mean of the projected frames (for a linear projection, the projected mean up to rounding).
            (Some(_), Form::Mean) => {
                let frames = (projected.len() / d).max(1) as f32;
                let mut out = vec![0f32; d];
                for frame in projected.chunks_exact(d) {
                    out.iter_mut().zip(frame).for_each(|(o, v)| *o += v);
                }
                out.iter_mut().for_each(|o| *o /= frames);
                out
            }
            (Some(_), Form::Flat) => projected.clone(),
        };
        QueryVector {
            vector,
            codes: frame_codes(&projected, d),
        }
    }
}

/// Each frame normalised to unit length and stored as signed bytes (x 127): what the re-rank compares.
pub fn frame_codes(frames: &[f32], dimensions: usize) -> Vec<i8> {
    let mut codes = Vec::with_capacity(frames.len());
    for frame in frames.chunks_exact(dimensions) {
        let norm = frame.iter().map(|v| v * v).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 127.0 / norm } else { 0.0 };
        codes.extend(
            frame
                .iter()
                .map(|v| (v * scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reads_and_round_trips() {
        let p = Projection::default_fit();
        assert_eq!(p.dimensions, crate::index::fit::DIMENSIONS);
        assert_eq!(p.activation, Activation::Logistic);
        assert_eq!(p.matrix.len(), p.dimensions * FRAME_LEN);
        assert_eq!(Projection::from_bytes(&p.to_bytes()).as_ref(), Some(p));
    }

    #[test]
    fn a_version_1_projection_reads_as_linear() {
        // What a format 4 index holds: no activation word, no bias.
        let mut bytes = MAGIC.to_vec();
        for word in [1u32, 1, 0] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for i in 0..2 * FRAME_LEN {
            bytes.extend_from_slice(&(if i == FRAME_LEN { 2f32 } else { 0.0 }).to_le_bytes());
        }
        let p = Projection::from_bytes(&bytes).unwrap();
        assert_eq!(
            p,
            Projection::linear([2.0].into_iter().chain([0.0; 127]).collect(), None)
        );
        let mut out = [0f32];
        p.project_raw(&[255.0; FRAME_LEN], &mut out);
        assert_eq!(out, [4.0]);
        assert_eq!(Projection::from_bytes(&p.to_bytes()), Some(p));
    }

    #[test]
    fn frames_projected_together_equal_each_frame_by_hand() {
        // The default model: logistic, 149 rows; 7 frames, so that the kernel's groups of three end short.
        let p = Projection::default_fit();
        let raw: Vec<f32> = (0..7 * FRAME_LEN)
            .map(|i| (crate::index::hash::hash(3, i as u64, 0, 0) % 256) as f32)
            .collect();
        let mut out = vec![0f32; 7 * p.dimensions];
        p.project_raw(&raw, &mut out);
        for (frame, got) in raw
            .chunks_exact(FRAME_LEN)
            .zip(out.chunks_exact(p.dimensions))
        {
            for (d, &got) in got.iter().enumerate() {
                let row = &p.matrix[d * FRAME_LEN..][..FRAME_LEN];
                let y: f64 = row
                    .iter()
                    .zip(frame)
                    .zip(&p.mean)
                    .map(|((&w, &v), &m)| f64::from(w) * f64::from(dequantize(v) - m))
                    .sum::<f64>()
                    + f64::from(p.bias[d]);
                let want = 1.0 / (1.0 + (-y).exp());
                assert!(
                    (f64::from(got) - want).abs() < 1e-5,
                    "dimension {d}: {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn codes_are_unit_frames_in_bytes() {
        let codes = frame_codes(&[3.0, 4.0, 0.0, 0.0], 2);
        assert_eq!(codes, vec![76, 102, 0, 0]);
    }
}
