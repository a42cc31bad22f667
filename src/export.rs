//! What the index searches, clip by clip, for another engine to load: each clip's vector as the index compares
//! it (after the projection, in search form: unit length on an angular index, so cosine is a dot product) with
//! its video_id, labels and times. A vector database fed these answers the same question the exact scan
//! answers (docs/scale.md); what it cannot do is the frame re-rank, whose frame codes stay here.

use anyhow::anyhow;

use crate::index::records::Records;
use crate::index::scan::Matrix;
use crate::{Reader, Result};

/// One clip as the index searches it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchedClip<'r> {
    pub video_id: String,
    pub labels: Vec<i64>,
    pub start_time: f64,
    pub end_time: f64,
    /// The vector the index compares, [`Searched::dimensions`] values.
    pub vector: &'r [f32],
}

/// Every clip of one reader's view of the index, in item order (the order the vectors lie on disk).
pub struct Searched<'r> {
    /// The items of the clips held: an index that replaced or removed clips has gaps in its item numbers.
    items: Vec<u32>,
    /// The index's directory, for errors.
    dir: &'r std::path::Path,
    vectors: Matrix<'r>,
    records: Records<'r>,
}

impl Reader {
    /// The clips as the index searches them, read from this reader's snapshot (an append committed later is
    /// not among them). Maps the vectors and the records; copies nothing but the list of items.
    pub fn searched(&self) -> Result<Searched<'_>> {
        let store = self.store();
        let rtxn = self.rtxn();
        let within = |e: anyhow::Error| crate::Error::from(e).in_index(&store.dir);
        let mut items = Vec::new();
        for entry in store.ids.iter(rtxn).map_err(|e| within(e.into()))? {
            let (_, item) = entry.map_err(|e| within(e.into()))?;
            items.push(item);
        }
        items.sort_unstable();
        let vectors = store.load_vectors(rtxn, self.settings()).map_err(within)?;
        let records = store.load_records(rtxn, self.settings()).map_err(within)?;
        Ok(Searched {
            items,
            dir: &store.dir,
            vectors,
            records,
        })
    }
}

impl Reader {
    /// A query's vector as the index compares it: an embedding's `rows` from `start` on made into a clip's
    /// vector (projected, in search form) exactly as a clip of the index was. What another engine loaded with
    /// [`Reader::searched`] is asked with.
    pub fn query_vector(&self, rows: &[Vec<f32>], start: usize) -> Result<Vec<f32>> {
        let mut vector = self.form().query(rows, start)?.vector;
        crate::index::scan::prepare(self.settings().metric, &mut vector);
        Ok(vector)
    }
}

impl<'r> Searched<'r> {
    /// How many clips.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The length of every clip's vector.
    pub fn dimensions(&self) -> usize {
        self.vectors.dimensions()
    }

    /// The `n`-th clip (0 to `len() - 1`, in item order).
    pub fn get(&self, n: usize) -> Result<SearchedClip<'_>> {
        let item = *self
            .items
            .get(n)
            .ok_or_else(|| anyhow!("no clip {n}: the index holds {}", self.items.len()))?;
        let meta = self.records.get(item)?;
        let vector = self.vectors.row(item).ok_or_else(|| {
            crate::error::damaged(self.dir, format!("its vectors table has no row {item}"))
        })?;
        Ok(SearchedClip {
            video_id: meta.video_id,
            labels: meta.labels,
            start_time: meta.start_time,
            end_time: meta.end_time,
            vector,
        })
    }
}
