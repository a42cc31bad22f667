//! Random-projection trees held in memory while an index is built: their leaves seed the neighbour graph's
//! NN-descent with clips that are likely neighbours (as PyNNDescent seeds it), and the first tree's leaf order
//! lays the clips out on disk so that neighbours sit in nearby pages (see `commands::index`).
//!
//! A tree splits a set of clips by the hyperplane between two of them picked at random, recursively, down to
//! leaves of at most `leaf_size` clips. The split is done in place in one array of items, so each leaf is a
//! contiguous range of it and the whole array, read in order, visits the leaves depth first.

use rayon::prelude::*;

use crate::index::hash::hash;
use crate::index::scan::{Matrix, pair_distance};
use crate::index::vector::Metric;

/// One tree: every item once, leaf after leaf, and where each leaf ends.
pub struct Tree {
    pub items: Vec<u32>,
    /// Exclusive ends of the leaves in `items`, in order.
    pub leaf_ends: Vec<usize>,
}

impl Tree {
    pub fn leaves(&self) -> impl Iterator<Item = &[u32]> {
        let starts = std::iter::once(0).chain(self.leaf_ends.iter().copied());
        starts
            .zip(self.leaf_ends.iter().copied())
            .map(|(start, end)| &self.items[start..end])
    }
}

/// `trees` trees over the first `count` rows of `vectors` (in search form), built in parallel; tree `t` draws
/// from its own generator seeded by `seed` and `t`, so the forest does not depend on the threads.
pub fn forest(
    vectors: &Matrix,
    count: usize,
    trees: usize,
    leaf_size: usize,
    seed: u64,
) -> Vec<Tree> {
    (0..trees)
        .into_par_iter()
        .map(|t| {
            let mut rng = Draws {
                seed,
                tree: t as u64,
                n: 0,
            };
            build(vectors, count, leaf_size.max(2), &mut rng)
        })
        .collect()
}

/// A tree's random draws: hashes of the seed, the tree and a counter, so each tree's draws are its own.
struct Draws {
    seed: u64,
    tree: u64,
    n: u64,
}

impl Draws {
    /// A number below `bound` (> 0).
    fn below(&mut self, bound: usize) -> usize {
        self.n += 1;
        (hash(self.seed, self.tree, self.n, 0x7ee) % bound as u64) as usize
    }
}

fn build(vectors: &Matrix, count: usize, leaf_size: usize, rng: &mut Draws) -> Tree {
    let mut items: Vec<u32> = (0..count as u32).collect();
    let mut leaf_ends = Vec::with_capacity(count / leaf_size * 2 + 1);
    let mut sides = vec![false; count];
    // Ranges still to split, last in first out; pushing the right half first makes the leaves come out in
    // depth-first order, left to right.
    let mut pending = vec![(0, count)];
    while let Some((start, end)) = pending.pop() {
        if end - start <= leaf_size {
            if end > start {
                leaf_ends.push(end);
            }
            continue;
        }
        let middle = split(vectors, &mut items[start..end], &mut sides, rng) + start;
        pending.push((middle, end));
        pending.push((start, middle));
    }
    Tree { items, leaf_ends }
}

/// Splits `items` in place by a random hyperplane; returns how many went left (never 0 or all: a split that
/// separates nothing, as among identical vectors, falls back to halving).
fn split(vectors: &Matrix, items: &mut [u32], sides: &mut [bool], rng: &mut Draws) -> usize {
    let dims = vectors.dimensions();
    let n = items.len();
    let a = items[rng.below(n)];
    let mut b = items[rng.below(n)];
    for _ in 0..8 {
        if b != a {
            break;
        }
        b = items[rng.below(n)];
    }
    let (Some(va), Some(vb)) = (vectors.row(a), vectors.row(b)) else {
        return n / 2;
    };
    // Angular and dot products split through the origin (the vectors are unit length for angular); the others
    // halfway between the two points.
    let normal: Vec<f32> = va.iter().zip(vb).map(|(x, y)| x - y).collect();
    let offset = match vectors.metric() {
        Metric::Angular | Metric::Dot => 0.0,
        Metric::Euclidean | Metric::Manhattan => -va
            .iter()
            .zip(vb)
            .zip(&normal)
            .map(|((x, y), w)| w * (x + y) / 2.0)
            .sum::<f32>(),
    };
    // The negated dot product, with SIMD where the CPU has it.
    let negated_dot = pair_distance(Metric::Dot);
    let mut left = 0;
    for (i, &item) in items.iter().enumerate() {
        let margin = vectors
            .row(item)
            .map_or(0.0, |v| offset - negated_dot(&v[..dims], &normal));
        // Points on the plane go either way at random, as Annoy and PyNNDescent do.
        let side = if margin == 0.0 {
            rng.below(2) == 0
        } else {
            margin < 0.0
        };
        sides[i] = side;
        left += usize::from(side);
    }
    if left == 0 || left == n {
        return n / 2;
    }
    // Stable partition: left side first.
    let mut ordered = Vec::with_capacity(n);
    ordered.extend(
        items
            .iter()
            .zip(&sides[..n])
            .filter(|(_, s)| **s)
            .map(|(i, _)| *i),
    );
    ordered.extend(
        items
            .iter()
            .zip(&sides[..n])
            .filter(|(_, s)| !**s)
            .map(|(i, _)| *i),
    );
    items.copy_from_slice(&ordered);
    left
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn every_item_lands_in_exactly_one_small_leaf() {
        let dims = 8;
        let mut state = 11u64;
        let data: Vec<f32> = (0..1000 * dims)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let matrix = Matrix::new(
            dims,
            Metric::Euclidean,
            vec![Cow::Borrowed(&data[..])],
            1000,
        );
        let trees = forest(&matrix, 1000, 3, 20, 42);
        for tree in &trees {
            let mut seen: Vec<u32> = tree.leaves().flatten().copied().collect();
            assert!(
                tree.leaves()
                    .all(|leaf| !leaf.is_empty() && leaf.len() <= 20)
            );
            seen.sort_unstable();
            assert_eq!(seen, (0..1000).collect::<Vec<u32>>());
        }
        // The same seed, the same trees, whatever the threads did.
        let again = forest(&matrix, 1000, 3, 20, 42);
        assert!(trees.iter().zip(&again).all(|(a, b)| a.items == b.items));
    }
}
