//! Decoding an AudioSet `tf.SequenceExample` without copying: the record's bytes are walked in place and only
//! the five fields AudioSet uses are picked out.
//!
//! This follows protobuf's merge rules, so it reads whatever TensorFlow reads: a message field that occurs
//! several times is merged, which is the same as parsing the concatenation of its occurrences; a map key that
//! occurs twice keeps its last entry; a `oneof` keeps the last kind set. The test suite checks it against
//! prost's generated decoder (through the tfrecord crate's TensorFlow types) and against TensorFlow's own decode.

/// One AudioSet clip as stored, borrowing from the record's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawClip<'a> {
    pub video_id: &'a str,
    pub start_time: f32,
    pub end_time: f32,
    pub labels: Vec<i64>,
    /// One 128-byte frame per second of audio.
    pub frames: Vec<&'a [u8; FRAME_LEN]>,
}

/// Bytes per one-second VGGish frame.
pub const FRAME_LEN: usize = 128;

/// Decodes a record; the error says in a few words what is wrong with it.
pub fn decode(record: &[u8]) -> Result<RawClip<'_>, String> {
    let mut context = Vec::new();
    let mut lists = Vec::new();
    for field in Fields::over(&[record]) {
        match field? {
            (1, Value::Bytes(b)) => context.push(b),
            (2, Value::Bytes(b)) => lists.push(b),
            (1 | 2, _) => return Err(not_a_sequence_example()),
            _ => {}
        }
    }
    if lists.is_empty() {
        // A tf.train.Example (`Features features = 1`) reads as a SequenceExample's context without any lists.
        return Err(
            "no feature_lists, so no audio_embedding: not a tf.SequenceExample (a tf.train.Example?)"
                .to_string(),
        );
    }

    let mut video_id = None;
    let mut start_time = None;
    let mut end_time = None;
    let mut labels = None;
    for (key, value) in map_entries(&context)? {
        match key {
            b"video_id" => video_id = Some(value),
            b"start_time_seconds" => start_time = Some(value),
            b"end_time_seconds" => end_time = Some(value),
            b"labels" => labels = Some(value),
            _ => {}
        }
    }
    let video_id = single(
        bytes_list(&required(video_id, "video_id")?, "video_id")?,
        "video_id",
    )?;
    let video_id =
        std::str::from_utf8(video_id).map_err(|_| "video_id is not valid UTF-8".to_string())?;
    let start_time = time(
        required(start_time, "start_time_seconds")?,
        "start_time_seconds",
    )?;
    let end_time = time(required(end_time, "end_time_seconds")?, "end_time_seconds")?;
    let labels = int64_list(&required(labels, "labels")?, "labels")?;

    let mut embedding = None;
    for (key, value) in map_entries(&lists)? {
        if key == b"audio_embedding" {
            embedding = Some(value);
        }
    }
    let embedding = required(embedding, "audio_embedding")?;
    let mut frames = Vec::with_capacity(10);
    // A FeatureList is `repeated Feature feature = 1`: each occurrence is one frame, never merged.
    for field in Fields::over(&embedding) {
        let feature = match field? {
            (1, Value::Bytes(b)) => b,
            (1, _) => return Err(not_a_sequence_example()),
            _ => continue,
        };
        let index = frames.len();
        let values = bytes_list(&[feature], "audio_embedding")?;
        let frame = single(values, "audio_embedding frame")?;
        let frame = frame.try_into().map_err(|_| {
            format!(
                "audio_embedding frame {index} has {} bytes, not {FRAME_LEN}",
                frame.len()
            )
        })?;
        frames.push(frame);
    }
    Ok(RawClip {
        video_id,
        start_time,
        end_time,
        labels,
        frames,
    })
}

fn not_a_sequence_example() -> String {
    "not a tf.SequenceExample (malformed protobuf)".to_string()
}

fn required<'a>(value: Option<Vec<&'a [u8]>>, name: &str) -> Result<Vec<&'a [u8]>, String> {
    value.ok_or_else(|| format!("missing field {name}"))
}

fn single<'a>(values: Vec<&'a [u8]>, name: &str) -> Result<&'a [u8], String> {
    match values[..] {
        [one] => Ok(one),
        _ => Err(format!("{name} holds {} values, not 1", values.len())),
    }
}

fn time(feature: Vec<&[u8]>, name: &str) -> Result<f32, String> {
    match float_list(&feature, name)?[..] {
        [t] if t.is_finite() => Ok(t),
        [t] => Err(format!("{name} is {t}, not a finite number")),
        ref values => Err(format!("{name} holds {} values, not 1", values.len())),
    }
}

/// A field's payload by wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the fields of a message given as the segments whose concatenation is the message (how
/// protobuf merges repeated occurrences of a message field).
struct Fields<'s, 'a> {
    segments: &'s [&'a [u8]],
    current: &'a [u8],
}

impl<'s, 'a> Fields<'s, 'a> {
    fn over(segments: &'s [&'a [u8]]) -> Self {
        Fields {
            segments,
            current: &[],
        }
    }
}

impl<'a> Iterator for Fields<'_, 'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.current.is_empty() {
            let (first, rest) = self.segments.split_first()?;
            self.current = first;
            self.segments = rest;
        }
        let result = read_field(&mut self.current);
        if result.is_err() {
            // A malformed field ends the message: nothing after it can be framed.
            self.current = &[];
            self.segments = &[];
        }
        Some(result)
    }
}

fn read_field<'a>(buf: &mut &'a [u8]) -> Result<(u64, Value<'a>), String> {
    let key = read_varint(buf)?;
    let number = key >> 3;
    if number == 0 {
        return Err(not_a_sequence_example());
    }
    let value = match key & 7 {
        0 => Value::Varint(read_varint(buf)?),
        1 => {
            take(buf, 8)?;
            Value::Fixed64
        }
        2 => {
            let len = usize::try_from(read_varint(buf)?).map_err(|_| not_a_sequence_example())?;
            Value::Bytes(take(buf, len)?)
        }
        5 => Value::Fixed32(u32::from_le_bytes(
            take(buf, 4)?.try_into().unwrap_or_default(),
        )),
        // Groups (3, 4) are long deprecated and never appear in TensorFlow's messages; 6 and 7 do not exist.
        _ => return Err(not_a_sequence_example()),
    };
    Ok((number, value))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if buf.len() < len {
        return Err(not_a_sequence_example());
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(not_a_sequence_example())
}

/// A map entry's key and the segments of its value message.
type MapEntry<'a> = (&'a [u8], Vec<&'a [u8]>);

/// The entries of a `map<string, Feature>` or `map<string, FeatureList>` (field 1 of Features and FeatureLists):
/// each key with its value's segments, later entries replacing earlier ones for the same key.
fn map_entries<'a>(message: &[&'a [u8]]) -> Result<Vec<MapEntry<'a>>, String> {
    let mut entries: Vec<MapEntry<'a>> = Vec::new();
    for field in Fields::over(message) {
        let entry = match field? {
            (1, Value::Bytes(b)) => b,
            (1, _) => return Err(not_a_sequence_example()),
            _ => continue,
        };
        let mut key: &[u8] = &[];
        let mut value = Vec::new();
        for field in Fields::over(&[entry]) {
            match field? {
                // Keys are proto3 strings, which protobuf (and so TensorFlow) refuses unless they are UTF-8.
                (1, Value::Bytes(b)) if std::str::from_utf8(b).is_err() => {
                    return Err(not_a_sequence_example());
                }
                (1, Value::Bytes(b)) => key = b,
                (2, Value::Bytes(b)) => value.push(b),
                (1 | 2, _) => return Err(not_a_sequence_example()),
                _ => {}
            }
        }
        entries.retain(|(k, _)| *k != key);
        entries.push((key, value));
    }
    Ok(entries)
}

/// The kinds of a Feature's `oneof kind`, by field number.
const BYTES_LIST: u64 = 1;
const FLOAT_LIST: u64 = 2;
const INT64_LIST: u64 = 3;

/// The segments of the list a Feature holds, provided it is of the wanted kind. A `oneof` keeps the last kind
/// set, and repeated occurrences of that kind merge.
fn feature_kind<'a>(
    feature: &[&'a [u8]],
    wanted: u64,
    name: &str,
) -> Result<Vec<&'a [u8]>, String> {
    let mut kind = 0;
    let mut segments = Vec::new();
    for field in Fields::over(feature) {
        match field? {
            (number @ 1..=3, Value::Bytes(b)) => {
                if number != kind {
                    kind = number;
                    segments.clear();
                }
                segments.push(b);
            }
            (1..=3, _) => return Err(not_a_sequence_example()),
            _ => {}
        }
    }
    if kind == wanted {
        return Ok(segments);
    }
    let kind_name = |k| match k {
        BYTES_LIST => "bytes_list",
        FLOAT_LIST => "float_list",
        INT64_LIST => "int64_list",
        _ => "no value",
    };
    Err(format!(
        "{name} holds {}, not {}",
        kind_name(kind),
        kind_name(wanted)
    ))
}

fn bytes_list<'a>(feature: &[&'a [u8]], name: &str) -> Result<Vec<&'a [u8]>, String> {
    let mut values = Vec::new();
    for field in Fields::over(&feature_kind(feature, BYTES_LIST, name)?) {
        match field? {
            (1, Value::Bytes(b)) => values.push(b),
            (1, _) => return Err(not_a_sequence_example()),
            _ => {}
        }
    }
    Ok(values)
}

fn float_list(feature: &[&[u8]], name: &str) -> Result<Vec<f32>, String> {
    let mut values = Vec::new();
    for field in Fields::over(&feature_kind(feature, FLOAT_LIST, name)?) {
        match field? {
            (1, Value::Fixed32(bits)) => values.push(f32::from_bits(bits)),
            (1, Value::Bytes(packed)) => {
                if packed.len() % 4 != 0 {
                    return Err(not_a_sequence_example());
                }
                values.extend(
                    packed
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (1, _) => return Err(not_a_sequence_example()),
            _ => {}
        }
    }
    Ok(values)
}

fn int64_list(feature: &[&[u8]], name: &str) -> Result<Vec<i64>, String> {
    let mut values = Vec::new();
    for field in Fields::over(&feature_kind(feature, INT64_LIST, name)?) {
        match field? {
            (1, Value::Varint(v)) => values.push(v as i64),
            (1, Value::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    values.push(read_varint(&mut packed)? as i64);
                }
            }
            (1, _) => return Err(not_a_sequence_example()),
            _ => {}
        }
    }
    Ok(values)
}
