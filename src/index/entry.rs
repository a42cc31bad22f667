//! Where the graph walk of a vector that is not a clip of the index (an embedding, an upload, a held-out clip)
//! starts: the upper layers, small neighbour graphs over every 8th clip, every 64th, and so on up to one of at
//! most 2,048 nodes, walked greedily from the top down (from the nearest pivot of the top one) to find the clip
//! nearest the query, as HNSW's upper layers are.
//!
//! Why: a walk that starts next to the query's true neighbours reaches about hnswlib's recall at the same
//! breadth; one that starts from the nearest of 1,024 pivots needed twice the breadth, and spent it crossing the
//! space (docs/bench-log.md, "A new song's query: upper layers, side by side with hnswlib at 200,000 and
//! 1,000,000 clips", its "Why the start"). Starting from the exact nearest of every 8th clip did as well as
//! starting from the true nearest; a walk over a graph of every 8th clip finds those for a fraction of the main
//! walk's cost, and the layer above it finds its start the same way. Each layer is a stride through the clips,
//! which are laid out in the order of a random-projection tree's leaves, so it covers every part of the space;
//! node `j` of a layer of stride `s` is clip `j * s`, so a layer needs no table of which clips it holds.
//!
//! Each layer also keeps a copy of its nodes' codes, in node order, and the top layer one of its pivots' (about
//! 14% of the clips' codes at a million clips). Why: a process that asks one question (`recommend --embedding`)
//! pays a page fault for every page of the map it reads first, and the upper walks' nodes, 8 and 64 clips
//! apart, each had a page of the clips' codes to themselves: the pivots and the upper walks were the largest
//! share of such a process's page faults at a million clips (docs/bench-log.md, "The one-shot embedding query at
//! a million clips, before and after", its "What changed"). In their own tables the pivots fill two pages and the
//! top layer at most 256 KB. The copies are written from the clips' codes, so a walk over them takes the same steps as one
//! over the clips' codes would.
//!
//! An index without layers (built before them, or too small to need one) starts from the pivots alone; one
//! with layers but without their codes (built before those) reads the clips' codes.

use std::borrow::Cow;
use std::collections::BinaryHeap;

use anyhow::Result;
use heed::types::Bytes;
use heed::{RoTxn, RwTxn};

use crate::error::damaged;

use crate::index::codes::{CodedQuery, Codes};
use crate::index::graph::{self, Graph, Near, Space, Walk};
use crate::index::nndescent;
use crate::index::scan::{Matrix, pair_distance};
use crate::index::store::{LAYER_CODES_KEY, LAYERS_KEY, Settings, Store, le_word, span_end};

/// Each layer holds one in this many of the nodes below it.
const STRIDE: usize = 8;
/// Slots per node in a layer's lists.
pub const DEGREE: usize = 24;
/// A layer is added above the clips, or above the top layer, while it has more nodes than this: the pivots
/// of a layer this small are near enough to its nodes for a greedy walk. Indexes built before the greedy
/// descent stopped at 16,384, so a top layer larger than this marks one (see [`EARLIER_UPPER_EF`]).
const TOP_NODES: usize = 2048;
/// Nodes of the top layer compared with a query to find where the walks start: every n-th of them, at most
/// this many. Their codes are read in place, with no B-tree lookup: the forest's descent, B-tree lookups for
/// each tree node, was most of a held-out query's time (docs/bench-log.md, "A new song's query: where the walk
/// starts").
const PIVOTS: usize = 256;
/// The pivots are at least this many nodes of the top layer apart. What makes the nearest pivot near enough for
/// the top layer's walk is their spacing among that layer's nodes, not their count: a top layer of a smaller
/// index needs fewer, and comparing a query with them was a fixed cost of every held-out query
/// (docs/bench-log.md, "A breadth measured on the index", its "The fixed cost").
const PIVOT_SPACING: usize = 48;
/// Clips compared with a query to find where the walk starts in an index without layers: the pivots must then
/// be near enough to the query for the walk itself.
const PIVOTS_WITHOUT_LAYERS: usize = 1024;
/// The breadth of each upper layer's walk: 1, a greedy descent, as HNSW's. Why: the upper walks were more than
/// half of a held-out query's comparisons, and what they bought (a start nearer the query) cost less when the
/// main walk bought it instead (docs/bench-log.md, "The start: a greedy descent").
const UPPER_EF: usize = 1;
/// The breadth of the upper walks in an index built before the greedy descent (its top layer has more than
/// [`TOP_NODES`] nodes): its stored default breadth was measured with them.
const EARLIER_UPPER_EF: usize = 32;
/// Entry points each walk starts from, at most: a walk's breadth caps them.
const ENTRY_POINTS: usize = 8;

/// The upper layers, bottom first (none: an index too small for them, or built before them).
#[derive(Clone, Default)]
pub struct Layers<'a> {
    pub layers: Vec<Layer<'a>>,
    /// The top layer's pivots' codes; `None` in an index built before the layers' codes were stored.
    pub pivots: Option<Pivots<'a>>,
}

/// One upper layer: node `j` is clip `j * stride`.
#[derive(Clone)]
pub struct Layer<'a> {
    pub stride: usize,
    pub graph: Graph<'a>,
    /// Node `j`'s code is row `j`; `None` in an index built before they were stored (then it is clip
    /// `j * stride`'s row of the clips' codes).
    pub codes: Option<Codes<'a>>,
}

/// The top layer's pivots: row `p` of `codes` is node `p * every`'s code.
#[derive(Clone)]
pub struct Pivots<'a> {
    pub every: usize,
    pub codes: Codes<'a>,
}

/// Which nodes of a top layer of `nodes` are its pivots: every n-th, from the first.
pub fn pivot_every(nodes: usize) -> usize {
    spacing(nodes, PIVOTS).max(PIVOT_SPACING)
}

/// Whether clip `item` is a node of the upper layers (every layer's nodes are among the lowest's, every
/// [`STRIDE`]-th clip), were the index to have them.
pub fn in_upper_layers(item: u32) -> bool {
    (item as usize).is_multiple_of(STRIDE)
}

/// The spacing of `pivots` nodes spread evenly over `nodes` (1 when there are fewer nodes).
/// Where the upper layers' codes start in their value: after the two words of its header, and from format 6 at
/// the index's block pad, which puts the rows on cache lines as it does the clips' (store, `BLOCK_PAD`).
fn layer_codes_start(settings: &Settings) -> usize {
    settings.block_pad().max(8)
}

fn spacing(nodes: usize, pivots: usize) -> usize {
    (nodes / pivots.max(1)).max(1)
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

/// The clips a walk for `query` starts from: from the nearest pivots of the top layer, each layer's walk finds
/// where the next one down starts, and the bottom one's nearest are the clips. Without layers, the nearest
/// pivots among all clips.
pub fn entries(query: &mut CodedQuery, layers: &Layers, walk: &mut Walk) -> Vec<u32> {
    let Some(top) = layers.layers.last() else {
        let every = spacing(query.nodes(), PIVOTS_WITHOUT_LAYERS);
        return nearest_pivots(query, every);
    };
    let mut starts = match &layers.pivots {
        Some(pivots) => nearest_pivots(&mut query.over(&pivots.codes), 1)
            .into_iter()
            .map(|p| p * pivots.every as u32)
            .collect(),
        // The same pivots as the copies hold, read from the clips' codes.
        None => nearest_pivots(&mut sampled(query, top), pivot_every(top.graph.nodes())),
    };
    let breadth = if top.graph.nodes() > TOP_NODES {
        EARLIER_UPPER_EF
    } else {
        UPPER_EF
    };
    let mut items = Vec::new();
    for (at, layer) in layers.layers.iter().enumerate().rev() {
        let stride = layer.stride.max(1) as u32;
        if at + 1 < layers.layers.len() {
            // Below the top, the walk starts from the clips the layer above found.
            starts = items.iter().map(|&i| i / stride).collect();
        }
        let found = match &layer.codes {
            Some(codes) => graph::search(
                &layer.graph,
                &mut query.over(codes),
                &starts,
                breadth,
                walk,
                |_| true,
            ),
            None => graph::search(
                &layer.graph,
                &mut sampled(query, layer),
                &starts,
                breadth,
                walk,
                |_| true,
            ),
        };
        items = found
            .into_iter()
            .take(ENTRY_POINTS)
            .map(|(node, _)| node * stride)
            .collect();
    }
    items
}

/// `layer`'s nodes as rows of the clips' codes, for an index without the layers' own codes.
fn sampled<'s, 'c, 't>(
    query: &'s mut CodedQuery<'c, 't>,
    layer: &Layer,
) -> Sampled<'s, CodedQuery<'c, 't>> {
    Sampled {
        space: query,
        stride: layer.stride.max(1),
        nodes: layer.graph.nodes(),
    }
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

/// The [`ENTRY_POINTS`] nodes nearest the query among every `every`-th of `space`'s nodes, from the first.
fn nearest_pivots(space: &mut impl Space, every: usize) -> Vec<u32> {
    let (n, count) = (space.nodes(), ENTRY_POINTS);
    let stride = every.max(1);
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

impl Store {
    /// The upper layers (see [`entry`](crate::index::entry)), bottom first; none in an index without them.
    /// Their lists and codes are borrowed from the memory map like the graph's. The lists are stored as one
    /// value: the count of layers and their degree, each layer's stride and node count, then the lists (all
    /// little-endian u32). The codes are another (see [`Store::write_layer_codes`]).
    pub fn load_layers<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Layers<'t>> {
        let Some(bytes) = self
            .settings
            .remap_data_type::<Bytes>()
            .get(rtxn, LAYERS_KEY)?
        else {
            return Ok(Layers::default());
        };
        let damaged = || damaged(&self.dir, "its upper layers are unreadable");
        let word = |at: usize| le_word(bytes, at);
        let (count, degree) = word(0).zip(word(1)).ok_or_else(damaged)?;
        let mut layers = Vec::with_capacity(count.min(8));
        let mut at = (2 + 2 * count) * 4;
        for layer in 0..count {
            let (stride, nodes) = word(2 + 2 * layer)
                .zip(word(3 + 2 * layer))
                .ok_or_else(damaged)?;
            let end = span_end(at, nodes, degree * 4).ok_or_else(damaged)?;
            let lists = bytes.get(at..end).ok_or_else(damaged)?;
            if stride == 0 || degree == 0 {
                return Err(damaged());
            }
            at = end;
            let lists: Cow<'t, [u32]> = match bytemuck::try_cast_slice::<u8, u32>(lists) {
                Ok(values) if cfg!(target_endian = "little") => Cow::Borrowed(values),
                _ => Cow::Owned(
                    lists
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
            };
            layers.push(Layer {
                stride,
                graph: Graph::new(degree, vec![lists], nodes),
                codes: None,
            });
        }
        let mut layers = Layers {
            layers,
            pivots: None,
        };
        self.load_layer_codes(rtxn, settings, &mut layers)?;
        Ok(layers)
    }

    /// Lends `layers` their codes and the pivots', when the index has them: after a header of two little-endian
    /// u32 (the count of layers, and which nodes of the top layer are pivots: every n-th), zeros up to
    /// [`layer_codes_start`], each layer's nodes' codes in node order, bottom first, then the pivots'.
    fn load_layer_codes<'t>(
        &self,
        rtxn: &'t RoTxn,
        settings: &Settings,
        layers: &mut Layers<'t>,
    ) -> Result<()> {
        let Some(bytes) = self
            .settings
            .remap_data_type::<Bytes>()
            .get(rtxn, LAYER_CODES_KEY)?
        else {
            return Ok(());
        };
        let damaged = || damaged(&self.dir, "its upper layers' codes are unreadable");
        let word = |at: usize| le_word(bytes, at);
        let (count, every) = word(0).zip(word(1)).ok_or_else(damaged)?;
        let top_nodes = layers.layers.last().map_or(0, |top| top.graph.nodes());
        if count != layers.layers.len() || every == 0 || top_nodes == 0 {
            return Err(damaged());
        }
        let quantizer = self.quantizer(rtxn, settings)?;
        let row = settings.dimensions;
        let mut at = layer_codes_start(settings);
        let mut take = |rows: usize| -> Result<Codes<'t>> {
            let end = span_end(at, rows, row).ok_or_else(damaged)?;
            let block = bytes.get(at..end).ok_or_else(damaged)?;
            at = end;
            Ok(Codes::new(
                quantizer.clone(),
                vec![Cow::Borrowed(block)],
                rows,
            ))
        };
        for layer in &mut layers.layers {
            layer.codes = Some(take(layer.graph.nodes())?);
        }
        layers.pivots = Some(Pivots {
            every,
            codes: take(top_nodes.div_ceil(every))?,
        });
        if at != bytes.len() {
            return Err(damaged());
        }
        Ok(())
    }

    /// Stores a copy of the upper layers' nodes' codes and of the top layer's pivots', taken from the clips'
    /// codes as they are now (see [`entry`]; the form [`Store::load_layer_codes`] reads). A new index writes it
    /// after its layers; an append that replaced clips writes it again, as a replaced clip's code changed.
    pub fn write_layer_codes(&self, wtxn: &mut RwTxn, settings: &Settings) -> Result<()> {
        let bytes = {
            let layers = self.load_layers(wtxn, settings)?;
            let Some(top) = layers.layers.last() else {
                return Ok(());
            };
            let codes = self.load_codes(wtxn, settings)?;
            let every = pivot_every(top.graph.nodes());
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(layers.layers.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(every as u32).to_le_bytes());
            bytes.resize(layer_codes_start(settings), 0);
            let missing = || damaged(&self.dir, "an upper layer holds a clip without a code");
            let mut copy = |item: usize| -> Result<()> {
                let code = u32::try_from(item).ok().and_then(|i| codes.row(i));
                bytes.extend_from_slice(code.ok_or_else(missing)?);
                Ok(())
            };
            for layer in &layers.layers {
                for node in 0..layer.graph.nodes() {
                    copy(node * layer.stride)?;
                }
            }
            for node in (0..top.graph.nodes()).step_by(every) {
                copy(node * top.stride)?;
            }
            bytes
        };
        Ok(self
            .settings
            .remap_data_type::<Bytes>()
            .put(wtxn, LAYER_CODES_KEY, &bytes)?)
    }

    /// Stores the upper layers: each one's stride and lists (`degree` slots per node), bottom first.
    pub fn write_layers(
        &self,
        wtxn: &mut RwTxn,
        degree: usize,
        layers: &[(usize, Vec<u32>)],
    ) -> Result<()> {
        let words = layers.iter().map(|(_, lists)| lists.len()).sum::<usize>();
        let mut bytes = Vec::with_capacity((2 + 2 * layers.len() + words) * 4);
        let mut put = |v: usize| bytes.extend_from_slice(&(v as u32).to_le_bytes());
        put(layers.len());
        put(degree);
        for (stride, lists) in layers {
            put(*stride);
            put(lists.len() / degree.max(1));
        }
        for (_, lists) in layers {
            bytes.extend(lists.iter().flat_map(|v| v.to_le_bytes()));
        }
        Ok(self
            .settings
            .remap_data_type::<Bytes>()
            .put(wtxn, LAYERS_KEY, &bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::codes::Quantizer;
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

    /// `layers` with their own copies of their nodes' codes and the pivots', as the store writes them.
    fn with_codes<'a>(layers: &[Layer<'a>], codes: &Codes, quantizer: &Quantizer) -> Layers<'a> {
        let copy = |items: &mut dyn Iterator<Item = usize>| {
            let rows: Vec<u8> = items
                .flat_map(|item| codes.row(item as u32).unwrap().to_vec())
                .collect();
            let count = rows.len() / DIMENSIONS;
            Codes::new(quantizer.clone(), vec![Cow::Owned(rows)], count)
        };
        let mut layers = layers.to_vec();
        for layer in &mut layers {
            let (nodes, stride) = (layer.graph.nodes(), layer.stride);
            layer.codes = Some(copy(&mut (0..nodes).map(|j| j * stride)));
        }
        let top = layers.last().unwrap();
        let every = pivot_every(top.graph.nodes());
        let pivots = copy(
            &mut (0..top.graph.nodes())
                .step_by(every)
                .map(|j| j * top.stride),
        );
        Layers {
            layers,
            pivots: Some(Pivots {
                every,
                codes: pivots,
            }),
        }
    }

    /// [`clustered`] rows as the walks read them: their vectors, their codes and its quantizer, and the queries.
    fn coded_clusters(
        count: usize,
        queries: usize,
    ) -> (Matrix<'static>, Codes<'static>, Quantizer, Vec<Vec<f32>>) {
        let (rows, queries) = clustered(count, queries);
        let quantizer = Quantizer::fit(&rows, DIMENSIONS);
        let codes = Codes::new(
            quantizer.clone(),
            vec![Cow::Owned(quantizer.encode_all(&rows))],
            count,
        );
        let vectors = Matrix::new(DIMENSIONS, Metric::Angular, vec![Cow::Owned(rows)], count);
        (vectors, codes, quantizer, queries)
    }

    #[test]
    fn an_index_built_before_the_greedy_descent_keeps_its_wider_walks() {
        // Its one layer has more nodes than a top layer has now (2,500 of 20,000 clips): walked with breadth 32,
        // it leads to eight entry points, as when its breadth was measured.
        let count = 20_000;
        let (vectors, codes, _, queries) = coded_clusters(count, 20);
        let lists = build_layer(&vectors, count, STRIDE, 1).unwrap();
        let nodes = count.div_ceil(STRIDE);
        assert!(nodes > TOP_NODES);
        let earlier = Layers {
            layers: vec![Layer {
                stride: STRIDE,
                graph: Graph::new(DEGREE, vec![Cow::Borrowed(&lists[..])], nodes),
                codes: None,
            }],
            pivots: None,
        };
        let mut walk = Walk::default();
        for query in &queries {
            let mut space = CodedQuery::new(&codes, Metric::Angular, query);
            assert_eq!(entries(&mut space, &earlier, &mut walk).len(), ENTRY_POINTS);
        }
    }

    #[test]
    fn the_upper_walk_finds_the_sampled_clips_nearest_a_new_vector() {
        let count = 16_000;
        let (vectors, codes, quantizer, queries) = coded_clusters(count, 200);
        let built = build(&vectors, count, 1);
        let [(stride, lists)] = &built[..] else {
            panic!("16,000 clips have one layer, not {}", built.len());
        };
        let nodes = count.div_ceil(STRIDE);
        assert_eq!((*stride, lists.len()), (STRIDE, nodes * DEGREE));
        let sampled = Layers {
            layers: vec![Layer {
                stride: STRIDE,
                graph: Graph::new(DEGREE, vec![Cow::Borrowed(&lists[..])], nodes),
                codes: None,
            }],
            pivots: None,
        };
        let own = with_codes(&sampled.layers, &codes, &quantizer);
        let distance = pair_distance(Metric::Angular);
        let mut walk = Walk::default();
        let mut found = 0;
        for query in &queries {
            let mut space = CodedQuery::new(&codes, Metric::Angular, query);
            let entries = entries(&mut space, &sampled, &mut walk);
            assert_eq!(entries.len(), UPPER_EF);
            assert!(entries.iter().all(|&e| (e as usize).is_multiple_of(STRIDE)));
            // The layers' own copies of the codes are the same codes: the walks take the same steps.
            assert_eq!(self::entries(&mut space, &own, &mut walk), entries);
            // How many sampled clips are nearer the query than the clip the descent ended on.
            let reached = distance(query, vectors.row(entries[0]).unwrap());
            let nearer = (0..count)
                .step_by(STRIDE)
                .filter(|&a| distance(query, vectors.row(a as u32).unwrap()) < reached)
                .count();
            found += usize::from(nearer < ENTRY_POINTS);
        }
        // The walk's doing, not the pivots': they are 42 of the layer's 2,000 nodes (every 48th), fewer than its
        // 64 tight clusters. The descent ends on the nearest sampled clip itself for about half the queries and
        // among the eight nearest for 130 of 200; the rest end in another cluster, which a greedy walk on lists
        // with few edges between clusters does not leave (with walks of 32 it was 180 or more). On the real and
        // synthetic sets the main walk from there reached the same recall with fewer comparisons in all
        // (docs/bench-log.md, "The start: a greedy descent"), and the breadth measured at build makes up the rest.
        assert!(
            found >= 120,
            "the descent ended among the 8 nearest sampled clips for {found} of 200 queries"
        );
    }
}
