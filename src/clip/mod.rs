//! A music clip as soundalike writes it: one JSON object with exactly the keys
//! `video_id`, `start_time`, `end_time`, `labels` and `embedding` (rows of 128 byte values, one per second).

mod embedding;
mod lines;
mod link;

/// Values in one row of a clip's embedding (one second of audio): VGGish's 128.
pub use crate::tfrecord::sequence_example::FRAME_LEN;
pub use embedding::embedding_rows;
pub use lines::CappedLines;
pub use link::{FILE_ID_PREFIX, clip_url, file_id, youtube_url};

use crate::tfrecord::sequence_example::RawClip;

/// The decimal text of every byte value followed by a comma, and its length without the comma, so that writing
/// an embedding (1,280 numbers a clip, almost all of ingest's output) is one fixed 4-byte copy per value.
static BYTE_TEXT: [([u8; 4], u8); 256] = {
    let mut table = [([0u8; 4], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let (h, t, o) = (
            b'0' + (v / 100) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        );
        table[v] = if v >= 100 {
            ([h, t, o, b','], 3)
        } else if v >= 10 {
            ([t, o, b',', 0], 2)
        } else {
            ([o, b',', 0, 0], 1)
        };
        v += 1;
    }
    table
};

/// Appends one frame as a JSON array: `[v,v,...,v]`.
fn write_frame(out: &mut Vec<u8>, frame: &[u8; FRAME_LEN]) {
    // Room for the widest row ("255," per value) plus brackets; filled with fixed-size copies, then trimmed.
    let mut row = [0u8; FRAME_LEN * 4 + 2];
    row[0] = b'[';
    let mut pos = 1;
    for &value in frame {
        let (text, len) = BYTE_TEXT[usize::from(value)];
        row[pos..pos + 4].copy_from_slice(&text);
        pos += usize::from(len) + 1;
    }
    // Overwrite the last comma with the closing bracket.
    row[pos - 1] = b']';
    out.extend_from_slice(&row[..pos]);
}

/// Appends `clip` as one JSON object (no newline), keeping its first `frames` frames.
///
/// Times are written as the f64 value of the stored f32 (`239.8000030517578`), as TensorFlow and Python print
/// them, so the output equals TensorFlow's decode and reads back to the exact stored value.
pub fn write_json(out: &mut Vec<u8>, clip: &RawClip<'_>, frames: usize) {
    out.extend_from_slice(b"{\"video_id\":");
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, clip.video_id);
    out.extend_from_slice(b",\"start_time\":");
    write_f64(out, f64::from(clip.start_time));
    out.extend_from_slice(b",\"end_time\":");
    write_f64(out, f64::from(clip.end_time));
    out.extend_from_slice(b",\"labels\":[");
    let mut buffer = itoa::Buffer::new();
    for (i, &label) in clip.labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(buffer.format(label).as_bytes());
    }
    out.extend_from_slice(b"],\"embedding\":[");
    for (i, frame) in clip.frames.iter().take(frames).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_frame(out, frame);
    }
    out.extend_from_slice(b"]}");
}

fn write_f64(out: &mut Vec<u8>, value: f64) {
    // Times are checked finite when decoded; serde_json writes finite floats in shortest round-trip form.
    let _ = serde_json::to_writer(&mut *out, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_schema() {
        let frame_a = [0u8; 128];
        let mut frame_b = [255u8; 128];
        frame_b[1] = 7;
        frame_b[2] = 42;
        let clip = RawClip {
            video_id: "a\"b",
            start_time: 239.8,
            end_time: 30.0,
            labels: vec![137, 5],
            frames: vec![&frame_a, &frame_b, &frame_a],
        };
        let mut out = Vec::new();
        write_json(&mut out, &clip, 2);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(value["video_id"], "a\"b");
        assert_eq!(value["start_time"].as_f64().unwrap(), f64::from(239.8f32));
        assert_eq!(value["end_time"], serde_json::json!(30.0));
        assert_eq!(value["labels"], serde_json::json!([137, 5]));
        let rows = value["embedding"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].as_array().unwrap()[..3], [255, 7, 42]);
        assert_eq!(rows[0].as_array().unwrap().len(), 128);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\"end_time\":30.0,")
        );
    }
}

/// A clip read back from `ingest`'s output (JSON Lines or a JSON array), for `index`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClipRecord {
    pub video_id: String,
    pub start_time: f64,
    pub end_time: f64,
    pub labels: Vec<i64>,
    /// Rows of byte values; floats are accepted so that embedding services' output reads the same way.
    pub embedding: Vec<Vec<f32>>,
}

/// The longest video_id an index can hold: LMDB's key size limit.
pub const MAX_ID_BYTES: usize = 511;
/// Times beyond this many seconds (about 115 days, longer than any video) are taken for garbage.
const MAX_TIME: f64 = 1e7;

impl ClipRecord {
    /// Why this clip cannot be indexed, if it cannot: an id LMDB cannot hold, a label that is not an AudioSet
    /// class, a time that is not a time.
    pub fn check(&self) -> Result<(), String> {
        check_id(&self.video_id)?;
        if let Some(label) = self
            .labels
            .iter()
            .find(|&&l| !(0..crate::labels::CLASS_COUNT as i64).contains(&l))
        {
            return Err(format!(
                "label {label} is not an AudioSet class (0 to {})",
                crate::labels::CLASS_COUNT - 1
            ));
        }
        for (name, time) in [("start_time", self.start_time), ("end_time", self.end_time)] {
            if !(0.0..=MAX_TIME).contains(&time) {
                // 1e300 in full would be 301 digits.
                let shown = if time.abs() < 1e9 {
                    time.to_string()
                } else {
                    format!("{time:e}")
                };
                return Err(format!(
                    "{name} {shown} is not a time in seconds (0 to {MAX_TIME:e})"
                ));
            }
        }
        Ok(())
    }
}

/// Why `video_id` cannot name a clip of an index, if it cannot.
pub fn check_id(video_id: &str) -> Result<(), String> {
    if video_id.is_empty() {
        return Err("the video_id is empty".into());
    }
    if video_id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the video_id '{}' is {} bytes long (at most {MAX_ID_BYTES})",
            shortened(video_id),
            video_id.len()
        ));
    }
    Ok(())
}

/// `text` for an error message, cut to its first 100 characters: an id from hostile input may be megabytes
/// long.
pub fn shortened(text: &str) -> std::borrow::Cow<'_, str> {
    const SHOWN: usize = 100;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()).into(),
        None => text.into(),
    }
}

/// The longest line of clips read: a clip `ingest` writes is about 5 KB, one `embed` makes of an hour of audio
/// about 2 MB; a line past this is refused without being kept (`index z.idx /dev/zero` would otherwise try to
/// hold all of it).
pub const MAX_CLIP_LINE: usize = 16 << 20;

/// The key of the line a producer of clips (`ingest`, `embed`) ends its output with when it fails while writing
/// to a stream: a consumer (`index`) cannot see its producer's exit status, so the stream itself says it was
/// cut short, and a consumer refuses it rather than index the part before the failure.
pub const INCOMPLETE_KEY: &str = "soundalike_incomplete";

/// The line that marks a stream of clips as cut short by a failure (see [`INCOMPLETE_KEY`]), with its
/// newlines: one before, in case the failure came mid-line.
pub fn incomplete_line(why: &str) -> String {
    format!("\n{}\n", serde_json::json!({ INCOMPLETE_KEY: why }))
}

/// Why a stream of clips was cut short, when `line` is the mark [`incomplete_line`] writes.
fn incomplete(line: &str) -> Option<String> {
    if !line.contains(INCOMPLETE_KEY) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let why = value.get(INCOMPLETE_KEY)?;
    Some(why.as_str().unwrap_or("no reason given").to_string())
}

/// Where a clip was found in its input, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Location {
    /// Line number in JSON Lines.
    Line(usize),
    /// Position (from 1) in a JSON array, and which array of the input (from 1: `cat a.json b.json` gives two).
    Element(usize, usize),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n, 1) => write!(f, "clip {n} of the array"),
            Location::Element(n, array) => write!(f, "clip {n} of array {array}"),
        }
    }
}

/// Streams the clips of a reader holding JSON Lines or JSON arrays (one, or several one after another, as
/// `cat a.json b.json` makes), calling `each` with each clip and where it was, without holding more than one
/// clip in memory. Every clip is checked ([`ClipRecord::check`]) before `each` sees it.
pub fn read_clips(
    reader: impl std::io::BufRead,
    source: &str,
    mut each: impl FnMut(ClipRecord, Location) -> crate::Result<()>,
) -> crate::Result<()> {
    Ok(stream_clips(reader, source, |clip, at| {
        Ok(each(clip, at)?)
    })?)
}

/// [`read_clips`] for the crate's own readers, whose `each` fails with the crate's inner errors.
pub(crate) fn stream_clips(
    reader: impl std::io::BufRead,
    source: &str,
    mut each: impl FnMut(ClipRecord, Location) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut reader = Counting {
        inner: reader,
        read: 0,
    };
    let mut checked = |clip: ClipRecord, at: Location| -> anyhow::Result<()> {
        match clip.check() {
            Err(problem) if clip.video_id.is_empty() => anyhow::bail!("{source}: {at}: {problem}"),
            Err(problem) => {
                anyhow::bail!(
                    "{source}: {at}: clip {}: {problem}",
                    shortened(&clip.video_id)
                )
            }
            Ok(()) => {}
        }
        each(clip, at)
    };
    let first = skip_blanks(&mut reader).with_context(|| format!("cannot read {source}"))?;
    if first != Some(b'[') {
        let mut lines = CappedLines::new(reader, MAX_CLIP_LINE);
        let mut number = 0;
        while let Some(line) = lines.next_line() {
            number += 1;
            let line = line.with_context(|| format!("{source}: line {number}"))?;
            let line = line
                .strip_prefix('\u{feff}')
                .filter(|_| number == 1)
                .unwrap_or(&line);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(why) = incomplete(line) {
                anyhow::bail!(
                    "{source}: line {number}: the program that wrote this input failed ({why}), so it is \
                     incomplete; refusing it"
                );
            }
            let clip: ClipRecord = serde_json::from_str(line).map_err(|e| {
                // serde_json counts lines within the one it was given: "at line 1 column 80" would contradict
                // the line number in front, so only the column is kept.
                let text = e.to_string();
                let what = text
                    .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                    .unwrap_or(&text);
                anyhow::anyhow!(
                    "{source}: line {number}: not a clip: {what} (column {})",
                    e.column()
                )
            })?;
            checked(clip, Location::Line(number))?;
        }
        return Ok(());
    }
    let mut array = 0;
    loop {
        match skip_blanks(&mut reader).with_context(|| format!("cannot read {source}"))? {
            None => return Ok(()),
            Some(b'[') => {
                array += 1;
                read_array(&mut reader, source, array, &mut checked)?;
            }
            Some(_) => anyhow::bail!(
                "{source}: byte {}: more after the array of clips that is not another array",
                reader.read + 1
            ),
        }
    }
}

/// A reader that counts the bytes taken from it, so that errors between arrays can name a byte offset.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: std::io::BufRead> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.read += amount as u64;
        self.inner.consume(amount);
    }
}

/// Skips whitespace; the next byte (left unread), or `None` at the end.
fn skip_blanks(reader: &mut impl std::io::BufRead) -> std::io::Result<Option<u8>> {
    loop {
        let buf = reader.fill_buf()?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let byte = buf[i];
                reader.consume(i);
                return Ok(Some(byte));
            }
            None if buf.is_empty() => return Ok(None),
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// Reads one JSON array of clips from `reader` (positioned at its `[`), calling `each` with each clip. The
/// reader is left just after the array's `]`.
fn read_array<R: std::io::BufRead>(
    reader: &mut Counting<R>,
    source: &str,
    array: usize,
    each: &mut impl FnMut(ClipRecord, Location) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};

    /// The visitor calls `each` for every element; an error of `each` stops the array and is kept in
    /// `failed` (serde's own error would only say the array was cut short).
    struct Each<'f, F> {
        each: &'f mut F,
        array: usize,
        seen: &'f mut usize,
        failed: &'f mut Option<anyhow::Error>,
    }
    impl<'de, F: FnMut(ClipRecord, Location) -> anyhow::Result<()>> Visitor<'de> for Each<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of clips")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(clip) = seq.next_element::<ClipRecord>()? {
                *self.seen += 1;
                if let Err(e) = (self.each)(clip, Location::Element(*self.seen, self.array)) {
                    *self.failed = Some(e);
                    return Err(A::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let (mut seen, mut failed) = (0, None);
    let result = serde_json::Deserializer::from_reader(&mut *reader).deserialize_seq(Each {
        each,
        array,
        seen: &mut seen,
        failed: &mut failed,
    });
    if let Some(error) = failed {
        return Err(error);
    }
    result.map_err(|e| {
        let at = Location::Element(seen + 1, array);
        anyhow::anyhow!("{source}: {at}: not a clip: {e}")
    })
}
