//! NN-descent (Dong, Charikar and Li, 2011, as PyNNDescent implements it): an approximate k-nearest-neighbour
//! graph over every clip, built in memory from a seed graph (random-projection tree leaves) by repeatedly
//! comparing each clip's neighbours with one another ("a neighbour of a neighbour is likely a neighbour").
//!
//! The result does not depend on the number of threads: every random choice is a hash of the seed and of what
//! it is about, candidate lists keep the lowest such priorities (an order-free rule), and updates found in
//! parallel are applied to each clip's list in one fixed order.

use rayon::prelude::*;

use crate::index::hash::hash;
use crate::index::rptree;
use crate::index::scan::{Matrix, PairDistance, pair_distance};

/// No neighbour in this slot.
pub const EMPTY: u32 = u32::MAX;

pub struct Params {
    /// Neighbours per clip in the graph.
    pub neighbours: usize,
    /// Candidates per clip compared in one round (PyNNDescent's max_candidates).
    pub max_candidates: usize,
    pub max_iterations: usize,
    /// Stop when a round improves fewer than this share of all neighbour slots.
    pub delta: f64,
    pub trees: usize,
    pub leaf_size: usize,
    pub seed: u64,
}

/// Each clip's neighbours, nearest first: `ids[i * k..(i + 1) * k]` (unfilled slots hold [`EMPTY`]).
pub struct KnnGraph {
    pub k: usize,
    pub ids: Vec<u32>,
    pub distances: Vec<f32>,
}

impl KnnGraph {
    pub fn neighbours(&self, item: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let slots = item * self.k..(item + 1) * self.k;
        self.ids[slots.clone()]
            .iter()
            .copied()
            .zip(self.distances[slots].iter().copied())
            .filter(|(id, _)| *id != EMPTY)
    }
}

/// The k-nearest-neighbour graph of the first `count` rows of `vectors` (in search form). `report` hears each
/// stage's name.
pub fn build(
    vectors: &Matrix,
    count: usize,
    params: &Params,
    tree: Option<&rptree::Tree>,
    report: &(dyn Fn(&str) + Sync),
) -> KnnGraph {
    let k = params.neighbours.min(count.saturating_sub(1)).max(1);
    let distance = pair_distance(vectors.metric());
    let mut heaps = Heaps::new(count, k);
    if count < 2 {
        return heaps.into_graph();
    }
    report("seeding the neighbour graph from random-projection trees");
    let extra_trees = rptree::forest(
        vectors,
        count,
        params.trees.saturating_sub(usize::from(tree.is_some())),
        params.leaf_size,
        params.seed ^ 0x5eed,
    );
    for leaves in tree.into_iter().chain(&extra_trees) {
        let leaves: Vec<&[u32]> = leaves.leaves().collect();
        for chunk in leaves.chunks(4096) {
            let updates: Vec<Vec<Update>> = chunk
                .par_iter()
                .map(|leaf| {
                    let mut out = Vec::new();
                    for (a, &p) in leaf.iter().enumerate() {
                        for &q in &leaf[a + 1..] {
                            let d = distance(row(vectors, p), row(vectors, q));
                            if d < heaps.worst(p) || d < heaps.worst(q) {
                                out.push((p, q, d));
                            }
                        }
                    }
                    out
                })
                .collect();
            heaps.apply(&updates);
        }
    }
    heaps.fill_at_random(params.seed);

    let threshold = (params.delta * (count * k) as f64) as u64;
    let mut candidates = Candidates::new(count, params.max_candidates.max(1));
    for iteration in 0..params.max_iterations {
        report(&format!(
            "refining the neighbour graph (NN-descent round {})",
            iteration + 1
        ));
        heaps.candidates(&mut candidates, params.seed, iteration as u64);
        let changed = heaps.local_join(vectors, distance, &candidates);
        if changed <= threshold {
            break;
        }
    }
    heaps.into_graph()
}

#[inline]
fn row<'m>(vectors: &'m Matrix, item: u32) -> &'m [f32] {
    vectors.row(item).unwrap_or(&[])
}

/// A proposed neighbour pair and its distance: each may enter the other's list.
type Update = (u32, u32, f32);

/// Every clip's current neighbours as a bounded max-heap (the farthest at the root), with a flag for
/// neighbours not yet compared with the others ("new").
struct Heaps {
    k: usize,
    ids: Vec<u32>,
    distances: Vec<f32>,
    new: Vec<bool>,
}

/// Clips per parallel share when updates are applied: each thread owns a contiguous range of lists.
fn share(count: usize) -> usize {
    count.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

impl Heaps {
    fn new(count: usize, k: usize) -> Self {
        Heaps {
            k,
            ids: vec![EMPTY; count * k],
            distances: vec![f32::INFINITY; count * k],
            new: vec![true; count * k],
        }
    }

    fn count(&self) -> usize {
        self.ids.len() / self.k
    }

    /// The distance a candidate must beat to enter `item`'s list.
    #[inline]
    fn worst(&self, item: u32) -> f32 {
        self.distances[item as usize * self.k]
    }

    /// Applies updates to both ends of each pair, in order; returns how many entered a list. Each thread takes
    /// the updates to its share of the lists and applies them sorted by list (a stable sort, so each list still
    /// sees its updates in the one fixed order): at a million clips the lists are hundreds of MB, and applying
    /// updates in the order they were found cost a cache miss each.
    fn apply(&mut self, updates: &[Vec<Update>]) -> u64 {
        let k = self.k;
        let share = share(self.count());
        self.ids
            .par_chunks_mut(share * k)
            .zip(self.distances.par_chunks_mut(share * k))
            .zip(self.new.par_chunks_mut(share * k))
            .enumerate()
            .map(|(part, ((ids, distances), new))| {
                let first = part * share;
                let owned = first..first + ids.len() / k;
                let mut mine: Vec<(u32, u32, f32)> = Vec::new();
                for &(p, q, d) in updates.iter().flatten() {
                    for (target, other) in [(p, q), (q, p)] {
                        if owned.contains(&(target as usize)) {
                            mine.push(((target as usize - first) as u32, other, d));
                        }
                    }
                }
                mine.sort_by_key(|u| u.0);
                let mut changed = 0;
                for (target, other, d) in mine {
                    let at = target as usize * k;
                    changed += u64::from(push(
                        &mut ids[at..at + k],
                        &mut distances[at..at + k],
                        &mut new[at..at + k],
                        other,
                        d,
                    ));
                }
                changed
            })
            .sum()
    }

    /// Lists the trees left short (clips in tiny leaves) get random neighbours, at infinite distance, so every
    /// clip takes part in the joins.
    fn fill_at_random(&mut self, seed: u64) {
        let count = self.count() as u64;
        let k = self.k;
        for item in 0..self.count() {
            let at = item * k;
            let mut attempt = 0u64;
            while self.ids[at..at + k].contains(&EMPTY) && attempt < 4 * k as u64 {
                let other = (hash(seed, 0xf111, item as u64, attempt) % count) as u32;
                attempt += 1;
                if other as usize != item {
                    let (ids, rest) = (&mut self.ids[at..at + k], &mut self.distances[at..at + k]);
                    push(ids, rest, &mut self.new[at..at + k], other, f32::MAX);
                }
            }
        }
    }

    /// Each clip's new and old candidates for this round: up to `max` of its neighbours and of the clips that
    /// list it, chosen by a hashed priority; the new ones chosen are then marked old. `lists` is reused from
    /// round to round: at a million clips it is hundreds of MB, and fresh pages cost a fault each.
    fn candidates(&mut self, lists: &mut Candidates, seed: u64, round: u64) {
        let count = self.count();
        let k = self.k;
        let max = lists.max;
        lists.new.fill(u64::MAX);
        lists.old.fill(u64::MAX);
        let share = share(count);
        let (ids, new) = (&self.ids, &self.new);
        lists
            .new
            .par_chunks_mut(share * max)
            .zip(lists.old.par_chunks_mut(share * max))
            .enumerate()
            .for_each(|(part, (new_lists, old_lists))| {
                let first = part * share;
                let owned = first..first + new_lists.len() / max;
                for owner in 0..count {
                    for slot in owner * k..(owner + 1) * k {
                        let neighbour = ids[slot];
                        if neighbour == EMPTY {
                            continue;
                        }
                        // Priority in the high half, id in the low: one number orders by (priority, id).
                        let priority = hash(seed, round, owner as u64, u64::from(neighbour)) >> 32;
                        let lists = if new[slot] {
                            &mut *new_lists
                        } else {
                            &mut *old_lists
                        };
                        for (target, entry) in
                            [(owner, neighbour), (neighbour as usize, owner as u32)]
                        {
                            if owned.contains(&target) {
                                let at = (target - first) * max;
                                push_priority(
                                    &mut lists[at..at + max],
                                    priority << 32 | u64::from(entry),
                                );
                            }
                        }
                    }
                }
            });
        // A new neighbour sampled this round has now been compared: it is old from the next round on.
        self.new
            .par_chunks_mut(k)
            .zip(self.ids.par_chunks(k))
            .zip(lists.new.par_chunks(max))
            .for_each(|((flags, ids), sampled)| {
                for (flag, id) in flags.iter_mut().zip(ids) {
                    if *flag && sampled.iter().any(|&e| e != u64::MAX && e as u32 == *id) {
                        *flag = false;
                    }
                }
            });
    }

    /// Compares each clip's new candidates with each other and with its old ones, in blocks of clips; returns
    /// how many list entries changed.
    fn local_join(
        &mut self,
        vectors: &Matrix,
        distance: PairDistance,
        candidates: &Candidates,
    ) -> u64 {
        // The updates a block finds are held until they are applied, and in the first rounds most of a
        // clip's ~1,300 pairs are updates (12 bytes each, and each thread copies its share to sort): 16,384
        // clips a block held hundreds of MB at once; 4,096 lowered both the build's peak memory and its time
        // (docs/bench-log.md, "Again, after the joins' blocks and the heap given back"). The lists come out the
        // same whatever the block: an update that fresher lists would filter out here is one they refuse when
        // it is applied.
        const BLOCK: usize = 4096;
        let mut changed = 0;
        let count = self.count();
        let max = candidates.max;
        for block in (0..count).step_by(BLOCK) {
            let end = (block + BLOCK).min(count);
            let updates: Vec<Vec<Update>> = (block..end)
                .into_par_iter()
                .map(|item| {
                    let new: Vec<u32> =
                        Candidates::list(&candidates.new[item * max..(item + 1) * max]).collect();
                    let old = Candidates::list(&candidates.old[item * max..(item + 1) * max]);
                    let mut out = Vec::new();
                    let consider = |p: u32, q: u32, out: &mut Vec<Update>| {
                        if p == q {
                            return;
                        }
                        let d = distance(row(vectors, p), row(vectors, q));
                        if d < self.worst(p) || d < self.worst(q) {
                            out.push((p, q, d));
                        }
                    };
                    for (a, &p) in new.iter().enumerate() {
                        for &q in &new[a + 1..] {
                            consider(p, q, &mut out);
                        }
                    }
                    for q in old {
                        for &p in &new {
                            consider(p, q, &mut out);
                        }
                    }
                    out
                })
                .collect();
            changed += self.apply(&updates);
        }
        changed
    }

    /// The lists sorted nearest first (ties by id).
    fn into_graph(mut self) -> KnnGraph {
        let k = self.k;
        self.ids
            .par_chunks_mut(k)
            .zip(self.distances.par_chunks_mut(k))
            .for_each(|(ids, distances)| {
                let mut pairs: Vec<(f32, u32)> =
                    distances.iter().copied().zip(ids.iter().copied()).collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for ((id, d), (pd, pid)) in ids.iter_mut().zip(distances.iter_mut()).zip(pairs) {
                    (*id, *d) = (pid, pd);
                }
            });
        KnnGraph {
            k,
            ids: self.ids,
            distances: self.distances,
        }
    }
}

/// Pushes `id` at distance `d` into a max-heap list unless it is there already or no nearer than the root;
/// returns whether it entered.
#[inline]
fn push(ids: &mut [u32], distances: &mut [f32], new: &mut [bool], id: u32, d: f32) -> bool {
    // A NaN distance never enters.
    if d.is_nan() || d >= distances[0] || ids.contains(&id) {
        return false;
    }
    let len = ids.len();
    let mut i = 0;
    loop {
        let (left, right) = (2 * i + 1, 2 * i + 2);
        let mut child = left;
        if left >= len {
            break;
        }
        if right < len && distances[right] > distances[left] {
            child = right;
        }
        if distances[child] <= d {
            break;
        }
        ids[i] = ids[child];
        distances[i] = distances[child];
        new[i] = new[child];
        i = child;
    }
    ids[i] = id;
    distances[i] = d;
    new[i] = true;
    true
}

/// Candidate lists for one round: up to `max` per clip, new and old apart; each entry is a priority (high 32
/// bits) and a clip (low 32 bits), `u64::MAX` when unused.
struct Candidates {
    max: usize,
    new: Vec<u64>,
    old: Vec<u64>,
}

impl Candidates {
    fn new(count: usize, max: usize) -> Self {
        Candidates {
            max,
            new: vec![u64::MAX; count * max],
            old: vec![u64::MAX; count * max],
        }
    }

    fn list(entries: &[u64]) -> impl Iterator<Item = u32> + '_ {
        entries
            .iter()
            .filter(|&&e| e != u64::MAX)
            .map(|&e| e as u32)
    }
}

/// Keeps the `entries.len()` lowest entries pushed, one per clip (the result does not depend on the order of
/// pushes): a max-heap.
#[inline]
fn push_priority(entries: &mut [u64], entry: u64) {
    if entry >= entries[0]
        || entries
            .iter()
            .any(|&e| e as u32 == entry as u32 && e != u64::MAX)
    {
        return;
    }
    let len = entries.len();
    let mut i = 0;
    loop {
        let (left, right) = (2 * i + 1, 2 * i + 2);
        if left >= len {
            break;
        }
        let mut child = left;
        if right < len && entries[right] > entries[left] {
            child = right;
        }
        if entries[child] <= entry {
            break;
        }
        entries[i] = entries[child];
        i = child;
    }
    entries[i] = entry;
}
