//! The exact scan: every vector against the query, the ground truth for `--exact` and `evaluate`, and at
//! AudioSet's bal_train size also faster than the trees (docs/bench-log.md, "index and recommend (real bal_train
//! music clips)").
//!
//! Vectors sit in one contiguous `f32` array, row `i` holding item `i`, already in search form (unit length for
//! the angular metric, so a distance is one dot product). Distances run in SIMD lanes, with AVX2 and FMA when the
//! CPU has them. Queries are scanned in groups over tiles of rows that stay in cache, so a batch reads the
//! vectors from memory once per group rather than once per query.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::index::vector::Metric;

/// Queries scanned together: each group reads the vectors once (tile by tile), and groups run in parallel.
pub const GROUP: usize = 64;

/// Rows per tile: 512 x 128 floats is 256 KiB, which stays in L2 while a group of queries passes over it.
const TILE_ROWS: usize = 512;

/// Distances from each of a few queries to every row of a tile, written to the matching `out` vector. One call
/// per tile rather than per row: an indirect call per 128-float row cost a fifth of the scan.
type Kernel = fn(tile: &[f32], dimensions: usize, queries: &[&[f32]], out: &mut [Vec<f32>]);

/// Queries a kernel call serves at once (see `avx2::tile_dot`).
const QUERIES_PER_CALL: usize = 3;

#[derive(Clone)]
pub struct Matrix<'a> {
    dimensions: usize,
    metric: Metric,
    /// Rows in blocks of `block_rows` (the last may be shorter), borrowed straight from the index's memory
    /// map where the platform allows, so opening the vectors costs no copy.
    blocks: Vec<Cow<'a, [f32]>>,
    block_rows: usize,
    kernel: Kernel,
}

impl<'a> Matrix<'a> {
    /// `blocks` hold the rows in search form (see [`prepare`]), item `i` at row `i`, `block_rows` rows per
    /// block.
    pub fn new(
        dimensions: usize,
        metric: Metric,
        blocks: Vec<Cow<'a, [f32]>>,
        block_rows: usize,
    ) -> Self {
        Matrix {
            dimensions,
            metric,
            blocks,
            block_rows: block_rows.max(1),
            kernel: kernel(metric),
        }
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Rows held (the last block may be short).
    pub fn rows(&self) -> usize {
        let full = self.blocks.len().saturating_sub(1) * self.block_rows;
        full + self
            .blocks
            .last()
            .map_or(0, |b| b.len() / self.dimensions.max(1))
    }

    #[inline]
    pub fn row(&self, item: u32) -> Option<&[f32]> {
        let (block, row) = (
            item as usize / self.block_rows,
            item as usize % self.block_rows,
        );
        let start = row * self.dimensions;
        self.blocks.get(block)?.get(start..start + self.dimensions)
    }

    /// For each query, the `count` nearest items (nearest first, ties by item id) among those `keep` allows,
    /// other than the query's `exclude` item; distances on the scale the index reports. Many queries are
    /// answered in parallel, in groups of [`GROUP`], each group reading the vectors once.
    pub fn nearest(
        &self,
        queries: &[Query<'_>],
        count: usize,
        keep: Option<&[bool]>,
    ) -> Vec<Vec<(u32, f32)>> {
        if queries.len() <= GROUP {
            return self.nearest_group(queries, count, keep);
        }
        queries
            .par_chunks(GROUP)
            .map(|group| self.nearest_group(group, count, keep))
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect()
    }

    fn nearest_group(
        &self,
        queries: &[Query<'_>],
        count: usize,
        keep: Option<&[bool]>,
    ) -> Vec<Vec<(u32, f32)>> {
        let prepared: Vec<Vec<f32>> = queries
            .iter()
            .map(|q| {
                let mut v = q.vector.to_vec();
                // The SIMD kernels read `dimensions` values of every query: make sure they are there.
                v.resize(self.dimensions, 0.0);
                prepare(self.metric, &mut v);
                v
            })
            .collect();
        let mut best: Vec<TopK> = queries.iter().map(|_| TopK::new(count)).collect();
        let tile_len = TILE_ROWS * self.dimensions;
        let mut distances: Vec<Vec<f32>> = (0..QUERIES_PER_CALL)
            .map(|_| Vec::with_capacity(TILE_ROWS))
            .collect();
        let tiles = self.blocks.iter().enumerate().flat_map(|(b, block)| {
            block
                .chunks(tile_len.max(1))
                .enumerate()
                .map(move |(t, tile)| (b * self.block_rows + t * TILE_ROWS, tile))
        });
        for (first, tile) in tiles {
            for start in (0..queries.len()).step_by(QUERIES_PER_CALL) {
                let end = (start + QUERIES_PER_CALL).min(queries.len());
                let vectors: Vec<&[f32]> = prepared[start..end].iter().map(Vec::as_slice).collect();
                (self.kernel)(
                    tile,
                    self.dimensions,
                    &vectors,
                    &mut distances[..end - start],
                );
                for (q, row_distances) in (start..end).zip(&distances) {
                    let top = &mut best[q];
                    let mut worst = top.worst();
                    for (offset, &distance) in row_distances.iter().enumerate() {
                        if distance > worst {
                            continue;
                        }
                        let item = (first + offset) as u32;
                        let allowed =
                            keep.is_none_or(|k| k.get(item as usize).copied().unwrap_or(false));
                        if queries[q].exclude != Some(item) && allowed {
                            top.push(distance, item);
                            worst = top.worst();
                        }
                    }
                }
            }
        }
        best.into_iter().map(TopK::into_sorted).collect()
    }
}

/// One query of a group: its vector and the item to leave out (the query clip itself).
pub struct Query<'a> {
    pub vector: &'a [f32],
    pub exclude: Option<u32>,
}

/// Puts a vector in search form: unit length for the angular metric, unchanged otherwise.
pub fn prepare(metric: Metric, vector: &mut [f32]) {
    if metric == Metric::Angular {
        let norm = dot::<false>(vector, vector).sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
    }
}

/// The `k` smallest (distance, item) pairs seen, kept sorted; k is small (10 by default), so insertion into a
/// short sorted array beats a heap.
struct TopK {
    k: usize,
    entries: Vec<(f32, u32)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            entries: Vec::with_capacity(k + 1),
        }
    }

    /// The distance a candidate must not exceed to enter (infinite until k are held): a cheap test before the
    /// item's filters are looked at.
    #[inline]
    fn worst(&self) -> f32 {
        match self.entries.last() {
            Some(&(worst, _)) if self.entries.len() == self.k => worst,
            _ => f32::INFINITY,
        }
    }

    #[inline]
    fn push(&mut self, distance: f32, item: u32) {
        if self.entries.len() == self.k {
            match self.entries.last() {
                Some(&(worst, worst_item)) if (distance, item) < (worst, worst_item) => {}
                _ => return,
            }
        }
        let at = self
            .entries
            .partition_point(|&(d, i)| (d, i) < (distance, item));
        self.entries.insert(at, (distance, item));
        self.entries.truncate(self.k);
    }

    fn into_sorted(self) -> Vec<(u32, f32)> {
        self.entries.into_iter().map(|(d, i)| (i, d)).collect()
    }
}

/// Each query's dot products with every row of `rows` (`dimensions` floats each), into `out` (one list per
/// query): the exact scan's tile kernel, with AVX2 and FMA where the CPU has them. A projection applies its
/// matrix to a clip's frames with it; one frame at a time in scalar code, that was a large share of a build's
/// time and most of its reading, on one thread (docs/bench-log.md, "The build at a million clips: where the
/// time goes, before and after").
pub fn dot_products(rows: &[f32], dimensions: usize, queries: &[&[f32]], out: &mut [Vec<f32>]) {
    // The dot metric's kernel gives the negated products, a distance.
    let negated = kernel(Metric::Dot);
    for (queries, out) in queries
        .chunks(QUERIES_PER_CALL)
        .zip(out.chunks_mut(QUERIES_PER_CALL))
    {
        negated(rows, dimensions, queries, out);
    }
    for value in out.iter_mut().flatten() {
        *value = -*value;
    }
}

/// The distance function for a metric, on the scale arroy reports: angular (1 - cos) / 2 of unit vectors,
/// Euclidean, Manhattan, and the negated dot product.
fn kernel(metric: Metric) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if avx2::detected() {
        return match metric {
            Metric::Angular => avx2_kernel::<{ Metric::Angular as u8 }>,
            Metric::Euclidean => avx2_kernel::<{ Metric::Euclidean as u8 }>,
            Metric::Manhattan => avx2_kernel::<{ Metric::Manhattan as u8 }>,
            Metric::Dot => avx2_kernel::<{ Metric::Dot as u8 }>,
        };
    }
    match metric {
        Metric::Angular => |t, d, q, o| tile(t, d, q, o, angular::<false>),
        Metric::Euclidean => |t, d, q, o| tile(t, d, q, o, euclidean::<false>),
        Metric::Manhattan => |t, d, q, o| tile(t, d, q, o, l1),
        Metric::Dot => |t, d, q, o| tile(t, d, q, o, negated_dot::<false>),
    }
}

/// The distance between two vectors in search form, on the scale the index reports: one pair at a time, for
/// the neighbour graph's walk and build, where the rows to compare are scattered rather than a tile.
pub type PairDistance = fn(&[f32], &[f32]) -> f32;

/// The pair distance for a metric, with AVX2 and FMA where the CPU has them.
pub fn pair_distance(metric: Metric) -> PairDistance {
    #[cfg(target_arch = "x86_64")]
    if avx2::detected() {
        return match metric {
            Metric::Angular => avx2_pair::<{ Metric::Angular as u8 }>,
            Metric::Euclidean => avx2_pair::<{ Metric::Euclidean as u8 }>,
            Metric::Manhattan => avx2_pair::<{ Metric::Manhattan as u8 }>,
            Metric::Dot => avx2_pair::<{ Metric::Dot as u8 }>,
        };
    }
    match metric {
        Metric::Angular => angular::<false>,
        Metric::Euclidean => euclidean::<false>,
        Metric::Manhattan => l1,
        Metric::Dot => negated_dot::<false>,
    }
}

/// The AVX2 tile kernel for metric `M` (a [`Metric`] as `u8`) behind a safe function pointer.
#[cfg(target_arch = "x86_64")]
fn avx2_kernel<const M: u8>(
    tile: &[f32],
    dimensions: usize,
    queries: &[&[f32]],
    out: &mut [Vec<f32>],
) {
    // SAFETY: only `kernel` names this function, and only after `avx2::detected()` found AVX2 and FMA on this
    // CPU, which is all the AVX2 code needs.
    unsafe { avx2::metric_tile::<M>(tile, dimensions, queries, out) }
}

/// The AVX2 pair distance for metric `M` (a [`Metric`] as `u8`) behind a safe function pointer.
#[cfg(target_arch = "x86_64")]
fn avx2_pair<const M: u8>(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `pair_distance` names this function, and only after `avx2::detected()` found AVX2 and FMA
    // on this CPU, which is all the AVX2 code needs.
    unsafe { avx2::metric_pair::<M>(a, b) }
}

#[inline(always)]
fn tile(
    tile: &[f32],
    dimensions: usize,
    queries: &[&[f32]],
    out: &mut [Vec<f32>],
    distance: impl Fn(&[f32], &[f32]) -> f32,
) {
    for (query, out) in queries.iter().zip(out) {
        out.clear();
        out.extend(
            tile.chunks_exact(dimensions)
                .map(|row| distance(row, query)),
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(in crate::index) mod avx2 {
    use crate::index::vector::Metric;

    /// Whether this CPU has AVX2 and FMA, all that the functions here need.
    pub fn detected() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// The tile kernel for metric `M` (a [`Metric`] as `u8`; a const, so each metric's loop is compiled apart).
    #[target_feature(enable = "avx2,fma")]
    pub fn metric_tile<const M: u8>(
        tile_: &[f32],
        dimensions: usize,
        queries: &[&[f32]],
        out: &mut [Vec<f32>],
    ) {
        const ANGULAR: u8 = Metric::Angular as u8;
        const EUCLIDEAN: u8 = Metric::Euclidean as u8;
        const MANHATTAN: u8 = Metric::Manhattan as u8;
        match M {
            ANGULAR => tile_dot(tile_, dimensions, queries, out, |dot| {
                (1.0 - dot.clamp(-1.0, 1.0)) / 2.0
            }),
            EUCLIDEAN => tile(tile_, dimensions, queries, out, super::euclidean::<true>),
            MANHATTAN => tile(tile_, dimensions, queries, out, super::l1),
            _ => tile_dot(tile_, dimensions, queries, out, |dot| -dot),
        }
    }

    /// The pair distance for metric `M` (a [`Metric`] as `u8`).
    #[target_feature(enable = "avx2,fma")]
    pub fn metric_pair<const M: u8>(a: &[f32], b: &[f32]) -> f32 {
        const ANGULAR: u8 = Metric::Angular as u8;
        const EUCLIDEAN: u8 = Metric::Euclidean as u8;
        const MANHATTAN: u8 = Metric::Manhattan as u8;
        match M {
            ANGULAR => (1.0 - dot(a, b).clamp(-1.0, 1.0)) / 2.0,
            EUCLIDEAN => pair(a, b, super::euclidean::<true>),
            MANHATTAN => pair(a, b, super::l1),
            _ => -dot(a, b),
        }
    }

    /// The same loop as [`super::tile`], compiled for AVX2 and FMA so the distance inlined into it uses them.
    #[target_feature(enable = "avx2,fma")]
    pub fn tile(
        tile: &[f32],
        dimensions: usize,
        queries: &[&[f32]],
        out: &mut [Vec<f32>],
        distance: impl Fn(&[f32], &[f32]) -> f32,
    ) {
        super::tile(tile, dimensions, queries, out, distance)
    }

    /// One distance, compiled for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub fn pair(a: &[f32], b: &[f32], distance: impl Fn(&[f32], &[f32]) -> f32) -> f32 {
        distance(a, b)
    }

    /// One dot product in four independent chains of eight lanes: a graph walk computes them one pair at a
    /// time, so the chains' latency, not the loads, sets the pace.
    #[target_feature(enable = "avx2,fma")]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let len = a.len().min(b.len());
        let wide = len / 32 * 32;
        let mut total = 0.0;
        // SAFETY: every 8-float load at offset i + 8j with i + 32 <= wide <= len stays inside both slices.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < wide {
                for (j, sum) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * j));
                    let y = _mm256_loadu_ps(b.as_ptr().add(i + 8 * j));
                    *sum = _mm256_fmadd_ps(x, y, *sum);
                }
                i += 32;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            total += horizontal_sum(sum);
        }
        for (x, y) in a[wide..len].iter().zip(&b[wide..len]) {
            total += x * y;
        }
        total
    }

    /// Dot products of one or two queries with each row of the tile, blocked four rows by two queries: each
    /// step loads two query registers and four row registers for eight multiply-adds in eight independent
    /// chains. One row and one query at a time, the scan waited on loads and on each chain's latency
    /// (~50 cycles per 128-float row). `finish` maps a dot product to the reported distance.
    #[target_feature(enable = "avx2,fma")]
    pub fn tile_dot(
        tile: &[f32],
        dimensions: usize,
        queries: &[&[f32]],
        out: &mut [Vec<f32>],
        finish: impl Fn(f32) -> f32,
    ) {
        match queries {
            [a, b, c] => {
                let [oa, ob, oc] = out else { return };
                block::<3>(tile, dimensions, [a, b, c], [oa, ob, oc], &finish)
            }
            [a, b] => {
                let [oa, ob, ..] = out else { return };
                block::<2>(tile, dimensions, [a, b], [oa, ob], &finish)
            }
            [a] => {
                let [oa, ..] = out else { return };
                block::<1>(tile, dimensions, [a], [oa], &finish)
            }
            _ => super::tile(tile, dimensions, queries, out, |r, q| {
                finish(super::dot::<true>(r, q))
            }),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn block<const Q: usize>(
        tile: &[f32],
        dimensions: usize,
        queries: [&[f32]; Q],
        mut out: [&mut Vec<f32>; Q],
        finish: &impl Fn(f32) -> f32,
    ) {
        use std::arch::x86_64::*;
        out.iter_mut().for_each(|o| o.clear());
        // The loads below rely on this, checked here for each tile rather than trusted from the caller (the
        // scan pads every query to `dimensions`): once per tile of 512 rows, it costs nothing measurable.
        assert!(
            dimensions > 0 && queries.iter().all(|q| q.len() >= dimensions),
            "each query has the tile's {dimensions} dimensions"
        );
        let rows = tile.len() / dimensions;
        let vectorized = dimensions / 8 * 8;
        let mut row = 0;
        // SAFETY: row r's values are tile[r * dimensions..(r + 1) * dimensions] with r < rows = tile.len() /
        // dimensions, and each query has at least `dimensions` values (asserted above), so every 8-float load at
        // offset i with i + 8 <= vectorized <= dimensions, and every scalar read at j < dimensions, stays inside
        // its row and its query.
        unsafe {
            while row + 4 <= rows {
                let base = tile.as_ptr().add(row * dimensions);
                let mut acc = [[_mm256_setzero_ps(); 4]; Q];
                let mut i = 0;
                while i < vectorized {
                    let q: [__m256; Q] =
                        std::array::from_fn(|k| _mm256_loadu_ps(queries[k].as_ptr().add(i)));
                    for r in 0..4 {
                        let x = _mm256_loadu_ps(base.add(r * dimensions + i));
                        for (sums, q) in acc.iter_mut().zip(&q) {
                            sums[r] = _mm256_fmadd_ps(x, *q, sums[r]);
                        }
                    }
                    i += 8;
                }
                for ((sums, query), out) in acc.iter().zip(&queries).zip(out.iter_mut()) {
                    for (r, sum) in sums.iter().enumerate() {
                        let mut total = horizontal_sum(*sum);
                        for j in vectorized..dimensions {
                            total += *base.add(r * dimensions + j) * query[j];
                        }
                        out.push(finish(total));
                    }
                }
                row += 4;
            }
        }
        for r in row..rows {
            for k in 0..Q {
                let dot =
                    super::dot::<true>(&tile[r * dimensions..(r + 1) * dimensions], queries[k]);
                out[k].push(finish(dot));
            }
        }
    }

    /// The sum of a register's eight lanes (the codes' dot product ends with it too).
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::index) fn horizontal_sum(v: std::arch::x86_64::__m256) -> f32 {
        use std::arch::x86_64::*;
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)))
    }
}

#[inline(always)]
fn angular<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - dot::<FMA>(a, b).clamp(-1.0, 1.0)) / 2.0
}

#[inline(always)]
fn euclidean<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    l2_squared::<FMA>(a, b).sqrt()
}

#[inline(always)]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn negated_dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    -dot::<FMA>(a, b)
}

/// Lanes of independent sums: the compiler maps them onto SIMD registers (two of eight with AVX2).
const LANES: usize = 16;

/// Sum of `f(x, y)` accumulated in lanes; with `FMA` the multiply-adds fuse (only where the CPU has FMA:
/// elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn lanes<const FMA: bool>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = 0f32;
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        let (m, n) = f(*x, *y);
        tail += m * n;
    }
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            let (m, n) = f(x[i], y[i]);
            acc[i] = if FMA {
                m.mul_add(n, acc[i])
            } else {
                acc[i] + m * n
            };
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    lanes::<FMA>(a, b, |x, y| (x, y))
}

#[inline(always)]
fn l2_squared<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    lanes::<FMA>(a, b, |x, y| (x - y, x - y))
}

#[inline(always)]
fn l1(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| (x - y).abs())
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += (x[i] - y[i]).abs();
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        match metric {
            Metric::Angular => {
                let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                (1.0 - dot / (na * nb)) / 2.0
            }
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Metric::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
            Metric::Dot => -dot,
        }
    }

    #[test]
    fn scan_matches_a_naive_search_for_every_metric() {
        let dims = 37; // not a multiple of the lanes, to cover the tails
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let rows: Vec<Vec<f32>> = (0..1500)
            .map(|_| (0..dims).map(|_| next()).collect())
            .collect();
        let query: Vec<f32> = (0..dims).map(|_| next()).collect();
        for metric in [
            Metric::Angular,
            Metric::Euclidean,
            Metric::Manhattan,
            Metric::Dot,
        ] {
            let mut data = Vec::new();
            for row in &rows {
                let mut row = row.clone();
                prepare(metric, &mut row);
                data.extend(row);
            }
            // Blocks of 100 rows: tiles and blocks do not line up, as in a real index.
            let blocks = data
                .chunks(100 * dims)
                .map(|b| Cow::Owned(b.to_vec()))
                .collect();
            let matrix = Matrix::new(dims, metric, blocks, 100);
            let mut expected: Vec<(u32, f32)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u32, naive(metric, r, &query)))
                .filter(|(i, _)| *i != 3)
                .collect();
            expected.sort_by(|a, b| a.1.total_cmp(&b.1));
            let got = matrix.nearest(
                &[Query {
                    vector: &query,
                    exclude: Some(3),
                }],
                10,
                None,
            );
            let got_items: Vec<u32> = got[0].iter().map(|h| h.0).collect();
            let expected_items: Vec<u32> = expected[..10].iter().map(|h| h.0).collect();
            assert_eq!(got_items, expected_items, "{metric:?}");
            for (g, e) in got[0].iter().zip(&expected) {
                assert!((g.1 - e.1).abs() < 1e-4, "{metric:?}: {} vs {}", g.1, e.1);
            }
            let keep: Vec<bool> = (0..rows.len()).map(|i| i % 3 == 0).collect();
            let filtered = matrix.nearest(
                &[Query {
                    vector: &query,
                    exclude: None,
                }],
                5,
                Some(&keep),
            );
            assert!(filtered[0].iter().all(|h| h.0 % 3 == 0));
        }
    }
}
