//! The `vectors` table: every clip's vector in search form, in blocks of rows, for the exact scan and the graph
//! walk's final distances.

use std::collections::BTreeMap;

use anyhow::Result;
use heed::{RoTxn, RwTxn};

use crate::index::scan::Matrix;
use crate::index::store::{Settings, Store, VECTOR_BLOCK_ROWS};

impl Store {
    /// Every vector in search form, row `i` holding item `i`, for the exact scan and the graph walk: borrowed
    /// from the memory map (no copy) on little-endian machines when LMDB's page layout leaves the floats aligned.
    pub fn load_vectors<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Matrix<'t>> {
        let blocks =
            self.load_blocks(rtxn, self.vectors, "vector", settings.dimensions, settings)?;
        Ok(Matrix::new(
            settings.dimensions,
            settings.metric,
            blocks,
            VECTOR_BLOCK_ROWS as usize,
        ))
    }

    /// Stores the vectors of a new index, row `i` (`settings.dimensions` floats in search form) holding item `i`.
    pub fn write_vector_rows(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        rows: &[f32],
    ) -> Result<()> {
        let dimensions = settings.dimensions.max(1);
        self.put_all_rows(
            wtxn,
            self.vectors,
            settings,
            dimensions * 4,
            0..rows.len() / dimensions,
            |item, block| {
                let row = &rows[item * dimensions..][..dimensions];
                block.extend(row.iter().flat_map(|v| v.to_le_bytes()));
                Ok(())
            },
        )
    }

    /// Stores appended or replaced vectors (item to vector in search form) and their codes, rewriting only the
    /// blocks they fall in.
    pub fn write_vectors(
        &self,
        wtxn: &mut RwTxn,
        settings: &Settings,
        updates: &BTreeMap<u32, Vec<f32>>,
    ) -> Result<()> {
        let quantizer = self.quantizer(wtxn, settings)?;
        let as_bytes = updates
            .iter()
            .map(|(&item, v)| (item, v.iter().flat_map(|x| x.to_le_bytes()).collect()));
        self.put_rows(
            wtxn,
            self.vectors,
            settings,
            settings.dimensions * 4,
            as_bytes,
        )?;
        let as_codes = updates.iter().map(|(&item, v)| {
            let mut code = Vec::with_capacity(v.len());
            quantizer.encode(v, &mut code);
            (item, code)
        });
        self.put_rows(wtxn, self.codes, settings, settings.dimensions, as_codes)
    }
}
