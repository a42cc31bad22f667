//! Entry points shared by the fuzz targets (`fuzz/`) and by `tests/it/fuzz_regressions.rs`, which replays every
//! saved input on stable Rust, so what fuzzing found stays guarded in CI. Built only with the `fuzzing` feature,
//! which both enable (the tests through soundalike's dev-dependency on itself), so it is no part of the API.

use crate::clip;
use crate::index::projection::{ClipForm, Projection};
use crate::index::vector::{self, Form};
use crate::tfrecord::record::Records;
use crate::tfrecord::sequence_example;

/// Frames `data` as a TFRecord stream and as one record, decodes what it can, and writes any clip as JSON.
pub fn record(data: &[u8]) {
    let mut out = Vec::new();
    for record in Records::new(data, 0).flatten() {
        if let Ok(clip) = sequence_example::decode(record.1) {
            clip::write_json(&mut out, &clip, 10);
        }
    }
    if let Ok(clip) = sequence_example::decode(data) {
        clip::write_json(&mut out, &clip, clip.frames.len());
    }
}

/// Parses `data` as an embedding file and turns it into vectors of both forms.
pub fn embedding(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(rows) = clip::embedding_rows(&text) {
        for start in [0, 1] {
            let _ = vector::from_rows(&rows, start, 10, Form::Mean);
            let _ = vector::from_rows(&rows, start, 2, Form::Flat);
            // As an index with the default projection takes a query: checked, projected, its frames coded.
            for (frames, form) in [(10, Form::Mean), (2, Form::Flat)] {
                let clip_form = ClipForm {
                    projection: Some(Projection::default_fit().clone()),
                    frames,
                    form,
                };
                let _ = clip_form.query(&rows, start);
            }
        }
    }
}
