//! What makes a file an index of ours: the format versions this soundalike reads, the version an index records,
//! the names of its tables read without mapping the file, and the check of LMDB's overflow page headers a
//! writer makes before it changes anything.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use heed::types::{Bytes, Str};
use heed::{CommitOrAbort, Database, EnvOpenOptions, RoTxn};

use crate::error::damaged;
use crate::index::store::env::{Access, env_page_size, file_mappings, shared_env};
use crate::index::store::{Env, FRAMES_TABLE, SETTINGS_KEY, Settings, Store, TABLES, map_size};

/// Bumped whenever the layout changes; an index of another version is refused with a clear error. Version 4
/// added the projection and the frames' codes for the re-rank; version 5 lets the projection be the learned
/// label model (projection bytes of version 2: an activation and a bias); version 6 puts [`BLOCK_PAD`] bytes
/// before the rows of every block and the upper layers' codes, so that they start on a cache line. Version 4
/// and 5 indexes, whose blocks have no pad (and version 4's projections are linear), are still read: their layout
/// is otherwise the same.
pub const FORMAT_VERSION: u32 = 6;
/// The oldest format this soundalike reads.
pub const OLDEST_FORMAT_VERSION: u32 = 4;

/// The first format whose blocks start with [`BLOCK_PAD`].
const PADDED_SINCE: u32 = 6;

/// Bytes before the first row of each block (vectors, codes, graph, frames) and before the upper layers' codes.
/// LMDB keeps a large value on pages of its own, starting after the first page's 16-byte header, so without
/// a pad a 128-byte row (a code, a neighbour list) started 16 bytes into a 64-byte cache line and a walk read
/// three lines for it where two hold it. 48 bytes put every row of a multiple of 64 bytes on lines. A trial on
/// aligned copies of the rows answered 1.13 to 1.22 times the held-out queries a second at a million clips; in
/// the map itself the gain was within the machine's noise (docs/bench-log.md, "Rows on cache lines").
pub const BLOCK_PAD: usize = 64 - 16;

impl Settings {
    /// The bytes before the first row of each of this index's blocks: [`BLOCK_PAD`] from format 6, none before.
    pub fn block_pad(&self) -> usize {
        if self.format_version >= PADDED_SINCE {
            BLOCK_PAD
        } else {
            0
        }
    }
}

impl Store {
    /// Checks the header of every overflow page run in the index: LMDB keeps a value too big for a leaf (a
    /// block of vectors, a tree node) in pages of its own, whose first page's header says how many there are.
    /// Reading the value never looks at that count, but replacing it frees that many pages, and a damaged count
    /// (a page overwritten with 0xff) made LMDB write out of bounds and the process die of SIGSEGV in an
    /// append. So a writer reads each such header from the file (a plain read, not through the map) and refuses
    /// an index where one does not describe its value: its page number, its overflow flag and its page count.
    pub fn check_overflow_pages(&self, rtxn: &RoTxn) -> Result<()> {
        use std::os::unix::fs::FileExt;
        // LMDB's page header on a 64-bit build: page number (8 bytes), padding (2), flags (2), page count (4).
        const HEADER: usize = 16;
        const P_OVERFLOW: u16 = 0x04;
        let page = env_page_size() as usize;
        // The largest node a leaf holds (LMDB's me_nodemax), with a node's own 8-byte header: bigger values
        // overflow.
        let node_max = (((page - HEADER) / 2) & !1) - 2;
        let data = self.dir.join("data.mdb");
        let file = std::fs::File::open(&data)
            .with_context(|| format!("cannot read index {}", self.dir.display()))?;
        let maps = file_mappings(&data)?;
        let file_offset = |address: usize| {
            maps.iter()
                .find(|(start, end, _)| (*start..*end).contains(&address))
                .map(|(start, _, offset)| address - start + offset)
        };
        let mut tables: Vec<Database<'static, Bytes, Bytes>> = vec![
            self.arroy,
            self.ids.remap_types(),
            self.clips.remap_types(),
            self.labels.remap_types(),
            self.vectors.remap_types(),
            self.codes.remap_types(),
            self.graph.remap_types(),
            self.settings.remap_types(),
        ];
        tables.extend(self.frames.map(|f| f.remap_types()));
        for table in tables {
            for entry in table.iter(rtxn)? {
                let (key, value) = entry?;
                if 8 + key.len() + value.len() <= node_max {
                    continue;
                }
                let at = file_offset(value.as_ptr() as usize)
                    .and_then(|offset| offset.checked_sub(HEADER))
                    .filter(|at| at % page == 0)
                    .ok_or_else(|| {
                        damaged(&self.dir, "a large value is not where its pages are")
                    })?;
                let mut header = [0u8; HEADER];
                file.read_exact_at(&mut header, at as u64)
                    .with_context(|| format!("cannot read index {}", self.dir.display()))?;
                let number = u64::from_ne_bytes(header[0..8].try_into().unwrap_or_default());
                let flags = u16::from_ne_bytes([header[10], header[11]]);
                let pages = u32::from_ne_bytes(header[12..16].try_into().unwrap_or_default());
                let wanted = (value.len() + HEADER).div_ceil(page);
                if number != (at / page) as u64
                    || flags & P_OVERFLOW == 0
                    || pages as usize != wanted
                {
                    return Err(damaged(
                        &self.dir,
                        format!("its overflow page {} has a damaged header", at / page),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The format version in the settings of the index in `dir`, whichever version it is: what tells a directory
/// that soundalike wrote from one that merely holds a `data.mdb`. The environment is opened read-only and without
/// LMDB's lock file, so that looking at a file of another program creates nothing beside it (the caller holds the
/// index's writer lock, so no soundalike writer changes the file meanwhile), and a file cut short is refused
/// before a page it lacks is read from the map (which would fault with SIGBUS).
pub fn recorded_format_version(dir: &Path) -> Result<u64> {
    /// The settings' table, one of [`TABLES`].
    const SETTINGS_TABLE: &str = "settings";
    debug_assert!(TABLES.contains(&SETTINGS_TABLE));
    let meta = std::fs::metadata(dir.join("data.mdb"))?;
    if !meta.is_file() {
        bail!("its data.mdb is not a regular file");
    }
    let size = meta.len();
    // SAFETY: the map stays sound only if nothing changes data.mdb except through LMDB while it is open: the caller
    // holds the index's writer lock, so no soundalike writer does, and the file is read-only here. A file cut
    // short is refused below before any page past its end is read.
    let opened = unsafe {
        EnvOpenOptions::new()
            .read_txn_without_tls()
            .map_size(map_size(size, Some(0)))
            .max_dbs(TABLES.len() as u32 + 1)
            .flags(heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_LOCK)
            .open(dir)
    };
    let env = match opened {
        // This process has the index open already (a library host rebuilding the index it reads): heed hands
        // out that environment to the same options a reader used.
        Err(heed::Error::EnvAlreadyOpened) => {
            let shared = shared_env(dir, size, Some(0), Access::Read)?;
            Env::clone(&shared)
        }
        opened => opened?,
    };
    let pages = u64::try_from(env.info().last_page_number)?.saturating_add(1);
    let needed = pages.saturating_mul(u64::from(env.unnamed_database_stat().page_size));
    if size < needed {
        bail!("it is cut short: {size} of its {needed} bytes");
    }
    let rtxn = env.read_txn()?;
    let settings = env
        .open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                dbo.open_database::<Str, Bytes>(rtxn, Some(SETTINGS_TABLE))?,
            ))
        })?
        .unwrap_commit()
        .ok_or_else(|| anyhow!("it has no settings table"))?;
    let rtxn = env.read_txn()?;
    let raw = settings
        .get(&rtxn, SETTINGS_KEY)?
        .ok_or_else(|| anyhow!("it has no settings"))?;
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["format_version"].as_u64())
        .ok_or_else(|| anyhow!("its settings name no format version"))
}

/// Whether the data file `data` names exactly soundalike's tables, read from the file with plain reads, never
/// through a memory map, so that a file cut short or damaged answers without faulting: what tells a damaged
/// index, whose settings cannot be read, from another program's LMDB environment. LMDB keeps the names of an
/// environment's tables as the keys of its main database, whose root page each of the two meta pages at the
/// start of the file names; the root of ours is one leaf (nine keys). Every index since format version 4 holds
/// the eight [`TABLES`] and [`FRAMES_TABLE`], created in its first commit. The root is written again at every
/// commit, near the end of the file (page 705 of the fixture index's 707), so a partial copy lacks it; earlier
/// commits' copies of it are left in pages since freed, which a page-by-page pass over the file finds.
pub fn names_our_tables(data: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    // LMDB's layout on a 64-bit build (mdb.c): a page header of 16 bytes (page number 8, padding 2, flags 2,
    // then a leaf's lower and upper bounds of free space, 2 each), then on a meta page MDB_meta: magic 4,
    // version 4, address 8, map size 8, the free list's MDB_db (48 bytes; its first 4 the page size) and the
    // main database's (its root at byte 40).
    const HEADER: usize = 16;
    const MAGIC: u32 = 0xBEEF_C0DE;
    const MAIN_DB: usize = HEADER + 24 + 48;
    const P_LEAF: u16 = 0x02;
    const P_META: u16 = 0x08;
    let Ok(file) = std::fs::File::open(data) else {
        return false;
    };
    let read = |at: u64, len: usize| -> Option<Vec<u8>> {
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, at).ok()?;
        Some(bytes)
    };
    // Each meta page's (main root, page size); the second lies one page in.
    let meta = |at: u64| -> Option<(u64, u64)> {
        let page = read(at, MAIN_DB + 48)?;
        if page_u16(&page, 10)? & P_META == 0 || page_u32(&page, HEADER)? != MAGIC {
            return None;
        }
        let size = u64::from(page_u32(&page, HEADER + 24)?);
        let root = page_u64(&page, MAIN_DB + 40)?;
        (size.is_power_of_two() && size >= 512).then_some((root, size))
    };
    let first = meta(0);
    let size = first.map_or(env_page_size(), |(_, size)| size);
    let Ok(page_len) = usize::try_from(size) else {
        return false;
    };
    let mut ours: Vec<&[u8]> = TABLES
        .iter()
        .chain([&FRAMES_TABLE])
        .map(|n| n.as_bytes())
        .collect();
    ours.sort_unstable();
    // Whether `page`, page number `number`, is a leaf whose keys are our tables' names.
    let names_ours = |page: &[u8], number: u64| -> bool {
        let keys = || -> Option<Vec<&[u8]>> {
            if page_u64(page, 0)? != number || page_u16(page, 10)? & P_LEAF == 0 {
                return None;
            }
            let count = usize::from(page_u16(page, 12)?).checked_sub(HEADER)? / 2;
            if count != ours.len() {
                return None;
            }
            (0..count)
                .map(|i| {
                    // A node: data size 4, flags 2, key size 2, then the key.
                    let at = usize::from(page_u16(page, HEADER + 2 * i)?);
                    let key_len = usize::from(page_u16(page, at + 6)?);
                    page.get(at + 8..at + 8 + key_len)
                })
                .collect()
        };
        keys().is_some_and(|mut keys| {
            keys.sort_unstable();
            keys == ours
        })
    };
    let metas = [first, meta(size)];
    if metas.into_iter().flatten().any(|(root, size)| {
        root.checked_mul(size)
            .and_then(|at| read(at, page_len))
            .is_some_and(|page| names_ours(&page, root))
    }) {
        return true;
    }
    // Neither root is in the file (a partial copy) or reads as ours: a copy of it from an earlier commit, in a
    // file that is LMDB's at least.
    if metas.iter().all(Option::is_none) {
        return false;
    }
    let chunk = page_len * 256;
    let mut buffer = vec![0; chunk];
    let mut at = 0u64;
    loop {
        let got = match file.read_at(&mut buffer, at) {
            Ok(0) | Err(_) => return false,
            Ok(got) => got,
        };
        for (i, page) in buffer[..got].chunks_exact(page_len).enumerate() {
            if names_ours(page, at / size + i as u64) {
                return true;
            }
        }
        // A short read ends on a page boundary only by chance: read on from the last whole page.
        let whole = got - got % page_len;
        if whole == 0 {
            return false;
        }
        at += whole as u64;
    }
}

/// The integer at `at` in an LMDB page, in the machine's byte order (LMDB writes its pages in it).
fn page_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn page_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn page_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(*bytes.get(at..)?.first_chunk()?))
}
