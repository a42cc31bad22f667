//! Clip records (video_id, labels, times) stored in blocks of [`BLOCK_ROWS`] items, like the vectors: a batch
//! reads ten records per query, and a B-tree lookup per record was a large share of a batch's time
//! (docs/bench-log.md, "Where the time goes (recommend with the graph)"). A reader borrows the blocks from the
//! memory map once and finds a record by arithmetic.
//!
//! A block is `n` (u32), then the end offset of each of its `n` records (u32 each, from the start of the
//! payload), then the payload: each record in bincode, item `block * BLOCK_ROWS + i` as record `i`. All
//! little-endian.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use heed::types::SerdeBincode;
use heed::{BytesDecode, BytesEncode};
use serde::{Deserialize, Serialize};

use anyhow::Result;
use heed::{RoTxn, RwTxn};

use crate::index::store::{Settings, Store, VECTOR_BLOCK_ROWS};

/// Items per block, as in all the index's other tables, so one item's data lives in the same block number
/// everywhere.
pub const BLOCK_ROWS: u32 = VECTOR_BLOCK_ROWS;

/// What the index keeps about a clip besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipMeta {
    pub video_id: String,
    pub labels: Vec<i64>,
    pub start_time: f64,
    pub end_time: f64,
}

/// Why a block cannot be read, for the store to wrap in its "damaged" error.
pub type Damage = String;

/// One block's bytes, read lazily: opening an index touches no record's page, so a one-shot query at a million
/// clips does not fault in a thousand block headers.
#[derive(Clone, Copy)]
struct Block<'t> {
    bytes: &'t [u8],
}

impl<'t> Block<'t> {
    fn word(&self, at: usize) -> Result<usize, Damage> {
        let bytes = self
            .bytes
            .get(at..)
            .and_then(<[u8]>::first_chunk::<4>)
            .ok_or("a block shorter than its header")?;
        Ok(u32::from_le_bytes(*bytes) as usize)
    }

    fn len(&self) -> Result<usize, Damage> {
        let n = self.word(0)?;
        if n > BLOCK_ROWS as usize {
            return Err(format!("a block of {n} records"));
        }
        Ok(n)
    }

    fn record(&self, i: usize) -> Result<ClipMeta, Damage> {
        let payload = 4 + 4 * self.len()?;
        let start = if i == 0 {
            0
        } else {
            self.word(4 + 4 * (i - 1))?
        };
        let end = self.word(4 + 4 * i)?;
        let bytes = self
            .bytes
            .get(payload + start..payload + end)
            .ok_or("a record past its block's end")?;
        SerdeBincode::<ClipMeta>::bytes_decode(bytes)
            .map_err(|e| format!("an unreadable record: {e}"))
    }
}

/// Encodes records (item order within the block) as one block.
fn encode<'m>(records: impl ExactSizeIterator<Item = &'m ClipMeta>) -> Result<Vec<u8>, Damage> {
    let n = records.len();
    let mut ends = Vec::with_capacity(n);
    let mut payload = Vec::new();
    for meta in records {
        let bytes = SerdeBincode::<ClipMeta>::bytes_encode(meta).map_err(|e| e.to_string())?;
        payload.extend_from_slice(&bytes);
        ends.push(u32::try_from(payload.len()).map_err(|_| "a block over 4 GB".to_string())?);
    }
    let mut block = Vec::with_capacity(4 + 4 * n + payload.len());
    block.extend_from_slice(&(n as u32).to_le_bytes());
    for end in ends {
        block.extend_from_slice(&end.to_le_bytes());
    }
    block.extend_from_slice(&payload);
    Ok(block)
}

/// The error for a damaged clip table of the index in `index`.
pub fn damaged(index: &Path, damage: &str) -> anyhow::Error {
    crate::error::damaged(index, format!("its clip table has {damage}"))
}

/// Every clip's record, borrowed from the memory map.
#[derive(Clone)]
pub struct Records<'t> {
    blocks: Vec<Block<'t>>,
    items: u32,
    /// The index's directory, for errors.
    index: std::path::PathBuf,
}

impl<'t> Records<'t> {
    /// The records of `items` clips from the table's blocks in key order. A block is checked when it is read.
    pub fn new(blocks: Vec<&'t [u8]>, items: u32, index: &Path) -> Records<'t> {
        Records {
            blocks: blocks.into_iter().map(|bytes| Block { bytes }).collect(),
            items,
            index: index.to_path_buf(),
        }
    }

    /// The record of `item`.
    pub fn get(&self, item: u32) -> Result<ClipMeta> {
        self.find(item)?
            .ok_or_else(|| damaged(&self.index, &format!("no clip {item}")))
    }

    fn find(&self, item: u32) -> anyhow::Result<Option<ClipMeta>> {
        self.read(item)
            .map_err(|damage| damaged(&self.index, &damage))
    }

    fn read(&self, item: u32) -> Result<Option<ClipMeta>, Damage> {
        if item >= self.items {
            return Ok(None);
        }
        let (block, i) = ((item / BLOCK_ROWS) as usize, (item % BLOCK_ROWS) as usize);
        let block = self.blocks.get(block).ok_or("a missing block")?;
        if i >= block.len()? {
            return Err(format!("no record for clip {item}"));
        }
        block.record(i).map(Some)
    }
}

/// The blocks to store after setting `updates` (item to record, any items) over the `current` blocks: the
/// changed blocks only, each whole, as (block number, bytes). `current(block)` gives a block's stored bytes.
pub fn updated_blocks<'a>(
    updates: impl IntoIterator<Item = (u32, Cow<'a, ClipMeta>)>,
    mut current: impl FnMut(u32) -> Result<Option<Vec<u8>>, Damage>,
) -> Result<Vec<(u32, Vec<u8>)>, Damage> {
    let mut by_block: BTreeMap<u32, BTreeMap<u32, Cow<'a, ClipMeta>>> = BTreeMap::new();
    for (item, meta) in updates {
        by_block
            .entry(item / BLOCK_ROWS)
            .or_default()
            .insert(item % BLOCK_ROWS, meta);
    }
    let mut out = Vec::with_capacity(by_block.len());
    for (block, changes) in by_block {
        let mut records: Vec<ClipMeta> = match current(block)? {
            Some(bytes) => {
                let old = Block { bytes: &bytes };
                (0..old.len()?)
                    .map(|i| old.record(i))
                    .collect::<Result<_, _>>()?
            }
            None => Vec::new(),
        };
        for (i, meta) in changes {
            let i = i as usize;
            if i > records.len() {
                return Err(format!(
                    "a gap before item {}",
                    block * BLOCK_ROWS + i as u32
                ));
            }
            if i == records.len() {
                records.push(meta.into_owned());
            } else {
                records[i] = meta.into_owned();
            }
        }
        out.push((block, encode(records.iter())?));
    }
    Ok(out)
}

impl Store {
    /// Every clip's record, borrowed from the memory map like the vectors.
    pub fn load_records<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Records<'t>> {
        let mut blocks = Vec::new();
        let bounds = self.env.bounds();
        for (n, entry) in self.clips.iter(rtxn)?.enumerate() {
            let (key, bytes) = entry?;
            if let Some(bounds) = bounds {
                bounds.check(bytes, &self.dir)?;
            }
            if key as usize != n {
                return Err(crate::error::damaged(
                    &self.dir,
                    format!("its clip table skips block {n}"),
                ));
            }
            blocks.push(bytes);
        }
        Ok(Records::new(blocks, settings.next_item, &self.dir))
    }

    /// Stores clip records (item, record; any order), rewriting only the blocks they fall in.
    pub fn write_records<'m>(
        &self,
        wtxn: &mut RwTxn,
        updates: impl IntoIterator<Item = (u32, Cow<'m, ClipMeta>)>,
    ) -> Result<()> {
        let blocks = updated_blocks(updates, |block| {
            Ok(self
                .clips
                .get(wtxn, &block)
                .map_err(|e| e.to_string())?
                .map(<[u8]>::to_vec))
        })
        .map_err(|damage| damaged(&self.dir, &damage))?;
        for (block, bytes) in blocks {
            self.clips.put(wtxn, &block, &bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u32) -> ClipMeta {
        ClipMeta {
            video_id: format!("clip{n}"),
            labels: vec![137, i64::from(n)],
            start_time: f64::from(n),
            end_time: f64::from(n) + 10.0,
        }
    }

    #[test]
    fn records_round_trip_across_blocks_and_updates() {
        let count = BLOCK_ROWS * 2 + 5;
        let all: Vec<ClipMeta> = (0..count).map(meta).collect();
        let written = updated_blocks(
            all.iter()
                .enumerate()
                .map(|(i, m)| (i as u32, Cow::Borrowed(m))),
            |_| Ok(None),
        )
        .unwrap();
        assert_eq!(written.len(), 3);
        let mut stored: BTreeMap<u32, Vec<u8>> = written.into_iter().collect();
        // Replace one record in the middle block and add one at the end.
        let changed = ClipMeta {
            video_id: "new".into(),
            ..meta(7)
        };
        let more = updated_blocks(
            [
                (BLOCK_ROWS + 3, Cow::Owned(changed.clone())),
                (count, Cow::Owned(meta(count))),
            ],
            |b| Ok(stored.get(&b).cloned()),
        )
        .unwrap();
        assert_eq!(more.iter().map(|(b, _)| *b).collect::<Vec<_>>(), [1, 2]);
        stored.extend(more);
        let records = Records::new(
            stored.values().map(Vec::as_slice).collect(),
            count + 1,
            Path::new("x"),
        );
        assert_eq!(records.get(0).unwrap(), meta(0));
        assert_eq!(records.get(BLOCK_ROWS + 3).unwrap(), changed);
        assert_eq!(records.get(count).unwrap(), meta(count));
        assert!(
            records
                .get(count + 1)
                .unwrap_err()
                .to_string()
                .contains("has no clip")
        );
    }

    #[test]
    fn damaged_blocks_are_errors() {
        let block = encode([meta(1), meta(2)].iter()).unwrap();
        let damaged = |blocks: Vec<&[u8]>, items: u32, item: u32| {
            let error = Records::new(blocks, items, Path::new("x"))
                .get(item)
                .unwrap_err();
            assert!(error.to_string().contains("is damaged"), "{error}");
        };
        damaged(vec![&block[..3]], 2, 0);
        damaged(vec![&block[..block.len() - 1]], 2, 1);
        damaged(vec![&block], 3, 2);
        damaged(vec![], 3, 2);
        let mut garbled = block.clone();
        garbled[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        damaged(vec![&garbled], 2, 1);
        assert_eq!(
            Records::new(vec![&block], 2, Path::new("x"))
                .get(1)
                .unwrap(),
            meta(2)
        );
    }
}
