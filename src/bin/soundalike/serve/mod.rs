//! `serve`: the upload page and the HTTP API (issue 23), a client of the library like the other subcommands.
//!
//! One [`reload::LiveIndex`] (one index handle, reopened when a rebuild swaps a new index in) and one
//! [`queue::Embedding`] pool (the weights loaded once) are shared by every request. axum and tokio carry the
//! HTTP; the searches and the network run off tokio's threads: a question about the index on tokio's blocking
//! pool, an embedding on the pool of [`queue`], so a question by id never waits behind an upload. SIGINT and
//! SIGTERM stop the listener, let the requests in flight finish, and end the run with exit code 0.

mod api;
mod ask;
mod errors;
mod page;
mod queue;
mod reload;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use soundalike::audio::decode::Window;
use soundalike::audio::source::SourceOptions;
use soundalike::{Index, Query, QueryOptions, UsageError};

use crate::stderr::say;
use errors::ApiError;
use queue::Embedding;
use reload::LiveIndex;

pub struct ServeArgs {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// `--weights` and `--pca` as given (a service is not an option here).
    pub source: SourceOptions,
    /// The largest request body, in bytes.
    pub max_upload: usize,
    /// The most seconds of audio an upload may hold.
    pub max_seconds: f64,
    /// No warnings or notes on stderr (the listening line and errors still are).
    pub quiet: bool,
}

/// What every handler shares.
pub struct Server {
    index: LiveIndex,
    /// The network, or why there is none (the 503's message).
    embedding: std::result::Result<Embedding, String>,
    max_upload: usize,
    max_seconds: f64,
}

type Shared = Arc<Server>;

/// How often the index's directory is looked at for a rebuild swapped in: one `stat` each time.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

pub fn run(args: ServeArgs) -> Result<()> {
    Window {
        max_seconds: Some(args.max_seconds),
        ..Window::default()
    }
    .check()
    .map_err(UsageError::new)?;
    crate::bus_error::report_for(&args.dir);
    let index = LiveIndex::open(&args.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .context("cannot start the server's threads")?;
    runtime.block_on(async move {
        // Bound before the weights load, so that a port in use is said at once; connections made meanwhile
        // wait in the listen queue.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let embedding = load_embedding(&args.source, args.quiet)?;
        let server = Arc::new(Server {
            index,
            embedding,
            max_upload: args.max_upload,
            max_seconds: args.max_seconds,
        });
        // Received from here on: a signal before the listening line is said would otherwise kill the process
        // (the default action) instead of stopping it.
        let stop = interrupted().context("cannot receive SIGINT and SIGTERM")?;
        say!("listening on http://{address}");
        let quiet = args.quiet;
        if let Err(why) = &server.embedding
            && !quiet
        {
            say!("warning: audio queries are off: {why}");
        }
        tokio::spawn(watch_index(Arc::clone(&server), quiet));
        axum::serve(listener, router(Arc::clone(&server)))
            .with_graceful_shutdown(stop)
            .await
            .context("the server failed")?;
        say!("stopped: every request in flight was answered");
        Ok(())
    })
}

/// The network, loaded once; without weights the server still answers by id and by embedding, and the
/// audio endpoints say where to put them. Weights that are named but cannot be loaded end the run: the user
/// asked for them.
fn load_embedding(
    source: &SourceOptions,
    quiet: bool,
) -> Result<std::result::Result<Embedding, String>> {
    let located = match source.locate() {
        Ok(located) => located,
        Err(why) if source.weights.is_none() && source.pca.is_none() => {
            return Ok(Err(format!("{why:#}")));
        }
        Err(why) => return Err(why),
    };
    crate::process::keep_freed_memory();
    let loaded = located.load(|warning| {
        if !quiet {
            say!("warning: {warning}");
        }
    })?;
    Ok(Ok(Embedding::new(loaded)?))
}

/// A future that resolves when SIGINT or SIGTERM arrives (the first one; the listener then closes and the
/// requests in flight finish). The command line's own signal thread (`process::remove_on_interrupt`) exits at
/// once and is for writers; `serve` writes nothing and never installs it, so these signals are tokio's to
/// receive here. The handlers are installed when this is called, not when the future is first polled.
fn interrupted() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        say!("stopping: finishing the requests in flight");
    })
}

/// Looks for a rebuilt index now and then, and reopens it (see [`LiveIndex::reopen_if_replaced`]).
async fn watch_index(server: Shared, quiet: bool) {
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let watched = Arc::clone(&server);
        if let Ok(Some(line)) =
            tokio::task::spawn_blocking(move || watched.index.reopen_if_replaced()).await
            && !quiet
        {
            say!("{line}");
        }
    }
}

fn router(server: Shared) -> Router {
    // The body limit covers a multipart form's few fields beside the file as well.
    let limit = server.max_upload;
    Router::new()
        .merge(page::routes())
        .merge(api::routes())
        .fallback(api::no_such_endpoint)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(server)
}

impl Server {
    /// `query` asked of the index on tokio's blocking threads (a search is CPU work; the async threads keep
    /// accepting and answering meanwhile).
    async fn recommend(
        self: &Arc<Self>,
        query: Query,
        options: QueryOptions,
    ) -> Result<Vec<soundalike::Hit>, ApiError> {
        self.with_index(move |index| index.recommend(&query, &options))
            .await
    }

    /// `work` on the index as now open, on tokio's blocking threads.
    async fn with_index<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Index) -> soundalike::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let server = Arc::clone(self);
        tokio::task::spawn_blocking(move || server.index.with(work))
            .await
            .map_err(|_| ApiError::internal("the query's thread failed"))?
    }
}
