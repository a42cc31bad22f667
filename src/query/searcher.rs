//! A searcher of whichever distance the index uses: the one type a session holds, whatever the index's metric.

use crate::index::search::{Searcher, Target};

/// A searcher of whichever distance the index uses.
pub(super) enum AnySearcher<'t> {
    Cosine(Searcher<'t, arroy::distances::Cosine>),
    Euclidean(Searcher<'t, arroy::distances::Euclidean>),
    Manhattan(Searcher<'t, arroy::distances::Manhattan>),
    Dot(Searcher<'t, arroy::distances::DotProduct>),
}

macro_rules! any_searcher_from {
    ($($variant:ident => $d:ty),+) => {$(
        impl<'t> From<Searcher<'t, $d>> for AnySearcher<'t> {
            fn from(searcher: Searcher<'t, $d>) -> Self {
                AnySearcher::$variant(searcher)
            }
        }
    )+};
}

any_searcher_from!(
    Cosine => arroy::distances::Cosine,
    Euclidean => arroy::distances::Euclidean,
    Manhattan => arroy::distances::Manhattan,
    Dot => arroy::distances::DotProduct
);

impl AnySearcher<'_> {
    pub(super) fn nearest(&mut self, targets: &[Target]) -> anyhow::Result<Vec<Vec<(u32, f32)>>> {
        match self {
            AnySearcher::Cosine(s) => s.nearest(targets),
            AnySearcher::Euclidean(s) => s.nearest(targets),
            AnySearcher::Manhattan(s) => s.nearest(targets),
            AnySearcher::Dot(s) => s.nearest(targets),
        }
    }
}
