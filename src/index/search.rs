//! How neighbours are found: the exact scan, the arroy forest, or the neighbour graph, as a question's
//! [`SearchPlan`] says; the searcher that `recommend` and `evaluate` share, so both measure what users get.

use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::num::NonZeroUsize;

use anyhow::{Result, anyhow};
use heed::RoTxn;
use roaring::RoaringBitmap;

use crate::error::{damaged, in_index};
use crate::index::codes::{self, CodedQuery, Codes};
use crate::index::entry::{self, Layers};
use crate::index::graph::{self, Graph, Space, Walk};
use crate::index::plan::{Search, SearchPlan};
use crate::index::projection::QueryVector;
use crate::index::rerank::{self, FrameCodes};
use crate::index::scan::{self, Matrix, PairDistance, pair_distance};
use crate::index::store::{ARROY_INDEX, Settings, Store};
use crate::index::tables::{Tables, table};
use crate::index::vector::Metric;

/// A walk's best this many times the answer's count (by their codes) are compared again on their exact vectors;
/// the rest of its breadth only steered the walk. Re-comparing only these found the same held-out recall@10 as
/// re-comparing the whole breadth at 1,000,000 clips, with and without the re-rank, at more queries a second
/// (docs/bench-log.md, "The one-shot embedding query at a million clips"): each vector re-compared is a row of
/// the map, and a one-shot process pays a page fault for it.
const EXACT_PER_ANSWER: usize = 2;

/// Below this many clips a label filter is answered by comparing the query with each of them (exact, and
/// cheaper than a walk that must pass over the clips the filter refuses); above it, by a wider walk.
const FILTER_SCAN_LIMIT: u64 = 50_000;

/// What to find neighbours of.
pub enum Target<'q> {
    /// A clip of the index (never among its own neighbours).
    Item(u32),
    /// A clip given by its rows, in the index's terms (`ClipForm::query`): its vector, and its frames for the
    /// re-rank.
    Vector(&'q QueryVector),
    /// A clip of the index asked as a vector it does not hold (the build's calibration): its own vector, walked
    /// from the upper layers as a new vector's is, through a graph without it.
    Absent(u32),
}

/// Only clips carrying one of some labels: as a set for the forest and a flag per item for the scans.
struct Filter {
    items: RoaringBitmap,
    keep: Vec<bool>,
}

/// Answers queries on an open index by one [`Search`].
pub struct Searcher<'t, D: arroy::Distance> {
    store: &'t Store,
    rtxn: &'t RoTxn<'t>,
    plan: SearchPlan,
    /// The forest, opened on first use: a walk from a clip of the index never needs it.
    reader: Option<arroy::Reader<'t, D>>,
    matrix: Option<Cow<'t, Matrix<'t>>>,
    codes: Option<Cow<'t, Codes<'t>>>,
    graph: Option<Cow<'t, Graph<'t>>>,
    /// Where a walk for a vector that is not a clip of the index starts (none: from pivots).
    layers: Cow<'t, Layers<'t>>,
    metric: Metric,
    distance: PairDistance,
    walk: Walk,
    filter: Option<Filter>,
    frames: Option<Cow<'t, FrameCodes<'t>>>,
}

impl<'t, D: arroy::Distance> Searcher<'t, D> {
    /// A searcher following `plan`, among the clips carrying one of `labels` when that is given.
    pub fn open(
        store: &'t Store,
        rtxn: &'t RoTxn<'t>,
        // The tables mapped before (a kept read transaction's); what they lack, this searcher maps for itself.
        tables: &'t Tables<'t>,
        settings: &Settings,
        plan: SearchPlan,
        labels: Option<RoaringBitmap>,
    ) -> Result<Self> {
        let needs = plan.needs();
        let matrix = table(tables.vectors.as_ref(), needs.vectors, || {
            store.load_vectors(rtxn, settings)
        })?;
        let codes = table(tables.codes.as_ref(), needs.walk, || {
            store.load_codes(rtxn, settings)
        })?;
        let graph = table(tables.graph.as_ref(), needs.walk, || {
            store.load_graph(rtxn, settings)
        })?;
        let layers = table(tables.layers.as_ref(), needs.walk, || {
            store.load_layers(rtxn, settings)
        })?
        .unwrap_or_default();
        let frames = table(tables.frames.as_ref(), needs.frames, || {
            store.load_frames(rtxn, settings)
        })?;
        // The label filter as one flag per item: a lookup per scanned row must cost next to nothing.
        let filter = labels.map(|items| {
            let mut keep = vec![false; settings.next_item as usize];
            for item in items.iter() {
                if let Some(k) = keep.get_mut(item as usize) {
                    *k = true;
                }
            }
            Filter { items, keep }
        });
        Ok(Searcher {
            store,
            rtxn,
            plan,
            reader: None,
            matrix,
            codes,
            graph,
            layers,
            metric: settings.metric,
            distance: pair_distance(settings.metric),
            walk: Walk::default(),
            filter,
            frames,
        })
    }

    /// The `count` nearest clips of each target, nearest first, with distances on the metric's scale (after a
    /// re-rank, the frames' distance on the angular scale: (1 - Chamfer similarity) / 2). Many targets at once
    /// let the exact scan share its pass over the vectors.
    pub fn nearest(&mut self, targets: &[Target]) -> Result<Vec<Vec<(u32, f32)>>> {
        let found = self.search_all(targets)?;
        // The frames are also mapped to explain hits: only the plan's re-rank orders by them.
        let (Some(frames), true) = (&self.frames, self.plan.rerank > 0) else {
            return Ok(found);
        };
        let keep = self.plan.keep;
        targets
            .iter()
            .zip(found)
            .map(|(target, candidates)| {
                let query = match target {
                    Target::Item(item) | Target::Absent(item) => {
                        frames.row(*item).ok_or_else(|| {
                            damaged(&self.store.dir, format!("no frames for clip {item}"))
                        })?
                    }
                    Target::Vector(query) => &query.codes[..],
                };
                let mut ranked = rerank::rerank(&candidates, query, frames);
                ranked.truncate(keep);
                Ok(ranked)
            })
            .collect()
    }

    /// The forest's reader, opened on first use.
    fn reader(&mut self) -> Result<&arroy::Reader<'t, D>> {
        if self.reader.is_none() {
            let reader = arroy::Reader::<D>::open(self.rtxn, ARROY_INDEX, self.store.arroy::<D>())
                // arroy's error kept whole: its missing metadata or tree is damage (see `error::in_index`).
                .map_err(|e| {
                    in_index(
                        &self.store.dir,
                        anyhow::Error::new(e).context("its forest is unreadable"),
                    )
                })?;
            self.reader = Some(reader);
        }
        self.reader
            .as_ref()
            .ok_or_else(|| anyhow!("cannot read index {}", self.store.dir.display()))
    }

    /// The search's `count` candidates for each target, before any re-rank.
    fn search_all(&mut self, targets: &[Target]) -> Result<Vec<Vec<(u32, f32)>>> {
        if let (Search::Exact, Some(matrix)) = (self.plan.search, &self.matrix) {
            let queries: Vec<scan::Query> = targets
                .iter()
                .map(|t| match t {
                    Target::Item(item) | Target::Absent(item) => {
                        item_query(matrix, *item, self.store)
                    }
                    Target::Vector(query) => Ok(scan::Query {
                        vector: &query.vector,
                        exclude: None,
                    }),
                })
                .collect::<Result<_>>()?;
            let keep = self.filter.as_ref().map(|f| f.keep.as_slice());
            return Ok(matrix.nearest(&queries, self.plan.candidates, keep));
        }
        targets.iter().map(|t| self.nearest_one(t)).collect()
    }

    fn nearest_one(&mut self, target: &Target) -> Result<Vec<(u32, f32)>> {
        match self.plan.search {
            Search::Exact => Ok(self
                .search_all(std::slice::from_ref(target))?
                .pop()
                .unwrap_or_default()),
            Search::Trees(search_k) => self.trees(target, search_k),
            Search::Graph(_) => self.walk(target),
        }
    }

    fn trees(&mut self, target: &Target, search_k: NonZeroUsize) -> Result<Vec<(u32, f32)>> {
        let (count, rtxn) = (self.plan.candidates, self.rtxn);
        self.reader()?;
        let (Some(reader), candidates) = (&self.reader, self.filter.as_ref().map(|f| &f.items))
        else {
            return Ok(Vec::new());
        };
        let hits = match target {
            Target::Item(item) | Target::Absent(item) => {
                // Ask for one more: the clip itself comes back and is dropped.
                let mut query = reader.nns(count + 1);
                query.search_k(search_k);
                if let Some(candidates) = candidates {
                    query.candidates(candidates);
                }
                let hits = query.by_item(rtxn, *item)?.unwrap_or_default();
                hits.into_iter()
                    .filter(|(i, _)| i != item)
                    .take(count)
                    .collect()
            }
            Target::Vector(vector) => {
                let mut query = reader.nns(count);
                query.search_k(search_k);
                if let Some(candidates) = candidates {
                    query.candidates(candidates);
                }
                query.by_vector(rtxn, &vector.vector)?
            }
        };
        Ok(hits)
    }

    fn walk(&mut self, target: &Target) -> Result<Vec<(u32, f32)>> {
        let (query, exclude, entries) = match target {
            Target::Item(item) | Target::Absent(item) => {
                let matrix = self.matrix.as_ref().ok_or_else(|| anyhow!("no vectors"))?;
                let query = item_query(matrix, *item, self.store)?.vector.to_vec();
                let entries = match target {
                    Target::Item(_) => vec![*item],
                    _ => Vec::new(),
                };
                (query, Some(*item), entries)
            }
            Target::Vector(vector) => {
                // Its walk starts from the nearest pivots, found below once the query is coded.
                let mut query = vector.vector.clone();
                scan::prepare(self.metric, &mut query);
                (query, None, Vec::new())
            }
        };
        let (Some(matrix), Some(codes), Some(graph)) = (&self.matrix, &self.codes, &self.graph)
        else {
            return Ok(Vec::new());
        };
        let (count, distance) = (self.plan.candidates, self.distance);
        let filter = match &self.filter {
            Some(filter) if filter.items.len() <= FILTER_SCAN_LIMIT => {
                return Ok(compare_each(
                    matrix,
                    distance,
                    &query,
                    &filter.items,
                    exclude,
                    count,
                ));
            }
            filter => filter.as_ref(),
        };
        // With a filter, a wider walk, in proportion to the share of clips it refuses.
        let share = filter.map_or(1, |f| {
            (graph.nodes() as u64).div_ceil(f.items.len().max(1)) as usize
        });
        let ef = self
            .plan
            .walk(!matches!(target, Target::Item(_)))
            .unwrap_or(count)
            .saturating_mul(share)
            .min(graph.nodes().max(1));
        let accept = |n: u32| {
            Some(n) != exclude
                && filter.is_none_or(|f| f.keep.get(n as usize).copied().unwrap_or(false))
        };
        let mut space = CodedQuery::new(codes, self.metric, &query);
        let entries = if entries.is_empty() {
            entry::entries(&mut space, &self.layers, &mut self.walk)
        } else {
            entries
        };
        let mut found = match target {
            Target::Absent(item) => {
                let mut without = Without {
                    space: &mut space,
                    node: *item,
                };
                graph::search(graph, &mut without, &entries, ef, &mut self.walk, accept)
            }
            _ => graph::search(graph, &mut space, &entries, ef, &mut self.walk, accept),
        };
        found.truncate(EXACT_PER_ANSWER * count);
        let mut exact = codes::rerank(found, matrix, distance, &query);
        exact.truncate(count);
        Ok(exact)
    }
}

/// A space without one of its nodes: a walk neither compares it nor passes through it.
struct Without<'s, S: Space> {
    space: &'s mut S,
    node: u32,
}

impl<S: Space> Space for Without<'_, S> {
    fn nodes(&self) -> usize {
        self.space.nodes()
    }

    #[inline]
    fn distance(&mut self, node: u32) -> Option<f32> {
        if node == self.node {
            return None;
        }
        self.space.distance(node)
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        self.space.prefetch(node);
    }
}

/// The `count` nearest of `items` to `query`, compared one by one.
fn compare_each(
    matrix: &Matrix,
    distance: PairDistance,
    query: &[f32],
    items: &RoaringBitmap,
    exclude: Option<u32>,
    count: usize,
) -> Vec<(u32, f32)> {
    let mut best: BinaryHeap<(OrdF32, u32)> = BinaryHeap::with_capacity(count + 1);
    for item in items.iter().filter(|&i| Some(i) != exclude) {
        let Some(row) = matrix.row(item) else {
            continue;
        };
        best.push((OrdF32(distance(query, row)), item));
        if best.len() > count {
            best.pop();
        }
    }
    let mut found: Vec<(u32, f32)> = best.into_iter().map(|(d, i)| (i, d.0)).collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    found
}

#[derive(Clone, Copy, PartialEq)]
struct OrdF32(f32);

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The exact scan's query for a clip of the index: its stored vector, the clip itself left out.
pub fn item_query<'m>(matrix: &'m Matrix, item: u32, store: &Store) -> Result<scan::Query<'m>> {
    let vector = matrix
        .row(item)
        .ok_or_else(|| damaged(&store.dir, format!("no vector for clip {item}")))?;
    Ok(scan::Query {
        vector,
        exclude: Some(item),
    })
}
