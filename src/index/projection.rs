//! The learned projection: a linear map from VGGish's 128 dimensions to fewer, fit by linear discriminant
//! analysis (LDA) on AudioSet's music labels, applied to every frame before the index's vectors are made.
//!
//! Why: cosine over the raw VGGish space weighs every direction alike, and many directions (loudness,
//! recording quality) say little about genre or instrument. LDA keeps the directions along which clips of
//! one music label are close and clips of different labels far apart. Fit on half of bal_train's music clips
//! and measured on the other half (BENCHMARKS.md), it lifts label precision@10 from 0.293 to 0.309, and the
//! frame-level re-rank on the projected frames (`rerank.rs`) to 0.318.
//!
//! The fit: one sample per (clip, label) pair, for every music label other than "Music" (137) a clip carries;
//! the clip's vector is the mean of its de-quantized frames. Within-class scatter Sw, regularised by
//! [`REGULARISATION`] x its mean eigenvalue on the diagonal, and between-class scatter Sb; the projection's rows
//! are the leading generalized eigenvectors of (Sb, Sw), scaled so that the projected Sw is the identity, each
//! signed so that its largest entry is positive. Everything is in f64 and in input order, with our own Jacobi
//! eigensolver, so the same clips give the same matrix (the compiled default is checked against a refit from
//! bal_train by `tests/projection.rs`). Frames are centred on the pairs' mean before projection.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::index::vector::{Form, dequantize};
use crate::labels::{self, LabelSet};
use crate::tfrecord::sequence_example::FRAME_LEN;

/// Output dimensions of a learned projection. Measured with a fit on half of bal_train's music clips and
/// label precision on the other half: 32 dimensions 0.309, 48 0.302, 64 0.300, 96 0.287 (regularisation 0.3;
/// issue 13 proposed 64 at 0.1, from another split).
pub const DIMENSIONS: usize = 32;
/// The within-class scatter's ridge, as a share of its mean eigenvalue: 0.03 0.304, 0.1 0.307, 0.3 0.309,
/// 1.0 0.309 at 32 dimensions on the same split.
pub const REGULARISATION: f64 = 0.3;

/// The default projection, fit on bal_train's 8,775 music clips (the first 10 frames of each), in the byte form
/// of [`Projection::to_bytes`]: made by `cargo run --release --example fit_projection`.
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

    /// For people: "default (fit on 8775 AudioSet bal_train music clips), 32 dimensions".
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

/// A projection: `y = W (x - mean)` for each de-quantized frame `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// 128 values.
    pub mean: Vec<f32>,
    /// `dimensions` rows of 128 values.
    pub matrix: Vec<f32>,
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
            Projection::from_bytes(DEFAULT_BYTES).unwrap_or_else(|| Projection {
                mean: vec![0.0; FRAME_LEN],
                matrix: identity(),
                dimensions: FRAME_LEN,
                fit_ids: Vec::new(),
            })
        })
    }

    /// Projects one frame of raw values (0..=255, as stored) into `out` (`dimensions` values).
    pub fn project_raw(&self, raw: &[f32], out: &mut [f32]) {
        let mut centred = [0f32; FRAME_LEN];
        for ((c, &v), &m) in centred.iter_mut().zip(raw).zip(&self.mean) {
            *c = dequantize(v) - m;
        }
        self.project_centred(&centred, out);
    }

    /// Projects a de-quantized vector of 128 values.
    pub fn project(&self, x: &[f32], out: &mut [f32]) {
        let mut centred = [0f32; FRAME_LEN];
        for ((c, &v), &m) in centred.iter_mut().zip(x).zip(&self.mean) {
            *c = v - m;
        }
        self.project_centred(&centred, out);
    }

    fn project_centred(&self, centred: &[f32; FRAME_LEN], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(self.matrix.chunks_exact(FRAME_LEN)) {
            *o = row.iter().zip(centred).map(|(w, c)| w * c).sum();
        }
    }

    pub fn is_fit_on(&self, video_id: &str) -> bool {
        self.fit_ids.binary_search(&id_hash(video_id)).is_ok()
    }

    /// Little-endian: "SAPJ", version 1, dimensions, number of fit ids (u32 each); the mean (128 f32), the
    /// matrix (dimensions x 128 f32), the fit ids (u64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + 4 * (self.mean.len() + self.matrix.len()));
        bytes.extend_from_slice(MAGIC);
        for word in [1u32, self.dimensions as u32, self.fit_ids.len() as u32] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for v in self.mean.iter().chain(&self.matrix) {
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
        if version != 1 || !(1..=FRAME_LEN).contains(&dimensions) {
            return None;
        }
        let floats = FRAME_LEN * (1 + dimensions);
        let body = rest.get(12..)?;
        if body.len() != floats * 4 + ids * 8 {
            return None;
        }
        let (floats, ids) = body.split_at(floats * 4);
        let values: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Projection {
            mean: values[..FRAME_LEN].to_vec(),
            matrix: values[FRAME_LEN..].to_vec(),
            dimensions,
            fit_ids: ids
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        })
    }

    /// A projection from a JSON file: `{"matrix": [[128 numbers], ...], "mean": [128 numbers]}` (1 to 128 rows;
    /// `mean` optional, zero by default), or a bare 2-D array (the matrix). The error names what is wrong.
    pub fn from_json_file(path: &Path) -> Result<Projection> {
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
        let (matrix, mean) = match &value {
            serde_json::Value::Array(_) => (&value, None),
            serde_json::Value::Object(map) => (
                map.get("matrix")
                    .ok_or_else(|| anyhow!("{name}: not a projection: no \"matrix\" key"))?,
                map.get("mean"),
            ),
            _ => bail!("{name}: not a projection: expected a JSON object with a \"matrix\""),
        };
        let rows: Vec<Vec<f32>> = serde_json::from_value(matrix.clone()).map_err(|e| {
            anyhow!("{name}: the projection's matrix is not a 2-D array of numbers: {e}")
        })?;
        if rows.is_empty() || rows.len() > FRAME_LEN {
            bail!(
                "{name}: the projection has {} rows; it needs 1 to {FRAME_LEN} rows of {FRAME_LEN} values",
                rows.len()
            );
        }
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != FRAME_LEN) {
            bail!(
                "{name}: the projection's row {i} has {} values, not {FRAME_LEN} (VGGish's dimensions)",
                row.len()
            );
        }
        let mean: Vec<f32> = match mean {
            None => vec![0.0; FRAME_LEN],
            Some(mean) => serde_json::from_value(mean.clone()).map_err(|e| {
                anyhow!("{name}: the projection's mean is not a list of numbers: {e}")
            })?,
        };
        if mean.len() != FRAME_LEN {
            bail!(
                "{name}: the projection's mean has {} values, not {FRAME_LEN}",
                mean.len()
            );
        }
        let matrix: Vec<f32> = rows.into_iter().flatten().collect();
        if matrix.iter().chain(&mean).any(|v| !v.is_finite()) {
            bail!("{name}: the projection holds a value that is not a finite number");
        }
        Ok(Projection {
            dimensions: matrix.len() / FRAME_LEN,
            mean,
            matrix,
            fit_ids: Vec::new(),
        })
    }

    /// The JSON form [`Projection::from_json_file`] reads.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<&[f32]> = self.matrix.chunks_exact(FRAME_LEN).collect();
        serde_json::json!({"mean": self.mean, "matrix": rows})
    }
}

fn identity() -> Vec<f32> {
    let mut m = vec![0f32; FRAME_LEN * FRAME_LEN];
    for i in 0..FRAME_LEN {
        m[i * FRAME_LEN + i] = 1.0;
    }
    m
}

/// The labels a fit uses from a clip: its music labels other than "Music" itself.
pub fn fit_labels<'a>(labels: &'a [i64], music: &'a LabelSet) -> impl Iterator<Item = u16> + 'a {
    labels
        .iter()
        .filter(move |&&l| l != i64::from(labels::MUSIC) && music.contains(l))
        .filter_map(|&l| u16::try_from(l).ok())
}

/// The statistics of an LDA fit, gathered one clip at a time (so the clips need not be held).
pub struct Fit {
    music: LabelSet,
    /// Sum of x x^T over the (clip, label) pairs, 128 x 128.
    second: Vec<f64>,
    /// Per label: its pairs and the sum of their vectors.
    classes: BTreeMap<u16, (u64, Vec<f64>)>,
    pairs: u64,
    ids: Vec<u64>,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            music: LabelSet::music_ontology(),
            second: vec![0.0; FRAME_LEN * FRAME_LEN],
            classes: BTreeMap::new(),
            pairs: 0,
            ids: Vec::new(),
        }
    }
}

impl Fit {
    /// Adds a clip: `rows` are its frames' raw values (`frames` x 128, 0..=255), of which the mean is taken.
    pub fn add(&mut self, video_id: &str, labels: &[i64], rows: &[f32]) {
        let labels: Vec<u16> = fit_labels(labels, &self.music).collect();
        if labels.is_empty() || rows.is_empty() {
            return;
        }
        let frames = rows.len() / FRAME_LEN;
        let mut x = vec![0f64; FRAME_LEN];
        for row in rows.chunks_exact(FRAME_LEN) {
            for (m, &v) in x.iter_mut().zip(row) {
                *m += f64::from(dequantize(v));
            }
        }
        x.iter_mut().for_each(|m| *m /= frames as f64);
        let n = labels.len() as f64;
        for i in 0..FRAME_LEN {
            let xi = x[i] * n;
            let row = &mut self.second[i * FRAME_LEN..(i + 1) * FRAME_LEN];
            for (s, &xj) in row.iter_mut().zip(&x) {
                *s += xi * xj;
            }
        }
        for label in labels {
            let (count, sum) = self
                .classes
                .entry(label)
                .or_insert_with(|| (0, vec![0.0; FRAME_LEN]));
            *count += 1;
            sum.iter_mut().zip(&x).for_each(|(s, v)| *s += v);
            self.pairs += 1;
        }
        self.ids.push(id_hash(video_id));
    }

    /// Clips that took part (carried a label the fit uses).
    pub fn clips(&self) -> u64 {
        self.ids.len() as u64
    }

    /// The projection to `dimensions` dimensions. Fails when fewer than two labels occur: LDA then has
    /// nothing to separate.
    pub fn finish(mut self, dimensions: usize) -> Result<Projection> {
        if self.classes.len() < 2 {
            bail!(
                "cannot learn a projection: {} of the clips carries a music label other than Music (137){}; \
                 LDA needs clips of at least two such labels (use --projection default or none)",
                self.clips(),
                match self.classes.keys().next() {
                    Some(&l) => format!(
                        ", all of them {}",
                        labels::class_name(l.into()).unwrap_or("?")
                    ),
                    None => String::new(),
                }
            );
        }
        let d = FRAME_LEN;
        let p = self.pairs as f64;
        let mut mean = vec![0f64; d];
        for (_, sum) in self.classes.values() {
            mean.iter_mut().zip(sum).for_each(|(m, s)| *m += s / p);
        }
        // Sum over classes of s s^T / n: the between-class part of the second moment.
        let mut between = vec![0f64; d * d];
        for (count, sum) in self.classes.values() {
            let n = *count as f64;
            for i in 0..d {
                let si = sum[i] / n;
                for j in 0..d {
                    between[i * d + j] += si * sum[j];
                }
            }
        }
        let mut sw = vec![0f64; d * d];
        let mut sb = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                sw[i * d + j] = (self.second[i * d + j] - between[i * d + j]) / p;
                sb[i * d + j] = between[i * d + j] / p - mean[i] * mean[j];
            }
        }
        let ridge = REGULARISATION * (0..d).map(|i| sw[i * d + i]).sum::<f64>() / d as f64;
        for i in 0..d {
            sw[i * d + i] += ridge;
        }
        symmetrize(&mut sw, d);
        symmetrize(&mut sb, d);
        // Whiten the within-class scatter: Wh = V diag(w^-1/2) V^T.
        let (w, v) = symmetric_eigen(sw, d);
        let mut wh = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                wh[i * d + j] = (0..d)
                    .map(|k| v[i * d + k] * v[j * d + k] / w[k].max(f64::MIN_POSITIVE).sqrt())
                    .sum();
            }
        }
        let m = symmetric_product(&wh, &sb, d);
        let (e, u) = symmetric_eigen(m, d);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| e[b].total_cmp(&e[a]).then(a.cmp(&b)));
        let dimensions = dimensions.clamp(1, d);
        let mut matrix = Vec::with_capacity(dimensions * d);
        for &k in &order[..dimensions] {
            let mut row: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| wh[i * d + j] * u[j * d + k]).sum())
                .collect();
            // The sign of an eigenvector is arbitrary: make its largest entry positive.
            let largest = row
                .iter()
                .enumerate()
                .fold((0, 0f64), |best, (i, &v)| {
                    if v.abs() > best.1 { (i, v.abs()) } else { best }
                })
                .0;
            if row[largest] < 0.0 {
                row.iter_mut().for_each(|v| *v = -*v);
            }
            matrix.extend(row.iter().map(|&v| v as f32));
        }
        self.ids.sort_unstable();
        self.ids.dedup();
        Ok(Projection {
            mean: mean.iter().map(|&v| v as f32).collect(),
            matrix,
            dimensions,
            fit_ids: self.ids,
        })
    }
}

fn symmetrize(a: &mut [f64], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
}

/// `w b w` for symmetric `w` and `b`, symmetrized.
fn symmetric_product(w: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = matmul(&matmul(w, b, n), w, n);
    symmetrize(&mut out, n);
    out
}

/// `a b` for row-major `n` x `n` matrices, summed in a fixed order (the fit must be the same everywhere).
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// The eigenvalues and eigenvectors of a symmetric `n` x `n` matrix (row-major), by cyclic Jacobi rotations:
/// eigenvector `k` is column `k` of the second result (`v[i * n + k]`). Jacobi is slow for large matrices but
/// exact to rounding, simple, and the same on every machine; at 128 x 128 it takes a few tens of milliseconds.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        if off <= scale * 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
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

    /// Dimensions of the vector.
    pub fn dimensions(&self) -> usize {
        match self.form {
            Form::Mean => self.frame_dimensions(),
            Form::Flat => self.frame_dimensions() * self.frames,
        }
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
            Some(p) => {
                for (out, row) in projected
                    .chunks_exact_mut(d)
                    .zip(raw.chunks_exact(FRAME_LEN))
                {
                    p.project_raw(row, out);
                }
            }
        }
        let vector = match (&self.projection, self.form) {
            (None, _) => plain,
            // The mean of the frames, projected (the same as the mean of the projected frames, up to rounding).
            (Some(p), Form::Mean) => {
                let mut out = vec![0f32; d];
                p.project(&plain, &mut out);
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
    fn jacobi_finds_the_eigenpairs() {
        let n = 6;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = ((i * 7 + j * 3) % 5) as f64 + ((j * 7 + i * 3) % 5) as f64;
            }
        }
        let (w, v) = symmetric_eigen(a.clone(), n);
        for k in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j * n + k]).sum();
                assert!((av - w[k] * v[i * n + k]).abs() < 1e-9, "{av} vs {}", w[k]);
            }
        }
    }

    #[test]
    fn the_default_reads_and_round_trips() {
        let p = Projection::default_fit();
        assert_eq!(p.dimensions, DIMENSIONS);
        assert_eq!(p.matrix.len(), DIMENSIONS * FRAME_LEN);
        assert_eq!(Projection::from_bytes(&p.to_bytes()).as_ref(), Some(p));
    }

    #[test]
    fn codes_are_unit_frames_in_bytes() {
        let codes = frame_codes(&[3.0, 4.0, 0.0, 0.0], 2);
        assert_eq!(codes, vec![76, 102, 0, 0]);
    }
}
