//! The neighbour graph: each clip's list of up to `degree` neighbours, stored as flat arrays of item ids in
//! large LMDB values and read in place from the memory map, and the best-first walk that answers a query.
//!
//! Why a graph: a forest asks many trees for candidates and compares them all; a walk starts at (or near) the
//! query and moves only towards closer clips, so it compares a few hundred clips where the trees compare
//! thousands, and it touches a few pages of the map rather than a B-tree lookup per node (docs/bench-log.md,
//! "Where the time goes (recommend with the trees, 1,000,000 clips; the default before the graph)").
//!
//! The lists come from the NN-descent k-nearest-neighbour graph (`nndescent`), pruned as PyNNDescent and
//! HNSW do: a neighbour is dropped when a nearer kept neighbour is closer to it than the clip is (the path
//! through that neighbour reaches it anyway), and every kept edge is also added backwards, so that each clip can
//! be reached and the lists point in all directions rather than into the densest spot nearby.
//!
//! Then each clip's list is chosen once more, as NSG and Vamana do, from what walks over those lists find: a walk
//! from the clip itself (its neighbourhood, found better than NN-descent's approximation), and the path of a walk
//! that comes to it from far away. Why the path: near-duplicate clips form islands whose members list only each
//! other, so no list outside points in and a walk that starts outside never enters; the clips where a walk towards
//! the island stops are given an edge into it (by the reverse edges), and the lists are joined by diversity, not
//! cut by distance, so that such a long edge survives. At 300,000 spread-out clips this took held-out recall@10
//! at breadth 32 from 0.947 to 0.962 (docs/bench-log.md, "Islands: the graph refined along the paths").

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rayon::prelude::*;

use anyhow::Result;
use heed::{RoTxn, RwTxn};

use crate::error::damaged;

use crate::index::nndescent::{self, EMPTY, KnnGraph};
use crate::index::rptree;
use crate::index::scan::{Matrix, PairDistance, pair_distance};
use crate::index::store::{Settings, Store, VECTOR_BLOCK_ROWS};

/// Neighbours per clip found by NN-descent, and slots per clip in the stored lists (after pruning, plus the
/// reverse edges). Chosen by measurement on the spread-out synthetic sets (docs/bench-log.md, "Choosing the
/// default search").
pub const NEIGHBOURS: usize = 30;
pub const DEGREE: usize = 32;
/// How readily pruning keeps a neighbour: it is dropped only when a kept neighbour is this many times nearer
/// to it than the clip is (1 is HNSW's and PyNNDescent's rule; Vamana relaxes it to keep some longer edges).
const PRUNE_ALPHA: f32 = 1.3;
/// Clips per leaf of the random-projection trees that seed NN-descent and lay the clips out.
pub const LEAF_SIZE: usize = 32;
/// Random-projection trees seeding NN-descent.
const TREES: usize = 6;
/// The breadth of the walk from each clip that refines its list once NN-descent's lists are pruned: its
/// candidates are then what a walk finds, not only NN-descent's approximate nearest.
const REFINE_EF: usize = 64;
/// Where the walk that comes to a clip from far away starts (clips picked from the clip's number, so the same
/// clips give the same lists), and its breadth: the nodes it expands on the way are candidates for the clip's list.
const FAR_STARTS: usize = 8;
const FAR_EF: usize = 32;
/// A clip's own choice of neighbours fills at most this many of its [`DEGREE`] slots, so that the reverse edges
/// (the only way into an island) keep room.
const FORWARD: usize = 24;
/// The walk's breadth when an append links a new clip into the graph.
pub const INSERT_EF: usize = 64;
/// Entry points the forest gives the walk that links an appended clip into the graph.
pub const ENTRY_POINTS: usize = 8;

/// The forest's budget when it finds entry points: a rough start is enough, the walk does the rest.
pub fn entry_search_k() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(64).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// The stored lists for the first `count` rows of `vectors`: NN-descent seeded from `tree`'s leaves and more
/// random-projection trees, then pruned (see the module's comment). The same vectors and seed give the same
/// lists, whatever the threads.
pub fn build(
    vectors: &Matrix,
    count: usize,
    tree: &rptree::Tree,
    seed: u64,
    report: &(dyn Fn(&str) + Sync),
) -> Vec<u32> {
    let params = nndescent::Params {
        neighbours: NEIGHBOURS,
        max_candidates: NEIGHBOURS,
        max_iterations: 12,
        delta: 0.001,
        trees: TREES,
        leaf_size: LEAF_SIZE,
        seed,
    };
    let knn = nndescent::build(vectors, count, &params, Some(tree), report);
    report("pruning the neighbour graph");
    let distance = pair_distance(vectors.metric());
    let lists = from_knn(&knn, vectors, distance, DEGREE);
    report("refining the neighbour graph");
    refine(&lists, vectors, distance, DEGREE, REFINE_EF)
}

/// The lists again, each node's candidates now what walks over `lists` find (see the module's comment): a walk
/// of breadth `ef` from the node, and the nodes expanded on the way by a walk towards it from [`FAR_STARTS`]
/// other nodes; with its present list, diversified and joined with the reverse edges as [`from_knn`] does. Each
/// node's walks read only the old lists, so the result does not depend on the threads.
fn refine(
    lists: &[u32],
    vectors: &Matrix,
    distance: PairDistance,
    degree: usize,
    ef: usize,
) -> Vec<u32> {
    let nodes = lists.len() / degree.max(1);
    let graph = Graph::new(degree, vec![Cow::Borrowed(lists)], nodes.max(1));
    let forward: Vec<Vec<(u32, f32)>> = (0..nodes as u32)
        .into_par_iter()
        .map_init(Walk::default, |walk, node| {
            let Some(query) = vectors.row(node) else {
                return Vec::new();
            };
            let mut space = Exact {
                vectors,
                distance,
                query,
            };
            let mut found = search(&graph, &mut space, &[node], ef, walk, |n| n != node);
            let starts = far_starts(node, nodes);
            walk.path = Some(Vec::new());
            search(&graph, &mut space, &starts, FAR_EF, walk, |n| n != node);
            found.extend(
                walk.path
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|&(n, _)| n != node),
            );
            found.extend(
                graph
                    .neighbours(node)
                    .iter()
                    .filter_map(|&n| Some((n, distance(query, vectors.row(n)?)))),
            );
            found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            found.dedup_by_key(|e| e.0);
            diversify(&found, vectors, distance, FORWARD.min(degree))
        })
        .collect();
    join(forward, vectors, distance, degree)
}

/// [`FAR_STARTS`] nodes of `nodes` picked from `node`'s number (xorshift), the same on every run.
fn far_starts(node: u32, nodes: usize) -> Vec<u32> {
    let mut state = (u64::from(node) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..FAR_STARTS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % nodes.max(1) as u64) as u32
        })
        .collect()
}

/// The stored lists: node `i`'s at `[i * degree..(i + 1) * degree]` of the concatenated blocks, unused slots
/// at the end holding [`EMPTY`].
#[derive(Clone)]
pub struct Graph<'a> {
    degree: usize,
    blocks: Vec<Cow<'a, [u32]>>,
    block_rows: usize,
}

impl<'a> Graph<'a> {
    pub fn new(degree: usize, blocks: Vec<Cow<'a, [u32]>>, block_rows: usize) -> Self {
        Graph {
            degree: degree.max(1),
            blocks,
            block_rows: block_rows.max(1),
        }
    }

    /// Nodes held.
    pub fn nodes(&self) -> usize {
        let full = self.blocks.len().saturating_sub(1) * self.block_rows;
        full + self.blocks.last().map_or(0, |b| b.len() / self.degree)
    }

    /// A node's neighbours (empty for a node the graph does not hold).
    #[inline]
    pub fn neighbours(&self, node: u32) -> &[u32] {
        let list = self.slots(node);
        let used = list.iter().position(|&n| n == EMPTY).unwrap_or(list.len());
        &list[..used]
    }

    /// Asks the CPU to start loading a node's list (see [`prefetch_bytes`]).
    #[inline]
    pub fn prefetch(&self, node: u32) {
        prefetch_bytes(bytemuck::cast_slice(self.slots(node)));
    }

    /// A node's slots, the empty ones at the end included (none for a node the graph does not hold).
    #[inline]
    fn slots(&self, node: u32) -> &[u32] {
        let (block, row) = (
            node as usize / self.block_rows,
            node as usize % self.block_rows,
        );
        let start = row * self.degree;
        self.blocks
            .get(block)
            .and_then(|b| b.get(start..start + self.degree))
            .unwrap_or(&[])
    }
}

/// A distance that sorts as a total order (NaN last), ties by node, for the heaps.
#[derive(Clone, Copy, PartialEq)]
pub struct Near(pub f32, pub u32);

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// The walk's working memory, kept between queries: which nodes this query has seen (one bit per node, and
/// the words it set, to clear them for the next query) and the two heaps. A bit rather than a stamp per node:
/// at a million clips the bits take 128 KB where stamps took 4 MB, and a one-shot query pays a page fault for
/// each page of either it touches.
#[derive(Default)]
pub struct Walk {
    seen: Vec<u64>,
    touched: Vec<u32>,
    /// The neighbours of the node being expanded that are new to this walk.
    next: Vec<u32>,
    frontier: BinaryHeap<Reverse<Near>>,
    found: BinaryHeap<Near>,
    /// When set, every node the walk expands, with its distance (the build's refinement reads a walk's path).
    path: Option<Vec<(u32, f32)>>,
}

impl Walk {
    fn start(&mut self, nodes: usize) {
        let words = nodes.div_ceil(64);
        if self.seen.len() < words {
            self.seen = vec![0; words];
        } else {
            for &word in &self.touched {
                self.seen[word as usize] = 0;
            }
        }
        self.touched.clear();
        self.frontier.clear();
        self.found.clear();
    }

    /// Marks a node seen; false if it was already (or is past the last node).
    #[inline]
    fn visit(&mut self, node: u32) -> bool {
        let (word, bit) = (node as usize / 64, 1u64 << (node % 64));
        match self.seen.get_mut(word) {
            Some(bits) if *bits & bit == 0 => {
                if *bits == 0 {
                    self.touched.push(word as u32);
                }
                *bits |= bit;
                true
            }
            _ => false,
        }
    }
}

/// What a walk compares a query with: each node's distance to it (`None` for a node without a row), and a
/// hint to start loading a node's row. The walk over the stored vectors ([`Exact`]) links appended clips in;
/// queries walk over the compact codes (`codes::CodedQuery`).
pub trait Space {
    /// Nodes with a row.
    fn nodes(&self) -> usize;
    fn distance(&mut self, node: u32) -> Option<f32>;
    fn prefetch(&self, node: u32);
}

/// A query compared with the stored vectors.
pub struct Exact<'q, 'm> {
    pub vectors: &'q Matrix<'m>,
    pub distance: PairDistance,
    pub query: &'q [f32],
}

impl Space for Exact<'_, '_> {
    fn nodes(&self) -> usize {
        self.vectors.rows()
    }

    #[inline]
    fn distance(&mut self, node: u32) -> Option<f32> {
        Some((self.distance)(self.query, self.vectors.row(node)?))
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        if let Some(row) = self.vectors.row(node) {
            prefetch_bytes(bytemuck::cast_slice(row));
        }
    }
}

/// The `ef` nearest accepted nodes the walk finds from `entries`, nearest first (ties by id). Nodes `accept`
/// refuses (the query clip itself, clips without a wanted label) are walked through but not returned.
pub fn search(
    graph: &Graph,
    space: &mut impl Space,
    entries: &[u32],
    ef: usize,
    walk: &mut Walk,
    accept: impl Fn(u32) -> bool,
) -> Vec<(u32, f32)> {
    let ef = ef.max(1);
    walk.start(graph.nodes().max(space.nodes()));
    for &entry in entries {
        if !walk.visit(entry) {
            continue;
        }
        let Some(d) = space.distance(entry) else {
            continue;
        };
        walk.frontier.push(Reverse(Near(d, entry)));
        if accept(entry) {
            walk.found.push(Near(d, entry));
        }
    }
    while walk.found.len() > ef {
        walk.found.pop();
    }
    while let Some(Reverse(Near(d, node))) = walk.frontier.pop() {
        if walk.found.len() >= ef && walk.found.peek().is_some_and(|w| d > w.0) {
            break;
        }
        if let Some(path) = &mut walk.path {
            path.push((node, d));
        }
        // The list of the node most likely expanded next, loading while this one's neighbours are compared: a
        // clip's list lies apart from its code, and the first read of a list was the walk's largest stall.
        if let Some(Reverse(Near(_, after))) = walk.frontier.peek() {
            graph.prefetch(*after);
        }
        // The rows of the neighbours not seen yet, all asked for before any is compared: they are scattered
        // over the map, and loading them together rather than one after another hides most of the wait.
        walk.next.clear();
        for &next in graph.neighbours(node) {
            if walk.visit(next) {
                space.prefetch(next);
                walk.next.push(next);
            }
        }
        for i in 0..walk.next.len() {
            let next = walk.next[i];
            let Some(d) = space.distance(next) else {
                continue;
            };
            let full = walk.found.len() >= ef;
            if full && walk.found.peek().is_some_and(|w| d >= w.0) {
                continue;
            }
            walk.frontier.push(Reverse(Near(d, next)));
            if accept(next) {
                walk.found.push(Near(d, next));
                if walk.found.len() > ef {
                    walk.found.pop();
                }
            }
        }
    }
    let mut found: Vec<(u32, f32)> = walk.found.drain().map(|Near(d, n)| (n, d)).collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    found
}

/// Asks the CPU to start loading a row the walk is about to compare: the rows are scattered over the map, so
/// each comparison would otherwise wait for memory.
#[inline(always)]
pub fn prefetch_bytes(row: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is a hint with no effect on memory; the pointers are inside the row (the last
        // line is asked for by the row's last byte, as a row need not start on a line).
        unsafe {
            for line in (0..row.len()).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(line).cast());
            }
            if let Some(last) = row.last() {
                _mm_prefetch::<_MM_HINT_T0>((last as *const u8).cast());
            }
        }
    }
}

/// The kept part of `sorted` (a node's candidates, nearest first): a candidate is dropped when a kept one is
/// nearer to it than the node is, and at most `max` are kept.
fn diversify(
    sorted: &[(u32, f32)],
    vectors: &Matrix,
    distance: PairDistance,
    max: usize,
) -> Vec<(u32, f32)> {
    let mut kept: Vec<(u32, f32)> = Vec::with_capacity(max);
    for &(candidate, d) in sorted {
        if kept.len() == max {
            break;
        }
        let Some(row) = vectors.row(candidate) else {
            continue;
        };
        let shadowed = kept.iter().any(|&(k, _)| {
            vectors
                .row(k)
                .is_some_and(|kept_row| PRUNE_ALPHA * distance(row, kept_row) < d)
        });
        if !shadowed {
            kept.push((candidate, d));
        }
    }
    kept
}

/// The lists to store, `degree` slots per node, from the k-nearest-neighbour graph: each node's neighbours
/// diversified (at most [`FORWARD`]), joined with the diversified reverse edges (see [`join`]).
pub fn from_knn(
    knn: &KnnGraph,
    vectors: &Matrix,
    distance: PairDistance,
    degree: usize,
) -> Vec<u32> {
    let nodes = knn.ids.len() / knn.k.max(1);
    let forward: Vec<Vec<(u32, f32)>> = (0..nodes)
        .into_par_iter()
        .map(|node| {
            let sorted: Vec<(u32, f32)> = knn
                .neighbours(node)
                .filter(|&(n, _)| n as usize != node)
                .collect();
            diversify(&sorted, vectors, distance, FORWARD.min(degree))
        })
        .collect();
    join(forward, vectors, distance, degree)
}

/// The lists to store from each node's diversified list (`forward`): with the diversified reverse edges,
/// diversified again and cut to `degree`, nearest first. Diversified rather than cut by distance: a reverse edge
/// into an island is long, and a cut by distance dropped it first.
fn join(
    forward: Vec<Vec<(u32, f32)>>,
    vectors: &Matrix,
    distance: PairDistance,
    degree: usize,
) -> Vec<u32> {
    let nodes = forward.len();
    let mut backward: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nodes];
    for (node, list) in forward.iter().enumerate() {
        for &(next, d) in list {
            backward[next as usize].push((node as u32, d));
        }
    }
    let mut lists = vec![EMPTY; nodes * degree];
    lists
        .par_chunks_mut(degree)
        .zip(forward.par_iter())
        .zip(backward.par_iter_mut())
        .for_each(|((slots, forward), backward)| {
            backward.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let backward = diversify(backward, vectors, distance, degree);
            let mut merged: Vec<(u32, f32)> = forward.iter().chain(&backward).copied().collect();
            merged.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            merged.dedup_by_key(|e| e.0);
            let merged = diversify(&merged, vectors, distance, degree);
            for (slot, (node, _)) in slots.iter_mut().zip(merged) {
                *slot = node;
            }
        });
    lists
}

/// Links `node` (whose vector is in `vectors`) into `lists` (`degree` slots per node, grown as needed), as an
/// append does: its list comes from a walk with breadth `ef` from `entries`, diversified, and it is added to
/// each new neighbour's list, which is re-diversified when full. Returns the nodes whose lists changed.
#[allow(clippy::too_many_arguments)]
pub fn insert(
    lists: &mut Vec<u32>,
    degree: usize,
    vectors: &Matrix,
    distance: PairDistance,
    node: u32,
    entries: &[u32],
    ef: usize,
    walk: &mut Walk,
) -> Vec<u32> {
    // Every clip with a vector gets its slots, so a neighbour found among clips appended in the same run (the
    // forest's entry points include them) has a list to join.
    let needed = vectors.rows().max(node as usize + 1) * degree;
    if lists.len() < needed {
        lists.resize(needed, EMPTY);
    }
    let Some(query) = vectors.row(node) else {
        return Vec::new();
    };
    let found = {
        let graph = Graph::new(
            degree,
            vec![Cow::Borrowed(&lists[..])],
            lists.len() / degree,
        );
        let mut space = Exact {
            vectors,
            distance,
            query,
        };
        search(&graph, &mut space, entries, ef, walk, |n| n != node)
    };
    let chosen = diversify(&found, vectors, distance, degree);
    let at = node as usize * degree;
    lists[at..at + degree].fill(EMPTY);
    for (slot, &(next, _)) in lists[at..at + degree].iter_mut().zip(&chosen) {
        *slot = next;
    }
    let mut changed = vec![node];
    for &(next, _) in &chosen {
        let start = next as usize * degree;
        let Some(list) = lists.get_mut(start..start + degree) else {
            continue;
        };
        if list.contains(&node) {
            continue;
        }
        if let Some(free) = list.iter().position(|&n| n == EMPTY) {
            list[free] = node;
        } else {
            let Some(base) = vectors.row(next) else {
                continue;
            };
            let mut candidates: Vec<(u32, f32)> = list
                .iter()
                .chain(std::iter::once(&node))
                .filter_map(|&n| Some((n, distance(base, vectors.row(n)?))))
                .collect();
            candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let kept = diversify(&candidates, vectors, distance, degree);
            list.fill(EMPTY);
            for (slot, (n, _)) in list.iter_mut().zip(kept) {
                *slot = n;
            }
        }
        changed.push(next);
    }
    changed
}

impl Store {
    /// Every clip's neighbour list, borrowed from the memory map like the vectors.
    pub fn load_graph<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Graph<'t>> {
        if settings.graph_degree == 0 {
            return Err(damaged(
                &self.dir,
                "its settings give no room for neighbours",
            ));
        }
        let blocks =
            self.load_blocks(rtxn, self.graph, "graph", settings.graph_degree, settings)?;
        // A list naming a clip past the last is skipped by the walk, which finds no vector for it.
        Ok(Graph::new(
            settings.graph_degree,
            blocks,
            VECTOR_BLOCK_ROWS as usize,
        ))
    }

    /// Stores the given blocks of `lists` (`settings.graph_degree` slots per clip, clip `i` at `i * degree`) in
    /// the graph table, each after the index's pad ([`Settings::block_pad`]).
    pub fn write_graph(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        lists: &[u32],
        blocks: impl IntoIterator<Item = u32>,
    ) -> Result<()> {
        let block_len = VECTOR_BLOCK_ROWS as usize * settings.graph_degree;
        for block in blocks {
            let start = block as usize * block_len;
            let Some(values) = lists.get(start..(start + block_len).min(lists.len())) else {
                continue;
            };
            let mut bytes = vec![0; settings.block_pad()];
            bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            self.graph.put(wtxn, &block, &bytes)?;
        }
        Ok(())
    }

    /// Every clip's neighbour list as one owned array (for an append to change).
    pub fn read_graph(&self, rtxn: &RoTxn, settings: &Settings) -> Result<Vec<u32>> {
        let graph = self.load_graph(rtxn, settings)?;
        let mut lists = Vec::with_capacity(graph.nodes() * settings.graph_degree);
        for node in 0..graph.nodes() as u32 {
            let list = graph.neighbours(node);
            lists.extend_from_slice(list);
            lists.extend(std::iter::repeat_n(
                EMPTY,
                settings.graph_degree - list.len(),
            ));
        }
        Ok(lists)
    }
}
