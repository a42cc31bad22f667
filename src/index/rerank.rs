//! The frame-level re-rank: the search's top candidates ordered again by how well their frames match the
//! query's, one second at a time, rather than by their mean.
//!
//! The score is the symmetric Chamfer mean over projected, normalised frames: the mean over the query's frames
//! of the best cosine with a frame of the candidate, averaged with the same the other way. It catches clips
//! that share a passage rather than an average. Frames are stored as signed bytes (unit vectors x 127, see
//! `projection::frame_codes`), so a comparison is integer dot products: 10 x 10 frames of the default
//! projection's 149 dimensions are 14,900 multiply-adds per candidate.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Result, anyhow, bail};
use heed::types::{Bytes, U32};
use heed::{Database, RoTxn, RwTxn};

use crate::index::store::{BE, Settings, Store, VECTOR_BLOCK_ROWS};

/// Candidates re-ranked by default (`recommend --rerank`): on bal_train (fit on one half, measured on the other)
/// label precision@10 with the default projection does not move at 10 candidates (the order of the ten alone
/// changes nothing), rises at 20 and hardly moves past it, so 20 takes most of the gain at the least cost
/// (docs/bench-log.md, "Projection and re-rank (issue 13)", its "Re-rank depth"). The graph walk's breadth is at
/// least 1.5 times the candidates asked for.
pub const DEFAULT_RERANK: usize = 20;

/// Every clip's frame codes, borrowed from the memory map: `frames x dimensions` bytes per clip.
#[derive(Clone)]
pub struct FrameCodes<'t> {
    blocks: Vec<Cow<'t, [u8]>>,
    block_rows: usize,
    row_len: usize,
    pub dimensions: usize,
}

impl<'t> FrameCodes<'t> {
    pub fn new(
        blocks: Vec<Cow<'t, [u8]>>,
        block_rows: usize,
        frames: usize,
        dimensions: usize,
    ) -> Self {
        FrameCodes {
            blocks,
            block_rows,
            row_len: frames * dimensions,
            dimensions,
        }
    }

    /// A clip's codes, `None` past the last clip.
    pub fn row(&self, item: u32) -> Option<&[i8]> {
        let item = item as usize;
        let block = self.blocks.get(item / self.block_rows)?;
        let start = (item % self.block_rows) * self.row_len;
        let bytes = block.get(start..start + self.row_len)?;
        Some(bytemuck::cast_slice(bytes))
    }
}

/// The symmetric Chamfer similarity of two clips' frame codes (`dimensions` per frame), in [-1, 1].
pub fn chamfer(query: &[i8], candidate: &[i8], dimensions: usize) -> f32 {
    let (nq, nc) = (query.len() / dimensions, candidate.len() / dimensions);
    if nq == 0 || nc == 0 {
        return 0.0;
    }
    let mut best_q = [i32::MIN; 64];
    let mut best_c = [i32::MIN; 64];
    let mut best_q_long;
    let mut best_c_long;
    let (best_q, best_c): (&mut [i32], &mut [i32]) = if nq <= 64 && nc <= 64 {
        (&mut best_q[..nq], &mut best_c[..nc])
    } else {
        best_q_long = vec![i32::MIN; nq];
        best_c_long = vec![i32::MIN; nc];
        (&mut best_q_long[..], &mut best_c_long[..])
    };
    for (i, q) in query.chunks_exact(dimensions).enumerate() {
        for (j, c) in candidate.chunks_exact(dimensions).enumerate() {
            let dot = dot_i8(q, c);
            best_q[i] = best_q[i].max(dot);
            best_c[j] = best_c[j].max(dot);
        }
    }
    let mean = |best: &[i32]| best.iter().map(|&b| b as f32).sum::<f32>() / best.len() as f32;
    0.5 * (mean(best_q) + mean(best_c)) / (127.0 * 127.0)
}

pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::dot(a, b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        dot_portable(a, b)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn dot_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// SSE2 (every x86-64 CPU has it): bytes widened to 16 bits, multiplied and added in pairs (`pmaddwd`), 16 bytes
/// at a time. Without it the compiler multiplied in 32-bit lanes, which SSE2 lacks, several times more slowly
/// (this code's cost a candidate: docs/bench-log.md, "Projection and re-rank (issue 13)").
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    pub fn dot(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let whole = n / 16 * 16;
        // SAFETY: SSE2 is part of the x86-64 baseline; the loads are unaligned loads of 16 bytes inside the
        // slices (`at + 16 <= whole <= n`).
        let mut total = unsafe {
            let zero = _mm_setzero_si128();
            let mut acc = _mm_setzero_si128();
            let mut at = 0;
            while at < whole {
                let x = _mm_loadu_si128(a.as_ptr().add(at).cast());
                let y = _mm_loadu_si128(b.as_ptr().add(at).cast());
                // Sign-extend bytes to 16 bits: interleave each with its sign (0 or -1).
                let (sx, sy) = (_mm_cmpgt_epi8(zero, x), _mm_cmpgt_epi8(zero, y));
                let (xl, xh) = (_mm_unpacklo_epi8(x, sx), _mm_unpackhi_epi8(x, sx));
                let (yl, yh) = (_mm_unpacklo_epi8(y, sy), _mm_unpackhi_epi8(y, sy));
                acc = _mm_add_epi32(acc, _mm_madd_epi16(xl, yl));
                acc = _mm_add_epi32(acc, _mm_madd_epi16(xh, yh));
                at += 16;
            }
            let mut lanes = [0i32; 4];
            _mm_storeu_si128(lanes.as_mut_ptr().cast(), acc);
            lanes.iter().sum::<i32>()
        };
        total += super::dot_portable(&a[whole..n], &b[whole..n]);
        total
    }
}

/// Orders `candidates` by Chamfer similarity to `query` (the most similar first; ties keep the search's order)
/// and gives each the distance on the angular scale, (1 - similarity) / 2. Candidates without codes (past the
/// last clip) are dropped.
pub fn rerank(candidates: &[(u32, f32)], query: &[i8], codes: &FrameCodes) -> Vec<(u32, f32)> {
    let mut scored: Vec<(u32, f32)> = candidates
        .iter()
        .filter_map(|&(item, _)| {
            let row = codes.row(item)?;
            Some((item, (1.0 - chamfer(query, row, codes.dimensions)) / 2.0))
        })
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    scored
}

impl Store {
    fn frames_table(&self) -> Result<Database<'static, U32<BE>, Bytes>> {
        self.frames.ok_or_else(|| {
            anyhow!(
                "index {} has no frames table (rebuild it)",
                self.dir.display()
            )
        })
    }

    /// Every clip's frame codes, borrowed from the memory map like the vectors.
    pub fn load_frames<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<FrameCodes<'t>> {
        let width = settings.frames * settings.projection.dimensions;
        let blocks = self.load_blocks(rtxn, self.frames_table()?, "frame", width, settings)?;
        Ok(FrameCodes::new(
            blocks,
            VECTOR_BLOCK_ROWS as usize,
            settings.frames,
            settings.projection.dimensions,
        ))
    }

    /// Stores the frame codes of a new index's `items` (a range starting at a block's first item, see
    /// [`FRAME_ROWS_PER_WRITE`]), `row(i)` giving item `i`'s (`width` codes).
    pub fn write_frame_rows<'c>(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        width: usize,
        items: Range<usize>,
        row: impl Fn(usize) -> Result<&'c [i8]>,
    ) -> Result<()> {
        self.put_all_rows(
            wtxn,
            self.frames_table()?,
            settings,
            width,
            items,
            |item, block| {
                let codes = row(item)?;
                if codes.len() != width {
                    bail!("item {item} has {} frame codes, not {width}", codes.len());
                }
                block.extend_from_slice(bytemuck::cast_slice(codes));
                Ok(())
            },
        )
    }

    /// Stores appended or replaced clips' frame codes, rewriting only the blocks they fall in.
    pub fn write_frames(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        updates: &BTreeMap<u32, Vec<i8>>,
    ) -> Result<()> {
        let width = settings.frames * settings.projection.dimensions;
        let rows = updates
            .iter()
            .map(|(&item, codes)| (item, bytemuck::cast_slice::<i8, u8>(codes).to_vec()));
        self.put_rows(wtxn, self.frames_table()?, settings, width, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chamfer_is_one_for_the_same_frames_and_symmetric() {
        let a: Vec<i8> = vec![127, 0, 0, 127, 90, 90];
        let b: Vec<i8> = vec![0, 127, 127, 0];
        assert!(
            (chamfer(&a, &a, 2) - (127 * 127 * 2 + 90 * 90 * 2) as f32 / 3.0 / 16129.0).abs()
                < 1e-6
        );
        assert_eq!(chamfer(&a, &b, 2), chamfer(&b, &a, 2));
        // Each of a's frames finds its best in b, and each of b's in a.
        let expected = 0.5 * ((16129.0 + 16129.0 + 11430.0) / 3.0 + 16129.0) / 16129.0;
        assert!((chamfer(&a, &b, 2) - expected).abs() < 1e-6);
    }

    #[test]
    fn dot_handles_tails() {
        let a: Vec<i8> = (0..37).map(|i| (i % 11) as i8 - 5).collect();
        let b: Vec<i8> = (0..37).map(|i| (i % 7) as i8 - 3).collect();
        let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
        assert_eq!(dot_i8(&a, &b), plain);
        let extremes: Vec<i8> = (0..48)
            .map(|i| if i % 2 == 0 { -127 } else { 127 })
            .collect();
        assert_eq!(dot_i8(&extremes, &extremes), 48 * 127 * 127);
        assert_eq!(dot_portable(&a, &b), plain);
    }
}
