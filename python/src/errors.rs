//! The library's errors as Python exceptions, chosen by their kind alone (the library marks every error with
//! one), with the message the command line prints after `error: `.
//!
//! Every call into the library goes through [`run`]: the interpreter's lock is released for the work, and a
//! panic (a bug: the library turns a dependency's panic on damaged data into an error of its own) becomes a
//! `RuntimeError` instead of pyo3's `PanicException`, which derives from `BaseException` and so escapes a
//! notebook's `except Exception`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyKeyError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use soundalike::ErrorKind;

pyo3::create_exception!(
    soundalike,
    DamagedIndexError,
    PyException,
    "An index's files are damaged (cut short, overwritten): rebuild it with soundalike.build_index or \
     `soundalike index`."
);

/// What was asked, for the one kind whose exception depends on it: a thing not found is a missing file
/// (`FileNotFoundError`) except when a clip was asked for by its id (`KeyError`, as a mapping would raise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Files,
    Ids,
}

/// The exception for a library error.
pub fn to_py(error: &soundalike::Error, asked: Asked) -> PyErr {
    exception(error.kind(), error.to_string(), asked)
}

/// The exception of `kind` carrying `message`.
pub fn exception(kind: ErrorKind, message: String, asked: Asked) -> PyErr {
    match kind {
        ErrorKind::NotFound if asked == Asked::Ids => PyKeyError::new_err(message),
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        ErrorKind::Usage | ErrorKind::BadInput => PyValueError::new_err(message),
        ErrorKind::DamagedIndex => DamagedIndexError::new_err(message),
        ErrorKind::Io => PyOSError::new_err(message),
        // A kind added to the library later: still an exception a notebook can catch.
        _ => PyRuntimeError::new_err(message),
    }
}

/// A `ValueError` for an argument that cannot be asked (`k=0` is the library's to refuse; a wrong type or a
/// missing key is ours).
pub fn bad_argument(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// Runs `work` on the package's pool ([`crate::pool`]) with the interpreter's lock released (other Python
/// threads run meanwhile), its error and any panic turned into exceptions. For any work that may run in
/// parallel: a batch, audio, an ingest.
pub fn run<T: Send>(
    py: Python<'_>,
    asked: Asked,
    work: impl FnOnce() -> soundalike::Result<T> + Send,
) -> PyResult<T> {
    run_here(py, asked, || {
        crate::pool::install(work).and_then(|done| done)
    })
}

/// [`run`] on the calling thread, without the handoff to the pool and back (a noticeable share of one
/// question's time: docs/design.md, "The Python package after `fork()`"): only for what the library does on one
/// thread (opening an index or input files, an index's length and settings, one question by id or embedding). Parallel work here would start
/// rayon's global pool, which a forked child inherits without its threads; tests/test_fork.py asks each of
/// these in a child after its parent has.
pub fn run_here<T: Send>(
    py: Python<'_>,
    asked: Asked,
    work: impl FnOnce() -> soundalike::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(to_py(&error, asked)),
        Err(panic) => Err(internal(panic)),
    }
}

/// The `RuntimeError` for a caught panic, with its message, worded as the command line words it.
pub fn internal(panic: Box<dyn std::any::Any + Send>) -> PyErr {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    PyRuntimeError::new_err(format!("internal error (please report it): {why}"))
}
