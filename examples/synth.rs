//! Synthetic AudioSet-format data for benchmarks at any size (not a user command).
//!
//! Resamples the real clips of a source folder (bal_train) with per-frame noise and fresh unique video_ids,
//! keeping their labels, so that the neighbour structure resembles the real data. Writes the release's layout,
//! `OUT/audioset_v1_embeddings/unbal_train/XX.tfrecord` (XX = the first two characters of the id), and with
//! `--tar` a `features.tar.gz` of it instead.
//!
//! Each synthetic clip draws its frames at random (with replacement) from one source clip and adds uniform noise of
//! up to N (default 16) to every byte. At bal_train's size this gives neighbour distances like the real data's
//! (median cosine distance to the 5th and 10th neighbour 0.183 and 0.206 against 0.179 and 0.203); at larger sizes
//! the copies of each source crowd together, so label precision there is not a measure of quality.
//!
//! usage: cargo run --release --example synth -- SOURCE_DIR OUT CLIPS [--music-only] [--tar] [--noise N]

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prost::Message;
use soundalike::labels::LabelSet;
use soundalike::record::{Records, write_record};
use soundalike::sequence_example;
use tfrecord::protobuf::{
    BytesList, Feature, FeatureList, FeatureLists, Features, FloatList, Int64List, SequenceExample,
    feature::Kind,
};

struct Clip {
    labels: Vec<i64>,
    frames: Vec<[u8; 128]>,
}

/// A small deterministic generator (xorshift): the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Positional arguments: neither a flag nor the value after --noise.
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--noise"))
        .map(|(_, a)| a)
        .collect();
    let [source, out, count] = positional[..] else {
        bail!("usage: synth SOURCE_DIR OUT CLIPS [--music-only] [--tar] [--noise N]");
    };
    let count: usize = count.parse().context("CLIPS must be a number")?;
    let music_only = args.iter().any(|a| a == "--music-only");
    let tar = args.iter().any(|a| a == "--tar");
    let noise: i32 = args
        .iter()
        .position(|a| a == "--noise")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(16);

    let clips = read_clips(Path::new(source), music_only)?;
    eprintln!(
        "synth: {} source clips; writing {count} clips to {out}",
        clips.len()
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Records grouped by file name, as the release does.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut used = HashMap::new();
    for n in 0..count {
        let clip = &clips[rng.next() as usize % clips.len()];
        let video_id = loop {
            let id: String = (0..11)
                .map(|_| ID_CHARS[rng.next() as usize % 64] as char)
                .collect();
            if used.insert(id.clone(), ()).is_none() {
                break id;
            }
        };
        // Each frame is a random frame of the source (drawn with replacement) plus noise: another stretch of
        // the same sound, rather than a near-copy of the source's vector.
        let drawn: Vec<usize> = (0..clip.frames.len())
            .map(|_| rng.next() as usize % clip.frames.len())
            .collect();
        let frames: Vec<Vec<u8>> = drawn
            .iter()
            .map(|&f| {
                clip.frames[f]
                    .iter()
                    .map(|&v| {
                        let delta = (rng.next() % (2 * noise as u64 + 1)) as i32 - noise;
                        (i32::from(v) + delta).clamp(0, 255) as u8
                    })
                    .collect()
            })
            .collect();
        let start = (n % 30 * 10) as f32;
        let record = encode(
            &video_id,
            start,
            start + frames.len() as f32,
            &clip.labels,
            frames,
        );
        write_record(files.entry(video_id[..2].to_string()).or_default(), &record);
    }

    let out = PathBuf::from(out);
    if tar {
        std::fs::create_dir_all(&out)?;
        let file = File::create(out.join("features.tar.gz"))?;
        let gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, bytes) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(
                &mut header,
                format!("audioset_v1_embeddings/unbal_train/{name}.tfrecord"),
                &bytes[..],
            )?;
        }
        builder.into_inner()?.finish()?.flush()?;
    } else {
        let dir = out.join("audioset_v1_embeddings/unbal_train");
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &files {
            std::fs::write(dir.join(format!("{name}.tfrecord")), bytes)?;
        }
    }
    Ok(())
}

fn read_clips(source: &Path, music_only: bool) -> Result<Vec<Clip>> {
    let music = LabelSet::music_ontology();
    let mut clips = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(source)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tfrecord"))
    {
        let bytes = std::fs::read(path)?;
        for record in Records::new(&bytes, 0) {
            let (_, data) = record.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let clip = sequence_example::decode(data)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            // With --music-only every generated clip is one that `ingest` keeps by default: music, and at
            // least 10 frames long, so N generated clips are N music clips.
            if music_only && (!music.matches_any(&clip.labels) || clip.frames.len() < 10) {
                continue;
            }
            clips.push(Clip {
                labels: clip.labels.clone(),
                frames: clip.frames.iter().map(|f| **f).collect(),
            });
        }
    }
    if clips.is_empty() {
        bail!("no clips in {}", source.display());
    }
    Ok(clips)
}

fn encode(video_id: &str, start: f32, end: f32, labels: &[i64], frames: Vec<Vec<u8>>) -> Vec<u8> {
    let feature = |kind| Feature { kind: Some(kind) };
    let mut context = HashMap::new();
    context.insert(
        "video_id".into(),
        feature(Kind::BytesList(BytesList {
            value: vec![video_id.as_bytes().to_vec()],
        })),
    );
    context.insert(
        "start_time_seconds".into(),
        feature(Kind::FloatList(FloatList { value: vec![start] })),
    );
    context.insert(
        "end_time_seconds".into(),
        feature(Kind::FloatList(FloatList { value: vec![end] })),
    );
    context.insert(
        "labels".into(),
        feature(Kind::Int64List(Int64List {
            value: labels.to_vec(),
        })),
    );
    let embedding = FeatureList {
        feature: frames
            .into_iter()
            .map(|f| feature(Kind::BytesList(BytesList { value: vec![f] })))
            .collect(),
    };
    let example = SequenceExample {
        context: Some(Features { feature: context }),
        feature_lists: Some(FeatureLists {
            feature_list: HashMap::from([("audio_embedding".into(), embedding)]),
        }),
    };
    example.encode_to_vec()
}
