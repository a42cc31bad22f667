//! An audio file asked as a query: the windows of the index's frames it is cut into, each asked as a vector,
//! and where in the file each starts.

use anyhow::Context;

use crate::audio::EXAMPLE_SECONDS;
use crate::audio::source::Embedded;
use crate::index::projection::{ClipForm, QueryVector};
use crate::index::vector::Form;

/// Where each of an audio file's windows starts in the file, in seconds (see [`audio_windows`]).
pub(super) fn audio_window_starts(embedded: &Embedded, form: &ClipForm) -> Vec<f64> {
    window_rows(embedded.rows.len(), form.frames)
        .into_iter()
        .map(|start| embedded.start + start as f64 * EXAMPLE_SECONDS)
        .collect()
}

/// The first row of each window: side by side from the start, and one more ending at the last row when the
/// rows do not divide evenly; one window of all the rows when there are fewer than `frames`.
fn window_rows(n: usize, frames: usize) -> Vec<usize> {
    if n < frames {
        return vec![0];
    }
    let mut starts: Vec<usize> = (0..=n - frames).step_by(frames).collect();
    if !n.is_multiple_of(frames) {
        starts.push(n - frames);
    }
    starts
}

/// An audio file's query vectors: one per window of the index's `frames` rows. Audio shorter than one window is
/// one window of the rows there are when the index's vectors are means; concatenated frames need them all, and
/// the error says so.
pub(super) fn audio_windows(
    embedded: &Embedded,
    form: &ClipForm,
) -> anyhow::Result<Vec<(usize, QueryVector)>> {
    let frames = form.frames;
    let rows: Vec<Vec<f32>> = embedded
        .rows
        .iter()
        .map(|row| row.iter().map(|&v| f32::from(v)).collect())
        .collect();
    let n = rows.len();
    if n < frames {
        if form.form == Form::Flat {
            anyhow::bail!(
                "{:.1} s of audio gives {n} example{} of 0.96 s; this index's vectors are {frames} frames \
                 concatenated (flat vectors), so it needs at least {:.2} s (or an index of mean vectors)",
                embedded.seconds,
                if n == 1 { "" } else { "s" },
                frames as f64 * 0.96
            );
        }
        return Ok(vec![(0, form.query_rows(&rows, 0, n)?)]);
    }
    window_rows(n, frames)
        .into_iter()
        .map(|start| Ok((start, form.query(&rows, start)?)))
        .collect::<anyhow::Result<_>>()
        .context("cannot make the audio's query vectors")
}
