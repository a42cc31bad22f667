//! The vectors as 8-bit codes, one byte per dimension, for the graph walk to compare with.
//!
//! Why: a walk compares the query with a few hundred clips scattered over the map, and waiting for their rows
//! was most of its time (docs/bench-log.md, "Where the time goes (recommend with the graph)"). A code row is a
//! quarter of a float row (128 bytes: two cache lines rather than eight), and the walk only needs to tell near
//! from far; the best of the clips it keeps are then compared again on their exact vectors, so the distances
//! reported (and their order) are exact.
//!
//! Each dimension is quantized on its own range over the index's vectors (scalar quantization, as FAISS's
//! SQ8): value = offset + step x code. Vectors appended later outside that range are clamped to it.

use std::borrow::Cow;

use anyhow::Result;
use heed::types::Bytes;
use heed::{RoTxn, RwTxn};

use crate::error::damaged;

use crate::index::graph::Space;
use crate::index::scan::{Matrix, PairDistance};
use crate::index::store::{QUANTIZER_KEY, Settings, Store, VECTOR_BLOCK_ROWS};
use crate::index::vector::Metric;

/// Each dimension's range, as value = offset + step x code (code 0 to 255).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizer {
    offset: Vec<f32>,
    step: Vec<f32>,
}

impl Quantizer {
    /// The ranges of `rows` (`dimensions` floats each).
    pub fn fit(rows: &[f32], dimensions: usize) -> Quantizer {
        let mut low = vec![f32::INFINITY; dimensions];
        let mut high = vec![f32::NEG_INFINITY; dimensions];
        for row in rows.chunks_exact(dimensions.max(1)) {
            for ((l, h), &x) in low.iter_mut().zip(&mut high).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        let (offset, step) = low
            .iter()
            .zip(&high)
            .map(|(&l, &h)| {
                if l.is_finite() && h.is_finite() {
                    (l, (h - l) / 255.0)
                } else {
                    (0.0, 0.0)
                }
            })
            .unzip();
        Quantizer { offset, step }
    }

    pub fn dimensions(&self) -> usize {
        self.offset.len()
    }

    /// Appends the code of `row` to `out`.
    pub fn encode(&self, row: &[f32], out: &mut Vec<u8>) {
        out.extend(row.iter().zip(self.offset.iter().zip(&self.step)).map(
            |(&x, (&offset, &step))| {
                if step > 0.0 {
                    ((x - offset) / step).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            },
        ));
    }

    /// The codes of all `rows`, in order.
    #[cfg(test)]
    pub fn encode_all(&self, rows: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks_exact(self.dimensions().max(1)) {
            self.encode(row, &mut out);
        }
        out
    }

    /// The stored form: the offsets, then the steps, as little-endian f32.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.offset
            .iter()
            .chain(&self.step)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// The quantizer stored by [`Quantizer::to_bytes`] for `dimensions`, or `None` if the bytes do not fit.
    pub fn from_bytes(bytes: &[u8], dimensions: usize) -> Option<Quantizer> {
        if bytes.len() != dimensions * 8 {
            return None;
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (offset, step) = values.split_at(dimensions);
        let ok = offset.iter().chain(step).all(|v| v.is_finite()) && step.iter().all(|&s| s >= 0.0);
        ok.then(|| Quantizer {
            offset: offset.to_vec(),
            step: step.to_vec(),
        })
    }
}

/// Every clip's code, borrowed from the memory map like the vectors.
#[derive(Clone)]
pub struct Codes<'t> {
    quantizer: Quantizer,
    blocks: Vec<Cow<'t, [u8]>>,
    block_rows: usize,
}

impl<'t> Codes<'t> {
    pub fn new(quantizer: Quantizer, blocks: Vec<Cow<'t, [u8]>>, block_rows: usize) -> Self {
        Codes {
            quantizer,
            blocks,
            block_rows: block_rows.max(1),
        }
    }

    /// An item's code; `None` past the last row.
    #[inline]
    pub fn row(&self, item: u32) -> Option<&[u8]> {
        let dimensions = self.quantizer.dimensions();
        let (block, row) = (
            item as usize / self.block_rows,
            item as usize % self.block_rows,
        );
        let start = row * dimensions;
        self.blocks.get(block)?.get(start..start + dimensions)
    }

    pub fn rows(&self) -> usize {
        let full = self.blocks.len().saturating_sub(1) * self.block_rows;
        full + self
            .blocks
            .last()
            .map_or(0, |b| b.len() / self.quantizer.dimensions().max(1))
    }
}

/// A query compared with codes. The query is folded into the quantizer once, so that each comparison is one
/// pass over a code row: for the dot product, q . (offset + step x c) = q . offset + (q x step) . c.
pub struct CodedQuery<'c, 't> {
    codes: &'c Codes<'t>,
    metric: Metric,
    /// Dot and angular: q x step; Euclidean and Manhattan: q - offset.
    folded: Vec<f32>,
    /// Dot and angular: q . offset.
    bias: f32,
    kernel: CodeKernel,
    /// Dot and angular, where the CPU has AVX2: `folded` in 16-bit fixed point, and what one unit of it is worth.
    /// Why: products of 16-bit integers are summed sixteen bytes of code to an instruction, with no widening
    /// to floats, and the walk's comparisons were a third of its instructions (docs/bench-log.md, "Islands").
    fixed: Option<(Vec<i16>, f32)>,
}

/// The largest dimensions the 16-bit kernel takes: its 32-bit sums hold 2 x 32,767 x 255 per lane and step,
/// so at most 2^31 / 16.7 million steps of sixteen dimensions.
const FIXED_MAX_DIMENSIONS: usize = 2048;

/// `folded` in 16-bit fixed point (the largest magnitude at 32,767) and the float one unit stands for; `None`
/// where the CPU lacks AVX2 or the rows are too long for the 32-bit sums.
fn fixed_point(folded: &[f32]) -> Option<(Vec<i16>, f32)> {
    #[cfg(target_arch = "x86_64")]
    if crate::index::scan::avx2::detected() && folded.len() <= FIXED_MAX_DIMENSIONS {
        let largest = folded.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = if largest > 0.0 && largest.is_finite() {
            32767.0 / largest
        } else {
            1.0
        };
        let fixed = folded.iter().map(|x| (x * scale).round() as i16).collect();
        return Some((fixed, 1.0 / scale));
    }
    let _ = folded;
    None
}

type CodeKernel = fn(folded: &[f32], step: &[f32], code: &[u8]) -> f32;

impl<'c, 't> CodedQuery<'c, 't> {
    /// `query` in search form (see [`crate::index::scan::prepare`]).
    pub fn new(codes: &'c Codes<'t>, metric: Metric, query: &[f32]) -> Self {
        let q = &codes.quantizer;
        let (folded, bias): (Vec<f32>, f32) = match metric {
            Metric::Angular | Metric::Dot => (
                query.iter().zip(&q.step).map(|(x, s)| x * s).collect(),
                query.iter().zip(&q.offset).map(|(x, o)| x * o).sum(),
            ),
            Metric::Euclidean | Metric::Manhattan => (
                query.iter().zip(&q.offset).map(|(x, o)| x - o).collect(),
                0.0,
            ),
        };
        let fixed = match metric {
            Metric::Angular | Metric::Dot => fixed_point(&folded),
            Metric::Euclidean | Metric::Manhattan => None,
        };
        CodedQuery {
            codes,
            metric,
            folded,
            bias,
            kernel: code_kernel(metric),
            fixed,
        }
    }
}

impl CodedQuery<'_, '_> {
    /// The same query compared with other rows of the same quantizer: an upper layer's own copy of its nodes'
    /// codes (`entry`), so that its walk reads one small contiguous table rather than rows scattered over the
    /// clips' codes.
    pub fn over<'d, 'u>(&self, codes: &'d Codes<'u>) -> CodedQuery<'d, 'u> {
        debug_assert_eq!(codes.quantizer, self.codes.quantizer);
        CodedQuery {
            codes,
            metric: self.metric,
            folded: self.folded.clone(),
            bias: self.bias,
            kernel: self.kernel,
            fixed: self.fixed.clone(),
        }
    }
}

impl Space for CodedQuery<'_, '_> {
    fn nodes(&self) -> usize {
        self.codes.rows()
    }

    #[inline]
    fn distance(&mut self, node: u32) -> Option<f32> {
        let code = self.codes.row(node)?;
        let raw = match &self.fixed {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `fixed` is only made where `avx2::detected()` found AVX2, all `dot_fixed` needs.
            Some((fixed, unit)) => (unsafe { avx2::dot_fixed(fixed, code) }) as f32 * unit,
            _ => (self.kernel)(&self.folded, &self.codes.quantizer.step, code),
        };
        Some(match self.metric {
            Metric::Angular => (1.0 - (self.bias + raw).clamp(-1.0, 1.0)) / 2.0,
            Metric::Dot => -(self.bias + raw),
            Metric::Euclidean => raw.sqrt(),
            Metric::Manhattan => raw,
        })
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        if let Some(row) = self.codes.row(node) {
            crate::index::graph::prefetch_bytes(row);
        }
    }
}

/// Re-compares the nodes a walk over codes found on their exact vectors: nearest first (ties by id).
pub fn rerank(
    found: Vec<(u32, f32)>,
    matrix: &Matrix,
    distance: PairDistance,
    query: &[f32],
) -> Vec<(u32, f32)> {
    let mut exact: Vec<(u32, f32)> = found
        .into_iter()
        .filter_map(|(n, _)| Some((n, distance(query, matrix.row(n)?))))
        .collect();
    exact.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    exact
}

/// The kernel for a metric, with AVX2 and FMA where the CPU has them.
fn code_kernel(metric: Metric) -> CodeKernel {
    #[cfg(target_arch = "x86_64")]
    if crate::index::scan::avx2::detected() {
        return match metric {
            Metric::Angular | Metric::Dot => avx2_kernel::<{ Metric::Dot as u8 }>,
            Metric::Euclidean => avx2_kernel::<{ Metric::Euclidean as u8 }>,
            Metric::Manhattan => avx2_kernel::<{ Metric::Manhattan as u8 }>,
        };
    }
    match metric {
        Metric::Angular | Metric::Dot => {
            |f, _, c| f.iter().zip(c).map(|(x, &c)| x * f32::from(c)).sum()
        }
        Metric::Euclidean => |f, s, c| lanes(f, s, c, |d| d * d),
        Metric::Manhattan => |f, s, c| lanes(f, s, c, f32::abs),
    }
}

/// Sum over dimensions of `g(folded - step x code)`, in eight lanes the compiler keeps in a SIMD register.
#[inline(always)]
fn lanes(folded: &[f32], step: &[f32], code: &[u8], g: impl Fn(f32) -> f32) -> f32 {
    const L: usize = 8;
    let mut acc = [0f32; L];
    let chunks = folded
        .chunks_exact(L)
        .zip(step.chunks_exact(L))
        .zip(code.chunks_exact(L));
    for ((f, s), c) in chunks {
        for i in 0..L {
            acc[i] += g(f[i] - s[i] * f32::from(c[i]));
        }
    }
    let done = folded.len() / L * L;
    let tail: f32 = (done..folded.len().min(code.len()))
        .map(|i| g(folded[i] - step[i] * f32::from(code[i])))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// The AVX2 code kernel for metric `M` (a [`Metric`] as `u8`) behind a safe function pointer.
#[cfg(target_arch = "x86_64")]
fn avx2_kernel<const M: u8>(folded: &[f32], step: &[f32], code: &[u8]) -> f32 {
    // SAFETY: only `code_kernel` names this function, and only after `avx2::detected()` found AVX2 and FMA on
    // this CPU, which is all the AVX2 code needs.
    unsafe { avx2::metric::<M>(folded, step, code) }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::index::vector::Metric;

    /// The kernel for metric `M` (a [`Metric`] as `u8`; the angular metric uses the dot product's).
    #[target_feature(enable = "avx2,fma")]
    pub fn metric<const M: u8>(folded: &[f32], step: &[f32], code: &[u8]) -> f32 {
        const EUCLIDEAN: u8 = Metric::Euclidean as u8;
        const MANHATTAN: u8 = Metric::Manhattan as u8;
        match M {
            EUCLIDEAN => lanes(folded, step, code, |d| d * d),
            MANHATTAN => lanes(folded, step, code, f32::abs),
            _ => dot(folded, code),
        }
    }

    /// [`super::lanes`] compiled for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub fn lanes(folded: &[f32], step: &[f32], code: &[u8], g: impl Fn(f32) -> f32) -> f32 {
        super::lanes(folded, step, code, g)
    }

    /// fixed . code in 32-bit integers, sixteen bytes at a time (`fixed` at most [`super::FIXED_MAX_DIMENSIONS`]
    /// long, so the sums cannot overflow).
    #[target_feature(enable = "avx2,fma")]
    pub fn dot_fixed(fixed: &[i16], code: &[u8]) -> i32 {
        use std::arch::x86_64::*;
        let len = fixed.len().min(code.len());
        let wide = len / 16 * 16;
        let mut total = 0i32;
        // SAFETY: every load at offset i with i + 16 <= wide <= len stays inside both slices.
        unsafe {
            let mut sum = _mm256_setzero_si256();
            let mut i = 0;
            while i < wide {
                let bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128(code.as_ptr().add(i).cast()));
                let q = _mm256_loadu_si256(fixed.as_ptr().add(i).cast());
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(bytes, q));
                i += 16;
            }
            let half = _mm_add_epi32(
                _mm256_castsi256_si128(sum),
                _mm256_extracti128_si256(sum, 1),
            );
            let pairs = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0b01_00_11_10));
            let one = _mm_add_epi32(pairs, _mm_shuffle_epi32(pairs, 0b10_11_00_01));
            total += _mm_cvtsi128_si32(one);
        }
        for (&x, &c) in fixed[wide..len].iter().zip(&code[wide..len]) {
            total += i32::from(x) * i32::from(c);
        }
        total
    }

    /// folded . code, sixteen bytes at a time widened to floats, in two independent chains.
    #[target_feature(enable = "avx2,fma")]
    pub fn dot(folded: &[f32], code: &[u8]) -> f32 {
        use std::arch::x86_64::*;
        let len = folded.len().min(code.len());
        let wide = len / 16 * 16;
        let mut total = 0.0;
        // SAFETY: every load at offset i (+ 8) with i + 16 <= wide <= len stays inside both slices.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 2];
            let mut i = 0;
            while i < wide {
                let bytes = _mm_loadu_si128(code.as_ptr().add(i).cast());
                let low = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
                let high = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)));
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(folded.as_ptr().add(i)), low, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_loadu_ps(folded.as_ptr().add(i + 8)), high, acc[1]);
                i += 16;
            }
            total += crate::index::scan::avx2::horizontal_sum(_mm256_add_ps(acc[0], acc[1]));
        }
        for (x, &c) in folded[wide..len].iter().zip(&code[wide..len]) {
            total += x * f32::from(c);
        }
        total
    }
}

impl Store {
    /// Every clip's code, borrowed from the memory map like the vectors.
    pub fn load_codes<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Codes<'t>> {
        let quantizer = self.quantizer(rtxn, settings)?;
        let blocks = self.load_blocks(rtxn, self.codes, "code", settings.dimensions, settings)?;
        Ok(Codes::new(quantizer, blocks, VECTOR_BLOCK_ROWS as usize))
    }

    pub(in crate::index) fn quantizer(
        &self,
        rtxn: &RoTxn,
        settings: &Settings,
    ) -> Result<Quantizer> {
        self.settings
            .remap_data_type::<Bytes>()
            .get(rtxn, QUANTIZER_KEY)?
            .and_then(|bytes| Quantizer::from_bytes(bytes, settings.dimensions))
            .ok_or_else(|| damaged(&self.dir, "its codes' quantizer is missing or unreadable"))
    }

    /// Stores the codes of a new index's vectors (`rows`, as [`Store::write_vector_rows`] takes them) and their
    /// quantizer, encoding a block at a time rather than the whole table at once.
    pub fn write_code_rows(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        quantizer: &Quantizer,
        rows: &[f32],
    ) -> Result<()> {
        self.settings
            .remap_data_type::<Bytes>()
            .put(wtxn, QUANTIZER_KEY, &quantizer.to_bytes())?;
        let dimensions = quantizer.dimensions().max(1);
        self.put_all_rows(
            wtxn,
            self.codes,
            settings,
            dimensions,
            0..rows.len() / dimensions,
            |item, block| {
                quantizer.encode(&rows[item * dimensions..][..dimensions], block);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::scan::{pair_distance, prepare};

    /// Rows of varied ranges per dimension, some negative, in search form.
    fn rows(metric: Metric, count: usize, dimensions: usize) -> Vec<f32> {
        let mut rows = Vec::with_capacity(count * dimensions);
        for r in 0..count {
            let start = rows.len();
            for d in 0..dimensions {
                let h = (r * 7919 + d * 104_729) % 1000;
                rows.push((h as f32 / 1000.0 - 0.3) * (1.0 + d as f32 / 10.0));
            }
            prepare(metric, &mut rows[start..]);
        }
        rows
    }

    #[test]
    fn coded_distances_are_close_to_exact_ones_for_every_metric() {
        let dimensions = 37; // not a multiple of the SIMD width: the tails count too
        for metric in [
            Metric::Angular,
            Metric::Dot,
            Metric::Euclidean,
            Metric::Manhattan,
        ] {
            let data = rows(metric, 50, dimensions);
            let quantizer = Quantizer::fit(&data, dimensions);
            let codes = Codes::new(
                quantizer.clone(),
                vec![Cow::Owned(quantizer.encode_all(&data))],
                64,
            );
            let exact = pair_distance(metric);
            let query = &data[3 * dimensions..4 * dimensions];
            let mut coded = CodedQuery::new(&codes, metric, query);
            // The most rounding (half a step per dimension) can move each metric.
            let half: Vec<f32> = quantizer.step.iter().map(|s| s / 2.0).collect();
            let bound = match metric {
                Metric::Dot => query.iter().zip(&half).map(|(q, h)| q.abs() * h).sum(),
                Metric::Angular => {
                    query
                        .iter()
                        .zip(&half)
                        .map(|(q, h)| q.abs() * h)
                        .sum::<f32>()
                        / 2.0
                }
                Metric::Euclidean => half.iter().map(|h| h * h).sum::<f32>().sqrt(),
                Metric::Manhattan => half.iter().sum(),
            };
            for node in 0..50u32 {
                let row = &data[node as usize * dimensions..][..dimensions];
                let (want, got) = (exact(query, row), coded.distance(node).unwrap());
                assert!(
                    (want - got).abs() <= bound * 1.01 + 1e-5,
                    "{metric:?} node {node}: exact {want}, coded {got}, bound {bound}"
                );
            }
            assert_eq!(coded.distance(50), None);
        }
    }

    #[test]
    fn the_fixed_point_kernel_agrees_with_the_float_one() {
        // 149 (the label model's dimensions) leaves a tail past the sixteen-wide steps; 128 does not.
        for dimensions in [128, 149] {
            let data = rows(Metric::Angular, 20, dimensions);
            let quantizer = Quantizer::fit(&data, dimensions);
            let codes = Codes::new(
                quantizer.clone(),
                vec![Cow::Owned(quantizer.encode_all(&data))],
                64,
            );
            let query = &data[5 * dimensions..6 * dimensions];
            let mut coded = CodedQuery::new(&codes, Metric::Angular, query);
            let mut float = CodedQuery::new(&codes, Metric::Angular, query);
            float.fixed = None;
            for node in 0..20u32 {
                let (fixed, exact) = (coded.distance(node).unwrap(), float.distance(node).unwrap());
                assert!(
                    (fixed - exact).abs() < 1e-4,
                    "{dimensions}: node {node}: {fixed} against {exact}"
                );
            }
        }
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_garbage() {
        let data = rows(Metric::Angular, 10, 8);
        let quantizer = Quantizer::fit(&data, 8);
        assert_eq!(
            Quantizer::from_bytes(&quantizer.to_bytes(), 8),
            Some(quantizer.clone())
        );
        assert_eq!(Quantizer::from_bytes(&quantizer.to_bytes(), 9), None);
        let mut nan = quantizer.to_bytes();
        nan[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(Quantizer::from_bytes(&nan, 8), None);
    }

    #[test]
    fn values_outside_the_fitted_range_are_clamped() {
        let quantizer = Quantizer::fit(&[0.0, 0.0, 1.0, 255.0], 2);
        let mut out = Vec::new();
        quantizer.encode(&[-5.0, 100.0], &mut out);
        quantizer.encode(&[9.0, 999.0], &mut out);
        assert_eq!(out, [0, 100, 255, 255]);
    }
}
