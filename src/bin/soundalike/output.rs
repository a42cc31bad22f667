//! Where results go: stdout, a file replaced atomically, or a FIFO or device written in place (as `sort -o`
//! treats its output).
//!
//! A regular file is written beside its destination under a hidden temporary name and renamed over it only when
//! everything succeeded, so a failed or interrupted run never leaves a half-written file where the user expects
//! output, and an older file of the same name stays whole until then. A symlink is followed: its target is
//! replaced and the link kept. Anything that is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) cannot
//! be replaced by a rename, and is written in place as the output streams.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

use crate::cleanup;
use crate::error::UsageError;
use crate::index_dir;
use crate::lock;

pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    File {
        writer: BufWriter<NamedTempFile>,
        /// As given, for messages.
        path: PathBuf,
        /// Where the file goes: `path`, or the file its symlinks lead to.
        target: PathBuf,
        cleanup: cleanup::Guard,
    },
    /// A FIFO, a device or another file that is not a regular one, written as it is.
    InPlace {
        writer: BufWriter<File>,
        path: PathBuf,
    },
}

/// Random characters in a temporary file's name: fixed, so that a later run can tell the temporary files of one
/// output (`.NAME.XXXXXX.partial`) from those of another whose name starts the same (`.NAME.gz.XXXXXX.partial`).
const TEMP_RANDOM_CHARS: usize = 6;
const TEMP_SUFFIX: &str = ".partial";
/// How old an unlocked temporary file must be before a later run removes it: one just created has no lock yet.
const ABANDONED_AFTER: Duration = Duration::from_secs(2);

impl Output {
    /// `None` or `-` is stdout.
    pub fn create(path: Option<&Path>) -> Result<Self> {
        Self::create_apart_from(path, &[])
    }

    /// As [`Output::create`], refusing (a usage error) an output that is the same file as one of `inputs`: it
    /// would be replaced, or for a FIFO drained, while it is read.
    pub fn create_apart_from(path: Option<&Path>, inputs: &[&Path]) -> Result<Self> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                1 << 20,
                io::stdout(),
            )));
        };
        let target = follow_links(path);
        let (dir, file_name) = beside(&target);
        if index_dir::holds_index(&dir) {
            return Err(UsageError::new(format!(
                "refusing to write {} inside the index {}; choose another output",
                path.display(),
                dir.display()
            ))
            .into());
        }
        let existing = fs::metadata(path).ok();
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(UsageError::new(format!(
                    "cannot write {}: it is a directory",
                    path.display()
                ))
                .into());
            }
            let same = |input: &Path| {
                fs::metadata(input).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
            };
            // A device read and written (a terminal, /dev/null) loses nothing; a file or a FIFO would.
            let consumed = meta.is_file() || meta.file_type().is_fifo();
            if let Some(input) = inputs.iter().find(|input| consumed && same(input)) {
                return Err(UsageError::new(format!(
                    "refusing to write {}: it is the input {}; choose another output",
                    path.display(),
                    input.display()
                ))
                .into());
            }
            if !meta.is_file() {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| write_error(path))?;
                return Ok(Output::InPlace {
                    writer: BufWriter::with_capacity(1 << 20, file),
                    path: path.to_path_buf(),
                });
            }
        }
        let prefix = format!(".{file_name}.");
        remove_abandoned_temp_files(&dir, &prefix);
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(TEMP_RANDOM_CHARS)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(&dir)
            .map_err(without_temp_path)
            .with_context(|| write_error(path))?;
        let cleanup = cleanup::register(temp.path());
        // Held while this run writes: it tells a later run that the file is in use, not abandoned.
        lock::try_lock(temp.as_file()).with_context(|| write_error(path))?;
        // Temporary files are private (0600); the result should look like any file the user creates, or keep
        // the permissions of the file it replaces.
        let mode = existing.map_or(less_umask(0o666), |m| m.permissions().mode());
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Output::File {
            writer: BufWriter::with_capacity(1 << 20, temp),
            path: path.to_path_buf(),
            target,
            cleanup,
        })
    }

    /// Flushes, and for a file syncs its data to disk and moves it into place.
    ///
    /// The rename alone guarantees that a killed run leaves either the old file or the whole new one, but not a
    /// power loss: ext4 (with `auto_da_alloc`) flushes a file renamed over another before the rename commits, but
    /// not one renamed to a new name, and XFS does not, so the renamed file could come back empty. Syncing first
    /// makes the result the old file or the whole new one in both cases, as an index's commits are (LMDB syncs
    /// them). It costs a sixth of a bal_train ingest to a file (0.07 to 0.10 s of 0.5 s for 41 MB on ext4 over
    /// virtio; scripts/bench_notes.md), which durability is worth.
    pub fn finish(self) -> Result<()> {
        match self {
            Output::Stdout(mut writer) => writer.flush().context("cannot write to stdout"),
            Output::File {
                writer,
                path,
                target,
                cleanup,
            } => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| write_error(&path))?;
                temp.as_file()
                    .sync_all()
                    .with_context(|| write_error(&path))?;
                cleanup
                    .commit(|| temp.persist(&target))
                    .map_err(|e| e.error)
                    .with_context(|| write_error(&path))?;
                Ok(())
            }
            Output::InPlace { mut writer, path } => {
                writer.flush().with_context(|| write_error(&path))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::Stdout(_) => "cannot write to stdout".to_string(),
            Output::File { path, .. } | Output::InPlace { path, .. } => write_error(path),
        }
    }
}

/// The directory holding `path` (`.` for a bare name) and its file name: where and under what name to create a
/// temporary sibling that is later renamed over `path` (a rename is atomic only within one file system).
pub fn beside(path: &Path) -> (PathBuf, String) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden siblings add up to 17 bytes (`.` + `.building-` + 6 random characters) to the name, and a name
    // may have 255: a valid 245-byte output name must not fail for its temporary's sake.
    if name.len() > MAX_SIBLING_STEM {
        let mut end = MAX_SIBLING_STEM;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    (dir, name)
}

/// The most bytes of a name that hidden siblings (temporary files, build directories, locks) start with.
const MAX_SIBLING_STEM: usize = 200;

/// tempfile's errors name the hidden temporary path, which the user never gave and cannot act on: the OS error
/// alone, for a message that names the user's own path.
pub fn without_temp_path(error: io::Error) -> io::Error {
    let os = error
        .get_ref()
        .and_then(|inner| inner.source())
        .and_then(|source| source.downcast_ref::<io::Error>());
    match os {
        Some(os) => match os.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(os.kind(), os.to_string()),
        },
        None => error,
    }
}

/// Where `path` leads: the file its symlinks point to, followed to the end (relative links are relative to the
/// link's directory), or `path` itself when it is not a symlink. Replacing the target rather than the link keeps
/// the link, as `sort -o` does. A link that leads nowhere gives the path it names, which is then created.
pub fn follow_links(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    // As the kernel does: past 40 links, a loop; the caller's open then reports it.
    for _ in 0..40 {
        let Ok(link) = fs::read_link(&at) else {
            return at;
        };
        at = match at.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
    }
    path.to_path_buf()
}

/// Removes temporary files (`PREFIX` + random characters + `.partial`) in `dir` that no run holds: what a killed
/// run left. One only seconds old is spared: its run may not have locked it yet. Best effort: what cannot be
/// removed is left for the next run.
fn remove_abandoned_temp_files(dir: &Path, prefix: &str) {
    let Ok(entries) = dir.read_dir() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(random) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        else {
            continue;
        };
        let ours =
            random.len() == TEMP_RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric());
        let path = entry.path();
        if ours
            && is_settled_file(&path)
            && let Some(_held) = lock::hold_if_unused(&path)
        {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Whether `path` is a regular file (not a link) last changed at least [`ABANDONED_AFTER`] ago.
fn is_settled_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_file()
            && m.modified()
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= ABANDONED_AFTER))
    })
}

fn write_error(path: &Path) -> String {
    format!("cannot write {}", path.display())
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File { writer, .. } => writer.write(buf),
            Output::InPlace { writer, .. } => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File { writer, .. } => writer.flush(),
            Output::InPlace { writer, .. } => writer.flush(),
        }
    }
}

impl Output {
    /// Writes all of `buf`, naming the destination in the error.
    pub fn put(&mut self, buf: &[u8]) -> Result<()> {
        self.write_all(buf).with_context(|| self.describe())
    }
}

/// `mode` less the process's umask: the permissions a file (0o666) or directory (0o777) the user creates gets.
pub fn less_umask(mode: u32) -> u32 {
    mode & !umask()
}

fn umask() -> u32 {
    // /proc tells it without changing it (Linux 4.7 on). Elsewhere it is read by setting it and putting it
    // back, which is right where this is asked: no other thread of the process is creating files then.
    let from_proc = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
            u32::from_str_radix(value.trim(), 8).ok()
        });
    from_proc.unwrap_or_else(|| {
        use rustix::process::umask;
        let mask = umask(rustix::fs::Mode::from_raw_mode(0o077));
        umask(mask);
        mask.as_raw_mode()
    })
}
