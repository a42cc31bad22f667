//! A search resolved once: what a question's options mean on one index (which search, how wide its walk for a
//! clip of the index and for a vector given by its rows, how many candidates are re-ranked, which tables it
//! reads). Made in [`SearchPlan::resolve`] and nowhere else; the searcher follows it, and every client (the
//! command line, `serve`, Python, `evaluate`) reports it as it is, so that what is shown is what was walked.

use crate::error::{Result, UsageError};
use crate::index::search::{Search, default_ef, default_ef_new, rerank_depth};
use crate::index::store::Settings;
use crate::index::tables::Needs;
use crate::query::{QueryOptions, SearchMethod};

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
    pub fn resolve(options: &QueryOptions, settings: &Settings, spare: usize) -> Result<SearchPlan> {
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
        let small = settings.clips * settings.dimensions as u64 <= crate::index::search::EXACT_SCAN_LIMIT;
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
                // re-rank fell (BENCHMARKS.md).
                let floor = if rerank > 0 {
                    candidates + candidates / 2
                } else {
                    candidates
                };
                let new_vector = if default {
                    default_ef_new(settings.clips, rerank > 0)
                } else {
                    0
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
        })
    }

    /// The tables this plan's search and re-rank read.
    pub fn needs(&self) -> Needs {
        self.search.needs(self.rerank)
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
