//! Audio files to embedding rows, in-process: VGGish's weights are loaded once per process (a second call with
//! the same files reuses them; 288 MB and about a second to load), or a MAX service is asked.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, TryLockError};

use pyo3::prelude::*;
use soundalike::UsageError;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source::{Embedded, Located, Source, SourceOptions};

use crate::convert;
use crate::errors::{Asked, run};
use crate::pool::PerProcess;

/// Where the embedding comes from and which stretch of the file: the keyword arguments `embed` and
/// `Index.recommend(audio=...)` share.
pub struct AudioArgs {
    pub path: PathBuf,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub max_seconds: Option<f64>,
    pub weights: Option<PathBuf>,
    pub pca: Option<PathBuf>,
    pub service: Option<String>,
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

impl AudioArgs {
    /// The keyword arguments as Python passed them: `path` (named `what` in errors), and the weights' and PCA's
    /// paths, as `str` or `os.PathLike`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_python(
        path: &Bound<'_, PyAny>,
        what: &str,
        start: Option<f64>,
        end: Option<f64>,
        max_seconds: Option<f64>,
        weights: Option<&Bound<'_, PyAny>>,
        pca: Option<&Bound<'_, PyAny>>,
        service: Option<String>,
    ) -> PyResult<AudioArgs> {
        Ok(AudioArgs {
            path: convert::path(path, what)?,
            start,
            end,
            max_seconds,
            weights: weights.map(|w| convert::path(w, "weights")).transpose()?,
            pca: pca.map(|p| convert::path(p, "pca")).transpose()?,
            service,
        })
    }

    /// Embeds the file; warnings (a weight file whose name promises another hash) come back for the caller to
    /// issue as Python warnings once it holds the interpreter's lock again.
    pub fn embed(&self, py: Python<'_>) -> PyResult<(Embedded, Vec<String>)> {
        run(py, Asked::Files, || {
            let window = Window {
                start: self.start,
                end: self.end,
                max_seconds: self.max_seconds,
            };
            window
                .check()
                .map_err(|e| anyhow::Error::new(UsageError::new(e)))?;
            let options = SourceOptions {
                weights: self.weights.clone(),
                pca: self.pca.clone(),
                service: self.service.clone(),
            };
            let mut warnings = Vec::new();
            let source = source(&options, &mut warnings)?;
            let embedded = source.embed_file(&self.path, window, &LogMel::new(), |_| {})?;
            Ok((embedded, warnings))
        })
    }
}

/// The loaded source for `options`, loading it when none is, or another one was.
fn source(options: &SourceOptions, warnings: &mut Vec<String>) -> soundalike::Result<Arc<Source>> {
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
        return Ok(Arc::clone(source));
    }
    let source = Arc::new(located.load(|warning| warnings.push(warning))?);
    *loaded = Some((key, Arc::clone(&source)));
    Ok(source)
}

/// What a forked child's parent had loaded, unless the parent's lock was held at the fork.
fn inherited(parent: &Held) -> Option<(Loaded, Arc<Source>)> {
    match parent.try_lock() {
        Ok(loaded) => loaded.clone(),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().clone(),
        Err(TryLockError::WouldBlock) => None,
    }
}
