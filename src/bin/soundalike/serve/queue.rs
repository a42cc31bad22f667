//! The embedding pool: VGGish loaded once, run on a thread pool of its own with as many threads as cores, and a
//! bounded number of uploads admitted once their bodies are read. An upload past the bound is answered 503 with
//! Retry-After at once rather than left to wait for minutes: a client (or a load balancer) can go elsewhere or
//! come back.
//!
//! The pool is a rayon pool rather than the global one: the network's convolutions and the resampler split
//! their work with rayon, and inside this pool that work stays on its threads, so uploads never take more than
//! the cores, and the index's exact scan (on the global pool) and the questions by id (on tokio's blocking
//! threads) are never queued behind them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::http::StatusCode;
use soundalike::audio::LogMel;
use soundalike::audio::Window;
use soundalike::audio::source::{Embedded, Source};

use super::errors::ApiError;
use super::upload::Upload;

pub struct Embedding {
    inner: Arc<Inner>,
    pool: rayon::ThreadPool,
}

struct Inner {
    source: Source,
    logmel: LogMel,
    /// Uploads admitted and not yet finished (running and waiting), and the seconds of audio they are expected
    /// to hold, in milliseconds (see [`expected_seconds`]).
    admitted: Mutex<Admitted>,
    /// The most admitted at once.
    capacity: usize,
    /// The longest audio an upload may hold, in seconds.
    max_seconds: f64,
    /// A running mean of the embedding time per second of audio, in microseconds, for Retry-After.
    cost_us: AtomicU64,
}

#[derive(Default)]
struct Admitted {
    count: usize,
    expected_ms: u64,
}

/// Waiting uploads admitted per thread beside the running ones: enough that a burst keeps the cores busy,
/// few enough that a waiting upload is answered within a few embeddings' time.
const WAITING_PER_THREAD: usize = 1;

/// The audio a byte of upload is taken to hold until it is decoded: a 128 kbit/s MP3's 16 KB a second, the
/// densest common format (a WAV holds ten times less a byte), so that the estimate errs long.
const BYTES_PER_SECOND: f64 = 16_000.0;

/// The seconds of audio an upload of `bytes` asking about `window` is expected to hold, before it is decoded.
fn expected_seconds(bytes: u64, window: Window, max_seconds: f64) -> f64 {
    let asked = match (window.start, window.end) {
        (start, Some(end)) => end - start.unwrap_or(0.0),
        _ => max_seconds,
    };
    (bytes as f64 / BYTES_PER_SECOND)
        .min(asked)
        .min(max_seconds)
}

impl Embedding {
    pub fn new(source: Source, max_seconds: f64) -> anyhow::Result<Embedding> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("embed-{i}"))
            .build()
            .context("cannot start the embedding threads")?;
        Ok(Embedding {
            inner: Arc::new(Inner {
                source,
                logmel: LogMel::new(),
                admitted: Mutex::new(Admitted::default()),
                capacity: threads * (1 + WAITING_PER_THREAD),
                max_seconds,
                // 25 times real time until measured.
                cost_us: AtomicU64::new(40_000),
            }),
            pool,
        })
    }

    /// The most uploads admitted at once.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// 503 at once when the pool has as many uploads as it admits, for an upload of `bytes` (0: unknown) whose
    /// body has not been read: a refused upload costs nothing but its headers. Nothing is taken.
    pub fn refuse_if_full(&self, bytes: u64) -> Result<(), ApiError> {
        let admitted = self.inner.lock();
        if admitted.count >= self.inner.capacity {
            let own = expected_seconds(bytes, Window::default(), self.inner.max_seconds);
            return Err(self.inner.busy(&admitted, own));
        }
        Ok(())
    }

    /// A place in the pool for `upload`, or 503 with a Retry-After when the pool has as many uploads as it
    /// admits.
    pub fn admit(&self, upload: &Upload, window: Window) -> Result<Permit, ApiError> {
        let inner = &self.inner;
        let expected = expected_seconds(upload.bytes.len() as u64, window, inner.max_seconds);
        let mut admitted = inner.lock();
        if admitted.count >= inner.capacity {
            return Err(inner.busy(&admitted, expected));
        }
        let expected_ms = (expected * 1000.0) as u64;
        admitted.count += 1;
        admitted.expected_ms += expected_ms;
        Ok(Permit {
            inner: Arc::clone(inner),
            expected_ms,
        })
    }

    /// Runs `work` (decoding and embedding an upload) on the pool, in the place `permit` holds.
    pub async fn run(
        &self,
        permit: Permit,
        work: impl FnOnce(&Source, &LogMel) -> Result<Embedded, ApiError> + Send + 'static,
    ) -> Result<Embedded, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let job = &permit.inner;
            let started = Instant::now();
            // A panic on a rayon pool's thread would abort the process: it is this request's error instead.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                work(&job.source, &job.logmel)
            }))
            .unwrap_or_else(|_| {
                Err(ApiError::internal(
                    "internal error while embedding (please report it)",
                ))
            });
            if let Ok(embedded) = &result {
                // A row is 0.96 s of audio.
                let seconds = embedded.rows.len() as f64 * 0.96;
                if seconds >= 1.0 {
                    let cost = (started.elapsed().as_micros() as f64 / seconds) as u64;
                    let mean = job.cost_us.load(Ordering::Relaxed);
                    job.cost_us.store((mean * 3 + cost) / 4, Ordering::Relaxed);
                }
            }
            // The place is given back before the answer goes.
            drop(permit);
            // The client may have gone; its answer is then dropped.
            let _ = reply.send(result);
        });
        answer
            .await
            .map_err(|_| ApiError::internal("the embedding failed"))?
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Admitted> {
        // The counts are updated whole under the lock; a panic elsewhere cannot leave them half changed.
        self.admitted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The refusal of a full pool. Retry-After is the time the admitted uploads will take, by their own
    /// lengths at the measured speed, shared among the places: about when a place frees for `own` seconds more.
    fn busy(&self, admitted: &Admitted, own: f64) -> ApiError {
        let cost = self.cost_us.load(Ordering::Relaxed) as f64 / 1e6;
        let queued = admitted.expected_ms as f64 / 1000.0 + own;
        let seconds = (queued * cost / self.capacity as f64).ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is embedding as many uploads as it takes ({}); try again in {seconds} s",
                    self.capacity
                ),
            )
        }
    }
}

/// An upload's place in the pool, given back when dropped (the upload embedded, refused or abandoned).
pub struct Permit {
    inner: Arc<Inner>,
    expected_ms: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut admitted = self.inner.lock();
        admitted.count -= 1;
        admitted.expected_ms -= self.expected_ms;
    }
}
