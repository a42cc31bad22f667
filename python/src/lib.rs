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

use pyo3::prelude::*;

use errors::DamagedIndexError;

/// AudioSet's 527 class names, by class index (what `labels` and `label_names` refer to).
#[pyfunction]
fn class_names() -> Vec<&'static str> {
    soundalike::labels::class_names()
        .iter()
        .map(String::as_str)
        .collect()
}

/// The video_id `soundalike embed` gives the clip of an audio file: "file:" and the file's absolute path.
///
/// Raises ValueError for a path that cannot be a video_id (not UTF-8, or too long).
#[pyfunction]
fn file_id(path: &Bound<'_, PyAny>) -> PyResult<String> {
    let path = convert::path(path, "path")?;
    soundalike::clip::file_id(&path).map_err(|e| errors::bad_argument(e.to_string()))
}

#[pymodule]
fn _soundalike(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<index::PyIndex>()?;
    module.add_class::<ingest::ClipReader>()?;
    module.add_class::<audio::PyEmbedder>()?;
    module.add_class::<convert::PySearch>()?;
    module.add_function(wrap_pyfunction!(ingest::read_tfrecords, module)?)?;
    module.add_function(wrap_pyfunction!(build::build_index, module)?)?;
    module.add_function(wrap_pyfunction!(class_names, module)?)?;
    module.add_function(wrap_pyfunction!(file_id, module)?)?;
    module.add(
        "DamagedIndexError",
        module.py().get_type::<DamagedIndexError>(),
    )?;
    Ok(())
}
