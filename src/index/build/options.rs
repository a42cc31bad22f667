//! How a new index is built: the options a rebuild takes and an append checks, and the projection chosen.

use std::path::PathBuf;

use crate::index::vector::{Form, Metric};

/// How a new index is built; an append takes the index's own and checks that these agree with it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    pub metric: Metric,
    pub form: Form,
    /// Frames per clip used for the vector (the first N rows; clips with fewer are refused).
    pub frames: usize,
    /// Trees in the forest; `None`: 10 for a new index, the index's own for an append.
    pub trees: Option<usize>,
    /// The same input and seed give the same index (with one thread).
    pub seed: u64,
    /// Threads building the trees: 1 for a reproducible index; more is faster, but the trees then depend on
    /// thread timing. (The neighbour graph takes every core either way: it does not depend on them.)
    pub threads: usize,
    /// `None`: the default model for a new index; an append always applies the index's own.
    pub projection: Option<ProjectionChoice>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            metric: Metric::Angular,
            form: Form::Mean,
            frames: 10,
            trees: None,
            seed: 42,
            threads: 1,
            projection: None,
        }
    }
}

/// `index --projection`: which projection a new index applies to every frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionChoice {
    /// VGGish's 128 dimensions as they are: the vectors of format version 3.
    None,
    /// The compiled-in fit on bal_train's music clips.
    Default,
    /// Fit on the input's own labelled clips.
    Learn,
    /// A JSON matrix, or the projection of another index (or of this one, to keep it through a rebuild).
    File(PathBuf),
}

impl ProjectionChoice {
    pub fn parse(text: &str) -> ProjectionChoice {
        match text {
            "none" => ProjectionChoice::None,
            "default" => ProjectionChoice::Default,
            "learn" => ProjectionChoice::Learn,
            path => ProjectionChoice::File(PathBuf::from(path)),
        }
    }
}

/// The most trees a forest may have: each takes about as much room as the vectors, and 100,000 trees ran for a
/// minute before the map was full. The forest only gives walks their start and answers `--search-k`.
pub(super) const MAX_TREES: usize = 1000;

/// Trees in the forest of a new index when `--trees` is not given. The graph answers by default; the forest
/// gives a walk for an embedding its entry points and answers `--search-k`, and arroy's own default (about
/// 40 trees from 10,000 clips on) took most of a million-clip build's time (docs/bench-log.md, "Where the time
/// went (index build at scale, before the graph)").
pub(super) const DEFAULT_TREES: usize = 10;
