//! The embedding pool: VGGish loaded once, run on a thread pool of its own with as many threads as cores, and a
//! bounded number of uploads admitted. An upload past the bound is answered 503 with Retry-After at once rather
//! than left to wait for minutes: a client (or a load balancer) can go elsewhere or come back.
//!
//! The pool is a rayon pool rather than the global one: the network's convolutions and the resampler split
//! their work with rayon, and inside this pool that work stays on its threads, so uploads never take more than
//! the cores, and the index's exact scan (on the global pool) and the questions by id (on tokio's blocking
//! threads) are never queued behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::http::StatusCode;
use soundalike::audio::LogMel;
use soundalike::audio::source::Source;

use super::errors::ApiError;

pub struct Embedding {
    inner: Arc<Inner>,
    pool: rayon::ThreadPool,
}

struct Inner {
    source: Source,
    logmel: LogMel,
    /// Uploads admitted and not yet finished: running and waiting.
    admitted: AtomicUsize,
    /// The most admitted at once.
    capacity: usize,
    threads: usize,
    /// A running mean of an embedding's time, in milliseconds, for Retry-After.
    mean_ms: AtomicU64,
}

/// Waiting uploads admitted per thread beside the running ones: enough that a burst keeps the cores busy,
/// few enough that a waiting upload is answered within a few embeddings' time.
const WAITING_PER_THREAD: usize = 1;

impl Embedding {
    pub fn new(source: Source) -> anyhow::Result<Embedding> {
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
                admitted: AtomicUsize::new(0),
                capacity: threads * (1 + WAITING_PER_THREAD),
                threads,
                mean_ms: AtomicU64::new(1000),
            }),
            pool,
        })
    }

    /// A place in the pool, or a refusal at once with 503 and a Retry-After when the pool has as many uploads
    /// as it admits. Taken before an upload's body is read where the request is large enough to carry audio,
    /// so that a refused upload costs nothing but its headers.
    pub fn admit(&self) -> Result<Permit, ApiError> {
        let inner = &self.inner;
        let admitted = inner.admitted.fetch_add(1, Ordering::SeqCst);
        if admitted >= inner.capacity {
            inner.admitted.fetch_sub(1, Ordering::SeqCst);
            let mean = inner.mean_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            let seconds = (mean * (admitted as f64 / inner.threads as f64))
                .ceil()
                .max(1.0);
            return Err(ApiError {
                retry_after: Some(seconds as u64),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the server is embedding as many uploads as it takes ({}); try again in {seconds} s",
                        inner.capacity
                    ),
                )
            });
        }
        Ok(Permit {
            inner: Arc::clone(inner),
        })
    }

    /// Runs `work` (decoding and embedding an upload) on the pool, in the place `permit` holds.
    pub async fn run<T: Send + 'static>(
        &self,
        permit: Permit,
        work: impl FnOnce(&Source, &LogMel) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
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
            let ms = started.elapsed().as_millis() as u64;
            let mean = job.mean_ms.load(Ordering::Relaxed);
            job.mean_ms.store((mean * 3 + ms) / 4, Ordering::Relaxed);
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

/// An upload's place in the pool, given back when dropped (the upload embedded, refused or abandoned).
pub struct Permit {
    inner: Arc<Inner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}
