//! Request bodies as they arrive: each must keep up a least rate, and the bytes of all the bodies being read
//! share one budget: a body is charged as it comes for its first 64 KB, then for its whole length (the most a
//! body may be when it is chunked and states none), so a trickling client holds next to nothing.
//!
//! tower-http's body timeout resets at every frame, so a client sending a byte every few seconds keeps a body
//! open for ever; what bounds a slow client is a rate over the whole body (as Apache's `mod_reqtimeout`
//! `minrate` does), which is this module's [`Metered`]. A body's `n`th byte is due by `grace + n / rate` after
//! the request arrived: the first `grace` seconds are free (a connection's start, a client's own pause), and
//! after that the body must average the rate.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Shared;
use super::errors::ApiError;

/// How fast a body must come.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Bytes a second, on average after the grace.
    pub min_rate: u64,
    /// Seconds before the rate counts.
    pub grace: Duration,
}

/// The bytes every body being read holds together, at most `limit`.
pub struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    fn take(&self, bytes: usize) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::SeqCst);
        if before + bytes > self.limit {
            self.held.fetch_sub(bytes, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// Why a body was cut off, for the handler that was reading it (its reader only sees that the stream failed).
#[derive(Clone, Copy, Debug)]
enum Refusal {
    TooSlow { min_rate: u64 },
    Busy { limit: usize },
}

/// Where [`Metered`] leaves its refusal; in the request's extensions.
#[derive(Clone, Default)]
pub struct Verdict(Arc<Said>);

#[derive(Default)]
struct Said {
    refusal: OnceLock<Refusal>,
    /// The body is read only to be dropped: its bytes are not held, so not charged to the budget.
    dropping: AtomicBool,
}

impl Verdict {
    /// The verdict the metering left on `request`, if it was metered.
    pub fn of(request: &Request) -> Verdict {
        request
            .extensions()
            .get::<Verdict>()
            .cloned()
            .unwrap_or_default()
    }

    /// Says that the rest of the body is read only to be dropped.
    pub fn dropping(&self) {
        self.0.dropping.store(true, Ordering::SeqCst);
    }

    /// The error to answer when reading the body failed: the refusal if the body was cut off, else `otherwise`.
    pub fn or(&self, otherwise: ApiError) -> ApiError {
        match self.0.refusal.get() {
            Some(Refusal::TooSlow { min_rate }) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request's body came slower than the {} KB/s this server waits for",
                    min_rate / 1000
                ),
            ),
            Some(Refusal::Busy { limit }) => ApiError {
                retry_after: Some(5),
                ..ApiError::unavailable(format!(
                    "the server is reading as many uploads as it holds at once ({} MB); try again in 5 s",
                    limit / 1_000_000
                ))
            },
            None => otherwise,
        }
    }
}

/// A request's body, read at the [`Pace`] and within the [`Budget`].
pub struct Metered {
    inner: Body,
    pace: Pace,
    arrived: Instant,
    received: u64,
    due: Pin<Box<Sleep>>,
    budget: Arc<Budget>,
    held: usize,
    /// The body's stated length (`None`: chunked).
    stated: Option<u64>,
    /// The budget was spent: the rest of the body is being read and dropped, up to `drain_limit` bytes.
    over_budget: bool,
    drain_limit: u64,
    verdict: Verdict,
}

/// What a body is charged as it arrives before its whole length is: a client trickling bytes holds no more.
const PROBE: u64 = 64 * 1024;

impl Metered {
    /// Charges the budget for what has been received: as it comes up to [`PROBE`] bytes, then the whole body
    /// at once (its stated length, or the largest a body may be when it states none), so that once a burst
    /// spends the budget the bodies already reserved finish and the rest are refused, rather than every body
    /// stalling halfway. False when the budget cannot hold it.
    fn charge(&mut self) -> bool {
        let whole = if self.received <= PROBE {
            self.received
        } else {
            self.received.max(self.stated.unwrap_or(self.drain_limit))
        };
        let want = usize::try_from(whole).unwrap_or(usize::MAX);
        if want > self.held {
            if !self.budget.take(want - self.held) {
                return false;
            }
            self.held = want;
        }
        true
    }

    fn refuse(&self, refusal: Refusal) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let _ = self.verdict.0.refusal.set(refusal);
        Poll::Ready(Some(Err(axum::Error::new(format!("{refusal:?}")))))
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    this.received += n as u64;
                    let due = this.pace.grace
                        + Duration::from_secs_f64(
                            this.received as f64 / this.pace.min_rate.max(1) as f64,
                        );
                    this.due.as_mut().reset(this.arrived + due);
                    if this.over_budget {
                        // Draining: dropped as it comes, up to the largest body a request may have.
                        if this.received > this.drain_limit {
                            return this.refuse(Refusal::Busy {
                                limit: this.budget.limit,
                            });
                        }
                        continue;
                    }
                    if !this.verdict.0.dropping.load(Ordering::Relaxed) && !this.charge() {
                        // The rest is read and dropped before the refusal, so that a client still sending
                        // reads the 503 rather than a connection reset under its feet.
                        this.over_budget = true;
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Pending => {
                    if this.due.as_mut().poll(cx).is_ready() {
                        return this.refuse(Refusal::TooSlow {
                            min_rate: this.pace.min_rate,
                        });
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) if this.over_budget => {
                    return this.refuse(Refusal::Busy {
                        limit: this.budget.limit,
                    });
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

/// The middleware: every request with a body has it metered; every request counts as in flight while it is
/// answered (see [`super::Server::idle`]).
pub async fn meter(State(server): State<Shared>, mut request: Request, next: Next) -> Response {
    let _in_flight = server.in_flight();
    if !http_body::Body::is_end_stream(request.body()) {
        if let Some(coding) = request.headers().get(header::CONTENT_ENCODING)
            && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            // Decompressing would let a small body claim any size; the server reads what it is sent.
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {} is not taken: send the body as it is",
                    String::from_utf8_lossy(coding.as_bytes())
                ),
            )
            .into_response();
        }
        server.held_memory();
        let verdict = Verdict::default();
        request.extensions_mut().insert(verdict.clone());
        let arrived = Instant::now();
        let stated = super::upload::stated_length(request.headers());
        request = request.map(|inner| {
            Body::new(Metered {
                inner,
                pace: server.pace,
                arrived,
                received: 0,
                due: Box::pin(tokio::time::sleep_until(arrived + server.pace.grace)),
                budget: Arc::clone(&server.reading),
                held: 0,
                stated,
                over_budget: false,
                drain_limit: server.max_upload as u64,
                verdict,
            })
        });
    }
    next.run(request).await
}
