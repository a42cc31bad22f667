//! Python values to the library's and back: label lists, search options, embedding rows, hits.
//!
//! The same options as `soundalike recommend` (`k`, `labels`, `ef`, `exact`, `search_k`, `rerank`), refused
//! where the command line refuses them, so that an answer here equals its `--json` answer.

use std::num::NonZeroUsize;

use numpy::{AllowTypeChange, PyArrayLikeDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use soundalike::{Hit, QueryOptions, SearchMethod, labels};

use crate::errors::bad_argument;

/// `k`, `labels`, `rerank`, `ef`, `exact` and `search_k` as one [`QueryOptions`].
pub struct Search<'a, 'py> {
    pub k: i64,
    pub labels: Option<&'a Bound<'py, PyAny>>,
    pub rerank: Option<i64>,
    pub ef: Option<i64>,
    pub exact: bool,
    pub search_k: Option<i64>,
}

impl Search<'_, '_> {
    pub fn options(&self) -> PyResult<QueryOptions> {
        let count = positive("k", self.k)?;
        let search = match (self.exact, self.search_k, self.ef) {
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
        let rerank = match self.rerank {
            None => None,
            Some(n) => Some(
                usize::try_from(n)
                    .map_err(|_| bad_argument(format!("rerank={n}: 0 (none) or more")))?,
            ),
        };
        Ok(QueryOptions {
            count: count.get(),
            labels: match self.labels {
                None => Vec::new(),
                Some(given) => label_indices(given)?,
            },
            search,
            rerank,
        })
    }
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

/// One hit as a dict with the keys of a `recommend --json` result, in its order.
pub fn hit_dict<'py>(py: Python<'py>, rank: usize, hit: &Hit) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("rank", rank)?;
    dict.set_item("video_id", &hit.video_id)?;
    dict.set_item("distance", hit.distance)?;
    if let Some(similarity) = hit.similarity {
        dict.set_item("similarity", similarity)?;
    }
    dict.set_item("labels", PyList::new(py, &hit.labels)?)?;
    dict.set_item("label_names", PyList::new(py, hit.label_names())?)?;
    dict.set_item("start_time", hit.start_time)?;
    dict.set_item("end_time", hit.end_time)?;
    dict.set_item("url", hit.url())?;
    if let Some(at) = hit.matched_at {
        dict.set_item("matched_at", at)?;
    }
    Ok(dict)
}

pub fn hit_list<'py>(py: Python<'py>, hits: &[Hit]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (rank, hit) in hits.iter().enumerate() {
        list.append(hit_dict(py, rank + 1, hit)?)?;
    }
    Ok(list)
}

/// A path argument: a str or an os.PathLike.
pub fn path(given: &Bound<'_, PyAny>, what: &str) -> PyResult<std::path::PathBuf> {
    given
        .extract::<std::path::PathBuf>()
        .map_err(|_| bad_argument(format!("{what}: expected a path (str or os.PathLike)")))
}
