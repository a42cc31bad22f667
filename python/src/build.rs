//! `soundalike.build_index`: clips in (a Python iterable of dicts, or files of clips), an index out, built by
//! the library's `IndexBuilder` exactly as `soundalike index` builds it.
//!
//! The builder takes typed clips as well as JSON lines; here each clip is the next dict of the Python iterable
//! (taken with the interpreter's lock for that moment only), its arrays read straight into the library's
//! clip. The build itself runs with the lock released, so a notebook's other threads go on meanwhile.

use std::path::PathBuf;

use numpy::{AllowTypeChange, PyArrayLike2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PyString, PyTuple};
use soundalike::clip::ClipRecord;
use soundalike::{BuildOptions, Built, ClipInput, Form, IndexBuilder, Metric, ProjectionChoice};

use crate::convert;
use crate::errors::{Asked, bad_argument, internal, to_py};
use crate::pool;

/// Builds an index at `path` from clips, as `soundalike index` does, and returns what it did (a dict: clips,
/// read, added, replaced, trees, bytes, and held_out: the breadth a new vector's walk takes by default, measured
/// on the index, with its recall on the probes; None when the index's default is the exact scan).
///
/// clips: an iterable of clip dicts (keys video_id, start_time, end_time, labels, embedding: what
/// read_tfrecords yields; the embedding a (frames, 128) array or lists of rows), or a path or list of paths of
/// clip files written by `soundalike ingest` or `soundalike embed`.
/// projection: "default" (the compiled-in model of the music labels), "learn" (fit on these clips), "none"
/// (VGGish's 128 dimensions), or a path (a JSON projection, or an index whose projection is taken).
/// metric: "angular", "euclidean", "manhattan" or "dot"; vector: "mean" or "flat"; frames: rows per clip
/// used; trees: trees in the forest (default 10); seed: the same clips and seed give the same index (with
/// threads=1); append: add the clips to the existing index in one transaction (its own settings apply).
///
/// A rebuild is made beside the old index and swapped in; a failed build leaves the old index as it was.
/// Raises ValueError for a bad clip (naming it) or option, and re-raises what the iterable itself raised.
#[pyfunction]
#[pyo3(signature = (path, clips, *, projection=None, metric="angular", vector="mean", frames=10,
    trees=None, seed=42, threads=1, append=false))]
#[allow(clippy::too_many_arguments)]
pub fn build_index<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
    clips: &Bound<'py, PyAny>,
    projection: Option<&Bound<'py, PyAny>>,
    metric: &str,
    vector: &str,
    frames: i64,
    trees: Option<i64>,
    seed: u64,
    threads: i64,
    append: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dir = convert::path(path, "path")?;
    let whole = |name: &str, value: i64| {
        usize::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| bad_argument(format!("{name}={value}: it must be at least 1")))
    };
    if append && projection.is_some() {
        return Err(bad_argument(
            "projection= goes with a new index: an append applies the index's own",
        ));
    }
    let projection = match projection {
        None => None,
        Some(given) if given.is_instance_of::<PyString>() => {
            Some(ProjectionChoice::parse(&given.extract::<String>()?))
        }
        Some(given) => Some(ProjectionChoice::File(convert::path(given, "projection")?)),
    };
    let options = BuildOptions {
        metric: metric
            .parse::<Metric>()
            .map_err(|e| bad_argument(format!("metric: {e}")))?,
        form: vector
            .parse::<Form>()
            .map_err(|e| bad_argument(format!("vector: {e}")))?,
        frames: whole("frames", frames)?,
        trees: trees.map(|t| whole("trees", t)).transpose()?,
        seed,
        threads: whole("threads", threads)?,
        projection,
    };
    let source = Clips::given(clips)?;
    let failed: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    // The build runs on the package's pool; this thread meanwhile looks for Ctrl-C, which only the main thread
    // sees, and a KeyboardInterrupt stops the reading of the clips at the next one.
    let built = py.detach(|| {
        pool::install_watched(
            || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let builder = IndexBuilder::new(&dir).options(options);
                    let inputs = source.inputs(&failed);
                    if append {
                        builder.append(inputs)
                    } else {
                        builder.rebuild(inputs)
                    }
                }))
            },
            || {
                if let Err(error) = Python::attach(|py| py.check_signals()) {
                    lock(&failed).get_or_insert(error);
                }
            },
        )
    });
    // The iterable's own exception (a generator that raised, KeyboardInterrupt) is what the caller should see,
    // rather than the build's report of a reader that failed.
    if let Some(error) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error);
    }
    let built = match built {
        Ok(Ok(result)) => result.map_err(|e| to_py(&e, Asked::Files))?,
        Ok(Err(panic)) => return Err(internal(panic)),
        Err(error) => return Err(to_py(&error, Asked::Files)),
    };
    built_dict(py, &built)
}

/// Where the clips come from.
enum Clips {
    Files(Vec<PathBuf>),
    Iterable(Py<PyIterator>),
}

impl Clips {
    fn given(given: &Bound<'_, PyAny>) -> PyResult<Clips> {
        if given.is_instance_of::<PyString>() || given.hasattr("__fspath__")? {
            return Ok(Clips::Files(vec![convert::path(given, "clips")?]));
        }
        if given.is_instance_of::<PyList>() || given.is_instance_of::<PyTuple>() {
            let first = given.get_item(0).ok();
            if let Some(first) = first
                && (first.is_instance_of::<PyString>() || first.hasattr("__fspath__")?)
            {
                return Ok(Clips::Files(given.extract::<Vec<PathBuf>>().map_err(
                    |_| bad_argument("clips: a list of paths, or of clip dicts"),
                )?));
            }
        }
        let iterator = given
            .try_iter()
            .map_err(|_| bad_argument("clips: an iterable of clip dicts, or a path"))?;
        Ok(Clips::Iterable(iterator.unbind()))
    }

    fn inputs<'a>(&'a self, failed: &'a std::sync::Mutex<Option<PyErr>>) -> Vec<ClipInput<'a>> {
        match self {
            Clips::Files(paths) => paths.iter().cloned().map(ClipInput::Path).collect(),
            Clips::Iterable(iterator) => vec![ClipInput::Clips {
                name: "clips".into(),
                clips: Box::new(TakenClips {
                    iterator,
                    taken: 0,
                    failed,
                }),
            }],
        }
    }
}

/// The clips of a Python iterator as the library's clips, each dict's arrays read as they are (no JSON).
struct TakenClips<'a> {
    iterator: &'a Py<PyIterator>,
    taken: usize,
    failed: &'a std::sync::Mutex<Option<PyErr>>,
}

impl Iterator for TakenClips<'_> {
    type Item = soundalike::Result<ClipRecord>;

    /// The next clip, taking the interpreter's lock for that moment only; an exception from the iterator or a
    /// dict that is not a clip is kept for the caller and ends the build with an error.
    fn next(&mut self) -> Option<Self::Item> {
        // A KeyboardInterrupt the calling thread saw (see `build_index`), or the iterable's error: Ctrl-C is
        // seen between clips, whatever the iterable (a list's iterator runs no Python code that would see it),
        // and the build then stops and leaves the index as it was.
        if lock(self.failed).is_some() {
            return Some(Err(anyhow::anyhow!("interrupted").into()));
        }
        let next = Python::attach(|py| -> PyResult<Option<ClipRecord>> {
            let mut iterator = self.iterator.bind(py).clone();
            let Some(item) = iterator.next().transpose()? else {
                return Ok(None);
            };
            let clip = clip_record(&item)
                .map_err(|e| bad_argument(format!("clips[{}]: {}", self.taken, e.value(py))))?;
            Ok(Some(clip))
        });
        match next {
            Ok(Some(clip)) => {
                self.taken += 1;
                Some(Ok(clip))
            }
            Ok(None) => None,
            Err(error) => {
                *lock(self.failed) = Some(error);
                Some(Err(anyhow::anyhow!(
                    "the clips' iterable raised an exception"
                )
                .into()))
            }
        }
    }
}

/// A clip dict as the library's clip.
fn clip_record(item: &Bound<'_, PyAny>) -> PyResult<ClipRecord> {
    let clip = item
        .cast::<PyDict>()
        .map_err(|_| bad_argument("not a clip dict"))?;
    let get = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        clip.get_item(key)?
            .ok_or_else(|| bad_argument(format!("the clip has no \"{key}\"")))
    };
    let video_id: String = get("video_id")?
        .extract()
        .map_err(|_| bad_argument("video_id: not a str"))?;
    let time = |key: &str| -> PyResult<f64> {
        get(key)?
            .extract()
            .map_err(|_| bad_argument(format!("{key}: not a number of seconds")))
    };
    let labels: Vec<i64> = get("labels")?
        .extract()
        .map_err(|_| bad_argument("labels: not a list of class indices"))?;
    let rows = get("embedding")?
        .extract::<PyArrayLike2<'_, f32, AllowTypeChange>>()
        .map_err(|e| bad_argument(format!("embedding: not a 2-D array of numbers: {e}")))?;
    if rows.shape()[1] == 0 {
        return Err(bad_argument("embedding: rows of no values"));
    }
    let embedding = rows
        .as_array()
        .outer_iter()
        .map(|row| row.iter().copied().collect())
        .collect();
    Ok(ClipRecord {
        video_id,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
        labels,
        embedding,
    })
}

/// The iterable's error, kept for the caller.
fn lock(failed: &std::sync::Mutex<Option<PyErr>>) -> std::sync::MutexGuard<'_, Option<PyErr>> {
    // A poisoned lock only means a panic elsewhere; the error it holds is whole.
    failed.lock().unwrap_or_else(|p| p.into_inner())
}

fn built_dict<'py>(py: Python<'py>, built: &Built) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("clips", built.clips)?;
    dict.set_item("read", built.read)?;
    dict.set_item("added", built.added)?;
    dict.set_item("replaced", built.replaced)?;
    dict.set_item("trees", built.trees)?;
    dict.set_item("bytes", built.bytes)?;
    // The breadth a new vector's walk takes by default, measured on the index after this write (None when the
    // index's default is the exact scan): as `info()["settings"]["held_out"]` shows it.
    let held_out = match built.held_out {
        Some(measured) => {
            let held_out = PyDict::new(py);
            held_out.set_item("breadth", measured.breadth)?;
            held_out.set_item("recall", measured.recall)?;
            held_out.set_item("probes", measured.probes)?;
            Some(held_out)
        }
        None => None,
    };
    dict.set_item("held_out", held_out)?;
    Ok(dict)
}
