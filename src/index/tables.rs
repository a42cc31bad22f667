//! The tables a search reads in place (vectors, codes, lists, upper layers, frames, records), mapped from one
//! read transaction and kept beside it.
//!
//! Mapping a table walks its blocks with an LMDB cursor, which costs a question by the graph several times the
//! search itself (docs/bench-log.md, "Id queries again on a quiet machine" and "One call's cost"), and grows
//! with the index. A host asking many questions (the server, a notebook) keeps the mapped tables with its read
//! transaction between questions (`query::Index`), so that only the first question on a transaction pays. A
//! searcher takes what the tables hold and maps what they lack for itself ([`table`]).

use std::borrow::Cow;

use anyhow::Result;
use heed::RoTxn;

use crate::index::codes::Codes;
use crate::index::entry::Layers;
use crate::index::graph::Graph;
use crate::index::records::Records;
use crate::index::rerank::FrameCodes;
use crate::index::scan::Matrix;
use crate::index::store::{Settings, Store};

/// The tables mapped so far; `None`: not yet.
#[derive(Default)]
pub struct Tables<'t> {
    pub vectors: Option<Matrix<'t>>,
    pub codes: Option<Codes<'t>>,
    pub graph: Option<Graph<'t>>,
    pub layers: Option<Layers<'t>>,
    pub frames: Option<FrameCodes<'t>>,
    pub records: Option<Records<'t>>,
}

/// Which tables a search reads (`plan::Search::needs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The vectors (the exact scan; the graph walk's final exact distances).
    pub vectors: bool,
    /// The codes, the lists and the upper layers (the graph walk).
    pub walk: bool,
    /// The frames' codes (a re-rank).
    pub frames: bool,
}

impl<'t> Tables<'t> {
    /// Maps the tables `needs` names, and the clips' records (every answer reads them), that are not mapped
    /// yet.
    pub fn load(
        &mut self,
        store: &'t Store,
        rtxn: &'t RoTxn,
        settings: &Settings,
        needs: Needs,
    ) -> Result<()> {
        if needs.vectors && self.vectors.is_none() {
            self.vectors = Some(store.load_vectors(rtxn, settings)?);
        }
        if needs.walk && self.codes.is_none() {
            self.codes = Some(store.load_codes(rtxn, settings)?);
        }
        if needs.walk && self.graph.is_none() {
            self.graph = Some(store.load_graph(rtxn, settings)?);
        }
        if needs.walk && self.layers.is_none() {
            self.layers = Some(store.load_layers(rtxn, settings)?);
        }
        if needs.frames && self.frames.is_none() {
            self.frames = Some(store.load_frames(rtxn, settings)?);
        }
        if self.records.is_none() {
            self.records = Some(store.load_records(rtxn, settings)?);
        }
        Ok(())
    }
}

/// A table as `held` has it mapped, else mapped now by `load` for the caller alone.
pub fn held_or_load<'a, T: ToOwned + ?Sized>(
    held: Option<&'a T>,
    load: impl FnOnce() -> Result<T::Owned>,
) -> Result<Cow<'a, T>> {
    Ok(match held {
        Some(table) => Cow::Borrowed(table),
        None => Cow::Owned(load()?),
    })
}

/// [`held_or_load`] when `needed`, else `None`.
pub fn table<'a, T: ToOwned + ?Sized>(
    held: Option<&'a T>,
    needed: bool,
    load: impl FnOnce() -> Result<T::Owned>,
) -> Result<Option<Cow<'a, T>>> {
    needed.then(|| held_or_load(held, load)).transpose()
}
