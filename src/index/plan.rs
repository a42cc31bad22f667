//! How a question searches: the options it asks with ([`QueryOptions`], [`SearchMethod`]), which search
//! answers by default, and the search resolved once: what the options mean on one index (which search, how
//! wide its walk for a clip of the index and for a vector given by its rows, how many candidates are
//! re-ranked, which tables it reads). Made in [`SearchPlan::resolve`] and nowhere else; the searcher follows
//! it, and every client (the command line, `serve`, Python, `evaluate`) reports it as it is, so that what is
//! shown is what was walked.

use std::num::NonZeroUsize;

use crate::error::{Result, UsageError};
use crate::index::rerank::DEFAULT_RERANK;
use crate::index::store::Settings;
use crate::index::tables::Needs;
use crate::index::vector::Metric;

/// How a search finds its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMethod {
    /// By the index's size: the exact scan up to about 16,000 clips, the neighbour graph above.
    #[default]
    Default,
    /// Every vector compared: the ground truth.
    Exact,
    /// The neighbour graph, walked with this breadth (hnswlib's ef).
    Graph { ef: NonZeroUsize },
    /// The random-projection forest, inspecting this many nodes (Annoy's search_k).
    Trees { search_k: NonZeroUsize },
}

/// How a question is answered; every field has a default (`QueryOptions::default()`: ten neighbours, any
/// label, the index's default search and re-rank).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// Neighbours per answer (at least 1).
    pub count: usize,
    /// Only clips carrying one of these AudioSet labels (class indices; see [`crate::labels`]); empty: any.
    pub labels: Vec<u16>,
    pub search: SearchMethod,
    /// Candidates re-ranked by their frames; `None`: 20 on an angular index, none on others; `Some(0)`: none.
    pub rerank: Option<usize>,
    /// Each hit says why it is a neighbour ([`crate::Explanation`]): its labels' shares of the similarity and
    /// the seconds that matched. Off by default: it reads every hit's frames.
    pub explain: bool,
}

impl QueryOptions {
    /// The most neighbours a client lets one question ask for (the command line's `-k`, a server's `k`): an
    /// answer past it is no longer a recommendation, and its JSON grows without use.
    pub const MAX_COUNT: usize = 10_000;

    /// Refuses options no index can answer: a count of no neighbours.
    pub fn check(&self) -> Result<()> {
        if self.count == 0 {
            return Err(anyhow::Error::new(UsageError::new(
                "the count of neighbours must be at least 1",
            ))
            .into());
        }
        Ok(())
    }

    /// The plan these options make on an index of `settings` (see [`SearchPlan::resolve`]).
    pub fn plan(&self, settings: &Settings) -> Result<SearchPlan> {
        SearchPlan::resolve(self, settings, 0)
    }
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            count: 10,
            labels: Vec::new(),
            search: SearchMethod::Default,
            rerank: None,
            explain: false,
        }
    }
}

/// Up to this many stored floats (clips x dimensions: about 16,000 clips of 128 dimensions, bal_train and eval
/// together) the default search is the exact scan; above it, the graph. Below it the scan is exact and fast
/// enough to be the default; above it the graph answers in a fraction of the time (docs/bench-log.md, "Choosing
/// the default search").
pub const EXACT_SCAN_LIMIT: u64 = 2 << 20;

/// Whether the index's default search is the exact scan (up to [`EXACT_SCAN_LIMIT`] stored floats), not the
/// graph.
pub fn scans_by_default(settings: &Settings) -> bool {
    settings.clips * settings.dimensions as u64 <= EXACT_SCAN_LIMIT
}

/// The graph walk's breadth (`--ef`) when none is given: with some margin over the smallest that kept recall@10
/// of queries by id at or above 0.95 at every size measured (docs/bench-log.md, "Choosing the default search";
/// today's recall: BENCHMARKS.md, "Queries by clip id"). It never goes below the neighbours asked for, as in
/// hnswlib.
pub const DEFAULT_EF: usize = 16;

/// The default breadth for a query that is not a clip of the index (an embedding, an audio window, a held-out
/// clip) among `clips`: 32 up to 250,000 clips, and 32 more for each doubling past that (64 at 500,000, 96 at
/// 1,000,000); when the candidates are `reranked`, 40 and 16 more per doubling (72 at 1,000,000): 40 since the
/// upper layers are descended greedily, where 32 found 0.969 of the held-out neighbours at 200,000 clips and 40
/// 0.978, more than the 0.975 of 32 with the earlier start, and at more queries a second (docs/bench-log.md,
/// "The start: a greedy descent"). Its walk starts from the upper
/// layers' nearest clips (`entry`) rather than from itself, and the same queries need a wider walk as the index
/// grows: these breadths are the narrowest that kept held-out recall@10 at or above 0.95, with `--projection
/// none --rerank 0` and with the defaults, at every size measured (BENCHMARKS.md, "A new song's query (held
/// out) against the peers"). The re-ranked walk is narrower because each step of breadth costs a one-shot
/// process page faults (docs/bench-log.md, "The one-shot embedding query at a million clips"), and past 0.95
/// the re-rank's own choice among its candidates limits recall more than the walk does. A query by id keeps
/// [`DEFAULT_EF`].
pub fn default_ef_new(clips: u64, reranked: bool) -> usize {
    let doublings = (clips as f64 / 250_000.0).log2().max(0.0);
    let (base, per_doubling) = if reranked { (40.0, 16.0) } else { (32.0, 32.0) };
    (base + per_doubling * doublings).round() as usize
}

/// How neighbours are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Every vector compared: the ground truth.
    Exact,
    /// The arroy forest, inspecting this many nodes.
    Trees(NonZeroUsize),
    /// The neighbour graph, walked with this breadth (hnswlib's ef).
    Graph(NonZeroUsize),
}

impl Search {
    /// The tables this search reads to answer, with `rerank` candidates re-ranked (0: none).
    pub fn needs(self, rerank: usize) -> Needs {
        Needs {
            vectors: matches!(self, Search::Exact | Search::Graph(_)),
            walk: matches!(self, Search::Graph(_)),
            frames: rerank > 0,
        }
    }

    /// "exact", "trees" or "graph", as `evaluate --json` reports it.
    pub fn kind(self) -> &'static str {
        match self {
            Search::Exact => "exact",
            Search::Trees(_) => "trees",
            Search::Graph(_) => "graph",
        }
    }

    /// The setting, for people: "exact scan", "trees, search_k 2000", "graph, ef 32".
    pub fn describe(self) -> String {
        match self {
            Search::Exact => "exact scan".into(),
            Search::Trees(k) => format!("trees, search_k {k}"),
            Search::Graph(ef) => format!("graph, ef {ef}"),
        }
    }
}

/// The candidates re-ranked per answer when `asked` (`None`: [`DEFAULT_RERANK`] on an angular index, none on
/// others); `None` when a re-rank is asked of an index of another metric, whose frames cannot be compared.
pub fn rerank_depth(asked: Option<usize>, metric: Metric) -> Option<usize> {
    match (asked, metric) {
        (None, Metric::Angular) => Some(DEFAULT_RERANK),
        (None, _) | (Some(0), _) => Some(0),
        (Some(n), Metric::Angular) => Some(n),
        (Some(_), _) => None,
    }
}

/// The default walk breadth for `count` neighbours.
pub fn default_ef(count: usize) -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_EF.max(count)).unwrap_or(NonZeroUsize::MIN)
}

/// How one question's search runs on one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPlan {
    /// The search that finds the candidates.
    pub search: Search,
    /// Whether the search is the index's default ([`SearchMethod::Default`]), not one asked for.
    pub default: bool,
    /// Candidates re-ranked by their frames (0: none).
    pub rerank: usize,
    /// The neighbours in each answer: the count asked, at most the index's clips.
    pub count: usize,
    /// The neighbours each search keeps: `count`, and any spare an answer may drop (an audio window's own clip).
    pub keep: usize,
    /// The candidates the search finds for each answer: `keep`, or the re-ranked depth when that is more.
    pub candidates: usize,
    /// For the graph, the breadth each walk takes (before a label filter widens it); `None` for the others.
    pub breadth: Option<Breadth>,
    /// Whether each hit is explained (`QueryOptions::explain`).
    pub explain: bool,
}

/// The breadth of a graph walk, as asked and as walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breadth {
    /// `--ef`, or the default for the count asked ([`default_ef`]).
    pub asked: usize,
    /// What a walk from a clip of the index takes.
    pub by_id: usize,
    /// What a walk for a vector the index does not hold (an embedding, an audio window, a held-out clip)
    /// takes: wider by default, as its walk starts from the pivots rather than from itself ([`default_ef_new`]).
    pub by_vector: usize,
}

impl SearchPlan {
    /// The plan for `options` on an index of `settings`, its searches finding `spare` more than asked. Refuses a
    /// count of 0 and a re-rank of an index whose frames cannot be compared.
    pub fn resolve(
        options: &QueryOptions,
        settings: &Settings,
        spare: usize,
    ) -> Result<SearchPlan> {
        options.check()?;
        let Some(rerank) = rerank_depth(options.rerank, settings.metric) else {
            return Err(anyhow::Error::new(UsageError::new(format!(
                "a re-rank compares frames by cosine; this index uses the {} metric: ask for a re-rank of 0 \
                 (--rerank 0)",
                settings.metric
            )))
            .into());
        };
        // No answer holds more clips than the index has: a count of usize::MAX must not size a heap by it.
        let count = options.count.min(settings.next_item as usize).max(1);
        let keep = count + spare;
        let candidates = keep.max(rerank);
        let small = scans_by_default(settings);
        let search = match options.search {
            SearchMethod::Exact => Search::Exact,
            SearchMethod::Trees { search_k } => Search::Trees(search_k),
            SearchMethod::Graph { ef } => Search::Graph(ef),
            SearchMethod::Default if small => Search::Exact,
            SearchMethod::Default => Search::Graph(default_ef(options.count)),
        };
        let default = options.search == SearchMethod::Default;
        let breadth = match search {
            Search::Graph(ef) => {
                // The narrowest walk: the candidates wanted, and with a re-rank some margin. At a breadth of
                // exactly the re-ranked, the walk missed enough of the exact scan's that recall after the
                // re-rank fell well below the defaults' own; 1.5 times restored it (docs/design.md, the re-rank's
                // "The cost").
                let floor = if rerank > 0 {
                    candidates + candidates / 2
                } else {
                    candidates
                };
                // Without a re-rank, the breadth the build measured on the index (`calibrate`); with one, or
                // in an index built before that, the breadth by the index's size.
                let new_vector = match (default, settings.held_out) {
                    (false, _) => 0,
                    (true, Some(measured)) if rerank == 0 => measured.breadth,
                    (true, _) => default_ef_new(settings.clips, rerank > 0),
                };
                Some(Breadth {
                    asked: ef.get(),
                    by_id: ef.get().max(floor),
                    by_vector: ef.get().max(new_vector).max(floor),
                })
            }
            _ => None,
        };
        Ok(SearchPlan {
            search,
            default,
            rerank,
            count,
            keep,
            candidates,
            breadth,
            explain: options.explain,
        })
    }

    /// The tables this plan's search, re-rank and explanations read.
    pub fn needs(&self) -> Needs {
        let needs = self.search.needs(self.rerank);
        Needs {
            vectors: needs.vectors || self.explain,
            frames: needs.frames || self.explain,
            ..needs
        }
    }

    /// The breadth walked for a query by id, or (`by_vector`) for one given by its rows; `None` off the graph.
    pub fn walk(&self, by_vector: bool) -> Option<usize> {
        self.breadth
            .map(|b| if by_vector { b.by_vector } else { b.by_id })
    }

    /// The search, for people, with the breadth a walk takes (for a query by id, or `by_vector`): "exact scan",
    /// "trees, search_k 2000", "graph, ef 30".
    pub fn describe(&self, by_vector: bool) -> String {
        match (self.search, self.walk(by_vector)) {
            (Search::Graph(_), Some(walked)) => format!("graph, ef {walked}"),
            (search, _) => search.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_ef_new;

    #[test]
    fn a_new_vector_walks_wider_as_the_index_grows() {
        let clips = [1_000, 200_000, 250_000, 500_000, 1_000_000, 2_000_000];
        let breadths = |reranked| -> Vec<usize> {
            clips
                .into_iter()
                .map(|n| default_ef_new(n, reranked))
                .collect()
        };
        assert_eq!(breadths(false), [32, 32, 32, 64, 96, 128]);
        assert_eq!(breadths(true), [40, 40, 40, 56, 72, 88]);
    }
}
