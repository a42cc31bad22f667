//! Audio files to embedding rows, in-process: `soundalike.Embedder`, VGGish's weights loaded once per process
//! (a second Embedder of the same files reuses them: loading 288 MB is the costly part), or a MAX service.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};

use numpy::PyArray2;
use numpy::ndarray::Array2;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyTuple};
use soundalike::UsageError;
use soundalike::audio::LogMel;
use soundalike::audio::source::{Embedded, Located, Source, SourceOptions};
use soundalike::audio::{EMBEDDING_LEN, Window, decode_bytes};

use crate::convert;
use crate::errors::{Asked, bad_argument, run};
use crate::pool::PerProcess;

/// An audio back end made once: VGGish's weights and PCA parameters loaded (or a MAX service's address), and the
/// most audio it embeds. Every audio call goes through one, rather than naming the files on every call.
///
/// weights, pca: VGGish's weight file and PCA parameters (default: $SOUNDALIKE_WEIGHTS and $SOUNDALIKE_PCA,
/// else the official files in ~/.local/share/soundalike), loaded when the Embedder is made (288 MB, about a
/// second; a second Embedder of the same files in the process shares them). service: a MAX Audio Embedding
/// Generator's URL instead of the weights. max_seconds: the most audio embedded from one file (default 1200).
///
/// Raises FileNotFoundError when the weights are missing, saying where to get them.
#[pyclass(frozen, module = "soundalike", name = "Embedder")]
pub struct PyEmbedder {
    source: Arc<Source>,
    max_seconds: Option<f64>,
    /// For `repr`: the files or the service.
    loaded: Loaded,
}

#[pymethods]
impl PyEmbedder {
    #[new]
    #[pyo3(signature = (*, weights=None, pca=None, service=None, max_seconds=None))]
    fn new(
        py: Python<'_>,
        weights: Option<&Bound<'_, PyAny>>,
        pca: Option<&Bound<'_, PyAny>>,
        service: Option<String>,
        max_seconds: Option<f64>,
    ) -> PyResult<Self> {
        let options = SourceOptions {
            weights: weights.map(|w| convert::path(w, "weights")).transpose()?,
            pca: pca.map(|p| convert::path(p, "pca")).transpose()?,
            service,
        };
        PyEmbedder::load(py, &options, max_seconds)
    }

    /// The VGGish embedding of an audio file (WAV, FLAC, MP3, Ogg Vorbis), given by its path or as its bytes
    /// (bytes, bytearray: a file held in memory, as `ray.data.read_binary_files` gives it): a (rows, 128)
    /// uint8 array, one row per 0.96 s, as AudioSet's embeddings and `soundalike embed` give it. start, end:
    /// the stretch of the file, in seconds.
    ///
    /// Raises FileNotFoundError when the file is missing, ValueError for audio that cannot be decoded or is
    /// too short.
    #[pyo3(signature = (source, *, start=None, end=None))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'py, PyAny>,
        start: Option<f64>,
        end: Option<f64>,
    ) -> PyResult<Bound<'py, PyArray2<u8>>> {
        let (embedded, _) = self.embed_source(py, source, start, end)?;
        rows_array(py, &embedded)
    }

    /// An audio file's clip as `soundalike embed --json` writes it: a dict with video_id, start_time and
    /// end_time (the stretch embedded, in seconds of the file), labels (empty) and embedding ((rows, 128)
    /// uint8), the keys and types of `read_tfrecords`' clips, ready for `build_index`.
    ///
    /// source: a path, or the file's bytes; video_id: the clip's id (default: the file's,
    /// `soundalike.file_id(path)`, as `soundalike embed` names it; a file given as bytes has no path, so it needs
    /// one). Raises as `embed` does.
    #[pyo3(signature = (source, *, video_id=None, start=None, end=None))]
    fn embed_clip<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'py, PyAny>,
        video_id: Option<String>,
        start: Option<f64>,
        end: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let no_id = || {
            bad_argument(
                "video_id= is needed for audio given as bytes (it has no path to name it by)",
            )
        };
        // Refused before the audio is embedded, not after.
        if video_id.is_none()
            && (source.is_instance_of::<PyBytes>() || source.is_instance_of::<PyByteArray>())
        {
            return Err(no_id());
        }
        let (embedded, path) = self.embed_source(py, source, start, end)?;
        let video_id = match (video_id, path) {
            (Some(id), _) => id,
            (None, Some(path)) => {
                soundalike::clip::file_id(&path).map_err(|e| bad_argument(e.to_string()))?
            }
            (None, None) => return Err(no_id()),
        };
        let clip = PyDict::new(py);
        clip.set_item("video_id", video_id)?;
        clip.set_item("start_time", embedded.start)?;
        clip.set_item("end_time", embedded.start + embedded.seconds)?;
        clip.set_item("labels", Vec::<i64>::new())?;
        clip.set_item("embedding", rows_array(py, &embedded)?)?;
        Ok(clip)
    }

    /// Pickling (a Ray worker, a process pool): what unpickles is an Embedder made again from the same
    /// arguments, its weights loaded from the same files on that machine; no weights travel.
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let keywords = PyDict::new(py);
        match &self.loaded {
            Loaded::Files(weights, pca) => {
                keywords.set_item("weights", weights)?;
                keywords.set_item("pca", pca)?;
            }
            Loaded::Service(url) => keywords.set_item("service", url)?,
        }
        keywords.set_item("max_seconds", self.max_seconds)?;
        Ok((PyTuple::empty(py), keywords))
    }

    fn __repr__(&self) -> String {
        match &self.loaded {
            Loaded::Files(weights, pca) => format!(
                "soundalike.Embedder(weights={:?}, pca={:?})",
                weights.display().to_string(),
                pca.display().to_string()
            ),
            Loaded::Service(url) => format!("soundalike.Embedder(service={url:?})"),
        }
    }
}

impl PyEmbedder {
    /// The back end `options` name, loaded (or the one already loaded from the same files); its warnings (a
    /// weight file whose name promises another hash) issued as Python warnings.
    pub fn load(
        py: Python<'_>,
        options: &SourceOptions,
        max_seconds: Option<f64>,
    ) -> PyResult<PyEmbedder> {
        let (source, loaded, warnings) = run(py, Asked::Files, || {
            let mut warnings = Vec::new();
            let (source, loaded) = source(options, &mut warnings)?;
            Ok((source, loaded, warnings))
        })?;
        crate::index::warn(py, &warnings)?;
        Ok(PyEmbedder {
            source,
            max_seconds,
            loaded,
        })
    }

    /// The embedding of a path's file or of a file's bytes, and the path when it was one.
    fn embed_source(
        &self,
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        start: Option<f64>,
        end: Option<f64>,
    ) -> PyResult<(Embedded, Option<PathBuf>)> {
        if let Some(bytes) = held_bytes(source) {
            return Ok((self.embed_bytes(py, bytes, start, end)?, None));
        }
        let path = convert::path(source, "source")?;
        Ok((self.embed_file(py, &path, start, end)?, Some(path)))
    }

    /// The file's embedding from `start` to `end` seconds, with the interpreter's lock released.
    pub fn embed_file(
        &self,
        py: Python<'_>,
        path: &Path,
        start: Option<f64>,
        end: Option<f64>,
    ) -> PyResult<Embedded> {
        run(py, Asked::Files, || {
            let window = self.window(start, end)?;
            self.source.embed_file(path, window, &LogMel::new(), |_| {})
        })
    }

    /// The stretch from `start` to `end` seconds, within this Embedder's most audio; a usage error when it is
    /// not one (an end before its start, a negative start).
    fn window(&self, start: Option<f64>, end: Option<f64>) -> soundalike::Result<Window> {
        let window = Window {
            start,
            end,
            max_seconds: self.max_seconds,
        };
        window.check().map_err(UsageError::new)?;
        Ok(window)
    }

    /// The embedding of an audio file held in memory, as [`PyEmbedder::embed_file`] embeds one on disk.
    pub fn embed_bytes(
        &self,
        py: Python<'_>,
        bytes: Vec<u8>,
        start: Option<f64>,
        end: Option<f64>,
    ) -> PyResult<Embedded> {
        run(py, Asked::Files, || {
            let window = self.window(start, end)?;
            let audio = decode_bytes(bytes, window)
                .map_err(|e| anyhow::anyhow!("the audio's bytes: {e}"))?;
            self.source
                .embed_audio(&audio, start.unwrap_or(0.0), &LogMel::new(), |_| {})
                .map_err(|e| anyhow::anyhow!("the audio's bytes: {e}").into())
        })
    }
}

/// Embedding rows as a (rows, 128) uint8 array.
fn rows_array<'py>(py: Python<'py>, embedded: &Embedded) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let rows = embedded.rows.len();
    let bytes: Vec<u8> = embedded.rows.iter().flatten().copied().collect();
    let array = Array2::from_shape_vec((rows, EMBEDDING_LEN), bytes)
        .map_err(|e| bad_argument(format!("internal shape error: {e}")))?;
    Ok(PyArray2::from_owned_array(py, array))
}

/// The bytes of an audio file held in memory, when `source` is bytes or a bytearray rather than a path.
fn held_bytes(source: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(bytes) = source.cast::<PyBytes>() {
        return Some(bytes.as_bytes().to_vec());
    }
    source
        .cast::<PyByteArray>()
        .ok()
        .map(|bytes| bytes.to_vec())
}

/// What a loaded source was loaded from: the same files (or service) again reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loaded {
    Files(PathBuf, PathBuf),
    Service(String),
}

/// The source loaded last. One, not a cache of many: a process embeds with one set of weights.
type Held = Mutex<Option<(Loaded, Arc<Source>)>>;

/// Each process's own lock ([`PerProcess`]): a child forked while a thread of its parent loaded weights
/// would otherwise find the lock held for ever. A child starts from what its parent had loaded, when it can.
static SOURCE: PerProcess<Held> = PerProcess::new();

/// The loaded source for `options`, loading it when none is, or another one was.
fn source(
    options: &SourceOptions,
    warnings: &mut Vec<String>,
) -> soundalike::Result<(Arc<Source>, Loaded)> {
    let located = options.locate()?;
    let key = match (&located, &options.service) {
        (Located::Local { weights, pca }, _) => Loaded::Files(weights.clone(), pca.clone()),
        (Located::Service(_), service) => Loaded::Service(service.clone().unwrap_or_default()),
    };
    // Held while loading: a second thread asking for the same weights waits for them rather than loading them
    // again. A poisoned lock only means a load panicked; what it holds is still whole.
    let Ok(held) =
        SOURCE.get(|parent| Ok::<Held, Infallible>(Mutex::new(parent.and_then(inherited))));
    let mut loaded = held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((held, source)) = loaded.as_ref()
        && *held == key
    {
        return Ok((Arc::clone(source), key));
    }
    let source = Arc::new(located.load(|warning| warnings.push(warning))?);
    *loaded = Some((key.clone(), Arc::clone(&source)));
    Ok((source, key))
}

/// What a forked child's parent had loaded, unless the parent's lock was held at the fork.
fn inherited(parent: &Held) -> Option<(Loaded, Arc<Source>)> {
    match parent.try_lock() {
        Ok(loaded) => loaded.clone(),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().clone(),
        Err(TryLockError::WouldBlock) => None,
    }
}
