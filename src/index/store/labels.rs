//! The `labels` table: each label's set of items, a serialized roaring bitmap, for filtered queries.

use std::collections::BTreeMap;

use anyhow::Result;
use heed::{RoTxn, RwTxn};
use roaring::RoaringBitmap;

use crate::error::damaged;
use crate::index::store::Store;

impl Store {
    /// The items carrying a label.
    pub fn label_items(&self, rtxn: &RoTxn, label: u16) -> Result<RoaringBitmap> {
        match self.labels.get(rtxn, &label)? {
            Some(bytes) => {
                RoaringBitmap::deserialize_from(bytes).map_err(|e| self.damaged_labels(e))
            }
            None => Ok(RoaringBitmap::new()),
        }
    }

    /// Every label with the number of clips carrying it.
    pub fn label_counts(&self, rtxn: &RoTxn) -> Result<Vec<(u16, u64)>> {
        let mut counts = Vec::new();
        for entry in self.labels.iter(rtxn)? {
            let (label, bytes) = entry?;
            counts.push((
                label,
                RoaringBitmap::deserialize_from(bytes)
                    .map_err(|e| self.damaged_labels(e))?
                    .len(),
            ));
        }
        Ok(counts)
    }

    fn damaged_labels(&self, error: std::io::Error) -> anyhow::Error {
        damaged(&self.dir, format!("its label table is unreadable: {error}"))
    }

    /// Adds `items` to (or, with `remove`, takes them out of) each label's set.
    pub fn update_labels(
        &self,
        wtxn: &mut RwTxn,
        changes: &BTreeMap<u16, (RoaringBitmap, RoaringBitmap)>,
    ) -> Result<()> {
        for (&label, (added, removed)) in changes {
            let mut items = match self.labels.get(wtxn, &label)? {
                Some(bytes) => {
                    RoaringBitmap::deserialize_from(bytes).map_err(|e| self.damaged_labels(e))?
                }
                None => RoaringBitmap::new(),
            };
            items -= removed;
            items |= added;
            let mut bytes = Vec::with_capacity(items.serialized_size());
            items.serialize_into(&mut bytes)?;
            self.labels.put(wtxn, &label, &bytes)?;
        }
        Ok(())
    }
}
