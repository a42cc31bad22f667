//! Our zero-copy SequenceExample decoder against prost's generated decoder for TensorFlow's own message types,
//! on every fixture record and on many damaged copies of them.

use crate::common;
use prost::Message;
use soundalike::tfrecord::record::Records;
use soundalike::tfrecord::sequence_example::{self, FRAME_LEN};
use tfrecord::protobuf::{SequenceExample, feature::Kind};

/// What a clip decodes to, as plain values.
#[derive(Debug, PartialEq)]
struct Plain {
    video_id: String,
    start: u32,
    end: u32,
    labels: Vec<i64>,
    frames: Vec<Vec<u8>>,
}

/// The same rules as `sequence_example::decode`, applied to prost's decode. `None` where either refuses.
fn oracle(record: &[u8]) -> Option<Plain> {
    let example = SequenceExample::decode(record).ok()?;
    let context = example.context?.feature;
    let single_bytes = |name: &str| match context.get(name)?.kind.as_ref()? {
        Kind::BytesList(list) if list.value.len() == 1 => Some(list.value[0].clone()),
        _ => None,
    };
    let single_float = |name: &str| match context.get(name)?.kind.as_ref()? {
        Kind::FloatList(list) if list.value.len() == 1 && list.value[0].is_finite() => {
            Some(list.value[0])
        }
        _ => None,
    };
    let video_id = String::from_utf8(single_bytes("video_id")?).ok()?;
    let start = single_float("start_time_seconds")?.to_bits();
    let end = single_float("end_time_seconds")?.to_bits();
    let labels = match context.get("labels")?.kind.as_ref()? {
        Kind::Int64List(list) => list.value.clone(),
        _ => return None,
    };
    let list = example
        .feature_lists?
        .feature_list
        .remove("audio_embedding")?;
    let mut frames = Vec::new();
    for feature in list.feature {
        match feature.kind? {
            Kind::BytesList(list) if list.value.len() == 1 && list.value[0].len() == FRAME_LEN => {
                frames.push(list.value[0].clone())
            }
            _ => return None,
        }
    }
    Some(Plain {
        video_id,
        start,
        end,
        labels,
        frames,
    })
}

fn ours(record: &[u8]) -> Option<Plain> {
    let clip = sequence_example::decode(record).ok()?;
    Some(Plain {
        video_id: clip.video_id.to_string(),
        start: clip.start_time.to_bits(),
        end: clip.end_time.to_bits(),
        labels: clip.labels,
        frames: clip.frames.iter().map(|f| f.to_vec()).collect(),
    })
}

fn fixture_records() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for split in ["bal_train", "eval"] {
        for entry in std::fs::read_dir(common::fixture_data().join(split)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        records.extend(Records::new(&bytes, 0).map(|r| r.unwrap().1.to_vec()));
    }
    records
}

#[test]
fn agrees_with_prost_on_every_fixture_record() {
    let records = fixture_records();
    assert_eq!(records.len(), 1948);
    for record in &records {
        let expected = oracle(record).expect("real records decode");
        assert_eq!(ours(record), Some(expected));
    }
}

#[test]
fn agrees_with_prost_on_damaged_records() {
    let records = fixture_records();
    // A small deterministic generator: the same mutants on every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    let mut prost_lenient = 0;
    for round in 0..20_000 {
        let mut record = records[next() as usize % records.len()].clone();
        for _ in 0..1 + round % 3 {
            let at = next() as usize % record.len();
            match next() % 3 {
                0 => record[at] = next() as u8,
                1 => record.truncate(at),
                _ => record[at] ^= 1 << (next() % 8),
            }
            if record.is_empty() {
                break;
            }
        }
        let expected = oracle(&record);
        refused += usize::from(expected.is_none());
        if expected.is_some() && ours(&record).is_none() && has_map_tag_of_wrong_type(&record) {
            // prost 0.12 reads a map field without checking its wire type; TensorFlow's C++ parser, like ours,
            // does not accept what follows. Not a disagreement with TensorFlow.
            prost_lenient += 1;
            continue;
        }
        assert_eq!(
            ours(&record),
            expected,
            "mutant {round}: {:?}",
            sequence_example::decode(&record).err()
        );
    }
    assert!(
        prost_lenient < 20,
        "{prost_lenient} mutants hit prost's map leniency"
    );
    assert!(
        refused > 1000,
        "the mutants exercise the error paths ({refused} refused)"
    );
}

/// True when the record's context or feature_lists holds a map-entry tag (field 1) that is not length-delimited.
fn has_map_tag_of_wrong_type(record: &[u8]) -> bool {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    /// Field tags and, for length-delimited fields, their payloads; stops at the first malformed field.
    fn fields(mut buf: &[u8]) -> Vec<(u64, Option<&[u8]>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let Some(key) = varint(&mut buf) else { break };
            let payload = match key & 7 {
                0 => varint(&mut buf).map(|_| None),
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    (buf.len() >= n).then(|| buf = &buf[n..]).map(|_| None)
                }
                2 => varint(&mut buf).and_then(|len| {
                    let len = usize::try_from(len).ok().filter(|&l| l <= buf.len())?;
                    let (head, tail) = buf.split_at(len);
                    buf = tail;
                    Some(Some(head))
                }),
                // A group or an invalid wire type: record the tag, then nothing after it can be framed.
                _ => {
                    out.push((key, None));
                    break;
                }
            };
            let Some(payload) = payload else { break };
            out.push((key, payload));
        }
        out
    }
    fields(record)
        .iter()
        .filter_map(|&(key, payload)| (key == 10 || key == 18).then_some(payload).flatten())
        .any(|message| {
            fields(message)
                .iter()
                .any(|&(key, _)| key >> 3 == 1 && key & 7 != 2)
        })
}
