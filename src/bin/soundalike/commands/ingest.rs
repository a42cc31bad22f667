//! `ingest`: TFRecords in, music clips out as JSON, decoded in parallel and written in input order.
//!
//! One thread walks the inputs and cuts them into batches of units (whole small files, or chunks of whole
//! records from streams); the calling thread decodes each batch on rayon's pool and writes the results in order.
//! Memory is bounded by the batches in flight, whatever the size of the input.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rayon::prelude::*;

use crate::clip;
use crate::labels::LabelSet;
use crate::output::Output;
use crate::progress::{self, Progress};
use crate::tfrecord::input::{self, Source, Unit};
use crate::tfrecord::record::{Corrupt, Defect, Records, read_full};
use crate::tfrecord::sequence_example;

/// How clips are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array.
    Json,
}

/// Everything `ingest` needs, as parsed from the command line.
pub struct IngestOptions {
    pub inputs: Vec<PathBuf>,
    /// Labels that make a clip music; a clip is kept when it carries any of them.
    pub music: LabelSet,
    /// Frames kept per clip; shorter music clips are dropped.
    pub frames: usize,
    /// `None` writes to stdout.
    pub output: Option<PathBuf>,
    pub format: Format,
    pub skip_corrupt: bool,
    pub quiet: bool,
}

/// Counts reported in the summary.
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

    /// The one-paragraph summary printed on stderr at the end.
    pub fn summary(&self, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64();
        let mb = self.bytes as f64 / 1e6;
        format!(
            "ingest: {}, {} ({}) in {seconds:.2} s, {:.0} MB/s: kept {}; \
             dropped {} not music, {} too short; skipped {} corrupt",
            progress::counted(self.files, "file"),
            progress::counted(self.records, "record"),
            progress::size(self.bytes),
            mb / seconds.max(1e-9),
            progress::counted(self.kept, "clip"),
            self.not_music,
            self.too_short,
            self.corrupt,
        )
    }
}

/// What decoding one unit produced.
struct Decoded {
    output: Vec<u8>,
    stats: Stats,
    /// Corrupt records stepped over (with `--skip-corrupt`), to report in order.
    skipped: Vec<Corrupt>,
    /// The corrupt record that ends the run (without `--skip-corrupt`).
    fatal: Option<Corrupt>,
    name: std::sync::Arc<str>,
    read_from_disk: u64,
}

/// Runs ingest; returns the counts. Errors name the file and record.
pub fn run(options: &IngestOptions) -> Result<Stats> {
    let started = Instant::now();
    let sources = input::resolve(&options.inputs)?;
    let total: Option<u64> = sources.iter().map(|s| s.size()).sum();
    let progress = Progress::bytes(total, options.quiet);
    // What is read, refused as the output: `/dev/stdin` leads to the file that stdin was redirected from.
    let inputs: Vec<&std::path::Path> = sources
        .iter()
        .map(|source| match source {
            Source::Records { path, .. } | Source::Packed { path, .. } => path.as_path(),
            Source::Stdin => std::path::Path::new("/dev/stdin"),
        })
        .collect();
    let mut output = Output::create_apart_from(options.output.as_deref(), &inputs)?;
    let raw_read = AtomicU64::new(0);
    let mut stats = Stats::default();
    let mut file_bytes_read = 0u64;
    let mut first = true;

    if options.format == Format::Json {
        output.put(b"[")?;
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
                        progress.warn(&format!("warning: {}: {corrupt} (skipped)", unit.name));
                    }
                    let mut text = &unit.output[..];
                    if options.format == Format::Json && first && !text.is_empty() {
                        // Every clip is written as ",\n{...}": the array's first drops the comma.
                        text = &text[1..];
                        first = false;
                    }
                    output.put(text)?;
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
                            "{}: {corrupt} (--skip-corrupt steps over such {what})",
                            unit.name
                        ));
                    }
                }
                progress.set(raw_read.load(Ordering::Relaxed) + file_bytes_read);
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
    if options.format == Format::Json {
        output.put(b"\n]\n")?;
    }
    output.finish()?;
    progress.finish();
    if !options.quiet {
        eprintln!("{}", stats.summary(started.elapsed()));
    }
    Ok(stats)
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
            if options.format == Format::Json {
                decoded.output.extend_from_slice(b",\n");
            }
            clip::write_json(&mut decoded.output, &clip, options.frames);
            if options.format == Format::Jsonl {
                decoded.output.push(b'\n');
            }
        }
    }
    Ok(decoded)
}
