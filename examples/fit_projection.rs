//! Fits the label model (see `src/index/fit.rs`) on clips written by `ingest` and writes it: the
//! compiled-in default is made with
//!
//! ```sh
//! soundalike ingest ../shared/audioset/real/audioset_v1_embeddings/bal_train -o bal_train.jsonl
//! cargo run --release --example fit_projection -- src/data/projection.bin bal_train.jsonl
//! ```
//!
//! An output ending in `.json` gets the JSON form `index --projection FILE` reads instead of the binary one.

use std::fs::File;
use std::io::BufReader;

use anyhow::{Context, Result, bail};
use soundalike::clip::{self, ClipRecord};
use soundalike::projection::Fit;
use soundalike::projection::Projection;

const FRAMES: usize = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, inputs @ ..] = &args[..] else {
        bail!("usage: fit_projection OUT.bin|OUT.json CLIPS.jsonl...");
    };
    let fitted = fit(inputs)?;
    let bytes = if out.ends_with(".json") {
        serde_json::to_vec(&fitted.to_json())?
    } else {
        fitted.to_bytes()
    };
    std::fs::write(out, bytes).with_context(|| format!("cannot write {out}"))?;
    eprintln!(
        "fit_projection: {} dimensions from {} clips, written to {out}",
        fitted.dimensions,
        fitted.fit_ids.len()
    );
    Ok(())
}

/// The default fit of clip files: the first [`FRAMES`] rows of each clip, in file and line order.
pub fn fit(inputs: &[String]) -> Result<Projection> {
    let mut fit = Fit::default();
    for input in inputs {
        let file = File::open(input).with_context(|| format!("cannot read {input}"))?;
        clip::read_clips(BufReader::new(file), input, |clip: ClipRecord, _| {
            if clip.embedding.len() >= FRAMES {
                let raw: Vec<f32> = clip.embedding[..FRAMES].iter().flatten().copied().collect();
                fit.add(&clip.video_id, &clip.labels, &raw);
            }
            Ok(())
        })?;
    }
    Ok(fit.finish()?)
}
