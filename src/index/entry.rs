//! Where the graph walk of a vector that is not a clip of the index (an embedding, an upload, a held-out clip)
//! starts: the upper layers, small neighbour graphs over every 8th clip, every 64th, and so on, walked from the
//! top down (from a few pivots of the top one) to find the clips nearest the query, as HNSW's upper layers are.
//!
//! Why: a walk that starts next to the query's true neighbours needs a breadth of 32 for recall@10 0.95, the
//! same as hnswlib; one that starts from the nearest of 1,024 pivots needed 64, and spent its breadth crossing
//! the space (200,000 spread-out clips, 1,000 held out; BENCHMARKS.md, "A new song's query"). Starting from the
//! exact nearest of every 8th clip did as well as starting from the true nearest; a walk over a graph of every
//! 8th clip finds those for a fraction of the main walk's cost, and the layer above it finds its start the same
//! way. Each layer is a stride through the clips, which are laid out in the order of a random-projection tree's
//! leaves, so it covers every part of the space; node `j` of a layer of stride `s` is clip `j * s`, so a layer
//! stores nothing but its lists (read in place from the memory map, like the main graph's).
//!
//! An index without layers (built before them, or too small to need one) starts from the pivots alone.

use std::borrow::Cow;
use std::collections::BinaryHeap;

use crate::index::graph::{self, Graph, Near, Space, Walk};
use crate::index::nndescent;
use crate::index::scan::{Matrix, pair_distance};

/// Each layer holds one in this many of the nodes below it.
const STRIDE: usize = 8;
/// Slots per node in a layer's lists.
pub const DEGREE: usize = 24;
/// A layer is added above the clips, or above the top layer, while it has more nodes than this: the pivots
/// of a layer this small are near enough to its nodes for a walk.
const TOP_NODES: usize = 16 * 1024;
/// Nodes of the top layer compared with a query to find where the walks start: every n-th of them. Their codes
/// are read in place, with no B-tree lookup (the forest's descent was 87% of a held-out query's time at 200,000
/// clips).
const PIVOTS: usize = 256;
/// Clips compared with a query to find where the walk starts in an index without layers: the pivots must then
/// be near enough to the query for the walk itself.
const PIVOTS_WITHOUT_LAYERS: usize = 1024;
/// The breadth of each upper layer's walk.
const UPPER_EF: usize = 32;
/// Entry points each walk starts from.
const ENTRY_POINTS: usize = 8;

/// One upper layer: node `j` is clip `j * stride`.
#[derive(Clone)]
pub struct Layer<'a> {
    pub stride: usize,
    pub graph: Graph<'a>,
}

/// The upper layers' lists ([`DEGREE`] slots per node) for the first `count` rows of `vectors` (in search form,
/// laid out), with each layer's stride, bottom first; none when there are too few clips to need one. The same
/// vectors and seed give the same lists.
pub fn build(vectors: &Matrix, count: usize, seed: u64) -> Vec<(usize, Vec<u32>)> {
    let mut layers = Vec::new();
    let mut stride = STRIDE;
    while count.div_ceil(stride / STRIDE) > TOP_NODES {
        let Some(lists) = build_layer(vectors, count, stride, seed ^ stride as u64) else {
            break;
        };
        layers.push((stride, lists));
        stride *= STRIDE;
    }
    layers
}

/// The lists of the layer of every `stride`-th of the first `count` rows.
fn build_layer(vectors: &Matrix, count: usize, stride: usize, seed: u64) -> Option<Vec<u32>> {
    let dimensions = vectors.dimensions();
    let nodes = count.div_ceil(stride);
    let mut sample = Vec::with_capacity(nodes * dimensions);
    for item in (0..count).step_by(stride) {
        sample.extend_from_slice(vectors.row(item as u32)?);
    }
    let sample = Matrix::new(
        dimensions,
        vectors.metric(),
        vec![Cow::Borrowed(&sample[..])],
        nodes,
    );
    let params = nndescent::Params {
        neighbours: DEGREE,
        max_candidates: DEGREE,
        max_iterations: 12,
        delta: 0.001,
        trees: 4,
        leaf_size: graph::LEAF_SIZE,
        seed: seed ^ 0x0bbe7,
    };
    let knn = nndescent::build(&sample, nodes, &params, None, &|_| ());
    Some(graph::from_knn(
        &knn,
        &sample,
        pair_distance(vectors.metric()),
        DEGREE,
    ))
}

/// The clips a walk for `space`'s query starts from: from the nearest pivots of the top layer, each layer's
/// walk finds where the next one down starts, and the bottom one's nearest are the clips. Without layers, the
/// nearest pivots among all clips.
pub fn entries(space: &mut impl Space, layers: &[Layer], walk: &mut Walk) -> Vec<u32> {
    if layers.is_empty() {
        return nearest_pivots(space, PIVOTS_WITHOUT_LAYERS);
    }
    let mut items: Option<Vec<u32>> = None;
    for layer in layers.iter().rev() {
        let stride = layer.stride.max(1);
        let mut sampled = Sampled {
            space: &mut *space,
            stride,
            nodes: layer.graph.nodes(),
        };
        let starts = match &items {
            None => nearest_pivots(&mut sampled, PIVOTS),
            Some(items) => items.iter().map(|&i| i / stride as u32).collect(),
        };
        let found = graph::search(&layer.graph, &mut sampled, &starts, UPPER_EF, walk, |_| {
            true
        });
        items = Some(
            found
                .into_iter()
                .take(ENTRY_POINTS)
                .map(|(node, _)| node * stride as u32)
                .collect(),
        );
    }
    items.unwrap_or_default()
}

/// The upper layer's nodes as a space: node `j` is clip `j * stride` of the clips' space.
struct Sampled<'s, S: Space> {
    space: &'s mut S,
    stride: usize,
    nodes: usize,
}

impl<S: Space> Space for Sampled<'_, S> {
    fn nodes(&self) -> usize {
        self.nodes
    }

    #[inline]
    fn distance(&mut self, node: u32) -> Option<f32> {
        let item = (node as usize).checked_mul(self.stride)?;
        self.space.distance(u32::try_from(item).ok()?)
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        if let Some(item) = (node as usize)
            .checked_mul(self.stride)
            .and_then(|i| u32::try_from(i).ok())
        {
            self.space.prefetch(item);
        }
    }
}

/// The [`ENTRY_POINTS`] nodes nearest the query among `pivots` spread evenly over `space`'s nodes.
fn nearest_pivots(space: &mut impl Space, pivots: usize) -> Vec<u32> {
    let (n, count) = (space.nodes(), ENTRY_POINTS);
    let stride = (n / pivots).max(1);
    let mut best: BinaryHeap<Near> = BinaryHeap::with_capacity(count + 1);
    for node in (0..n).step_by(stride) {
        let node = node as u32;
        if let Some(d) = space.distance(node) {
            best.push(Near(d, node));
            if best.len() > count {
                best.pop();
            }
        }
    }
    best.into_iter().map(|Near(_, node)| node).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::graph::Exact;
    use crate::index::hash::hash;
    use crate::index::scan::prepare;
    use crate::index::vector::Metric;

    const DIMENSIONS: usize = 16;

    /// `count` rows in search form around 64 centres, in the order the build lays them out (a centre's rows
    /// together), and `queries` more of the same kind that are not among them.
    fn clustered(count: usize, queries: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
        let value = |i: usize, d: usize, salt: u64| {
            (hash(7, i as u64, d as u64, salt) % 2001) as f32 / 1000.0 - 1.0
        };
        let row = |i: usize| {
            let centre = i % 64;
            let mut row: Vec<f32> = (0..DIMENSIONS)
                .map(|d| 4.0 * value(centre, d, 1) + value(i, d, 2))
                .collect();
            prepare(Metric::Angular, &mut row);
            row
        };
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&i| i % 64);
        let rows = order.into_iter().flat_map(row).collect();
        (rows, (count..count + queries).map(row).collect())
    }

    #[test]
    fn a_small_index_has_no_upper_layer() {
        let (rows, _) = clustered(TOP_NODES, 0);
        let vectors = Matrix::new(
            DIMENSIONS,
            Metric::Angular,
            vec![Cow::Borrowed(&rows[..])],
            TOP_NODES,
        );
        assert!(build(&vectors, TOP_NODES, 1).is_empty());
    }

    #[test]
    fn the_upper_walk_finds_the_sampled_clips_nearest_a_new_vector() {
        let count = 20_000;
        let (rows, queries) = clustered(count, 200);
        let vectors = Matrix::new(
            DIMENSIONS,
            Metric::Angular,
            vec![Cow::Borrowed(&rows[..])],
            count,
        );
        let built = build(&vectors, count, 1);
        let [(stride, lists)] = &built[..] else {
            panic!("20,000 clips have one layer, not {}", built.len());
        };
        let nodes = count.div_ceil(STRIDE);
        assert_eq!((*stride, lists.len()), (STRIDE, nodes * DEGREE));
        let layers = [Layer {
            stride: STRIDE,
            graph: Graph::new(DEGREE, vec![Cow::Borrowed(&lists[..])], nodes),
        }];
        let distance = pair_distance(Metric::Angular);
        let mut walk = Walk::default();
        let mut found = 0;
        for query in &queries {
            let mut space = Exact {
                vectors: &vectors,
                distance,
                query,
            };
            let entries = entries(&mut space, &layers, &mut walk);
            assert_eq!(entries.len(), ENTRY_POINTS);
            assert!(entries.iter().all(|&e| (e as usize).is_multiple_of(STRIDE)));
            let nearest_sampled = (0..count)
                .step_by(STRIDE)
                .min_by(|&a, &b| {
                    let da = distance(query, vectors.row(a as u32).unwrap());
                    let db = distance(query, vectors.row(b as u32).unwrap());
                    da.total_cmp(&db)
                })
                .unwrap() as u32;
            found += usize::from(entries.contains(&nearest_sampled));
        }
        // The walk's doing, not the pivots': they are 256 of the layer's 2,500 nodes.
        assert!(
            found >= 180,
            "the nearest sampled clip was among the entries for {found} of 200 queries"
        );
    }
}
