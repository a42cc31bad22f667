//! The index store: one LMDB environment holding the arroy forest, the neighbour graph and their side tables.
//!
//! Tables: `arroy` (the forest; item ids are u32), `ids` (video_id to item), `clips` (each clip's video_id,
//! labels and times, in blocks of records), `labels` (label index to the set of items carrying it, for filtered
//! queries), `vectors` (every vector in search form, in blocks of rows, for the exact scan), `codes` (the same
//! as 8-bit codes, for the graph walk; their quantizer beside the settings), `graph` (every clip's neighbour
//! list), `frames` (every clip's projected frames as signed bytes, for the re-rank) and `settings` (with the
//! projection beside them). All blocks hold the same 1,024 items. They are large values, which LMDB keeps on
//! contiguous overflow pages: a reader borrows them from the memory map as flat arrays, with no lookup per row.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use heed::types::{Bytes, SerdeJson, Str, U16, U32};
use heed::{CommitOrAbort, Database, EnvOpenOptions, RoTxn, RwTxn};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{damaged, not_found};
use crate::fs::less_umask;
use crate::index::codes::{Codes, Quantizer};
use crate::index::entry::{self, Layer, Layers, Pivots};
use crate::index::graph::Graph;
use crate::index::nndescent::EMPTY;
use crate::index::projection::{ClipForm, Projection, Summary};
use crate::index::records::{self, ClipMeta, Records};
use crate::index::rerank::FrameCodes;
use crate::index::scan::Matrix;
use crate::index::vector::{Form, Metric};

/// Clips per row of the `vectors` and `graph` tables (and of every table of blocks): 1,024 x 128 floats is 512
/// KiB, so an append rewrites little.
pub const VECTOR_BLOCK_ROWS: u32 = records::BLOCK_ROWS;

/// Clips whose frame codes a rebuild writes per transaction (64 blocks: about 95 MB with the default projection).
/// LMDB keeps a transaction's large values in memory until it commits, and a million clips' frame codes are 1.5 GB.
pub const FRAME_ROWS_PER_WRITE: usize = 64 * VECTOR_BLOCK_ROWS as usize;

/// Bumped whenever the layout changes; an index of another version is refused with a clear error. Version 4
/// added the projection and the frames' codes for the re-rank; version 5 lets the projection be the learned
/// label model (projection bytes of version 2: an activation and a bias). Version 4 indexes, whose
/// projections are linear, are still read: their layout is otherwise the same.
pub const FORMAT_VERSION: u32 = 5;
/// The oldest format this soundalike reads.
pub const OLDEST_FORMAT_VERSION: u32 = 4;
/// The arroy index number inside the `arroy` table.
pub const ARROY_INDEX: u16 = 0;
/// LMDB reserves its whole map as address space up front and cannot grow it inside a write transaction, and an
/// index is written in one transaction. So a writer reserves room from the data: every input byte (JSON, at
/// least 2.5 bytes per stored byte value) may become at most this many bytes of index. Measured: 0.5 for the
/// default mean vectors, about 5 for `--vector flat` (vectors stored twice as f32, plus the trees' normals).
const INDEX_BYTES_PER_INPUT_BYTE: u64 = 16;
/// Headroom on top of the data-derived size, and the least any environment maps.
const MAP_HEADROOM: u64 = 1 << 30;
/// For input of unknown size (stdin): address space only, far beyond a full AudioSet index (about 2 GB per
/// million clips).
const MAP_SIZE_UNKNOWN_INPUT: u64 = 1 << 40;

/// How much address space to map for an environment whose file holds `existing` bytes, about to take `input`
/// more bytes of JSON (`None`: unknown, as from stdin; `Some(0)`: only reading).
pub fn map_size(existing: u64, input: Option<u64>) -> usize {
    let wanted = match input {
        Some(input) => existing
            .saturating_add(input.saturating_mul(INDEX_BYTES_PER_INPUT_BYTE))
            .saturating_add(MAP_HEADROOM),
        None => existing.saturating_add(MAP_SIZE_UNKNOWN_INPUT),
    };
    // Under a limit on address space (`ulimit -v`, as batch schedulers set), a reservation past it fails with
    // "Cannot allocate memory": take at most half of what the limit allows, leaving the rest for the build's
    // own memory. The data may then outgrow the map, which the build reports as such.
    let wanted = match address_space_limit() {
        Some(limit) => wanted.min(limit / 2),
        None => wanted,
    };
    // A whole number of MiB, a multiple of any page size.
    let rounded = wanted.div_ceil(1 << 20).saturating_mul(1 << 20);
    usize::try_from(rounded).unwrap_or(usize::MAX & !((1 << 20) - 1))
}

/// The process's limit on address space (RLIMIT_AS), if it has one. Read only: nothing is changed.
fn address_space_limit() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::As);
    limit.current.filter(|&bytes| bytes < u64::MAX)
}

/// Whether `error` is LMDB's "map full": the data outgrew the space reserved by [`map_size`].
pub fn is_map_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<heed::Error>(),
            Some(heed::Error::Mdb(heed::MdbError::MapFull))
        ) || matches!(
            cause.downcast_ref::<arroy::Error>(),
            Some(arroy::Error::Heed(heed::Error::Mdb(
                heed::MdbError::MapFull
            )))
        )
    })
}

/// `error`, saying "no space left on device" when that is why a write into the index `dir`, in the directory
/// `written`, failed. LMDB reports a write cut short by a full file system as an input/output error; a file
/// system with less than a megabyte left when one is seen is taken to be full.
pub fn explain_full_disk(error: anyhow::Error, dir: &Path, written: &Path) -> anyhow::Error {
    let code = error.chain().find_map(|cause| {
        let io = match (
            cause.downcast_ref::<heed::Error>(),
            cause.downcast_ref::<arroy::Error>(),
        ) {
            (Some(heed::Error::Io(io)), _) | (_, Some(arroy::Error::Heed(heed::Error::Io(io)))) => {
                io
            }
            _ => cause.downcast_ref::<std::io::Error>()?,
        };
        io.raw_os_error()
    });
    let full = match code {
        Some(libc::ENOSPC) => true,
        Some(libc::EIO) => free_bytes(written).is_some_and(|free| free < 1 << 20),
        _ => false,
    };
    if full {
        anyhow::anyhow!(
            "cannot write the index {}: no space left on device (it was left as it was)",
            dir.display()
        )
    } else {
        error
    }
}

/// The bytes an unprivileged user may still write on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Gives back what a failed write transaction added to the end of `data` (LMDB writes pages past the end of its
/// file before it commits, and never shrinks it). Nothing committed lives there: the last commit's pages all lie
/// within the `size` it left. Best effort: a file that cannot be shrunk stays as it is, whole.
pub fn shrink_back(data: &Path, size: u64) {
    // Only a regular file: opening a FIFO named data.mdb for writing would wait for a reader forever.
    if std::fs::symlink_metadata(data).is_ok_and(|m| m.is_file())
        && let Ok(file) = std::fs::OpenOptions::new().write(true).open(data)
        && file.metadata().is_ok_and(|m| m.len() > size)
    {
        let _ = file.set_len(size);
    }
}

type BE = heed::byteorder::BigEndian;

/// Read transactions are not tied to the thread that began them: a host keeps a few open between questions
/// and hands them to whichever thread asks next (see `query::Index`), and a thread may hold more than one.
pub type Env = heed::Env<heed::WithoutTls>;

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
}

/// An open index environment and its tables.
pub struct Store {
    pub env: Arc<SharedEnv>,
    pub dir: PathBuf,
    /// The arroy forest, typed per metric at use (see [`Store::arroy`]).
    arroy: Database<'static, Bytes, Bytes>,
    pub ids: Database<'static, Str, U32<BE>>,
    /// Clip records in blocks (see [`records`]).
    clips: Database<'static, U32<BE>, Bytes>,
    labels: Database<'static, U16<BE>, Bytes>,
    vectors: Database<'static, U32<BE>, Bytes>,
    /// The vectors as 8-bit codes, in the same blocks, for the graph walk (see [`codes`]).
    codes: Database<'static, U32<BE>, Bytes>,
    graph: Database<'static, U32<BE>, Bytes>,
    /// Every clip's frames as codes for the re-rank (see [`rerank`](crate::index::rerank)), in the same blocks.
    /// `None` only in an index of an older format, which [`Store::read_settings`] refuses.
    frames: Option<Database<'static, U32<BE>, Bytes>>,
    /// The settings under [`SETTINGS_KEY`], the codes' quantizer under [`QUANTIZER_KEY`], the projection under
    /// [`PROJECTION_KEY`], the upper layers under [`LAYERS_KEY`] and their codes under [`LAYER_CODES_KEY`].
    settings: Database<'static, Str, SerdeJson<Settings>>,
}

/// The tables, in the order [`Store::with_tables`] takes them.
const TABLES: [&str; 8] = [
    "arroy", "ids", "clips", "labels", "vectors", "codes", "graph", "settings",
];
type Table = Database<'static, Bytes, Bytes>;

/// The frame codes' table, added in format version 4: opened apart from [`TABLES`], so that an older index
/// is refused for its version rather than for a missing table.
const FRAMES_TABLE: &str = "frames";

const SETTINGS_KEY: &str = "settings";
const QUANTIZER_KEY: &str = "quantizer";
const PROJECTION_KEY: &str = "projection";
const LAYERS_KEY: &str = "layers";
const LAYER_CODES_KEY: &str = "layer-codes";

/// Opens the environment in `dir`, with room for `input` more bytes of clips. A reader (`write` false) opens it
/// read-only, so that it never initialises or changes a file that is not an index.
/// An environment open in this process, shared by every [`Store`] of its directory: heed refuses to open a path
/// twice in one process, so two `Index` handles on one index (two threads, a notebook that opens it again) share
/// one environment, which closes when the last of them is dropped.
pub struct SharedEnv {
    env: Env,
    /// Opened to write (with room for an append), or only to read.
    write: bool,
    /// The data file as it was opened, and where this process maps it (see [`FileBounds`]).
    data: Option<(std::fs::File, usize)>,
}

impl SharedEnv {
    /// Where the data file's bytes are in this process's memory, and how many there are now, for
    /// [`FileBounds::check`]; `None` where the mapping is unknown (a writer's environment, or no /proc).
    fn bounds(&self) -> Option<FileBounds> {
        let (file, base) = self.data.as_ref()?;
        let length = file.metadata().map_or(u64::MAX, |m| m.len());
        Some(FileBounds {
            base: *base,
            length,
        })
    }
}

/// The data file's place in memory, taken once per table read (one `fstat`, not one per value).
#[derive(Clone, Copy)]
struct FileBounds {
    base: usize,
    length: u64,
}

impl FileBounds {
    /// Refuses a value that LMDB hands out but that runs past the end of the data file: a page damaged inside
    /// the file (a leaf overwritten with 0xff) can give a value a length beyond it, and reading it would fault
    /// with SIGBUS, which takes a whole host process down. Checked for the large values the searches read in
    /// place (blocks of vectors, codes, lists, frames, records).
    fn check(self, bytes: &[u8], dir: &Path) -> Result<()> {
        let inside = (bytes.as_ptr() as usize)
            .checked_sub(self.base)
            .and_then(|at| at.checked_add(bytes.len()))
            .is_some_and(|end| end as u64 <= self.length);
        if !inside {
            return Err(damaged(
                dir,
                "a value runs past the end of its data file (a damaged page?)",
            ));
        }
        Ok(())
    }
}

impl std::ops::Deref for SharedEnv {
    type Target = Env;

    fn deref(&self) -> &Env {
        &self.env
    }
}

/// The environments open in this process: (canonical directory, data file's device and inode, the environment).
type OpenEnvs = Vec<(PathBuf, (u64, u64), std::sync::Weak<SharedEnv>)>;
static OPEN: std::sync::Mutex<OpenEnvs> = std::sync::Mutex::new(Vec::new());

/// The environment in `dir`, shared with any this process has open on the same files (see [`SharedEnv`]). A
/// reader takes a writer's; a writer cannot take a reader's (it has no room to grow), nor can anyone take one
/// whose directory was since replaced by a rebuild: those fail with a message saying which handle to drop.
fn shared_env(
    dir: &Path,
    existing: u64,
    input: Option<u64>,
    access: Access,
) -> Result<Arc<SharedEnv>> {
    let write = access == Access::Write;
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot open index {}", dir.display()))?;
    let id = std::fs::metadata(dir.join("data.mdb")).map_or((0, 0), |m| (m.dev(), m.ino()));
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    open.retain(|(_, _, env)| env.strong_count() > 0);
    if let Some((_, held, env)) = open.iter().find(|(path, _, _)| *path == key)
        && let Some(env) = env.upgrade()
    {
        if *held != id {
            bail!(
                "index {} was replaced since this process opened it; drop the old handle (Index) before \
                 opening the new one",
                dir.display()
            );
        }
        if write && !env.write {
            bail!(
                "index {} is open for reading in this process (an Index); drop it before writing to the index",
                dir.display()
            );
        }
        return Ok(env);
    }
    let data_path = dir.join("data.mdb");
    // The mapping this open makes is the one not there before it. Reading /proc/self/maps costs a one-shot
    // query about 2% of its time, so it is read before only when this process has another index open.
    let before = if open.is_empty() {
        Vec::new()
    } else {
        file_mappings(&data_path).unwrap_or_default()
    };
    let env = open_env(dir, existing, input, access)?;
    // Readers only: in a write transaction, the pages it has changed live in LMDB's own heap memory, not in the
    // map, so their values would all look out of bounds; an append checks the whole index (overflow pages
    // included) before it writes instead.
    let data = (!write)
        .then(|| std::fs::File::open(&data_path).ok())
        .flatten()
        .and_then(|file| {
            let maps = file_mappings(&data_path).ok()?;
            let mut new = maps
                .into_iter()
                .filter(|map| map.2 == 0 && !before.contains(map));
            // Two candidates (another mapping of the file, not this process's index): unknown, unchecked.
            match (new.next(), new.next()) {
                (Some((start, _, _)), None) => Some((file, start)),
                _ => None,
            }
        });
    let env = Arc::new(SharedEnv { env, write, data });
    open.push((key, id, Arc::downgrade(&env)));
    Ok(env)
}

/// How an environment is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// To write, with room for an append.
    Write,
    /// To read, registered in LMDB's lock file as every reader is (unless it may not write it, see
    /// [`shared_read_only`]).
    Read,
    /// To read without the lock file: a check of an index another process may have open, which must neither
    /// change that process's lock table nor be misled by it. LMDB's readers take the last commit's number from
    /// the lock file, and a data file moved in under a lock file left from the one before would be read at a
    /// commit of its own that the number happens to name, or at one whose pages were since reused. Without it,
    /// LMDB reads the newest commit the data file's own header names. The cost is the one said at
    /// `shared_read_only`: an append committing meanwhile could reuse pages under the check, which then fails
    /// and is made again when the file next changes.
    Check,
}

fn open_env(dir: &Path, existing: u64, input: Option<u64>, access: Access) -> Result<Env> {
    let write = access == Access::Write;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size(existing, input))
        .max_dbs(TABLES.len() as u32 + 1);
    // SAFETY: heed opens a path once per process (`shared_env` shares it); what it cannot check is that nothing
    // changes the files except LMDB while they are mapped. soundalike changes an index only through LMDB, one
    // writer at a time (`lock::WriterLock`), and a rebuild writes a new directory and swaps it in rather than
    // rewriting these files. A data.mdb cut short by another program (a partial copy) is refused when it is
    // opened (`check_not_cut_short`); one cut short while open faults with SIGBUS, which the command line turns
    // into an error line. NO_LOCK is only taken by a reader that may not write the lock file (see
    // `shared_read_only`), at the cost said there.
    unsafe {
        if !write {
            let mut flags = heed::EnvFlags::READ_ONLY;
            if access == Access::Check || shared_read_only(dir) {
                flags |= heed::EnvFlags::NO_LOCK;
            }
            options.flags(flags);
        }
        options.open(dir)
    }
    .with_context(|| format!("cannot open index {}", dir.display()))
}

/// Whether this process may read the index in `dir` but not write its lock file: another user's index shared
/// read-only. LMDB's readers register in `lock.mdb`, so such a reader opens without the lock table; the cost is
/// that an `--append` committing while it reads could reuse pages under it (a rebuild cannot: it swaps in a
/// new directory).
/// Refuses a data file shorter than its contents (a partial copy): LMDB maps the file, and reading a page past
/// its end would fault with SIGBUS rather than return an error, which would take the whole process down (a
/// server, an interpreter). The last page in use is in the environment's header, which LMDB checks when it
/// opens; every page up to it must be in the file.
fn check_not_cut_short(env: &Env, dir: &Path, file_len: u64) -> Result<()> {
    let info = env.info();
    let page = env_page_size();
    let needed = (info.last_page_number as u64 + 1).saturating_mul(page);
    if file_len < needed {
        return Err(damaged(
            dir,
            format!(
                "its data file holds {file_len} bytes but its contents need {needed} (a partial copy?)"
            ),
        ));
    }
    Ok(())
}

/// Where this process maps `file`: (start, end, offset in the file) of each mapping, from /proc/self/maps (the
/// map's address is LMDB's own and not in its API).
fn file_mappings(file: &Path) -> Result<Vec<(usize, usize, usize)>> {
    let wanted = std::fs::canonicalize(file)?;
    let maps = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    let mut found = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (Some(range), _, Some(offset), _, _, Some(path)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        if Path::new(path) != wanted {
            continue;
        }
        let parse = |hex: &str| usize::from_str_radix(hex, 16).ok();
        if let (Some((start, end)), Some(offset)) = (range.split_once('-'), parse(offset))
            && let (Some(start), Some(end)) = (parse(start), parse(end))
        {
            found.push((start, end, offset));
        }
    }
    Ok(found)
}

/// LMDB's page size: the system's (it asks the same).
fn env_page_size() -> u64 {
    rustix::param::page_size() as u64
}

fn shared_read_only(dir: &Path) -> bool {
    use rustix::fs::{Access, access};
    let lock = dir.join("lock.mdb");
    access(&lock, Access::EXISTS).is_ok() && access(&lock, Access::WRITE_OK).is_err()
}

/// Gives the index directory and its files the permissions the user's umask asks for (LMDB creates its files
/// 0600 and a temporary directory is 0700, so another user could not read an index even where the umask
/// says they may).
fn apply_umask(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(less_umask(mode)))
            .with_context(|| format!("cannot set the permissions of {}", path.display()))
    };
    set(dir, 0o777)?;
    for file in ["data.mdb", "lock.mdb"] {
        if dir.join(file).exists() {
            set(&dir.join(file), 0o666)?;
        }
    }
    Ok(())
}

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
                 (rebuild it with `soundalike index`)",
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
                return Err(damaged(
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
        let blocks = records::updated_blocks(updates, |block| {
            Ok(self
                .clips
                .get(wtxn, &block)
                .map_err(|e| e.to_string())?
                .map(<[u8]>::to_vec))
        })
        .map_err(|damage| records::damaged(&self.dir, &damage))?;
        for (block, bytes) in blocks {
            self.clips.put(wtxn, &block, &bytes)?;
        }
        Ok(())
    }

    /// Every clip's code, borrowed from the memory map like the vectors.
    pub fn load_codes<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Codes<'t>> {
        let quantizer = self.quantizer(rtxn, settings)?;
        let blocks = self.load_blocks(rtxn, self.codes, "code", settings.dimensions, settings)?;
        Ok(Codes::new(quantizer, blocks, VECTOR_BLOCK_ROWS as usize))
    }

    fn quantizer(&self, rtxn: &RoTxn, settings: &Settings) -> Result<Quantizer> {
        self.settings
            .remap_data_type::<Bytes>()
            .get(rtxn, QUANTIZER_KEY)?
            .and_then(|bytes| Quantizer::from_bytes(bytes, settings.dimensions))
            .ok_or_else(|| damaged(&self.dir, "its codes' quantizer is missing or unreadable"))
    }

    /// Stores the codes of a new index's vectors (`rows`, as [`Store::write_vector_rows`] takes them) and their
    /// quantizer, encoding a block at a time rather than the whole table at once.
    pub fn write_code_rows(
        &self,
        wtxn: &mut RwTxn,
        quantizer: &Quantizer,
        rows: &[f32],
    ) -> Result<()> {
        self.settings
            .remap_data_type::<Bytes>()
            .put(wtxn, QUANTIZER_KEY, &quantizer.to_bytes())?;
        let dimensions = quantizer.dimensions().max(1);
        self.put_all_rows(
            wtxn,
            self.codes,
            dimensions,
            0..rows.len() / dimensions,
            |item, block| {
                quantizer.encode(&rows[item * dimensions..][..dimensions], block);
                Ok(())
            },
        )
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

    fn frames_table(&self) -> Result<Database<'static, U32<BE>, Bytes>> {
        self.frames.ok_or_else(|| {
            anyhow!(
                "index {} has no frames table (rebuild it with `soundalike index`)",
                self.dir.display()
            )
        })
    }

    /// Every clip's frame codes, borrowed from the memory map like the vectors.
    pub fn load_frames<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<FrameCodes<'t>> {
        let width = settings.frames * settings.projection.dimensions;
        let blocks = self.load_blocks(rtxn, self.frames_table()?, "frame", width, settings)?;
        Ok(FrameCodes::new(
            blocks,
            VECTOR_BLOCK_ROWS as usize,
            settings.frames,
            settings.projection.dimensions,
        ))
    }

    /// Stores the frame codes of a new index's `items` (a range starting at a block's first item, see
    /// [`FRAME_ROWS_PER_WRITE`]), `row(i)` giving item `i`'s (`width` codes).
    pub fn write_frame_rows<'c>(
        &self,
        wtxn: &mut RwTxn,
        width: usize,
        items: Range<usize>,
        row: impl Fn(usize) -> Result<&'c [i8]>,
    ) -> Result<()> {
        self.put_all_rows(wtxn, self.frames_table()?, width, items, |item, block| {
            let codes = row(item)?;
            if codes.len() != width {
                bail!("item {item} has {} frame codes, not {width}", codes.len());
            }
            block.extend_from_slice(bytemuck::cast_slice(codes));
            Ok(())
        })
    }

    /// Stores appended or replaced clips' frame codes, rewriting only the blocks they fall in.
    pub fn write_frames(
        &self,
        wtxn: &mut RwTxn,
        width: usize,
        updates: &BTreeMap<u32, Vec<i8>>,
    ) -> Result<()> {
        let rows = updates
            .iter()
            .map(|(&item, codes)| (item, bytemuck::cast_slice::<i8, u8>(codes).to_vec()));
        self.put_rows(wtxn, self.frames_table()?, width, rows)
    }

    /// Every clip's neighbour list, borrowed from the memory map like the vectors.
    pub fn load_graph<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Graph<'t>> {
        if settings.graph_degree == 0 {
            return Err(damaged(
                &self.dir,
                "its settings give no room for neighbours",
            ));
        }
        let blocks =
            self.load_blocks(rtxn, self.graph, "graph", settings.graph_degree, settings)?;
        // A list naming a clip past the last is skipped by the walk, which finds no vector for it.
        Ok(Graph::new(
            settings.graph_degree,
            blocks,
            VECTOR_BLOCK_ROWS as usize,
        ))
    }

    /// The rows of a table of blocks (`width` 4-byte values per clip, [`VECTOR_BLOCK_ROWS`] clips per block),
    /// checked to hold exactly one row per item.
    fn load_blocks<'t, T: bytemuck::Pod>(
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
        for (n, entry) in table.iter(rtxn)?.enumerate() {
            let (key, bytes) = entry?;
            if let Some(bounds) = bounds {
                bounds.check(bytes, &self.dir)?;
            }
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

    /// Stores the given blocks of `lists` (`degree` slots per clip, clip `i` at `i * degree`) in the graph table.
    pub fn write_graph(
        &self,
        wtxn: &mut RwTxn,
        degree: usize,
        lists: &[u32],
        blocks: impl IntoIterator<Item = u32>,
    ) -> Result<()> {
        let block_len = VECTOR_BLOCK_ROWS as usize * degree;
        for block in blocks {
            let start = block as usize * block_len;
            let Some(values) = lists.get(start..(start + block_len).min(lists.len())) else {
                continue;
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.graph.put(wtxn, &block, &bytes)?;
        }
        Ok(())
    }

    /// The upper layers (see [`entry`](crate::index::entry)), bottom first; none in an index without them.
    /// Their lists and codes are borrowed from the memory map like the graph's. The lists are stored as one
    /// value: the count of layers and their degree, each layer's stride and node count, then the lists (all
    /// little-endian u32). The codes are another (see [`Store::write_layer_codes`]).
    pub fn load_layers<'t>(&self, rtxn: &'t RoTxn, settings: &Settings) -> Result<Layers<'t>> {
        let Some(bytes) = self
            .settings
            .remap_data_type::<Bytes>()
            .get(rtxn, LAYERS_KEY)?
        else {
            return Ok(Layers::default());
        };
        let damaged = || damaged(&self.dir, "its upper layers are unreadable");
        let word = |at: usize| le_word(bytes, at);
        let (count, degree) = word(0).zip(word(1)).ok_or_else(damaged)?;
        let mut layers = Vec::with_capacity(count.min(8));
        let mut at = (2 + 2 * count) * 4;
        for layer in 0..count {
            let (stride, nodes) = word(2 + 2 * layer)
                .zip(word(3 + 2 * layer))
                .ok_or_else(damaged)?;
            let end = span_end(at, nodes, degree * 4).ok_or_else(damaged)?;
            let lists = bytes.get(at..end).ok_or_else(damaged)?;
            if stride == 0 || degree == 0 {
                return Err(damaged());
            }
            at = end;
            let lists: Cow<'t, [u32]> = match bytemuck::try_cast_slice::<u8, u32>(lists) {
                Ok(values) if cfg!(target_endian = "little") => Cow::Borrowed(values),
                _ => Cow::Owned(
                    lists
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
            };
            layers.push(Layer {
                stride,
                graph: Graph::new(degree, vec![lists], nodes),
                codes: None,
            });
        }
        let mut layers = Layers {
            layers,
            pivots: None,
        };
        self.load_layer_codes(rtxn, settings, &mut layers)?;
        Ok(layers)
    }

    /// Lends `layers` their codes and the pivots', when the index has them: after a header of two little-endian
    /// u32 (the count of layers, and which nodes of the top layer are pivots: every n-th), each layer's nodes'
    /// codes in node order, bottom first, then the pivots'.
    fn load_layer_codes<'t>(
        &self,
        rtxn: &'t RoTxn,
        settings: &Settings,
        layers: &mut Layers<'t>,
    ) -> Result<()> {
        let Some(bytes) = self
            .settings
            .remap_data_type::<Bytes>()
            .get(rtxn, LAYER_CODES_KEY)?
        else {
            return Ok(());
        };
        let damaged = || damaged(&self.dir, "its upper layers' codes are unreadable");
        let word = |at: usize| le_word(bytes, at);
        let (count, every) = word(0).zip(word(1)).ok_or_else(damaged)?;
        let top_nodes = layers.layers.last().map_or(0, |top| top.graph.nodes());
        if count != layers.layers.len() || every == 0 || top_nodes == 0 {
            return Err(damaged());
        }
        let quantizer = self.quantizer(rtxn, settings)?;
        let row = settings.dimensions;
        let mut at: usize = 8;
        let mut take = |rows: usize| -> Result<Codes<'t>> {
            let end = span_end(at, rows, row).ok_or_else(damaged)?;
            let block = bytes.get(at..end).ok_or_else(damaged)?;
            at = end;
            Ok(Codes::new(
                quantizer.clone(),
                vec![Cow::Borrowed(block)],
                rows,
            ))
        };
        for layer in &mut layers.layers {
            layer.codes = Some(take(layer.graph.nodes())?);
        }
        layers.pivots = Some(Pivots {
            every,
            codes: take(top_nodes.div_ceil(every))?,
        });
        if at != bytes.len() {
            return Err(damaged());
        }
        Ok(())
    }

    /// Stores a copy of the upper layers' nodes' codes and of the top layer's pivots', taken from the clips'
    /// codes as they are now (see [`entry`]; the form [`Store::load_layer_codes`] reads). A new index writes it
    /// after its layers; an append that replaced clips writes it again, as a replaced clip's code changed.
    pub fn write_layer_codes(&self, wtxn: &mut RwTxn, settings: &Settings) -> Result<()> {
        let bytes = {
            let layers = self.load_layers(wtxn, settings)?;
            let Some(top) = layers.layers.last() else {
                return Ok(());
            };
            let codes = self.load_codes(wtxn, settings)?;
            let every = entry::pivot_every(top.graph.nodes());
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(layers.layers.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(every as u32).to_le_bytes());
            let missing = || damaged(&self.dir, "an upper layer holds a clip without a code");
            let mut copy = |item: usize| -> Result<()> {
                let code = u32::try_from(item).ok().and_then(|i| codes.row(i));
                bytes.extend_from_slice(code.ok_or_else(missing)?);
                Ok(())
            };
            for layer in &layers.layers {
                for node in 0..layer.graph.nodes() {
                    copy(node * layer.stride)?;
                }
            }
            for node in (0..top.graph.nodes()).step_by(every) {
                copy(node * top.stride)?;
            }
            bytes
        };
        Ok(self
            .settings
            .remap_data_type::<Bytes>()
            .put(wtxn, LAYER_CODES_KEY, &bytes)?)
    }

    /// Stores the upper layers: each one's stride and lists (`degree` slots per node), bottom first.
    pub fn write_layers(
        &self,
        wtxn: &mut RwTxn,
        degree: usize,
        layers: &[(usize, Vec<u32>)],
    ) -> Result<()> {
        let words = layers.iter().map(|(_, lists)| lists.len()).sum::<usize>();
        let mut bytes = Vec::with_capacity((2 + 2 * layers.len() + words) * 4);
        let mut put = |v: usize| bytes.extend_from_slice(&(v as u32).to_le_bytes());
        put(layers.len());
        put(degree);
        for (stride, lists) in layers {
            put(*stride);
            put(lists.len() / degree.max(1));
        }
        for (_, lists) in layers {
            bytes.extend(lists.iter().flat_map(|v| v.to_le_bytes()));
        }
        Ok(self
            .settings
            .remap_data_type::<Bytes>()
            .put(wtxn, LAYERS_KEY, &bytes)?)
    }

    /// Every clip's neighbour list as one owned array (for an append to change).
    pub fn read_graph(&self, rtxn: &RoTxn, settings: &Settings) -> Result<Vec<u32>> {
        let graph = self.load_graph(rtxn, settings)?;
        let mut lists = Vec::with_capacity(graph.nodes() * settings.graph_degree);
        for node in 0..graph.nodes() as u32 {
            let list = graph.neighbours(node);
            lists.extend_from_slice(list);
            lists.extend(std::iter::repeat_n(
                EMPTY,
                settings.graph_degree - list.len(),
            ));
        }
        Ok(lists)
    }

    /// Stores the vectors of a new index, row `i` (`dimensions` floats in search form) holding item `i`.
    pub fn write_vector_rows(
        &self,
        wtxn: &mut RwTxn,
        dimensions: usize,
        rows: &[f32],
    ) -> Result<()> {
        let dimensions = dimensions.max(1);
        self.put_all_rows(
            wtxn,
            self.vectors,
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
        self.put_rows(wtxn, self.vectors, settings.dimensions * 4, as_bytes)?;
        let as_codes = updates.iter().map(|(&item, v)| {
            let mut code = Vec::with_capacity(v.len());
            quantizer.encode(v, &mut code);
            (item, code)
        });
        self.put_rows(wtxn, self.codes, settings.dimensions, as_codes)
    }

    /// Stores the rows of `items` (a range starting at a block's first item), `row_bytes` bytes each, row `i`
    /// holding item `i`, in blocks of [`VECTOR_BLOCK_ROWS`]; `row(i, block)` appends item `i`'s bytes to the block
    /// being filled. A block at a time, never the whole table: at a million clips a table's bytes in one piece
    /// would be up to 1.5 GB on top of what the build holds.
    fn put_all_rows(
        &self,
        wtxn: &mut RwTxn,
        table: Database<'static, U32<BE>, Bytes>,
        row_bytes: usize,
        items: Range<usize>,
        mut row: impl FnMut(usize, &mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let block_rows = VECTOR_BLOCK_ROWS as usize;
        debug_assert_eq!(items.start % block_rows, 0);
        let mut bytes = Vec::with_capacity(block_rows * row_bytes);
        for start in items.clone().step_by(block_rows) {
            bytes.clear();
            for item in start..items.end.min(start + block_rows) {
                row(item, &mut bytes)?;
            }
            table.put(wtxn, &((start / block_rows) as u32), &bytes)?;
        }
        Ok(())
    }

    /// Stores rows (item, `row_bytes` bytes) in ascending item order, rewriting only the blocks they fall in.
    fn put_rows(
        &self,
        wtxn: &mut RwTxn,
        table: Database<'static, U32<BE>, Bytes>,
        row_bytes: usize,
        updates: impl IntoIterator<Item = (u32, Vec<u8>)>,
    ) -> Result<()> {
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
                    .unwrap_or_default();
                current = Some((block, bytes));
            }
            if let Some((_, bytes)) = current.as_mut() {
                let start = (item % VECTOR_BLOCK_ROWS) as usize * row_bytes;
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
fn span_end(at: usize, rows: usize, width: usize) -> Option<usize> {
    rows.checked_mul(width).and_then(|len| at.checked_add(len))
}

/// The `at`-th little-endian u32 of `bytes`.
fn le_word(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at * 4..at * 4 + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build::{ClipInput, IndexBuilder};
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
