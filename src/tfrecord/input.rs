//! Where TFRecords come from: files, folders, tar archives (gzip-compressed or not) and stdin, resolved into
//! an ordered sequence of units of work for the parallel decoder.
//!
//! What a file holds is decided by its first bytes, not its name, so a renamed tarball or a gzip-compressed
//! TFRecord file (TensorFlow's `compression_type="GZIP"`) is still read correctly.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};

use crate::tfrecord::record::{Chunk, StreamChunker, read_full};

/// Plain TFRecord files up to this size are read whole by a decoder thread (so reading is parallel too);
/// larger ones are cut into chunks as they stream in, so memory stays bounded.
const WHOLE_FILE_LIMIT: u64 = 32 << 20;
/// Size of the record buffers cut from streams.
const CHUNK_TARGET: usize = 1 << 20;
/// A batch is handed to the decoder threads when it holds this many bytes or units.
const BATCH_BYTES: u64 = 8 << 20;
const BATCH_UNITS: usize = 256;

/// One input argument after resolution.
#[derive(Debug)]
pub enum Source {
    /// A plain TFRecord file.
    Records { path: PathBuf, size: u64 },
    /// A file that needs unpacking (tar, gzip or both) and is read as a stream.
    Packed { path: PathBuf, size: u64 },
    /// A stream on standard input: TFRecords, a tar or a gzip of either.
    Stdin,
    /// A path that is not a regular file (a FIFO such as `<(zcat ...)`, a device): read as a stream, as stdin
    /// is, never whole (its size says nothing, and `/dev/zero` has no end).
    Stream { path: PathBuf },
}

impl Source {
    /// Bytes on disk, for the progress bar; unknown for stdin.
    pub fn size(&self) -> Option<u64> {
        match self {
            Source::Records { size, .. } | Source::Packed { size, .. } => Some(*size),
            Source::Stdin | Source::Stream { .. } => None,
        }
    }
}

/// Resolves the INPUT arguments in the order given: a directory becomes its `*.tfrecord` files (recursively,
/// sorted by path), `-` is stdin, and a file is classified by its first bytes.
pub fn resolve(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            sources.push(Source::Stdin);
            continue;
        }
        let meta =
            std::fs::metadata(arg).with_context(|| format!("cannot read {}", arg.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_tfrecords(arg, &mut files)?;
            if files.is_empty() {
                bail!("no .tfrecord files under {}", arg.display());
            }
            files.sort_by(|a, b| a.0.cmp(&b.0));
            sources.extend(
                files
                    .into_iter()
                    .map(|(path, size)| Source::Records { path, size }),
            );
        } else if !meta.is_file() {
            // Not sniffed here: reading a FIFO's first bytes would take them from the stream.
            sources.push(Source::Stream { path: arg.clone() });
        } else {
            let size = meta.len();
            let mut head = [0u8; 512];
            let got = File::open(arg)
                .and_then(|mut f| read_full(&mut f, &mut head))
                .with_context(|| format!("cannot read {}", arg.display()))?;
            let path = arg.clone();
            if is_gzip(&head[..got]) || is_tar(&head[..got]) {
                sources.push(Source::Packed { path, size });
            } else {
                sources.push(Source::Records { path, size });
            }
        }
    }
    Ok(sources)
}

/// The `*.tfrecord` files below `dir` with their sizes. Symlinks are followed, as a user who links shards into a
/// folder expects; a link back to a folder above it (`self -> .`) is skipped rather than walked again. One
/// `stat` per file (for its size); what the directory listing says of the rest is trusted.
fn collect_tfrecords(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let error = e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("cannot be walked"));
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        if entry.file_type().is_dir() || entry.path().extension().is_none_or(|e| e != "tfrecord") {
            continue;
        }
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        if !meta.is_dir() {
            out.push((entry.into_path(), meta.len()));
        }
    }
    Ok(())
}

fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// POSIX and GNU tar both carry "ustar" at offset 257 of the first header block.
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// A unit of decoding work, in input order.
pub enum Unit {
    /// A TFRecord file that the decoder thread reads whole; `size` as found when the inputs were resolved.
    File {
        path: PathBuf,
        name: Arc<str>,
        size: u64,
    },
    /// Whole records cut from a stream (stdin, a tar member, a large or compressed file).
    Chunk { name: Arc<str>, chunk: Chunk },
}

/// Units handed over together, with the number of TFRecord files (or members, or streams) they start.
#[derive(Default)]
pub struct Batch {
    pub units: Vec<Unit>,
    pub files: u64,
    bytes: u64,
}

/// Walks the sources in order and hands batches of units to `emit`, which returns false to stop early (the
/// consumer has failed). `raw_read` counts bytes read from disk or stdin, for the progress bar.
pub fn produce(
    sources: Vec<Source>,
    raw_read: &AtomicU64,
    mut emit: impl FnMut(Batch) -> bool,
) -> Result<()> {
    let mut producer = Producer {
        batch: Batch::default(),
        emit: &mut emit,
        stopped: false,
    };
    for source in sources {
        match source {
            Source::Records { path, size } if size <= WHOLE_FILE_LIMIT => {
                let name: Arc<str> = path.display().to_string().into();
                producer.start_file();
                producer.push(Unit::File { path, name, size }, size);
            }
            Source::Records { path, .. }
            | Source::Packed { path, .. }
            | Source::Stream { path } => {
                let file =
                    File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let reader = Counting {
                    inner: file,
                    count: raw_read,
                };
                producer.stream(
                    &path.display().to_string(),
                    BufReader::with_capacity(1 << 20, reader),
                )?;
            }
            Source::Stdin => {
                let reader = Counting {
                    inner: io::stdin().lock(),
                    count: raw_read,
                };
                producer.stream("<stdin>", BufReader::with_capacity(1 << 20, reader))?;
            }
        }
        if producer.stopped {
            return Ok(());
        }
    }
    producer.flush();
    Ok(())
}

struct Producer<'e, E> {
    batch: Batch,
    emit: &'e mut E,
    stopped: bool,
}

impl<E: FnMut(Batch) -> bool> Producer<'_, E> {
    fn start_file(&mut self) {
        self.batch.files += 1;
    }

    fn push(&mut self, unit: Unit, bytes: u64) {
        self.batch.units.push(unit);
        self.batch.bytes += bytes;
        if self.batch.bytes >= BATCH_BYTES || self.batch.units.len() >= BATCH_UNITS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if !self.stopped && (batch.files > 0 || !batch.units.is_empty()) {
            self.stopped = !(self.emit)(batch);
        }
    }

    /// Reads a stream whose kind is told by its first bytes: gzip (of a tar or of TFRecords), tar, or TFRecords.
    fn stream(&mut self, name: &str, mut reader: impl Read) -> Result<()> {
        let mut head = vec![0u8; 512];
        let got =
            read_full(&mut reader, &mut head).with_context(|| format!("cannot read {name}"))?;
        head.truncate(got);
        if is_gzip(&head) {
            let inflated = flate2::read::MultiGzDecoder::new(Cursor::new(head).chain(reader));
            let mut inflated = BufReader::with_capacity(1 << 20, inflated);
            let mut head = vec![0u8; 512];
            let got = read_full(&mut inflated, &mut head)
                .with_context(|| format!("{name}: damaged gzip data"))?;
            head.truncate(got);
            let inflated = Cursor::new(head.clone()).chain(inflated);
            if is_tar(&head) {
                self.tar(name, inflated)
            } else {
                self.records(&format!("{name} (gzip)"), inflated)
            }
        } else if is_tar(&head) {
            self.tar(name, Cursor::new(head).chain(reader))
        } else {
            self.records(name, Cursor::new(head).chain(reader))
        }
    }

    fn tar(&mut self, name: &str, reader: impl Read) -> Result<()> {
        // An archive cut off between two members looks complete to the tar crate: it stops at the end of the
        // stream as it does at the end-of-archive marker. Watching for the end of the stream tells the two apart.
        let cut_short = Cell::new(false);
        let mut archive = tar::Archive::new(EndWatch {
            inner: reader,
            ended: &cut_short,
        });
        let mut members = 0;
        let entries = archive
            .entries()
            .with_context(|| format!("{name}: not a readable tar archive"))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("{name}: damaged tar archive"))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .with_context(|| format!("{name}: damaged tar archive"))?
                .into_owned();
            if path.extension().is_none_or(|e| e != "tfrecord") {
                continue;
            }
            members += 1;
            self.records(&format!("{name}:{}", path.display()), entry)?;
            if self.stopped {
                return Ok(());
            }
        }
        if cut_short.get() {
            // Hand over what was read first: its clips are good, and a member cut off inside a record is then
            // reported at that record.
            self.flush();
            bail!(
                "{name}: tar archive cut short after {members} .tfrecord members: the stream ends without the \
                 end-of-archive marker (an interrupted download or copy?)"
            );
        }
        if members == 0 {
            bail!("no .tfrecord members in tar archive {name}");
        }
        Ok(())
    }

    fn records(&mut self, name: &str, reader: impl Read) -> Result<()> {
        let name: Arc<str> = name.into();
        self.start_file();
        let mut chunker = StreamChunker::new(reader, CHUNK_TARGET);
        let mut empty = true;
        while let Some(chunk) = chunker
            .next_chunk()
            .with_context(|| format!("cannot read {name}"))?
        {
            empty = false;
            let bytes = chunk.data.len() as u64;
            self.push(
                Unit::Chunk {
                    name: name.clone(),
                    chunk,
                },
                bytes,
            );
            if self.stopped {
                break;
            }
        }
        if empty {
            // The decoder reports an empty unit as an empty file, as it does for a file read whole.
            let chunk = Chunk {
                base: 0,
                data: Vec::new(),
            };
            self.push(Unit::Chunk { name, chunk }, 0);
        }
        Ok(())
    }
}

/// Notes when a read finds the end of the stream. The tar crate reads a header block and then exactly each
/// member's bytes, so in a whole archive it stops at the zero blocks of the end-of-archive marker and never sees
/// the end of the stream.
struct EndWatch<'e, R> {
    inner: R,
    ended: &'e Cell<bool>,
}

impl<R: Read> Read for EndWatch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended.set(true);
        }
        Ok(n)
    }
}

/// Counts the bytes read through it into a shared counter.
struct Counting<'c, R> {
    inner: R,
    count: &'c AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
