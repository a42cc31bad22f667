//! `serve`: the upload page and the HTTP API (issue 23), a client of the library like the other subcommands.
//!
//! One [`reload::LiveIndex`] (one index handle, reopened when a rebuild swaps a new index in) and one
//! [`queue::Embedding`] pool (the weights loaded once) are shared by every request. axum and tokio carry the
//! HTTP ([`listen`] runs the connections, with their deadlines); the searches and the network run off tokio's
//! threads: a question about the index on tokio's blocking pool, an embedding on the pool of [`queue`], so a
//! question by id never waits behind an upload. SIGINT, SIGTERM and SIGHUP stop the listener, let the requests in
//! flight finish within the grace, and end the run with exit code 0.
//!
//! What one request may hold is bounded at each step: its head by hyper's buffer, its body by `--max-upload`
//! (`--max-json` for JSON) and the rate and budget of [`body`], its audio by `--max-seconds` of 16 kHz mono
//! once decoded, and the requests at once by the embedding pool's places and the JSON permits.

mod api;
mod ask;
mod body;
mod errors;
mod json;
mod listen;
mod max;
mod page;
mod queue;
mod reload;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use clap::Args;
use soundalike::audio::Window;
use soundalike::audio::source::SourceOptions;
use soundalike::{Index, Query, QueryOptions, UsageError};

use crate::args::IndexDir;
use crate::stderr::say;
use errors::ApiError;
use queue::Embedding;
use reload::LiveIndex;

/// `soundalike serve`'s arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub index: IndexDir,

    /// The address and port to listen on.
    ///
    /// The default answers this machine only. Another address (0.0.0.0:8080 for every interface) lets other
    /// machines ask and upload: that is your explicit choice, and there is no authentication. Port 0 takes a
    /// free port; the first line on stderr says which (`listening on http://ADDR:PORT`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// VGGish's weights, a .pth or safetensors file.
    ///
    /// As `embed --weights`; default: $SOUNDALIKE_WEIGHTS, else vggish-10086976.pth in
    /// ~/.local/share/soundalike. Without weights the server still answers by clip id and by embedding, and
    /// the audio endpoints answer 503 saying where to put them.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// VGGish's PCA parameters (vggish_pca_params.npz).
    ///
    /// As `embed --pca`; default: $SOUNDALIKE_PCA, else vggish_pca_params.npz in ~/.local/share/soundalike.
    #[arg(long, value_name = "FILE")]
    pub pca: Option<PathBuf>,

    /// The largest request (an upload) taken, in MB.
    ///
    /// A larger one is refused with 413 before it is read.
    #[arg(long, value_name = "MB", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4000))]
    pub max_upload: u32,

    /// The most seconds of audio an upload may hold.
    ///
    /// A longer one (or one whose header claims more, or a sample rate below 4 kHz) is refused with 422 before
    /// its samples are decoded. An upload's audio is held as 16 kHz mono whatever its own rate and channels.
    #[arg(long, value_name = "S", default_value_t = 600.0)]
    pub max_seconds: f64,

    /// The largest JSON body taken, in KB.
    ///
    /// A larger one is refused with 413. An embedding of the longest upload (--max-seconds of rows) is about
    /// 500 KB of JSON.
    #[arg(long, value_name = "KB", default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_json: u32,

    /// Seconds a request's head may take to arrive, and a kept-alive connection may stay idle.
    ///
    /// A connection past it is closed. A request's body has the same seconds before --min-rate counts.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub header_timeout: u32,

    /// The slowest a request's body may come, in KB/s on average (after --header-timeout seconds).
    ///
    /// A slower body is cut off with 408, and whatever it held is given back.
    #[arg(long, value_name = "KB/S", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub min_rate: u32,

    /// Seconds the requests in flight may take to finish after SIGTERM, SIGINT or SIGHUP.
    ///
    /// Connections still open then are dropped and the server exits 0; a second signal drops them at once.
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub grace: u32,

    /// No warnings or notes on stderr.
    ///
    /// The first line, `listening on http://ADDR:PORT`, and errors are still written.
    #[arg(short, long)]
    pub quiet: bool,
}

/// What every handler shares.
pub struct Server {
    index: LiveIndex,
    /// The index's directory as given (for taking it out of answers).
    dir: PathBuf,
    /// The network, or why there is none (the 503's message).
    embedding: std::result::Result<Embedding, String>,
    max_upload: usize,
    max_seconds: f64,
    max_json: usize,
    /// JSON bodies parsed at once: each may hold `max_json` and its rows.
    json_permits: tokio::sync::Semaphore,
    pace: body::Pace,
    /// The bytes of all the bodies being read.
    reading: Arc<body::Budget>,
    /// Requests being answered, and whether one with a body (or an upload) came since memory was last given back.
    in_flight: AtomicUsize,
    heavy: AtomicBool,
}

type Shared = Arc<Server>;

/// How often the index's directory is looked at for a rebuild swapped in: one `stat` each time.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

pub fn run(args: ServeArgs) -> Result<()> {
    let dir = args.index.index.clone();
    // A service is not an option here: the server embeds uploads itself.
    let source = SourceOptions {
        weights: args.weights.clone(),
        pca: args.pca.clone(),
        service: None,
    };
    let max_upload = args.max_upload as usize * 1_000_000;
    let max_json = args.max_json as usize * 1000;
    let header_timeout = Duration::from_secs(args.header_timeout.into());
    let min_rate = u64::from(args.min_rate) * 1000;
    let grace = Duration::from_secs(args.grace.into());
    Window {
        max_seconds: Some(args.max_seconds),
        ..Window::default()
    }
    .check()
    .map_err(UsageError::new)?;
    crate::bus_error::report_for(&dir);
    let index = LiveIndex::open(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .context("cannot start the server's threads")?;
    let stopped = runtime.block_on(async move {
        // Bound before the weights load, so that a port in use is said at once; connections made meanwhile
        // wait in the listen queue.
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let embedding = load_embedding(&source, args.max_seconds, args.quiet)?;
        let places = embedding.as_ref().map_or(1, Embedding::capacity);
        let server = Arc::new(Server {
            index,
            dir: dir.clone(),
            embedding,
            max_upload,
            max_seconds: args.max_seconds,
            max_json,
            json_permits: tokio::sync::Semaphore::new(places),
            pace: body::Pace {
                min_rate,
                grace: header_timeout,
            },
            // As many bytes being read as the embedding pool holds uploads: what is read, is read for a place.
            reading: Arc::new(body::Budget::new(places * max_upload)),
            in_flight: AtomicUsize::new(0),
            heavy: AtomicBool::new(false),
        });
        // Received from here on: a signal before the listening line is said would otherwise kill the process
        // (the default action) instead of stopping it.
        let signals = signals().context("cannot receive SIGINT, SIGTERM and SIGHUP")?;
        say!("listening on http://{address}");
        let quiet = args.quiet;
        // A damaged index still serves (its `/healthz` says 503 and why), but its operator hears of it now.
        if let Err(why) = server.index.with(|index| index.check())
            && !quiet
        {
            say!("warning: the index cannot answer: {}", why.message);
        }
        if let Err(why) = &server.embedding
            && !quiet
        {
            say!("warning: audio queries are off: {why}");
        }
        tokio::spawn(watch(Arc::clone(&server), quiet));
        let deadlines = listen::Deadlines {
            header: header_timeout,
            grace,
        };
        let mut waited = 0;
        let stopped = listen::serve(
            listener,
            router(Arc::clone(&server)),
            deadlines,
            move || {
                waited += 1;
                let said = if waited == 1 {
                    "stopping: finishing the requests in flight"
                } else {
                    "stopping now: dropping the requests in flight"
                };
                let mut counted = signals.clone();
                let wanted = waited;
                Box::pin(async move {
                    let _ = counted.wait_for(|n| *n >= wanted).await;
                    say!("{said}");
                })
            },
        )
        .await;
        anyhow::Ok(stopped)
    })?;
    // Work still running on the blocking threads (a search, a reopen) is not waited for: the grace is over.
    runtime.shutdown_background();
    match stopped.dropped {
        0 => say!("stopped: every request in flight was answered"),
        n => say!("stopped: {n} connection(s) still open were dropped"),
    }
    Ok(())
}

/// The network, loaded once; without weights the server still answers by id and by embedding, and the
/// audio endpoints say where to put them. Weights that are named but cannot be loaded end the run: the user
/// asked for them.
fn load_embedding(
    source: &SourceOptions,
    max_seconds: f64,
    quiet: bool,
) -> Result<std::result::Result<Embedding, String>> {
    let located = match source.locate() {
        Ok(located) => located,
        Err(why) if source.weights.is_none() && source.pca.is_none() => {
            return Ok(Err(format!("{why:#}")));
        }
        Err(why) => return Err(why.into()),
    };
    crate::process::keep_freed_memory();
    let loaded = located.load(|warning| {
        if !quiet {
            say!("warning: {warning}");
        }
    })?;
    Ok(Ok(Embedding::new(loaded, max_seconds)?))
}

/// SIGINT, SIGTERM and SIGHUP, received by tokio and counted: each stops the server the same way (a closed
/// terminal or a supervisor's signal must not drop the uploads in flight). The command line's own signal thread
/// (`process::remove_on_interrupt`) exits at once and is for writers; `serve` writes nothing and never installs
/// it. The handlers are installed when this is made, not when it is first waited on.
fn signals() -> std::io::Result<tokio::sync::watch::Receiver<u32>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (count, counted) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            count.send_modify(|n| *n += 1);
        }
    });
    Ok(counted)
}

/// Looks for a rebuilt index now and then and reopens it (see [`LiveIndex::reopen_if_replaced`]), and gives
/// freed memory back to the system once a burst of uploads or bodies is over.
async fn watch(server: Shared, quiet: bool) {
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
        if server.in_flight.load(Ordering::SeqCst) == 0
            && server.heavy.swap(false, Ordering::SeqCst)
        {
            let _ = tokio::task::spawn_blocking(crate::process::give_back_freed_memory).await;
        }
    }
}

fn router(server: Shared) -> Router {
    // The body limit covers a multipart form's few fields beside the file as well.
    let limit = server.max_upload;
    Router::new()
        .merge(page::routes())
        .merge(api::routes())
        .merge(max::routes())
        .fallback(api::no_such_endpoint)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&server),
            body::meter,
        ))
        .with_state(server)
}

/// A request being answered (see [`Server::in_flight`]).
pub struct InFlight(Shared);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Counts a request as in flight until the guard is dropped.
    fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// Says that a request held memory worth giving back once the server is idle.
    fn held_memory(&self) {
        self.heavy.store(true, Ordering::SeqCst);
    }

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
        let answered = tokio::task::spawn_blocking(move || server.index.with(work))
            .await
            .map_err(|_| ApiError::internal("the query's thread failed"))?;
        answered.map_err(|error| ApiError {
            message: self.without_paths(&error.message),
            ..error
        })
    }

    /// The index's folder by its name alone, as answers show it.
    fn index_name(&self) -> String {
        self.dir.file_name().map_or_else(
            || "the index".into(),
            |name| name.to_string_lossy().into_owned(),
        )
    }

    /// `message` with the index's path on this machine (as given, and as the file system resolves it) put as
    /// its folder's name: the library's messages name paths for a person at a shell, and a client of the
    /// server has no business knowing the server's layout.
    fn without_paths(&self, message: &str) -> String {
        let name = self.index_name();
        let mut paths = vec![self.dir.display().to_string()];
        if let Ok(real) = std::fs::canonicalize(&self.dir) {
            paths.push(real.display().to_string());
        }
        // The longest first, so that a path that holds another is replaced whole.
        paths.sort_by_key(|path| std::cmp::Reverse(path.len()));
        paths
            .iter()
            .filter(|path| !path.is_empty())
            .fold(message.to_string(), |text, path| {
                text.replace(path.as_str(), &name)
            })
    }
}
