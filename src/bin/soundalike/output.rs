//! Where results go: stdout, a file replaced atomically, or a FIFO or device written in place (as `sort -o`
//! treats its output).
//!
//! A regular file is written beside its destination under a hidden temporary name and renamed over it only when
//! everything succeeded, so a failed or interrupted run never leaves a half-written file where the user expects
//! output, and an older file of the same name stays whole until then. A symlink is followed: its target is
//! replaced and the link kept. Anything that is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) cannot
//! be replaced by a rename, and is written in place as the output streams.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use soundalike::UsageError;
use soundalike::fs::{self as safe, beside, cleanup, follow_links, less_umask, without_temp_path};
use tempfile::NamedTempFile;

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

impl Output {
    /// Stdout for `None` or `-`, else the file at `path`; refused (a usage error) when it is the same file as one
    /// of `inputs`: it would be replaced, or for a FIFO drained, while it is read.
    pub fn create_apart_from(path: Option<&Path>, inputs: &[&Path]) -> Result<Self> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                1 << 20,
                io::stdout(),
            )));
        };
        let target = follow_links(path);
        let (dir, file_name) = beside(&target);
        if soundalike::holds_index(&dir) {
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
        crate::process::remove_on_interrupt();
        let (temp, cleanup) = cleanup::create(
            || {
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .rand_bytes(TEMP_RANDOM_CHARS)
                    .suffix(TEMP_SUFFIX)
                    .tempfile_in(&dir)
            },
            tempfile::NamedTempFile::path,
        )
        .map_err(without_temp_path)
        .with_context(|| write_error(path))?;
        // Held while this run writes: it tells a later run that the file is in use, not abandoned.
        safe::try_lock(temp.as_file()).with_context(|| write_error(path))?;
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
    /// them). It costs a modest share of an ingest to a file (docs/bench-log.md, "Where the time goes (ingest)"),
    /// which durability is worth.
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

    /// Ends a failed run's output. A file is simply not moved into place (the old one stays); a stream (stdout,
    /// a FIFO) has already carried what was written, so it is ended with the mark that tells a consumer
    /// (`index`) the clips are incomplete (`soundalike::clip::incomplete_line`), and the consumer refuses
    /// them instead of indexing a part. Best effort: a stream that cannot take the mark failed already.
    pub fn abandon(self, why: &anyhow::Error) {
        let mark = soundalike::clip::incomplete_line(&format!("{why:#}"));
        let _ = match self {
            // A person reading a terminal has the error line; the mark is for a program reading a pipe or file.
            Output::Stdout(_) if io::stdout().is_terminal() => Ok(()),
            Output::Stdout(mut writer) => writer
                .write_all(mark.as_bytes())
                .and_then(|()| writer.flush()),
            Output::InPlace { mut writer, .. } => writer
                .write_all(mark.as_bytes())
                .and_then(|()| writer.flush()),
            Output::File { .. } => Ok(()),
        };
    }

    /// Whether this writes a stream a consumer reads as it comes (stdout, a FIFO) rather than a file put in
    /// place at the end.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Output::File { .. })
    }

    fn describe(&self) -> String {
        match self {
            Output::Stdout(_) => "cannot write to stdout".to_string(),
            Output::File { path, .. } | Output::InPlace { path, .. } => write_error(path),
        }
    }
}

/// Removes temporary files (`PREFIX` + random characters + `.partial`) in `dir` that no run holds: what a killed
/// run left (see [`safe::sweep`]).
fn remove_abandoned_temp_files(dir: &Path, prefix: &str) {
    let ours = |name: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            .is_some_and(|random| {
                random.len() == TEMP_RANDOM_CHARS
                    && random.bytes().all(|b| b.is_ascii_alphanumeric())
            })
    };
    safe::sweep(dir, ours, |path| {
        if path.is_file() {
            let _ = fs::remove_file(path);
        }
    });
}

fn write_error(path: &Path) -> String {
    format!("cannot write {}", path.display())
}

/// Write errors name the destination ("cannot write out.jsonl: No space left on device"), keeping their kind
/// (a closed pipe is still `BrokenPipe`), so that whoever writes through this, the library included, reports
/// where.
impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match self {
            Output::Stdout(w) => w.write(buf),
            Output::File { writer, .. } => writer.write(buf),
            Output::InPlace { writer, .. } => writer.write(buf),
        };
        written.map_err(|e| self.located(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = match self {
            Output::Stdout(w) => w.flush(),
            Output::File { writer, .. } => writer.flush(),
            Output::InPlace { writer, .. } => writer.flush(),
        };
        flushed.map_err(|e| self.located(e))
    }
}

impl Output {
    fn located(&self, error: io::Error) -> io::Error {
        io::Error::new(error.kind(), format!("{}: {error}", self.describe()))
    }
}

impl Output {
    /// Writes all of `buf`, naming the destination in the error.
    pub fn put(&mut self, buf: &[u8]) -> Result<()> {
        Ok(self.write_all(buf)?)
    }
}
