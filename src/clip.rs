//! A music clip as soundalike writes it: one JSON object with exactly the keys
//! `video_id`, `start_time`, `end_time`, `labels` and `embedding` (rows of 128 byte values, one per second).

use crate::sequence_example::{FRAME_LEN, RawClip};

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
