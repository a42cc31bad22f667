//! Where results go: stdout, or a file replaced atomically.
//!
//! A file is written beside its destination under a temporary name and renamed over it only when everything
//! succeeded, so a failed or killed run never leaves a half-written file where the user expects output, and an
//! older file of the same name stays whole until then.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    File {
        writer: BufWriter<NamedTempFile>,
        path: PathBuf,
    },
}

impl Output {
    /// `None` or `-` is stdout.
    pub fn create(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                1 << 20,
                io::stdout(),
            )));
        };
        let (dir, file_name) = beside(path);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create output file in {}", dir.display()))?;
        // Temporary files are private (0600); the result should look like any file the user creates, or keep
        // the permissions of the file it replaces.
        let mode = fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Output::File {
            writer: BufWriter::with_capacity(1 << 20, temp),
            path: path.to_path_buf(),
        })
    }

    /// Flushes, and for a file moves it into place.
    ///
    /// No fsync: the rename already guarantees that a killed run leaves either the old file or the whole new one,
    /// and ext4 flushes a file renamed over another before the rename commits. Syncing cost a quarter of the
    /// run time of a typical ingest on our virtual disks.
    pub fn finish(self) -> Result<()> {
        match self {
            Output::Stdout(mut writer) => writer.flush().context("cannot write to stdout"),
            Output::File { writer, path } => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| write_error(&path))?;
                temp.as_file()
                    .sync_all()
                    .with_context(|| write_error(&path))?;
                temp.persist(&path)
                    .map_err(|e| e.error)
                    .with_context(|| write_error(&path))?;
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::Stdout(_) => "cannot write to stdout".to_string(),
            Output::File { path, .. } => write_error(path),
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
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

fn write_error(path: &Path) -> String {
    format!("cannot write {}", path.display())
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File { writer, .. } => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File { writer, .. } => writer.flush(),
        }
    }
}

impl Output {
    /// Writes all of `buf`, naming the destination in the error.
    pub fn put(&mut self, buf: &[u8]) -> Result<()> {
        self.write_all(buf).with_context(|| self.describe())
    }
}
