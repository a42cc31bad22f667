//! `soundalike.read_tfrecords`: AudioSet's TFRecords in, music clips out one at a time as dicts, while the
//! library's ingest runs on a thread of its own (decoding in parallel, as `soundalike ingest` does).
//!
//! The library writes clips as JSON lines to any `Write`; here that writer is a bounded channel to the
//! iterator, which turns each line into a dict. Memory stays bounded whatever the input's size: the ingest waits
//! while the notebook has not taken the clips already decoded, and stops when the iterator is dropped (its
//! writes then fail, as a closed pipe ends `soundalike ingest | head`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use numpy::PyArray2;
use numpy::ndarray::Array2;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use soundalike::clip::ClipRecord;
use soundalike::ingest::{Ingest, IngestEvent, IngestOptions, Stats};
use soundalike::labels::LabelSet;

use crate::errors::{Asked, bad_argument, internal, run_here, to_py};
use crate::pool;

/// What the ingest thread sends: clips as JSON lines (whole lines, many at a time), or a warning.
enum Message {
    Lines(Vec<u8>),
    Skipped(String),
}

/// The ingest's output: every write goes to the iterator as one message.
struct ChannelWriter(SyncSender<Message>);

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(Message::Lines(bytes.to_vec()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The clips of AudioSet TFRecords, one dict at a time, as `soundalike ingest` writes them (keys video_id,
/// start_time, end_time, labels, embedding), the embedding a (frames, 128) uint8 array. After the last clip,
/// `stats` holds the counts `soundalike ingest` prints (files, records, kept, not_music, too_short, corrupt,
/// bytes). A corrupt record raises ValueError naming the file and record, after the clips before it.
#[pyclass(module = "soundalike", name = "ClipReader")]
pub struct ClipReader {
    state: Mutex<Reading>,
}

struct Reading {
    messages: Option<Receiver<Message>>,
    worker: Option<JoinHandle<soundalike::Result<Stats>>>,
    /// Lines received and not yet handed out, from `next`.
    pending: Vec<u8>,
    next: usize,
    stats: Option<Stats>,
    /// The process whose thread the ingest runs on: a process forked since has a copy without that thread.
    pid: u32,
}

/// Reads AudioSet embedding TFRecords and yields their music clips as dicts, in input order.
///
/// inputs: a TFRecord file, a directory (every *.tfrecord below, sorted by path), a tar or tar.gz archive such
/// as the release's features.tar.gz (read as a stream), or a list of them.
/// music: which clips are kept: "ontology" (Music and its ontology subtree), "names" (a name containing
/// "music"), "all", or a list of label names and indices ("Jazz,Blues,216").
/// frames: rows kept per clip; shorter music clips are dropped.
/// skip_corrupt: step over corrupt records, each reported as a UserWarning, instead of raising.
///
/// Raises FileNotFoundError for a missing input (before anything is read), ValueError for a bad rule.
#[pyfunction]
#[pyo3(signature = (inputs, *, music="ontology", frames=10, skip_corrupt=false))]
pub fn read_tfrecords(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    music: &str,
    frames: i64,
    skip_corrupt: bool,
) -> PyResult<ClipReader> {
    let inputs: Vec<PathBuf> = match inputs.extract::<PathBuf>() {
        Ok(one) if !inputs.is_instance_of::<PyList>() => vec![one],
        _ => inputs
            .extract::<Vec<PathBuf>>()
            .map_err(|_| bad_argument("inputs: a path or a list of paths"))?,
    };
    let music = LabelSet::from_rule(music).map_err(|e| bad_argument(format!("music: {e}")))?;
    let frames = usize::try_from(frames)
        .ok()
        .filter(|&f| f > 0)
        .ok_or_else(|| bad_argument(format!("frames={frames}: it must be at least 1")))?;
    let options = IngestOptions {
        music,
        frames,
        skip_corrupt,
        ..IngestOptions::default()
    };
    // Opened here, so that a missing input raises now rather than at the first clip.
    let ingest = run_here(py, Asked::Files, || Ingest::open(&inputs))?;
    // A few batches of decoded clips in flight: enough to keep the decoder busy while the notebook reads.
    let (sender, messages) = sync_channel(4);
    let worker = std::thread::Builder::new()
        .name("soundalike-ingest".into())
        .spawn(move || {
            let warnings = sender.clone();
            // Decoding in parallel on the package's pool (see crate::pool), not rayon's global one.
            pool::install(|| {
                ingest.run(&options, &mut ChannelWriter(sender), |event| {
                    if let IngestEvent::Skipped { input, problem } = event {
                        let _ = warnings
                            .send(Message::Skipped(format!("{input}: {problem} (skipped)")));
                    }
                })
            })
            .and_then(|stats| stats)
        })
        .map_err(|e| bad_argument(format!("cannot start the ingest thread: {e}")))?;
    Ok(ClipReader {
        state: Mutex::new(Reading {
            messages: Some(messages),
            worker: Some(worker),
            pending: Vec::new(),
            next: 0,
            stats: None,
            pid: std::process::id(),
        }),
    })
}

#[pymethods]
impl ClipReader {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut state = self.reading()?;
        loop {
            if let Some(line) = state.take_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return clip_dict(py, &line).map(Some);
            }
            let Some(messages) = state.messages.take() else {
                return Ok(None);
            };
            // Waiting for the decoder releases the interpreter's lock (the receiver goes with the wait: it is
            // not to be shared between threads).
            let (messages, received) = py.detach(move || {
                let received = messages.recv();
                (messages, received)
            });
            match received {
                Ok(Message::Lines(bytes)) => {
                    state.messages = Some(messages);
                    state.pending.extend_from_slice(&bytes);
                }
                Ok(Message::Skipped(warning)) => {
                    state.messages = Some(messages);
                    crate::index::warn(py, &[warning])?;
                }
                Err(_) => {
                    // The ingest has ended: its result says whether it ended well.
                    let worker = state.worker.take();
                    let ended = py.detach(|| worker.map(JoinHandle::join));
                    match ended {
                        Some(Ok(Ok(stats))) => state.stats = Some(stats),
                        Some(Ok(Err(error))) => return Err(to_py(&error, Asked::Files)),
                        Some(Err(panic)) => return Err(internal(panic)),
                        None => {}
                    }
                }
            }
        }
    }

    /// The ingest's counts once every clip has been read (None before): files, records, kept, not_music,
    /// too_short, corrupt, bytes.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let state = self.reading()?;
        let Some(stats) = &state.stats else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (key, value) in [
            ("files", stats.files),
            ("records", stats.records),
            ("kept", stats.kept),
            ("not_music", stats.not_music),
            ("too_short", stats.too_short),
            ("corrupt", stats.corrupt),
            ("bytes", stats.bytes),
        ] {
            dict.set_item(key, value)?;
        }
        Ok(Some(dict))
    }
}

impl ClipReader {
    /// The reader's state, or a `ValueError` while another thread is in `__next__` (as a generator says it is
    /// already executing): waiting for it here, holding the interpreter's lock it needs to finish, would hang.
    /// In a process forked after the reader was made, a `RuntimeError`: the ingest's thread stayed in the
    /// parent, and waiting here for its clips would wait for ever.
    fn reading(&self) -> PyResult<std::sync::MutexGuard<'_, Reading>> {
        let state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(bad_argument(
                    "ClipReader already executing: another thread is reading from it",
                ));
            }
        };
        if state.pid != std::process::id() {
            return Err(PyRuntimeError::new_err(
                "this ClipReader was made in the process this one was forked from, where its reading \
                 thread runs: call soundalike.read_tfrecords in this process",
            ));
        }
        Ok(state)
    }
}

impl Reading {
    /// The next whole line received, without its newline.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let rest = &self.pending[self.next..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = rest[..end].to_vec();
        self.next += end + 1;
        if self.next == self.pending.len() {
            self.pending.clear();
            self.next = 0;
        }
        Some(line)
    }
}

impl Drop for Reading {
    /// Stops the ingest: with the channel closed its next write fails and it ends; it is waited for, so that
    /// no thread outlives the iterator reading files.
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // A forked copy: the thread is the parent's (joining it here would wait for one that does not
            // exist), and so is the channel's other end.
            std::mem::forget(self.worker.take());
            std::mem::forget(self.messages.take());
            return;
        }
        self.messages = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// One clip line as the dict `read_tfrecords` yields.
fn clip_dict<'py>(py: Python<'py>, line: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let clip: ClipRecord = serde_json::from_slice(line)
        .map_err(|e| bad_argument(format!("internal error: a clip line does not parse: {e}")))?;
    let frames = clip.embedding.len();
    let bytes: Vec<u8> = clip
        .embedding
        .iter()
        .flat_map(|row| row.iter().map(|&v| v as u8))
        .collect();
    let width = bytes.len().checked_div(frames).unwrap_or(0);
    let embedding = Array2::from_shape_vec((frames, width), bytes)
        .map_err(|e| bad_argument(format!("internal error: ragged clip rows: {e}")))?;
    let dict = PyDict::new(py);
    dict.set_item("video_id", PyString::new(py, &clip.video_id))?;
    dict.set_item("start_time", clip.start_time)?;
    dict.set_item("end_time", clip.end_time)?;
    dict.set_item("labels", PyList::new(py, &clip.labels)?)?;
    dict.set_item("embedding", PyArray2::from_owned_array(py, embedding))?;
    Ok(dict)
}
