//! A second generator of benchmark clips, unlike `synth` on purpose (issue 36: a default fitted on one
//! generator's data must be checked on another's). Not a user command.
//!
//! `synth --mix K` makes each frame of a clip *one* frame of one of K sources, picked at random with
//! replacement, plus uniform noise: its clips' mean vectors sit near the middle of their sources', and every
//! source weighs the same. `blend` differs in four ways:
//!
//! - **Blended, not picked**: every frame is a weighted sum of the K sources' frames (as if the sounds played
//!   together), so a clip lies *between* its sources in embedding space rather than holding some frames of each.
//! - **Uneven**: the weights are drawn per clip from a flat Dirichlet, so some clips sit near one source and some
//!   half-way; neighbourhoods are uneven in density, which is what makes one fixed walk breadth fail.
//! - **In order**: each source contributes a contiguous run of its seconds from a random offset (wrapping), as a
//!   10-second excerpt of a song would, not frames drawn at random.
//! - **Gaussian noise** of standard deviation `--noise` (default 8) per byte, not uniform.
//!
//! Labels: the union of the labels of the sources weighing at least a quarter. Ids are fresh 11-character ids.
//! The same arguments give the same bytes (a seeded generator). Writes JSON Lines in the clip schema, which
//! `soundalike index` and `evaluate --queries` read.
//!
//! usage: cargo run --release --example blend -- SOURCES.jsonl OUT.jsonl CLIPS [--mix K] [--noise SIGMA]
//!        [--seed S]
//! SOURCES.jsonl: clips in the clip schema (e.g. `soundalike ingest` of bal_train's music clips).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const USAGE: &str =
    "usage: blend SOURCES.jsonl OUT.jsonl CLIPS [--mix K] [--noise SIGMA] [--seed S]";
const FRAMES: usize = 10;
const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Source {
    labels: Vec<i64>,
    frames: Vec<[f32; 128]>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let (mut mix, mut noise, mut seed) = (2usize, 8.0f32, 36u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
                .cloned()
        };
        match arg.as_str() {
            "--mix" => mix = value("--mix")?.parse()?,
            "--noise" => noise = value("--noise")?.parse()?,
            "--seed" => seed = value("--seed")?.parse()?,
            _ => positional.push(arg.clone()),
        }
    }
    let [sources, out, count] = positional.as_slice() else {
        bail!("{USAGE}");
    };
    let count: usize = count.parse().context("CLIPS must be a number")?;
    let sources = read_sources(sources)?;
    if sources.len() < mix || mix == 0 {
        bail!("need at least {mix} source clips, have {}", sources.len());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut used = HashSet::new();
    let mut out =
        BufWriter::new(File::create(out).with_context(|| format!("cannot create {out}"))?);
    let mut line = String::new();
    for _ in 0..count {
        let picked = distinct(&mut rng, sources.len(), mix);
        // A flat Dirichlet: normalised exponentials.
        let raw: Vec<f32> = (0..mix)
            .map(|_| -(1.0 - rng.random::<f32>()).ln())
            .collect();
        let total: f32 = raw.iter().sum();
        let weights: Vec<f32> = raw.iter().map(|w| w / total).collect();
        let offsets: Vec<usize> = picked
            .iter()
            .map(|&s| rng.random_range(0..sources[s].frames.len()))
            .collect();
        let mut labels: Vec<i64> = picked
            .iter()
            .zip(&weights)
            .filter(|(_, w)| **w >= 0.25)
            .flat_map(|(&s, _)| sources[s].labels.iter().copied())
            .collect();
        labels.sort_unstable();
        labels.dedup();
        line.clear();
        line.push_str("{\"video_id\":\"");
        line.push_str(&fresh_id(&mut rng, &mut used));
        line.push_str("\",\"start_time\":0.0,\"end_time\":10.0,\"labels\":");
        line.push_str(&serde_json::to_string(&labels)?);
        line.push_str(",\"embedding\":[");
        for t in 0..FRAMES {
            line.push_str(if t == 0 { "[" } else { ",[" });
            for d in 0..128 {
                let mut v = 0.0;
                for ((&s, &w), &o) in picked.iter().zip(&weights).zip(&offsets) {
                    let frames = &sources[s].frames;
                    v += w * frames[(o + t) % frames.len()][d];
                }
                let byte = (v + noise * gaussian(&mut rng)).round().clamp(0.0, 255.0) as u8;
                if d > 0 {
                    line.push(',');
                }
                line.push_str(itoa::Buffer::new().format(byte));
            }
            line.push(']');
        }
        line.push_str("]}\n");
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn read_sources(path: &str) -> Result<Vec<Source>> {
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut sources = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let clip: serde_json::Value = serde_json::from_str(&line?)
            .with_context(|| format!("{path}:{}: not a clip", n + 1))?;
        let labels = serde_json::from_value(clip["labels"].clone())?;
        let rows: Vec<Vec<u8>> = serde_json::from_value(clip["embedding"].clone())?;
        let frames = rows
            .iter()
            .filter(|r| r.len() == 128)
            .map(|r| std::array::from_fn(|d| f32::from(r[d])))
            .collect::<Vec<_>>();
        if !frames.is_empty() {
            sources.push(Source { labels, frames });
        }
    }
    Ok(sources)
}

fn distinct(rng: &mut StdRng, n: usize, k: usize) -> Vec<usize> {
    let mut picked = Vec::with_capacity(k);
    while picked.len() < k {
        let s = rng.random_range(0..n);
        if !picked.contains(&s) {
            picked.push(s);
        }
    }
    picked
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f32 = 1.0 - rng.random::<f32>();
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn fresh_id(rng: &mut StdRng, used: &mut HashSet<String>) -> String {
    loop {
        let id: String = (0..11)
            .map(|_| ID_CHARS[rng.random_range(0..64)] as char)
            .collect();
        if used.insert(id.clone()) {
            return id;
        }
    }
}
