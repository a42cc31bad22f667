//! The index store: one LMDB environment holding the arroy forest, the neighbour graph and their side tables.
//!
//! Tables: `arroy` (the forest; item ids are u32), `ids` (video_id to item), `clips` (each clip's video_id,
//! labels and times, in blocks of records), `labels` (label index to the set of items carrying it, for filtered
//! queries), `vectors` (every vector in search form, in blocks of rows, for the exact scan), `codes` (the same
//! as 8-bit codes, for the graph walk; their quantizer beside the settings), `graph` (every clip's neighbour
//! list), `frames` (every clip's projected frames as signed bytes, for the re-rank) and `settings` (with the
//! projection beside them). All blocks hold the same 1,024 items. They are large values, which LMDB keeps on
//! contiguous overflow pages: a reader borrows them from the memory map as flat arrays, with no lookup per row.
//!
//! Here: the tables and the settings. Each table's codec sits beside the type it reads into, as an `impl Store`
//! (`records`, `codes`, `graph`, `entry` for the upper layers, `rerank` for the frames; the vectors and labels,
//! whose types know nothing of the store, in [`vectors`] and [`labels`]); how the environment is opened and
//! sized is [`env`], what makes a file an index of ours [`format`].

mod env;
mod format;
mod labels;
mod vectors;

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use heed::types::{Bytes, SerdeJson, Str, U16, U32};
use heed::{CommitOrAbort, Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use crate::error::{damaged, not_found};
use crate::index::projection::{ClipForm, Projection, Summary};
use crate::index::vector::{Form, Metric};

pub(in crate::index) use env::BE;
use env::{Access, apply_umask, check_not_cut_short, shared_env};
pub(crate) use env::{Env, SharedEnv, explain_full_disk, is_map_full, map_size, shrink_back};
pub(crate) use format::{
    FORMAT_VERSION, OLDEST_FORMAT_VERSION, names_our_tables, recorded_format_version,
};

/// Clips per row of the `vectors` and `graph` tables (and of every table of blocks, the clip records' too): 1,024
/// x 128 floats is 512 KiB, so an append rewrites little.
pub const VECTOR_BLOCK_ROWS: u32 = 1024;

/// Clips whose frame codes a rebuild writes per transaction (64 blocks: about 95 MB with the default projection).
/// LMDB keeps a transaction's large values in memory until it commits, and a million clips' frame codes are 1.5 GB.
pub const FRAME_ROWS_PER_WRITE: usize = 64 * VECTOR_BLOCK_ROWS as usize;

/// The arroy index number inside the `arroy` table.
pub const ARROY_INDEX: u16 = 0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub format_version: u32,
    pub metric: Metric,
    pub vector: Form,
    pub dimensions: usize,
    pub frames: usize,
    pub trees: usize,
    /// Slots in each clip's neighbour list.
    pub graph_degree: usize,
    pub seed: u64,
    pub clips: u64,
    /// The next item id to give out (ids of replaced clips are reused; removed ones are not).
    pub next_item: u32,
    pub tool_version: String,
    /// The projection applied to every frame (its matrix is stored beside the settings).
    pub projection: Summary,
    /// The default breadth of a walk for a vector the index does not hold, as the build measured it
    /// ([`crate::index::calibrate`]); `None` in an index whose default is the exact scan, or from before
    /// issue 36, where the breadth follows the index's size ([`crate::index::plan::default_ef_new`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<Calibration>,
}

/// What the build measured: the breadth a new vector's walk takes by default, and the recall@10 its probes
/// reached with it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub breadth: usize,
    pub recall: f64,
    pub probes: usize,
}

/// An open index environment and its tables.
pub struct Store {
    pub env: Arc<SharedEnv>,
    pub dir: PathBuf,
    /// The arroy forest, typed per metric at use (see [`Store::arroy`]).
    pub(in crate::index) arroy: Database<'static, Bytes, Bytes>,
    pub ids: Database<'static, Str, U32<BE>>,
    /// Clip records in blocks (see [`records`]).
    pub(in crate::index) clips: Database<'static, U32<BE>, Bytes>,
    pub(in crate::index) labels: Database<'static, U16<BE>, Bytes>,
    pub(in crate::index) vectors: Database<'static, U32<BE>, Bytes>,
    /// The vectors as 8-bit codes, in the same blocks, for the graph walk (see [`codes`]).
    pub(in crate::index) codes: Database<'static, U32<BE>, Bytes>,
    pub(in crate::index) graph: Database<'static, U32<BE>, Bytes>,
    /// Every clip's frames as codes for the re-rank (see [`rerank`](crate::index::rerank)), in the same blocks.
    /// `None` only in an index of an older format, which [`Store::read_settings`] refuses.
    pub(in crate::index) frames: Option<Database<'static, U32<BE>, Bytes>>,
    /// The settings under [`SETTINGS_KEY`], the codes' quantizer under [`QUANTIZER_KEY`], the projection under
    /// [`PROJECTION_KEY`], the upper layers under [`LAYERS_KEY`] and their codes under [`LAYER_CODES_KEY`].
    pub(in crate::index) settings: Database<'static, Str, SerdeJson<Settings>>,
}

/// The tables, in the order [`Store::with_tables`] takes them.
pub(in crate::index) const TABLES: [&str; 8] = [
    "arroy", "ids", "clips", "labels", "vectors", "codes", "graph", "settings",
];
pub(in crate::index) type Table = Database<'static, Bytes, Bytes>;

/// The frame codes' table, added in format version 4: opened apart from [`TABLES`], so that an older index
/// is refused for its version rather than for a missing table.
pub(in crate::index) const FRAMES_TABLE: &str = "frames";

pub(in crate::index) const SETTINGS_KEY: &str = "settings";
pub(in crate::index) const QUANTIZER_KEY: &str = "quantizer";
const PROJECTION_KEY: &str = "projection";
pub(in crate::index) const LAYERS_KEY: &str = "layers";
pub(in crate::index) const LAYER_CODES_KEY: &str = "layer-codes";

impl Store {
    /// Creates the tables in a new, empty directory, with room for `input` bytes of clips (see [`map_size`]).
    pub fn create(dir: &Path, input: Option<u64>) -> Result<Store> {
        let env = shared_env(dir, 0, input, Access::Write)?;
        apply_umask(dir)?;
        let wtxn = env.write_txn()?;
        let (tables, frames) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    TABLES.map(|name| dbo.create_database(wtxn, Some(name))),
                    dbo.create_database::<U32<BE>, Bytes>(wtxn, Some(FRAMES_TABLE)),
                )))
            })?
            .unwrap_commit();
        let tables = tables.into_iter().collect::<heed::Result<Vec<Table>>>()?;
        let mut store = Store::with_tables(env, dir, tables)
            .ok_or_else(|| anyhow!("cannot create the tables in {}", dir.display()))?;
        store.frames = Some(frames?);
        Ok(store)
    }

    /// The store over the [`TABLES`], in their order.
    fn with_tables(env: Arc<SharedEnv>, dir: &Path, tables: Vec<Table>) -> Option<Store> {
        let [arroy, ids, clips, labels, vectors, codes, graph, settings] =
            <[Table; TABLES.len()]>::try_from(tables).ok()?;
        Some(Store {
            env,
            dir: dir.to_path_buf(),
            arroy,
            ids: ids.remap_types(),
            clips: clips.remap_types(),
            labels: labels.remap_types(),
            vectors: vectors.remap_types(),
            codes: codes.remap_types(),
            graph: graph.remap_types(),
            frames: None,
            settings: settings.remap_types(),
        })
    }

    /// Opens an existing index for reading, with clear errors for a missing directory, a directory that is not
    /// an index, and an index of another format version.
    pub fn open(dir: &Path) -> Result<(Store, Settings)> {
        Self::open_env_and_tables(dir, Some(0), Access::Read)
    }

    /// Opens an existing index for a check that leaves its lock file alone (see [`Access::Check`]).
    pub fn open_to_check(dir: &Path) -> Result<(Store, Settings)> {
        Self::open_env_and_tables(dir, Some(0), Access::Check)
    }

    /// Opens an existing index with room for `input` more bytes of clips (see [`map_size`]).
    pub fn open_with_room(dir: &Path, input: Option<u64>) -> Result<(Store, Settings)> {
        Self::open_env_and_tables(dir, input, Access::Write)
    }

    fn open_env_and_tables(
        dir: &Path,
        input: Option<u64>,
        access: Access,
    ) -> Result<(Store, Settings)> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "{} is a file, not an index (an index is the directory `soundalike index --index DIR` makes)",
                dir.display()
            );
        }
        if !dir.is_dir() {
            return Err(not_found(format!(
                "no index at {} (build one with `soundalike index --index {}`)",
                dir.display(),
                dir.display()
            )));
        }
        match std::fs::metadata(dir.join("data.mdb")) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => bail!(
                "{} is not a soundalike index (its data.mdb is not a regular file)",
                dir.display()
            ),
            Err(_) => bail!("{} is not a soundalike index (no data.mdb)", dir.display()),
        }
        let existing = std::fs::metadata(dir.join("data.mdb")).map_or(0, |m| m.len());
        let env = shared_env(dir, existing, input, access)?;
        check_not_cut_short(&env, dir, existing)?;
        let rtxn = env.read_txn()?;
        let (opened, frames) = env
            .open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    TABLES.map(|name| dbo.open_database(rtxn, Some(name))),
                    dbo.open_database::<U32<BE>, Bytes>(rtxn, Some(FRAMES_TABLE)),
                )))
            })
            .and_then(|tables| {
                let (tables, frames) = tables.unwrap_commit();
                Ok((
                    tables
                        .into_iter()
                        .collect::<heed::Result<Option<Vec<Table>>>>()?,
                    frames?,
                ))
            })
            .map_err(|e| anyhow!("{} is not a soundalike index: {e}", dir.display()))?;
        let Some(mut store) = opened.and_then(|tables| Store::with_tables(env, dir, tables)) else {
            bail!(
                "{} is not a soundalike index (its tables are missing)",
                dir.display()
            );
        };
        store.frames = frames;
        let rtxn = store.env.read_txn()?;
        let settings = store.read_settings(&rtxn)?;
        drop(rtxn);
        Ok((store, settings))
    }

    /// The settings as of `rtxn`. A reader takes them again in the transaction it queries in: an append may
    /// commit between opening and querying, and clip counts from before it would not match its tables.
    pub fn read_settings(&self, rtxn: &RoTxn) -> Result<Settings> {
        let dir = &self.dir;
        let raw = self
            .settings
            .remap_data_type::<Bytes>()
            .get(rtxn, SETTINGS_KEY)?;
        // Its tables are there (they were opened), so it is an index of ours: settings missing or unreadable are
        // damage, as a damaged table's are.
        let raw = raw.ok_or_else(|| damaged(dir, "its settings are missing"))?;
        let version = serde_json::from_slice::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| v["format_version"].as_u64())
            .ok_or_else(|| damaged(dir, "its settings are unreadable"))?;
        if !(u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION)).contains(&version) {
            bail!(
                "index {} has format version {version}; this soundalike reads versions \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION} \
                 (rebuild it)",
                dir.display()
            );
        }
        serde_json::from_slice::<Settings>(raw)
            .map_err(|e| damaged(dir, format!("its settings are unreadable: {e}")))
    }

    pub fn arroy<D: arroy::Distance>(&self) -> arroy::Database<'static, D> {
        self.arroy.remap_types()
    }

    pub fn write_settings(&self, wtxn: &mut RwTxn, settings: &Settings) -> Result<()> {
        Ok(self.settings.put(wtxn, SETTINGS_KEY, settings)?)
    }

    /// The index's projection, `None` when it has none.
    pub fn projection(&self, rtxn: &RoTxn, settings: &Settings) -> Result<Option<Projection>> {
        if settings.projection.kind.is_none() {
            return Ok(None);
        }
        self.settings
            .remap_data_type::<Bytes>()
            .get(rtxn, PROJECTION_KEY)?
            .and_then(Projection::from_bytes)
            .filter(|p| p.dimensions == settings.projection.dimensions)
            .map(Some)
            .ok_or_else(|| damaged(&self.dir, "its projection is missing or unreadable"))
    }

    /// How the index turns rows into its vectors and frame codes.
    pub fn clip_form(&self, rtxn: &RoTxn, settings: &Settings) -> Result<ClipForm> {
        Ok(ClipForm {
            projection: self.projection(rtxn, settings)?,
            frames: settings.frames,
            form: settings.vector,
        })
    }

    pub fn write_projection(&self, wtxn: &mut RwTxn, projection: &Projection) -> Result<()> {
        Ok(self.settings.remap_data_type::<Bytes>().put(
            wtxn,
            PROJECTION_KEY,
            &projection.to_bytes(),
        )?)
    }

    /// The rows of a table of blocks (`width` 4-byte values per clip, [`VECTOR_BLOCK_ROWS`] clips per block),
    /// checked to hold exactly one row per item.
    pub(in crate::index) fn load_blocks<'t, T: bytemuck::Pod>(
        &self,
        rtxn: &'t RoTxn,
        table: Database<'static, U32<BE>, Bytes>,
        what: &str,
        width: usize,
        settings: &Settings,
    ) -> Result<Vec<Cow<'t, [T]>>> {
        let damaged = |detail: String| damaged(&self.dir, format!("its {what} table {detail}"));
        let block_len = VECTOR_BLOCK_ROWS as usize * width;
        let mut blocks = Vec::new();
        let mut values = 0;
        let bounds = self.env.bounds();
        let pad = settings.block_pad();
        for (n, entry) in table.iter(rtxn)?.enumerate() {
            let (key, value) = entry?;
            if let Some(bounds) = bounds {
                bounds.check(value, &self.dir)?;
            }
            let bytes = value
                .get(pad..)
                .ok_or_else(|| damaged(format!("has a block of {} bytes", value.len())))?;
            let values_here: Cow<'t, [T]> = match bytemuck::try_cast_slice::<u8, T>(bytes) {
                Ok(values) if cfg!(target_endian = "little") => Cow::Borrowed(values),
                _ if bytes.len() % std::mem::size_of::<T>() == 0 => Cow::Owned(
                    bytes
                        .chunks_exact(std::mem::size_of::<T>())
                        .map(bytemuck::pod_read_unaligned)
                        .collect(),
                ),
                _ => return Err(damaged(format!("has a block of {} bytes", bytes.len()))),
            };
            if key as usize != n
                || blocks
                    .last()
                    .is_some_and(|b: &Cow<[T]>| b.len() != block_len)
                || values_here.len() > block_len
            {
                return Err(damaged("has a block of the wrong size".into()));
            }
            values += values_here.len();
            blocks.push(values_here);
        }
        if values != settings.next_item as usize * width {
            return Err(damaged(format!("holds {values} values")));
        }
        Ok(blocks)
    }

    /// Stores the rows of `items` (a range starting at a block's first item), `row_bytes` bytes each, row `i`
    /// holding item `i`, in blocks of [`VECTOR_BLOCK_ROWS`] after the index's pad ([`Settings::block_pad`]);
    /// `row(i, block)` appends item `i`'s bytes to the block being filled. A block at a time, never the whole
    /// table: at a million clips a table's bytes in one piece would be up to 1.5 GB on top of what the build holds.
    pub(in crate::index) fn put_all_rows(
        &self,
        wtxn: &mut RwTxn,
        table: Database<'static, U32<BE>, Bytes>,
        settings: &Settings,
        row_bytes: usize,
        items: Range<usize>,
        mut row: impl FnMut(usize, &mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let block_rows = VECTOR_BLOCK_ROWS as usize;
        debug_assert_eq!(items.start % block_rows, 0);
        let pad = settings.block_pad();
        let mut bytes = Vec::with_capacity(pad + block_rows * row_bytes);
        for start in items.clone().step_by(block_rows) {
            bytes.clear();
            bytes.resize(pad, 0);
            for item in start..items.end.min(start + block_rows) {
                row(item, &mut bytes)?;
            }
            table.put(wtxn, &((start / block_rows) as u32), &bytes)?;
        }
        Ok(())
    }

    /// Stores rows (item, `row_bytes` bytes) in ascending item order, rewriting only the blocks they fall in
    /// (each after the pad the index has, [`Settings::block_pad`]).
    pub(in crate::index) fn put_rows(
        &self,
        wtxn: &mut RwTxn,
        table: Database<'static, U32<BE>, Bytes>,
        settings: &Settings,
        row_bytes: usize,
        updates: impl IntoIterator<Item = (u32, Vec<u8>)>,
    ) -> Result<()> {
        let pad = settings.block_pad();
        let mut current: Option<(u32, Vec<u8>)> = None;
        for (item, row) in updates {
            let block = item / VECTOR_BLOCK_ROWS;
            if current.as_ref().is_none_or(|(b, _)| *b != block) {
                if let Some((b, bytes)) = current.take() {
                    table.put(wtxn, &b, &bytes)?;
                }
                let bytes = table
                    .get(wtxn, &block)?
                    .map(<[u8]>::to_vec)
                    .unwrap_or_else(|| vec![0; pad]);
                current = Some((block, bytes));
            }
            if let Some((_, bytes)) = current.as_mut() {
                let start = pad + (item % VECTOR_BLOCK_ROWS) as usize * row_bytes;
                if bytes.len() < start + row_bytes {
                    bytes.resize(start + row_bytes, 0);
                }
                bytes[start..start + row_bytes].copy_from_slice(&row[..row_bytes]);
            }
        }
        if let Some((b, bytes)) = current {
            table.put(wtxn, &b, &bytes)?;
        }
        Ok(())
    }

    /// Bytes on disk of the index's files.
    pub fn disk_size(&self) -> u64 {
        dir_size(&self.dir)
    }
}

pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `$body` with `$d` bound to the arroy distance type of `$metric`.
macro_rules! with_distance {
    ($metric:expr, $d:ident => $body:expr) => {
        match $metric {
            $crate::index::vector::Metric::Angular => {
                type $d = arroy::distances::Cosine;
                $body
            }
            $crate::index::vector::Metric::Euclidean => {
                type $d = arroy::distances::Euclidean;
                $body
            }
            $crate::index::vector::Metric::Manhattan => {
                type $d = arroy::distances::Manhattan;
                $body
            }
            $crate::index::vector::Metric::Dot => {
                type $d = arroy::distances::DotProduct;
                $body
            }
        }
    };
}
pub(crate) use with_distance;

/// Where `rows` rows of `width` bytes from `at` end, or `None` when a damaged count would overflow.
pub(in crate::index) fn span_end(at: usize, rows: usize, width: usize) -> Option<usize> {
    rows.checked_mul(width).and_then(|len| at.checked_add(len))
}

/// The `at`-th little-endian u32 of `bytes`.
pub(in crate::index) fn le_word(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at * 4..at * 4 + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::format::BLOCK_PAD;
    use super::*;
    use crate::index::build::{BuildOptions, ClipInput, IndexBuilder, ProjectionChoice};
    use crate::index::hash::hash;

    /// Clips `items` as JSON Lines: ten frames of pseudo-random bytes each (`salt` varies them), video ids
    /// `c0000000042`.
    fn clips(items: Range<usize>, salt: u64) -> String {
        let mut out = String::new();
        for i in items {
            let frames: Vec<Vec<u64>> = (0..10)
                .map(|f| (0..128).map(|d| hash(salt, i as u64, f, d) % 256).collect())
                .collect();
            let clip = serde_json::json!({
                "video_id": format!("c{i:010}"), "start_time": 0.0, "end_time": 10.0,
                "labels": [137], "embedding": frames,
            });
            out += &format!("{clip}\n");
        }
        out
    }

    fn input(text: &str) -> Vec<ClipInput<'_>> {
        vec![ClipInput::Reader {
            name: "clips".into(),
            reader: Box::new(text.as_bytes()),
        }]
    }

    /// Every upper layer's copy of a node's code, and of a pivot's, equals the clip's code in the codes table.
    fn assert_copies_match(dir: &Path) {
        let (store, settings) = Store::open(dir).unwrap();
        let rtxn = store.env.read_txn().unwrap();
        let layers = store.load_layers(&rtxn, &settings).unwrap();
        let codes = store.load_codes(&rtxn, &settings).unwrap();
        let top = layers.layers.last().expect("an upper layer");
        for layer in &layers.layers {
            let own = layer.codes.as_ref().expect("the layer's codes");
            assert_eq!(own.rows(), layer.graph.nodes());
            for node in 0..layer.graph.nodes() {
                let item = (node * layer.stride) as u32;
                assert_eq!(own.row(node as u32), codes.row(item), "node {node}");
            }
        }
        let pivots = layers.pivots.as_ref().expect("the pivots' codes");
        for pivot in 0..pivots.codes.rows() {
            let item = (pivot * pivots.every * top.stride) as u32;
            assert_eq!(
                pivots.codes.row(pivot as u32),
                codes.row(item),
                "pivot {pivot}"
            );
        }
    }

    #[test]
    fn the_upper_layers_copies_of_codes_follow_a_replaced_clip() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("index");
        // Just enough clips for an upper layer.
        let first = clips(0..17_000, 1);
        IndexBuilder::new(&dir).rebuild(input(&first)).unwrap();
        assert_copies_match(&dir);
        // Clip 0 of the index is a node of every layer and a pivot: replace it (and one more) with new frames.
        let zero = {
            let (store, settings) = Store::open(&dir).unwrap();
            let rtxn = store.env.read_txn().unwrap();
            let records = store.load_records(&rtxn, &settings).unwrap();
            records.get(0).unwrap().video_id
        };
        let number: usize = zero[1..].parse().unwrap();
        let again = clips(number..number + 1, 2) + &clips(17_000..17_001, 2);
        let built = IndexBuilder::new(&dir).append(input(&again)).unwrap();
        assert_eq!((built.added, built.replaced), (2, 1));
        assert_copies_match(&dir);
    }

    /// Every clip's rows as the index reads them (code, vector, neighbour list, frame codes), then the upper
    /// layers' codes: what must not change with the blocks' layout.
    fn rows(dir: &Path) -> Vec<Vec<u8>> {
        let (store, settings) = Store::open(dir).unwrap();
        let rtxn = store.env.read_txn().unwrap();
        let codes = store.load_codes(&rtxn, &settings).unwrap();
        let vectors = store.load_vectors(&rtxn, &settings).unwrap();
        let graph = store.load_graph(&rtxn, &settings).unwrap();
        let frames = store.load_frames(&rtxn, &settings).unwrap();
        let mut rows = Vec::new();
        for item in 0..settings.next_item {
            rows.push(codes.row(item).unwrap().to_vec());
            rows.push(bytemuck::cast_slice(vectors.row(item).unwrap()).to_vec());
            rows.push(bytemuck::cast_slice(graph.neighbours(item)).to_vec());
            rows.push(bytemuck::cast_slice(frames.row(item).unwrap()).to_vec());
        }
        let layers = store.load_layers(&rtxn, &settings).unwrap();
        for layer in &layers.layers {
            let own = layer.codes.as_ref().unwrap();
            rows.extend((0..own.rows() as u32).map(|node| own.row(node).unwrap().to_vec()));
        }
        rows
    }

    /// Where the rows of the first block of each table (a full block: an overflow value) start, as offsets
    /// within a 64-byte cache line.
    fn line_offsets(dir: &Path) -> Vec<usize> {
        let (store, settings) = Store::open(dir).unwrap();
        let rtxn = store.env.read_txn().unwrap();
        let codes = store.load_codes(&rtxn, &settings).unwrap();
        let vectors = store.load_vectors(&rtxn, &settings).unwrap();
        let graph = store.load_graph(&rtxn, &settings).unwrap();
        let layers = store.load_layers(&rtxn, &settings).unwrap();
        let layer_codes = layers.layers[0].codes.as_ref().unwrap();
        [
            codes.row(0).unwrap().as_ptr() as usize,
            codes.row(1000).unwrap().as_ptr() as usize,
            vectors.row(0).unwrap().as_ptr() as usize,
            graph.neighbours(0).as_ptr() as usize,
            graph.neighbours(1000).as_ptr() as usize,
            layer_codes.row(0).unwrap().as_ptr() as usize,
            layer_codes.row(100).unwrap().as_ptr() as usize,
        ]
        .iter()
        .map(|address| address % 64)
        .collect()
    }

    #[test]
    fn rows_start_on_cache_lines_and_an_index_without_the_pad_reads_the_same() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("index");
        let first = clips(0..17_000, 3);
        // The peers' 128 dimensions: a code and a neighbour list are 128 bytes, two cache lines.
        let options = BuildOptions {
            projection: Some(ProjectionChoice::None),
            ..BuildOptions::default()
        };
        IndexBuilder::new(&dir)
            .options(options)
            .rebuild(input(&first))
            .unwrap();
        assert_eq!(line_offsets(&dir), [0; 7]);
        let padded = rows(&dir);

        // The same index as format 5 wrote it: every block and the layers' codes without the pad.
        {
            let (store, mut settings) = Store::open_with_room(&dir, Some(0)).unwrap();
            let pad = settings.block_pad();
            assert_eq!(pad, BLOCK_PAD);
            let mut wtxn = store.env.write_txn().unwrap();
            let tables = [
                store.vectors,
                store.codes,
                store.graph,
                store.frames.unwrap(),
            ];
            for table in tables {
                let blocks: Vec<(u32, Vec<u8>)> = table
                    .iter(&wtxn)
                    .unwrap()
                    .map(|entry| {
                        entry
                            .map(|(key, value)| (key, value[pad..].to_vec()))
                            .unwrap()
                    })
                    .collect();
                for (key, value) in blocks {
                    table.put(&mut wtxn, &key, &value).unwrap();
                }
            }
            let bytes = store.settings.remap_data_type::<Bytes>();
            let mut layer_codes = bytes.get(&wtxn, LAYER_CODES_KEY).unwrap().unwrap().to_vec();
            layer_codes.drain(8..pad);
            bytes.put(&mut wtxn, LAYER_CODES_KEY, &layer_codes).unwrap();
            settings.format_version = 5;
            store
                .settings
                .put(&mut wtxn, SETTINGS_KEY, &settings)
                .unwrap();
            wtxn.commit().unwrap();
        }
        assert_eq!(rows(&dir), padded);
        assert_ne!(line_offsets(&dir)[..3], [0; 3]);

        // An append to it keeps its layout: the clips it had read the same, the new ones are there.
        let more = clips(17_000..17_100, 3);
        IndexBuilder::new(&dir).append(input(&more)).unwrap();
        let (store, settings) = Store::open(&dir).unwrap();
        assert_eq!((settings.format_version, settings.block_pad()), (5, 0));
        let rtxn = store.env.read_txn().unwrap();
        let codes = store.load_codes(&rtxn, &settings).unwrap();
        assert_eq!(codes.rows(), 17_100);
        for item in 0..17_000 {
            assert_eq!(codes.row(item).unwrap(), &padded[item as usize * 4][..]);
        }
        assert_copies_match(&dir);
    }

    #[test]
    fn map_size_grows_with_the_input_and_the_index() {
        let gib = 1usize << 30;
        assert_eq!(map_size(0, Some(0)), gib);
        // 4.7 GB of JSON (a million clips) may take up to 16 times as much, plus headroom.
        let million = map_size(0, Some(4_700_000_000));
        assert!(million >= 16 * 4_700_000_000 && million < 16 * 4_700_000_000 + 2 * gib);
        assert!(map_size(2_200_000_000, Some(0)) >= 2_200_000_000 + gib);
        // Unknown input (stdin): a large reservation of address space.
        assert!(map_size(0, None) >= 1 << 40);
        assert_eq!(map_size(12345, Some(678)) % (1 << 20), 0);
    }
}
