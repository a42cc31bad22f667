//! AudioSet's TFRecords in, music clips out as JSON, decoded in parallel and written in input order.
//!
//! One thread walks the inputs and cuts them into batches of units (whole small files, or chunks of whole
//! records from streams); the calling thread decodes each batch on rayon's pool and writes the results in order.
//! Memory is bounded by the batches in flight, whatever the size of the input.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::{Context, anyhow};
use rayon::prelude::*;

use crate::clip;
use crate::labels::LabelSet;
use crate::tfrecord::input::{self, Source, Unit};
use crate::tfrecord::record::{Corrupt, Defect, Records, read_full};
use crate::tfrecord::sequence_example;

type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// How clips are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClipFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// One JSON array.
    Json,
}

/// Which clips are kept, and how they are written.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Labels that make a clip music; a clip is kept when it carries any of them.
    pub music: LabelSet,
    /// Frames kept per clip; shorter music clips are dropped.
    pub frames: usize,
    pub format: ClipFormat,
    /// Step over corrupt records (each reported) instead of stopping at the first.
    pub skip_corrupt: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            music: LabelSet::music_ontology(),
            frames: 10,
            format: ClipFormat::Jsonl,
            skip_corrupt: false,
        }
    }
}

/// Counts of what was read and kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub records: u64,
    pub kept: u64,
    pub not_music: u64,
    pub too_short: u64,
    pub corrupt: u64,
    /// TFRecord bytes decoded (after decompression).
    pub bytes: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.files += other.files;
        self.records += other.records;
        self.kept += other.kept;
        self.not_music += other.not_music;
        self.too_short += other.too_short;
        self.corrupt += other.corrupt;
        self.bytes += other.bytes;
    }
}

/// What an ingest tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestEvent<'a> {
    /// Bytes read of the inputs so far (on disk, or from a stream before decompression).
    Read(u64),
    /// A corrupt record stepped over (with `skip_corrupt`): the input's name and what was wrong.
    Skipped { input: &'a str, problem: &'a str },
}

/// The inputs of an ingest, found and checked before anything is read: TFRecord files, folders (every
/// `*.tfrecord` below, sorted by path), tar or tar.gz archives (read as streams), or `-` for stdin.
pub struct Ingest {
    sources: Vec<Source>,
}

impl Ingest {
    pub fn open(inputs: &[PathBuf]) -> crate::Result<Ingest> {
        Ok(Ingest {
            sources: input::resolve(inputs)?,
        })
    }

    /// The files that will be read (`/dev/stdin` for stdin): a caller must not write its output over one.
    pub fn paths(&self) -> Vec<&Path> {
        self.sources
            .iter()
            .map(|source| match source {
                Source::Records { path, .. }
                | Source::Packed { path, .. }
                | Source::Stream { path } => path.as_path(),
                Source::Stdin => Path::new("/dev/stdin"),
            })
            .collect()
    }

    /// The inputs' total size on disk, `None` when one is a stream of unknown length.
    pub fn size(&self) -> Option<u64> {
        self.sources.iter().map(|s| s.size()).sum()
    }

    /// Decodes every record and writes the music clips to `out` in input order. Errors name the file and
    /// record; what was written before an error stays written (a caller writing a file writes it aside and
    /// renames it only on success).
    pub fn run(
        self,
        options: &IngestOptions,
        out: &mut dyn Write,
        mut events: impl FnMut(IngestEvent),
    ) -> crate::Result<Stats> {
        Ok(run(self.sources, options, out, &mut events)?)
    }
}

fn run(
    sources: Vec<Source>,
    options: &IngestOptions,
    out: &mut dyn Write,
    events: &mut dyn FnMut(IngestEvent),
) -> Result<Stats> {
    let raw_read = AtomicU64::new(0);
    let mut stats = Stats::default();
    let mut file_bytes_read = 0u64;
    let mut first = true;
    // The writer's errors say where it writes (a file, stdout): no context of ours to repeat it.
    let mut put = |bytes: &[u8]| out.write_all(bytes).map_err(anyhow::Error::from);

    if options.format == ClipFormat::Json {
        put(b"[")?;
    }
    std::thread::scope(|scope| -> Result<()> {
        // Two batches may wait while one is decoded: enough to keep both sides busy, and a bound on memory.
        let (sender, receiver) = mpsc::sync_channel(2);
        let raw = &raw_read;
        let producer =
            scope.spawn(move || input::produce(sources, raw, |batch| sender.send(batch).is_ok()));
        let consumed = (|| -> Result<()> {
            for batch in receiver.iter() {
                stats.files += batch.files;
                let decoded: Vec<Result<Decoded>> = batch
                    .units
                    .into_par_iter()
                    .map(|unit| decode_unit(unit, options))
                    .collect();
                for unit in decoded {
                    let unit = unit?;
                    stats.add(&unit.stats);
                    file_bytes_read += unit.read_from_disk;
                    for corrupt in &unit.skipped {
                        events(IngestEvent::Skipped {
                            input: &unit.name,
                            problem: &corrupt.to_string(),
                        });
                    }
                    let mut text = &unit.output[..];
                    if options.format == ClipFormat::Json && first && !text.is_empty() {
                        // Every clip is written as ",\n{...}": the array's first drops the comma.
                        text = &text[1..];
                        first = false;
                    }
                    put(text)?;
                    if let Some(corrupt) = unit.fatal {
                        if !corrupt.defect.is_skippable() {
                            return Err(anyhow!("{}: {}", unit.name, corrupt.defect));
                        }
                        let what = if corrupt.defect == Defect::Empty {
                            "files"
                        } else {
                            "records"
                        };
                        return Err(anyhow!(
                            "{}: {corrupt} (--skip-corrupt, or skip_corrupt, steps over such {what})",
                            unit.name
                        ));
                    }
                }
                events(IngestEvent::Read(
                    raw_read.load(Ordering::Relaxed) + file_bytes_read,
                ));
            }
            Ok(())
        })();
        // Dropping the receiver tells the producer to stop: after an error (a corrupt record, a closed output
        // pipe) it may be waiting to hand over its next batch, and would wait forever.
        drop(receiver);
        let produced = producer
            .join()
            .map_err(|_| anyhow!("the input reader thread panicked"))?;
        consumed?;
        produced
    })?;
    if options.format == ClipFormat::Json {
        put(b"\n]\n")?;
    }
    Ok(stats)
}

/// What decoding one unit produced.
struct Decoded {
    output: Vec<u8>,
    stats: Stats,
    /// Corrupt records stepped over (with `skip_corrupt`), to report in order.
    skipped: Vec<Corrupt>,
    /// The corrupt record that ends the run (without `skip_corrupt`).
    fatal: Option<Corrupt>,
    name: std::sync::Arc<str>,
    read_from_disk: u64,
}

fn decode_unit(unit: Unit, options: &IngestOptions) -> Result<Decoded> {
    let (name, data, base, read_from_disk) = match unit {
        Unit::File { path, name, size } => {
            // Read into a buffer of the size the walk's stat found, through `read` alone: `File::read_to_end`
            // would stat the file again for its size (one more syscall per file, for thousands of small files).
            // A file that has grown since is still read to its end, and one that has shrunk is cut where it ends.
            struct ReadOnly(File);
            impl Read for ReadOnly {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    self.0.read(buf)
                }
            }
            let read_whole = || -> std::io::Result<Vec<u8>> {
                let mut file = File::open(&path)?;
                let wanted = usize::try_from(size).unwrap_or(0);
                let mut data = vec![0; wanted];
                let got = read_full(&mut file, &mut data)?;
                data.truncate(got);
                if got == wanted {
                    // One more read to see the end (or what was added since).
                    ReadOnly(file).read_to_end(&mut data)?;
                }
                Ok(data)
            };
            let data = read_whole().with_context(|| format!("cannot read {}", path.display()))?;
            let len = data.len() as u64;
            (name, data, 0, len)
        }
        Unit::Chunk { name, chunk } => (name, chunk.data, chunk.base, 0),
    };
    let mut decoded = Decoded {
        // A kept clip's JSON is about three times its record's size.
        output: Vec::with_capacity(data.len() * 3 + 64),
        stats: Stats {
            bytes: data.len() as u64,
            ..Stats::default()
        },
        skipped: Vec::new(),
        fatal: None,
        name,
        read_from_disk,
    };
    // An empty file (or stream, or tar member) has no record to fail, so it is reported as one defect itself.
    let empty = data.is_empty().then_some(Err(Corrupt {
        offset: base,
        defect: Defect::Empty,
    }));
    for record in empty.into_iter().chain(Records::new(&data, base)) {
        let result = record.and_then(|(offset, bytes)| {
            sequence_example::decode(bytes).map_err(|what| Corrupt {
                offset,
                defect: Defect::Content(what),
            })
        });
        let clip = match result {
            Ok(clip) => clip,
            Err(corrupt) => {
                decoded.stats.records += 1;
                if !options.skip_corrupt {
                    decoded.fatal = Some(corrupt);
                    break;
                }
                decoded.stats.corrupt += 1;
                decoded.skipped.push(corrupt);
                continue;
            }
        };
        decoded.stats.records += 1;
        if !options.music.matches_any(&clip.labels) {
            decoded.stats.not_music += 1;
        } else if clip.frames.len() < options.frames {
            decoded.stats.too_short += 1;
        } else {
            decoded.stats.kept += 1;
            if options.format == ClipFormat::Json {
                decoded.output.extend_from_slice(b",\n");
            }
            clip::write_json(&mut decoded.output, &clip, options.frames);
            if options.format == ClipFormat::Jsonl {
                decoded.output.push(b'\n');
            }
        }
    }
    Ok(decoded)
}
