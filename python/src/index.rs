//! `soundalike.Index`: an index opened once and asked many times, from as many threads as a notebook likes
//! (the interpreter's lock is released during every search).

use std::path::PathBuf;

use numpy::ndarray::Array2;
use numpy::{AllowTypeChange, PyArray1, PyArray2, PyArrayLike3};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use soundalike::audio::source::SourceOptions;
use soundalike::{Hit, Query, QueryKind};

use crate::audio::PyEmbedder;
use crate::convert::{self, PySearch};
use crate::errors::{Asked, bad_argument, exception, run, run_here};

/// An index made by `soundalike index` or `soundalike.build_index`, opened once.
///
/// Opening checks its format, settings and that its data file is whole. One Index serves every thread
/// (searches release the interpreter's lock); a second Index of the same directory shares the first's files.
///
/// embedder: the `Embedder` that embeds `recommend(audio=...)`'s files (default: one made at the first audio
/// query, with the weights found as `soundalike embed` finds them).
///
/// Raises FileNotFoundError when there is no index at `path`, DamagedIndexError when its files are damaged.
#[pyclass(frozen, module = "soundalike", name = "Index")]
pub struct PyIndex {
    index: soundalike::Index,
    path: PathBuf,
    /// The audio back end for `recommend(audio=...)`; none given: the default one (the weights found as
    /// `soundalike embed` finds them), made at the first audio query.
    embedder: Option<Py<PyEmbedder>>,
}

#[pymethods]
impl PyIndex {
    #[new]
    #[pyo3(signature = (path, *, embedder=None))]
    fn new(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        embedder: Option<Py<PyEmbedder>>,
    ) -> PyResult<Self> {
        let path = convert::path(path, "path")?;
        let index = run_here(py, Asked::Files, || soundalike::Index::open(&path))?;
        Ok(PyIndex {
            index,
            path,
            embedder,
        })
    }

    /// The directory the index was opened from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// How many clips the index holds.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let clips = run_here(py, Asked::Files, || self.index.len())?;
        Ok(usize::try_from(clips).unwrap_or(usize::MAX))
    }

    /// Pickling (a Ray worker, a process pool): what unpickles is the index opened again from its path, with
    /// its Embedder made again from the same arguments; nothing of the open index travels, so the path must
    /// name the index where it is unpickled.
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let keywords = PyDict::new(py);
        keywords.set_item("embedder", self.embedder.as_ref().map(|e| e.clone_ref(py)))?;
        Ok((PyTuple::new(py, [&self.path])?, keywords))
    }

    /// Clips `offset` to `offset + limit` (in the index's item order) as the index searches them, as columns:
    /// video_id (list of str), start_time, end_time (float64 arrays), labels (list of lists), vector ((n, d)
    /// float32: the projected vector in search form, unit length on an angular index), and total (the clips
    /// the index holds). For `soundalike.arrow.export`, which makes Arrow tables of them.
    #[pyo3(signature = (offset=0, limit=None))]
    fn _searched<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let columns = run_here(py, Asked::Files, || {
            let reader = self.index.reader()?;
            let searched = reader.searched()?;
            let total = searched.len();
            let first = offset.min(total);
            let last = limit.map_or(total, |limit| first.saturating_add(limit).min(total));
            let mut columns = Searched {
                dimensions: searched.dimensions(),
                total,
                ..Searched::default()
            };
            for n in first..last {
                let clip = searched.get(n)?;
                columns.vectors.extend_from_slice(clip.vector);
                columns.video_ids.push(clip.video_id);
                columns.labels.push(clip.labels);
                columns.start_times.push(clip.start_time);
                columns.end_times.push(clip.end_time);
            }
            Ok(columns)
        })?;
        let rows = columns.video_ids.len();
        let vectors = Array2::from_shape_vec((rows, columns.dimensions), columns.vectors)
            .map_err(|e| bad_argument(format!("internal shape error: {e}")))?;
        let dict = PyDict::new(py);
        dict.set_item("video_id", columns.video_ids)?;
        dict.set_item("start_time", PyArray1::from_vec(py, columns.start_times))?;
        dict.set_item("end_time", PyArray1::from_vec(py, columns.end_times))?;
        dict.set_item("labels", columns.labels)?;
        dict.set_item("vector", PyArray2::from_owned_array(py, vectors))?;
        dict.set_item("total", columns.total)?;
        Ok(dict)
    }

    /// How this index answers a search: a dict with method ("exact", "graph" or "trees"), default (whether
    /// the index chose it), rerank (candidates re-ranked by their frames, 0: none), candidates (found per
    /// answer) and description (as `recommend` describes it, for a query by vector). Raises ValueError for a
    /// search the index cannot do, as asking it would.
    #[pyo3(signature = (*, k=10, search=None))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        k: i64,
        search: Option<PyRef<'py, PySearch>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = convert::options(k, None, search.as_deref(), false)?;
        let plan = run_here(py, Asked::Files, || {
            soundalike::SearchPlan::resolve(&options, &self.index.settings()?, 0)
        })?;
        let dict = PyDict::new(py);
        dict.set_item("method", plan.search.kind())?;
        dict.set_item("default", plan.default)?;
        dict.set_item("rerank", plan.rerank)?;
        dict.set_item("candidates", plan.candidates)?;
        dict.set_item("description", plan.describe(true))?;
        Ok(dict)
    }

    /// An embedding's vector as the index compares it (projected, unit length on an angular index): what a
    /// vector database loaded with `soundalike.arrow.export(index)` is asked with, for a clip or an upload the
    /// index does not hold. embedding: (rows, 128) values (uint8 as AudioSet stores them) or a clip dict, rows
    /// from `start` on. Returns a float32 array of the index's dimensions.
    #[pyo3(signature = (embedding, *, start=None))]
    fn vector<'py>(
        &self,
        py: Python<'py>,
        embedding: &Bound<'py, PyAny>,
        start: Option<f64>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let rows = convert::rows(embedding)?;
        let start = start_row(start)?;
        let vector = run_here(py, Asked::Files, || {
            self.index.reader()?.query_vector(&rows, start)
        })?;
        Ok(PyArray1::from_vec(py, vector))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "soundalike.Index({:?}, clips={})",
            self.path.display().to_string(),
            self.__len__(py)?
        ))
    }

    /// The index's settings, size on disk and ten most common labels: the dict `soundalike info --json`
    /// writes (keys "index", "settings", "size_bytes", "top_labels").
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = run_here(py, Asked::Files, || self.index.info())?;
        // Through Python's own JSON reader: the dict is then exactly what `info --json` parses to.
        py.import("json")?
            .call_method1("loads", (info.to_json().to_string(),))
    }

    /// The clips that sound most like one query, nearest first: a list of dicts with the keys of a
    /// `soundalike recommend --json` result (rank, video_id, distance, similarity on an angular index,
    /// labels, label_names, start_time, end_time, url, matched_at for audio, and explain when asked).
    ///
    /// Give exactly one query:
    ///   id: a clip of the index, by its video_id (never among its own neighbours; KeyError when absent);
    ///   embedding: rows of 128 values, a (rows, 128) array (uint8 as AudioSet stores them), or a clip dict;
    ///     rows from `start` on are used;
    ///   audio: an audio file (WAV, FLAC, MP3, Ogg Vorbis), embedded in-process by the index's Embedder
    ///     (Index(path, embedder=...)); from `start` to `end` seconds, each window of the index's frames asked
    ///     and the answers merged, each hit saying where it matched best (matched_at, seconds).
    ///
    /// k neighbours; labels: only clips with one of these labels (names or class indices); search: how to
    /// search and re-rank, a `Search` (Search(ef=40), Search(exact=True, rerank=0); None: the index's default).
    /// explain=True: each hit also says why, as `recommend --explain --json` does: hit["explain"] holds the
    /// labels with the largest shares of its similarity ("labels", "rest": they add up to "similarity") and the
    /// seconds that matched best ("matched").
    #[pyo3(signature = (*, id=None, embedding=None, audio=None, k=10, labels=None, search=None, start=None,
        end=None, explain=false))]
    // The nine keywords Python sees, one query's kinds and window among them: a struct here would only move
    // them into another list.
    #[allow(clippy::too_many_arguments)]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        id: Option<String>,
        embedding: Option<&Bound<'py, PyAny>>,
        audio: Option<&Bound<'py, PyAny>>,
        k: i64,
        labels: Option<&Bound<'py, PyAny>>,
        search: Option<PyRef<'py, PySearch>>,
        start: Option<f64>,
        end: Option<f64>,
        explain: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = convert::options(k, labels, search.as_deref(), explain)?;
        let given = [
            (QueryKind::Id, id.is_some()),
            (QueryKind::Embedding, embedding.is_some()),
            (QueryKind::Audio, audio.is_some()),
        ];
        let kind = QueryKind::one_given(&given)
            .map_err(|_| bad_argument("give exactly one query: id=, embedding= or audio="))?;
        if kind != QueryKind::Audio && end.is_some() {
            return Err(bad_argument("end= goes with audio="));
        }
        let (query, asked) = match (kind, id, embedding, audio) {
            (QueryKind::Audio, _, _, Some(audio)) => {
                let path = convert::path(audio, "audio")?;
                let audio = self.embedder(py)?.get().embed_file(py, &path, start, end)?;
                let file = Some(path);
                (Query::Audio { audio, file }, Asked::Files)
            }
            (QueryKind::Id, Some(id), ..) => {
                if start.is_some() {
                    return Err(bad_argument(
                        "start= goes with embedding= (a row) or audio= (seconds)",
                    ));
                }
                (Query::Id(id), Asked::Ids)
            }
            (_, _, Some(embedding), _) => {
                let rows = convert::rows(embedding)?;
                let start = start_row(start)?;
                (Query::Embedding { rows, start }, Asked::Files)
            }
            _ => {
                return Err(bad_argument(
                    "give exactly one query: id=, embedding= or audio=",
                ));
            }
        };
        // An audio file's windows are asked in parallel, on the package's pool; one question on this thread.
        let hits = if kind == QueryKind::Audio {
            run(py, asked, || self.index.recommend(&query, &options))?
        } else {
            run_here(py, asked, || self.index.recommend(&query, &options))?
        };
        convert::hit_list(py, &hits)
    }

    /// Many queries at once, answered in one read of the index (what a notebook's loop should call):
    /// `ids, scores = index.recommend_batch(queries, k=10)`.
    ///
    /// queries: a list of video_ids, or an (n, frames, 128) array of embeddings (rows from `start` on).
    /// Returns two (n, k) arrays (k at most the index's clips): the neighbours' video_ids (dtype object;
    /// None where a query has fewer than k neighbours, as a label filter may leave) and their cosine similarities (float32; NaN where no
    /// neighbour), or their distances with distances=True (and always on an index whose metric has no
    /// cosine). A query that cannot be asked raises, naming its position (KeyError for an unknown id).
    #[pyo3(signature = (queries, *, k=10, labels=None, search=None, start=None, distances=false))]
    fn recommend_batch<'py>(
        &self,
        queries: &Bound<'py, PyAny>,
        k: i64,
        labels: Option<&Bound<'py, PyAny>>,
        search: Option<PyRef<'py, PySearch>>,
        start: Option<f64>,
        distances: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = queries.py();
        let options = convert::options(k, labels, search.as_deref(), false)?;
        let (queries, asked) = batch_queries(queries, start_row(start)?)?;
        let (answers, clips) = run(py, asked, || {
            Ok((
                self.index.recommend_batch(&queries, &options)?,
                self.index.len()?,
            ))
        })?;
        // No answer holds more clips than the index: k=10**12 must not size the arrays by it.
        let count = options
            .count
            .min(usize::try_from(clips).unwrap_or(usize::MAX));
        let n = answers.len();
        let none = py.None();
        let mut ids: Vec<Py<PyAny>> = Vec::with_capacity(n * count);
        let mut scores: Vec<f32> = Vec::with_capacity(n * count);
        for (position, answer) in answers.into_iter().enumerate() {
            let hits: Vec<Hit> = answer.map_err(|error| {
                exception(error.kind(), format!("queries[{position}]: {error}"), asked)
            })?;
            for slot in 0..count {
                match hits.get(slot) {
                    Some(hit) => {
                        ids.push(PyString::new(py, &hit.video_id).into_any().unbind());
                        scores.push(match hit.similarity {
                            Some(similarity) if !distances => similarity,
                            _ => hit.distance,
                        });
                    }
                    None => {
                        ids.push(none.clone_ref(py));
                        scores.push(f32::NAN);
                    }
                }
            }
        }
        let shape = (n, count);
        let ids = Array2::from_shape_vec(shape, ids)
            .map_err(|e| bad_argument(format!("internal shape error: {e}")))?;
        let scores = Array2::from_shape_vec(shape, scores)
            .map_err(|e| bad_argument(format!("internal shape error: {e}")))?;
        let ids = PyArray2::<Py<PyAny>>::from_owned_object_array(py, ids);
        let scores = PyArray2::from_owned_array(py, scores);
        PyTuple::new(py, [ids.into_any(), scores.into_any()])
    }
}

/// Columns of clips as the index searches them (`Index._searched`).
#[derive(Default)]
struct Searched {
    dimensions: usize,
    total: usize,
    video_ids: Vec<String>,
    labels: Vec<Vec<i64>>,
    start_times: Vec<f64>,
    end_times: Vec<f64>,
    vectors: Vec<f32>,
}

impl PyIndex {
    /// The Embedder for audio queries: the one given, else the default one, made now.
    fn embedder<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyEmbedder>> {
        match &self.embedder {
            Some(embedder) => Ok(embedder.bind(py).clone()),
            None => Bound::new(py, PyEmbedder::load(py, &SourceOptions::default(), None)?),
        }
    }
}

/// `start` as the first embedding row (the command line's `--start` with `--embedding`).
fn start_row(start: Option<f64>) -> PyResult<usize> {
    match start {
        None => Ok(0),
        Some(row) => Query::start_row(row).ok_or_else(|| {
            bad_argument(format!(
                "start={row}: with embedding= it is a row number (0, 1, ...)"
            ))
        }),
    }
}

/// A batch as the library's queries: video_ids (str), or an (n, frames, 128) array of embeddings.
fn batch_queries(given: &Bound<'_, PyAny>, start: usize) -> PyResult<(Vec<Query>, Asked)> {
    if given.is_instance_of::<PyString>() {
        return Err(bad_argument(
            "queries: a list of video_ids or an (n, frames, 128) array, not one str",
        ));
    }
    if let Ok(ids) = given.extract::<Vec<String>>() {
        return Ok((ids.into_iter().map(Query::Id).collect(), Asked::Ids));
    }
    let array = given
        .extract::<PyArrayLike3<'_, f32, AllowTypeChange>>()
        .map_err(|e| {
            bad_argument(format!(
                "queries: neither a list of video_ids nor an (n, frames, 128) array of numbers: {e}"
            ))
        })?;
    let view = array.as_array();
    let queries = view
        .outer_iter()
        .map(|clip| Query::Embedding {
            rows: clip
                .outer_iter()
                .map(|row| row.iter().copied().collect())
                .collect(),
            start,
        })
        .collect();
    Ok((queries, Asked::Files))
}

/// Issues the library's warnings as Python `UserWarning`s.
pub fn warn(py: Python<'_>, warnings: &[String]) -> PyResult<()> {
    for warning in warnings {
        let message = std::ffi::CString::new(warning.replace('\0', " "))
            .map_err(|e| bad_argument(e.to_string()))?;
        PyErr::warn(py, py.get_type::<PyUserWarning>().as_any(), &message, 1)?;
    }
    Ok(())
}
