//! Connections: the accept loop, each connection's deadlines, and a shutdown that ends.
//!
//! hyper's HTTP/1 connections are run here rather than through `axum::serve`, for three things it does not do:
//! - a deadline for every request's head (`--header-timeout`), which hyper applies only when given a timer; the
//!   same deadline closes a kept-alive connection that sends nothing more (hyper restarts it when the
//!   connection goes idle);
//! - a shutdown bounded by `--grace`: the listener closes, connections finish the request they are answering and
//!   close, and whatever is still open when the grace ends is dropped (a client holding a half-sent request
//!   cannot keep the process alive); a second signal drops them at once;
//! - the HTTP layer's own refusals (hyper answers a malformed head 400, an over-long URI 414, too many or too
//!   large headers 431, with empty bodies) rewritten as the API's JSON on their way out ([`Answered`]).
//!
//! A body's pace is the business of [`super::body`], which sees each request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The deadlines of a connection and of the shutdown.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// For a request's head, and for a kept-alive connection's next request.
    pub header: Duration,
    /// For the requests in flight once a signal has come.
    pub grace: Duration,
}

/// How the server stopped.
pub struct Stopped {
    /// Connections still open when the grace ended (or a second signal came), dropped.
    pub dropped: usize,
}

/// Accepts and serves connections until `stop` resolves once, then lets them finish within the grace; `stop`
/// resolving again ends the wait at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    mut stop: impl FnMut() -> Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Stopped {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(deadlines.header)
        .keep_alive(true)
        // One plain write per flush, so that a head hyper writes on its own is one write for `Answered`.
        .writev(false);
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stopping = stop();
    loop {
        // Finished connections' tasks are reaped as they end, so that the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, or a connection reset before it was taken: the listener itself is
                // fine; a pause keeps a full descriptor table from spinning the loop.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(Answered::new(stream)), service);
        let mut closing = closing_seen.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.wait_for(|closing| *closing) => {}
            }
            // Finish the request being answered, if any, then close; an idle connection closes at once.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = all_closed => {}
        () = tokio::time::sleep(deadlines.grace) => {}
        () = stop() => {}
    }
    let dropped = connections.len();
    connections.abort_all();
    Stopped { dropped }
}

/// A connection's socket, through which hyper's own refusals are rewritten as the API's: hyper answers a head
/// it cannot parse by itself, before any handler runs, with a status and an empty body. Such an answer is the
/// only one with a client-error status and `content-length: 0` (every answer of ours has words), hyper writes it
/// in one write at the start of its buffer (`writev(false)`), and closes the connection after it, so the
/// rewritten answer may be longer than what it replaces.
pub struct Answered<S> {
    inner: S,
    /// A rewritten answer not yet written in full.
    pending: Vec<u8>,
    written: usize,
}

impl<S> Answered<S> {
    fn new(inner: S) -> Answered<S> {
        Answered {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// hyper's own answer to a head it could not read, if `bytes` start with one: its status.
fn refusal_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 4")?;
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let empty = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !empty || rest.len() < 2 {
        return None;
    }
    std::str::from_utf8(&rest[..2])
        .ok()?
        .parse::<u16>()
        .ok()
        .map(|n| 400 + n)
}

/// The API's words for hyper's refusals.
fn refusal(status: u16) -> Vec<u8> {
    let (reason, words) = match status {
        414 => (
            "URI Too Long",
            "the request's URI is longer than this server reads",
        ),
        431 => (
            "Request Header Fields Too Large",
            "the request's head is larger than this server reads (at most 100 headers and about 400 KB)",
        ),
        _ => (
            "Bad Request",
            "the request is not HTTP/1.1 this server can read (its request line or a header is malformed)",
        ),
    };
    let body = serde_json::json!({ "error": words }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> Answered<S> {
    /// Writes what is left of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Answered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Answered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(status) = refusal_status(buf) {
            self.pending = refusal(status);
            self.written = 0;
            // Taken whole: what hyper wrote is replaced, and the rest goes out as the flush drains it.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_client_error_is_hypers_refusal() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(refusal_status(hyper), Some(431));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{}";
        assert_eq!(refusal_status(ours), None);
        let fine = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(refusal_status(fine), None);
        assert_eq!(refusal_status(b"{\"error\": \"HTTP/1.1 400\"}"), None);
    }
}
