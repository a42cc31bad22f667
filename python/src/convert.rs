//! Python values to the library's and back: label lists, search options, embedding rows, hits.
//!
//! The same options as `soundalike recommend` (`k`, `labels`, and in a `Search` `ef`, `exact`, `search_k`,
//! `rerank`), refused where the command line refuses them, so that an answer here equals its `--json` answer.

use std::num::NonZeroUsize;

use numpy::{AllowTypeChange, PyArrayLikeDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use soundalike::{Answer, Hit, QueryOptions, SearchMethod, labels};

use crate::errors::bad_argument;

/// How a question searches, as `soundalike recommend`'s flags say it, made once and passed as `search=`.
///
/// Give at most one of ef (walk the neighbour graph this wide), search_k (search the random-projection trees,
/// inspecting this many nodes) and exact=True (scan every vector); none: the index's default (the exact scan
/// up to about 16,000 clips, the graph above). rerank: the candidates re-ranked by their frames (None: the
/// index's default, 20 on an angular index; 0: none).
#[pyclass(frozen, module = "soundalike", name = "Search")]
#[derive(Clone)]
pub struct PySearch {
    method: SearchMethod,
    rerank: Option<usize>,
}

#[pymethods]
impl PySearch {
    #[new]
    #[pyo3(signature = (*, ef=None, search_k=None, exact=false, rerank=None))]
    fn new(
        ef: Option<i64>,
        search_k: Option<i64>,
        exact: bool,
        rerank: Option<i64>,
    ) -> PyResult<Self> {
        let method = match (exact, search_k, ef) {
            (true, None, None) => SearchMethod::Exact,
            (false, Some(search_k), None) => SearchMethod::Trees {
                search_k: positive("search_k", search_k)?,
            },
            (false, None, Some(ef)) => SearchMethod::Graph {
                ef: positive("ef", ef)?,
            },
            (false, None, None) => SearchMethod::Default,
            _ => {
                return Err(bad_argument(
                    "give at most one of ef=, search_k= and exact=True",
                ));
            }
        };
        let rerank = rerank
            .map(|n| {
                usize::try_from(n)
                    .map_err(|_| bad_argument(format!("rerank={n}: 0 (none) or more")))
            })
            .transpose()?;
        Ok(PySearch { method, rerank })
    }

    /// The same search with another re-rank depth (0: none; None: the index's default).
    #[pyo3(signature = (rerank))]
    fn with_rerank(&self, rerank: Option<usize>) -> PySearch {
        PySearch {
            method: self.method,
            rerank,
        }
    }

    fn __repr__(&self) -> String {
        let method = match self.method {
            SearchMethod::Default => String::new(),
            SearchMethod::Exact => "exact=True".into(),
            SearchMethod::Graph { ef } => format!("ef={ef}"),
            SearchMethod::Trees { search_k } => format!("search_k={search_k}"),
        };
        let rerank = self.rerank.map(|n| format!("rerank={n}"));
        let fields: Vec<String> = [Some(method), rerank]
            .into_iter()
            .flatten()
            .filter(|f| !f.is_empty())
            .collect();
        format!("soundalike.Search({})", fields.join(", "))
    }
}

/// `k`, `labels`, `search=` and `explain=` as one [`QueryOptions`].
pub fn options(
    k: i64,
    labels: Option<&Bound<'_, PyAny>>,
    search: Option<&PySearch>,
    explain: bool,
) -> PyResult<QueryOptions> {
    let search = search.cloned().unwrap_or(PySearch {
        method: SearchMethod::Default,
        rerank: None,
    });
    Ok(QueryOptions {
        count: positive("k", k)?.get(),
        labels: match labels {
            None => Vec::new(),
            Some(given) => label_indices(given)?,
        },
        search: search.method,
        rerank: search.rerank,
        explain,
    })
}

fn positive(name: &str, value: i64) -> PyResult<NonZeroUsize> {
    usize::try_from(value)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| bad_argument(format!("{name}={value}: it must be at least 1")))
}

/// Labels given as names or class indices, one or a list ("Jazz", ["Jazz", 216], "Jazz,Blues"), each once in
/// the order given; an unknown name is a `ValueError` suggesting the nearest names, as `--label` says.
pub fn label_indices(given: &Bound<'_, PyAny>) -> PyResult<Vec<u16>> {
    let items: Vec<Bound<'_, PyAny>> = if given.is_instance_of::<PyString>() {
        vec![given.clone()]
    } else {
        given
            .try_iter()
            .map_err(|_| bad_argument("labels: a label name or index, or a list of them"))?
            .collect::<PyResult<_>>()?
    };
    let mut asked = Vec::new();
    for item in items {
        let set = if let Ok(text) = item.extract::<String>() {
            labels::parse_label_list(&text)
        } else if let Ok(index) = item.extract::<i64>() {
            labels::parse_label_list(&index.to_string())
        } else {
            return Err(bad_argument(format!(
                "labels: {} is neither a label name nor a class index",
                item.repr()?
            )));
        };
        let set = set.map_err(|e| bad_argument(e.to_string()))?;
        for label in set.indices() {
            if !asked.contains(&label) {
                asked.push(label);
            }
        }
    }
    Ok(asked)
}

/// An embedding's rows: a 2-D array-like of 128 values per row (uint8 as AudioSet stores them, or any number
/// type), or a clip dict holding one under "embedding".
pub fn rows(given: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<f32>>> {
    let given = match given.cast::<PyDict>() {
        Ok(clip) => clip
            .get_item("embedding")?
            .ok_or_else(|| bad_argument("embedding: the clip dict has no \"embedding\""))?,
        Err(_) => given.clone(),
    };
    let array = given
        .extract::<PyArrayLikeDyn<'_, f32, AllowTypeChange>>()
        .map_err(|e| bad_argument(format!("embedding: not an array of numbers: {e}")))?;
    let shape = array.shape().to_vec();
    if shape.len() != 2 {
        return Err(bad_argument(format!(
            "embedding: expected a 2-D array of rows (rows, 128), got shape {shape:?}"
        )));
    }
    let view = array.as_array();
    Ok(view
        .outer_iter()
        .map(|row| row.iter().copied().collect())
        .collect())
}

/// Hits as a list of dicts with the keys of a `recommend --json` result, in its order: the library's one
/// serialisation of a hit, read by Python's own JSON reader (as `Index.info` is), so that a dict here is what
/// the command line's line parses to.
pub fn hit_list<'py>(py: Python<'py>, hits: &[Hit]) -> PyResult<Bound<'py, PyAny>> {
    let json = Answer::new("", hits).results_json();
    py.import("json")?.call_method1("loads", (json,))
}

/// A path argument: a str or an os.PathLike.
pub fn path(given: &Bound<'_, PyAny>, what: &str) -> PyResult<std::path::PathBuf> {
    given
        .extract::<std::path::PathBuf>()
        .map_err(|_| bad_argument(format!("{what}: expected a path (str or os.PathLike)")))
}
