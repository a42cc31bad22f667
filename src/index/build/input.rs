//! The clips a build reads: its inputs, each clip as it will be stored, duplicates merged, and the frame codes
//! of a rebuild held apart.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::clip::{self, ClipRecord};
use crate::index::build::report::Progress;
use crate::index::projection::{ClipForm, QueryVector};
use crate::index::records::ClipMeta;
use crate::index::store::Settings;
use crate::index::vector;
use crate::tfrecord::record::masked_crc;

/// Where clips come from: a file of clips as `ingest` writes them (JSON Lines or JSON arrays), any reader of
/// the same (stdin, a pipe), or clips already in memory (a host's own values: the Python package's dicts),
/// which are not written as text for the builder to parse back.
pub enum ClipInput<'a> {
    Path(PathBuf),
    Reader {
        /// For messages: `"<stdin>"`.
        name: String,
        reader: Box<dyn BufRead + 'a>,
    },
    Clips {
        /// For messages: "clips" (a clip is then "clips[3]", from 0).
        name: String,
        /// Each clip in turn; an error ends the build with it.
        clips: Box<dyn Iterator<Item = crate::Result<ClipRecord>> + 'a>,
    },
}

/// A clip read from the input, as it will be stored: its metadata, and its vector (arroy's form, before
/// [`scan::prepare`]) and frame codes, or, while a projection is still to be learned, its rows.
pub(super) struct InputClip {
    pub(super) meta: ClipMeta,
    pub(super) data: VectorOrRows,
}

pub(super) enum VectorOrRows {
    Vector(QueryVector),
    /// The rows' values (frames x 128), as bytes when they are whole numbers, as `ingest` writes them.
    ByteRows(Vec<u8>),
    FloatRows(Vec<f32>),
}

impl InputClip {
    pub(super) fn ready(&self) -> Result<&QueryVector> {
        match &self.data {
            VectorOrRows::Vector(ready) => Ok(ready),
            _ => Err(anyhow!("clip {} has no vector yet", self.meta.video_id)),
        }
    }

    /// Moves the frame codes out of a clip with its vector, leaving it the vector alone.
    pub(super) fn take_codes(&mut self) -> Option<Vec<i8>> {
        match &mut self.data {
            VectorOrRows::Vector(ready) => Some(std::mem::take(&mut ready.codes)),
            _ => None,
        }
    }

    pub(super) fn raw(&self) -> Option<Cow<'_, [f32]>> {
        match &self.data {
            VectorOrRows::Vector(_) => None,
            VectorOrRows::ByteRows(bytes) => {
                Some(Cow::Owned(bytes.iter().map(|&b| f32::from(b)).collect()))
            }
            VectorOrRows::FloatRows(floats) => Some(Cow::Borrowed(floats)),
        }
    }
}

/// The inputs of a build, read once, and where the clips go.
pub(super) struct BuildInputs<'r, 'p> {
    pub(super) inputs: Vec<ClipInput<'r>>,
    /// The index, for messages.
    pub(super) dir: &'r Path,
    pub(super) progress: Progress<'p>,
}

/// Calls `each` with every clip of the inputs in turn, as it is read.
pub(super) fn each_clip(
    reading: BuildInputs,
    settings: &Settings,
    form: Option<&ClipForm>,
    mut each: impl FnMut(InputClip) -> Result<()>,
) -> Result<()> {
    let progress = reading.progress;
    // One clip in, wherever it came from; `at` says where, for messages ("clips.jsonl: line 3").
    let mut take = |clip: ClipRecord, at: &dyn std::fmt::Display| -> Result<()> {
        let located = |e: anyhow::Error| anyhow!("{at}: clip {}: {e}", clip.video_id);
        let data = match form {
            Some(form) => {
                let ready = form.query(&clip.embedding, 0).map_err(located)?;
                usable(&ready).map_err(located)?;
                VectorOrRows::Vector(ready)
            }
            None => {
                vector::from_rows(&clip.embedding, 0, settings.frames, settings.vector)
                    .map_err(located)?;
                let rows = &clip.embedding[..settings.frames];
                if rows.iter().flatten().all(|v| v.fract() == 0.0) {
                    VectorOrRows::ByteRows(rows.iter().flatten().map(|&v| v as u8).collect())
                } else {
                    VectorOrRows::FloatRows(rows.iter().flatten().copied().collect())
                }
            }
        };
        each(InputClip {
            meta: ClipMeta {
                video_id: clip.video_id,
                labels: clip.labels,
                start_time: clip.start_time,
                end_time: clip.end_time,
            },
            data,
        })?;
        progress.clip_read()
    };
    for input in reading.inputs {
        let (mut reader, source): (Box<dyn BufRead>, String) = match input {
            ClipInput::Reader { name, reader } => (reader, name),
            ClipInput::Path(path) => {
                let file =
                    File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
                (
                    Box::new(BufReader::with_capacity(1 << 20, file)),
                    path.display().to_string(),
                )
            }
            ClipInput::Clips { name, clips } => {
                for (n, clip) in clips.enumerate() {
                    let clip = clip.map_err(anyhow::Error::from)?;
                    // The same check a clip read from text passes (`clip::stream_clips`).
                    match clip.check() {
                        Err(problem) if clip.video_id.is_empty() => bail!("{name}[{n}]: {problem}"),
                        Err(problem) => bail!(
                            "{name}[{n}]: clip {}: {problem}",
                            clip::shortened(&clip.video_id)
                        ),
                        Ok(()) => {}
                    }
                    take(clip, &format_args!("{name}[{n}]"))?;
                }
                continue;
            }
        };
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read {source}"))?;
        if let Some(kind) = not_clips(head) {
            bail!(
                "{source} is {kind}, not clips: `index` reads the JSON `ingest` writes \
                 (`soundalike ingest {source} | soundalike index --index {}`)",
                reading.dir.display()
            );
        }
        clip::stream_clips(reader, &source, |clip: ClipRecord, at| {
            take(clip, &format_args!("{source}: {at}"))
        })?;
    }
    Ok(())
}

/// Refuses a clip's vector that no search can rank: a projection that overflows (not finite) or maps everything
/// to zero (no direction) would build an index answering NaN or the same distance for every clip.
pub(super) fn usable(vector: &QueryVector) -> Result<()> {
    if vector.vector.iter().any(|v| !v.is_finite()) {
        bail!("the projection makes its vector not finite (an overflowing projection?)");
    }
    if vector.vector.iter().all(|&v| v == 0.0) {
        bail!("the projection makes its vector all zeros (a projection of zeros?)");
    }
    Ok(())
}

/// Clips with distinct video_ids, a video_id seen twice keeping its last clip in the place of its first.
#[derive(Default)]
pub(super) struct DistinctClips {
    pub(super) clips: Vec<InputClip>,
    at: HashMap<String, usize>,
    /// Clips that replaced an earlier one with their video_id.
    pub(super) replaced: u64,
}

impl DistinctClips {
    /// Keeps `clip`; returns its place among the clips kept.
    pub(super) fn push(&mut self, clip: InputClip) -> usize {
        match self.at.get(&clip.meta.video_id) {
            Some(&at) => {
                self.replaced += 1;
                self.clips[at] = clip;
                at
            }
            None => {
                let at = self.clips.len();
                self.at.insert(clip.meta.video_id.clone(), at);
                self.clips.push(clip);
                at
            }
        }
    }
}

/// The frame codes of a rebuild's clips, row `i` the `i`th clip kept, in one allocation. A million clips' codes
/// take 1.5 GB (ten frames of 149 codes each), twice the vectors: held in one piece, they go back to the system
/// at once when written, instead of leaving a million small holes between the vectors' allocations.
#[derive(Default)]
pub(super) struct FrameRows {
    pub(super) codes: Vec<i8>,
    pub(super) width: usize,
}

impl FrameRows {
    pub(super) fn put(&mut self, at: usize, codes: &[i8]) {
        self.width = codes.len();
        let start = at * self.width;
        if start == self.codes.len() {
            self.codes.extend_from_slice(codes);
        } else {
            self.codes[start..start + self.width].copy_from_slice(codes);
        }
    }

    pub(super) fn row(&self, at: usize) -> &[i8] {
        &self.codes[at * self.width..][..self.width]
    }
}

/// Every clip of the inputs, distinct, their frame codes apart, and how many were replaced so. A million clips
/// of 149 dimensions take about 700 MB here and their codes 1.5 GB: the rebuild needs the vectors to lay the
/// clips out and to build the graph, and the codes until they are written in the clips' new order.
pub(super) fn read_inputs(
    reading: BuildInputs,
    settings: &Settings,
    form: Option<&ClipForm>,
) -> Result<(Vec<InputClip>, FrameRows, u64)> {
    let mut distinct = DistinctClips::default();
    let mut frames = FrameRows::default();
    each_clip(reading, settings, form, |mut clip| {
        let codes = clip.take_codes();
        let at = distinct.push(clip);
        if let Some(codes) = codes {
            frames.put(at, &codes);
        }
        Ok(())
    })?;
    Ok((distinct.clips, frames, distinct.replaced))
}

/// What an input is when its first bytes show that it is AudioSet's records rather than clips, the mistake of
/// skipping `ingest`: JSON's error ("stream did not contain valid UTF-8") would not say so.
pub(super) fn not_clips(head: &[u8]) -> Option<&'static str> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    if head.starts_with(&GZIP_MAGIC) {
        return Some("gzip-compressed (a features.tar.gz of TFRecords?)");
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some("a tar archive (of TFRecords?)");
    }
    let header = head.first_chunk::<12>()?;
    let stored = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (masked_crc(&header[..8]) == stored).then_some("a TFRecord file")
}

/// The inputs' total size in bytes, or `None` when one is a reader (its size is unknown).
pub(super) fn input_size(inputs: &[ClipInput]) -> Option<u64> {
    // An unreadable input fails later with its own error; it needs no room.
    inputs
        .iter()
        .map(|input| match input {
            ClipInput::Path(path) => Some(std::fs::metadata(path).map_or(0, |m| m.len())),
            ClipInput::Reader { .. } | ClipInput::Clips { .. } => None,
        })
        .sum()
}
