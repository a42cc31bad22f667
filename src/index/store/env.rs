//! The LMDB environment's policy: how much address space an index maps, how an environment is opened (to write,
//! to read, to check) and shared within the process, and what a failed write leaves behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use heed::EnvOpenOptions;

use crate::error::damaged;
use crate::fs::less_umask;
use crate::index::store::TABLES;

/// LMDB reserves its whole map as address space up front and cannot grow it inside a write transaction, and an
/// index is written in one transaction. So a writer reserves room from the data: every input byte (JSON, at
/// least 2.5 bytes per stored byte value) may become at most this many bytes of index: well above what every
/// layout needs, `--vector flat` the largest (vectors stored twice as f32, plus the trees' normals; an index with
/// the defaults is smaller than its JSON: BENCHMARKS.md, "Build").
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

pub(in crate::index) type BE = heed::byteorder::BigEndian;

/// Read transactions are not tied to the thread that began them: a host keeps a few open between questions
/// and hands them to whichever thread asks next (see `query::Index`), and a thread may hold more than one.
pub type Env = heed::Env<heed::WithoutTls>;

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
    pub(in crate::index) fn bounds(&self) -> Option<FileBounds> {
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
pub(in crate::index) struct FileBounds {
    base: usize,
    length: u64,
}

impl FileBounds {
    /// Refuses a value that LMDB hands out but that runs past the end of the data file: a page damaged inside
    /// the file (a leaf overwritten with 0xff) can give a value a length beyond it, and reading it would fault
    /// with SIGBUS, which takes a whole host process down. Checked for the large values the searches read in
    /// place (blocks of vectors, codes, lists, frames, records).
    pub(in crate::index) fn check(self, bytes: &[u8], dir: &Path) -> Result<()> {
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
pub(super) fn shared_env(
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
    // The mapping this open makes is the one not there before it. Reading /proc/self/maps is a measurable share
    // of a one-shot query (docs/bench-log.md, "The one-shot embedding query at a million clips"), so it is read
    // before only when this process has another index open.
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
pub(super) enum Access {
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

pub(super) fn open_env(
    dir: &Path,
    existing: u64,
    input: Option<u64>,
    access: Access,
) -> Result<Env> {
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
pub(super) fn check_not_cut_short(env: &Env, dir: &Path, file_len: u64) -> Result<()> {
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
pub(super) fn file_mappings(file: &Path) -> Result<Vec<(usize, usize, usize)>> {
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
pub(super) fn env_page_size() -> u64 {
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
pub(super) fn apply_umask(dir: &Path) -> Result<()> {
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
