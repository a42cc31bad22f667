//! The `soundalike` Python package's native module, `soundalike._soundalike`: the library's index, queries,
//! ingest, build and audio embedding as Python classes and functions, for notebooks (issue 25).
//!
//! A client of the library like the command line: it decides what a Python user sees (dicts, numpy arrays,
//! exceptions, warnings), and asks the library for everything else. Every call that searches, reads files,
//! embeds or builds releases the interpreter's lock ([`errors::run`]).

mod audio;
mod build;
mod convert;
mod errors;
mod index;
mod ingest;
mod pool;

use numpy::PyArray2;
use numpy::ndarray::Array2;
use pyo3::prelude::*;

use audio::AudioArgs;
use errors::DamagedIndexError;

/// The VGGish embedding of an audio file (WAV, FLAC, MP3, Ogg Vorbis): a (rows, 128) uint8 array, one row per
/// 0.96 s, as AudioSet's embeddings and `soundalike embed` give it.
///
/// start, end: the stretch of the file, in seconds; max_seconds: the most audio embedded (default 1200).
/// weights, pca: VGGish's weight file and PCA parameters (default: $SOUNDALIKE_WEIGHTS and $SOUNDALIKE_PCA,
/// else the official files in ~/.local/share/soundalike); loaded once per process and reused while the same
/// files are asked for. service: a MAX Audio Embedding Generator's URL instead of the weights.
///
/// Raises FileNotFoundError when the file or the weights are missing (saying where to get them), ValueError
/// for audio that cannot be decoded or is too short.
#[pyfunction]
#[pyo3(signature = (path, *, start=None, end=None, max_seconds=None, weights=None, pca=None, service=None))]
#[allow(clippy::too_many_arguments)]
fn embed<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
    start: Option<f64>,
    end: Option<f64>,
    max_seconds: Option<f64>,
    weights: Option<&Bound<'py, PyAny>>,
    pca: Option<&Bound<'py, PyAny>>,
    service: Option<String>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let args =
        AudioArgs::from_python(path, "path", start, end, max_seconds, weights, pca, service)?;
    let (embedded, warnings) = args.embed(py)?;
    index::warn(py, &warnings)?;
    let rows = embedded.rows.len();
    let bytes: Vec<u8> = embedded.rows.iter().flatten().copied().collect();
    let array = Array2::from_shape_vec((rows, soundalike::audio::EMBEDDING_LEN), bytes)
        .map_err(|e| errors::bad_argument(format!("internal shape error: {e}")))?;
    Ok(PyArray2::from_owned_array(py, array))
}

/// AudioSet's 527 class names, by class index (what `labels` and `label_names` refer to).
#[pyfunction]
fn class_names() -> Vec<&'static str> {
    soundalike::labels::class_names()
        .iter()
        .map(String::as_str)
        .collect()
}

#[pymodule]
fn _soundalike(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<index::PyIndex>()?;
    module.add_class::<ingest::ClipReader>()?;
    module.add_function(wrap_pyfunction!(embed, module)?)?;
    module.add_function(wrap_pyfunction!(ingest::read_tfrecords, module)?)?;
    module.add_function(wrap_pyfunction!(build::build_index, module)?)?;
    module.add_function(wrap_pyfunction!(class_names, module)?)?;
    module.add(
        "DamagedIndexError",
        module.py().get_type::<DamagedIndexError>(),
    )?;
    Ok(())
}
