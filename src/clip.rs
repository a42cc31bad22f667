//! A music clip as soundalike writes it: one JSON object with exactly the keys
//! `video_id`, `start_time`, `end_time`, `labels` and `embedding` (rows of 128 byte values, one per second).

use crate::tfrecord::sequence_example::{FRAME_LEN, RawClip};

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

/// Where a clip was found in its input, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Location {
    /// Line number in JSON Lines.
    Line(usize),
    /// Position (from 1) in a JSON array.
    Element(usize),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n) => write!(f, "clip {n} of the array"),
        }
    }
}

/// Streams the clips of a reader holding JSON Lines or one JSON array, calling `each` with each clip and where
/// it was, without holding more than one clip in memory.
pub fn read_clips(
    reader: impl std::io::BufRead,
    source: &str,
    mut each: impl FnMut(ClipRecord, Location) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use serde::de::{Deserializer, SeqAccess, Visitor};
    let mut reader = reader;
    // Peek at the first non-blank byte: '[' is an array, anything else JSON Lines.
    let first = loop {
        let buf = reader
            .fill_buf()
            .with_context(|| format!("cannot read {source}"))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first != Some(b'[') {
        for (number, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {source}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let clip: ClipRecord = serde_json::from_str(&line).map_err(|e| {
                // serde_json counts lines within the one it was given: "at line 1 column 80" would contradict
                // the line number in front, so only the column is kept.
                let text = e.to_string();
                let what = text
                    .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                    .unwrap_or(&text);
                anyhow::anyhow!(
                    "{source}: line {}: not a clip: {what} (column {})",
                    number + 1,
                    e.column()
                )
            })?;
            each(clip, Location::Line(number + 1))?;
        }
        return Ok(());
    }

    struct Each<'f, F>(&'f mut F);
    impl<'de, F: FnMut(ClipRecord, Location) -> anyhow::Result<()>> Visitor<'de> for Each<'_, F> {
        type Value = Option<anyhow::Error>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of clips")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut index = 0;
            while let Some(clip) = seq.next_element::<ClipRecord>()? {
                index += 1;
                if let Err(e) = (self.0)(clip, Location::Element(index)) {
                    return Ok(Some(e));
                }
            }
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    match de.deserialize_seq(Each(&mut each)) {
        Ok(Some(error)) => Err(error),
        Ok(None) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{source}: not an array of clips: {e}")),
    }
}
