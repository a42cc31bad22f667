//! Asking an index: a clip id, an embedding's rows or an embedded audio file in; the nearest clips out, as plain
//! owned [`Hit`]s. What `recommend`, `evaluate`, a server and a notebook all call.
//!
//! An [`Index`] is opened once and shared (it is `Send + Sync`); each question says its own [`QueryOptions`].
//! [`Index::recommend`] answers one question from the index as last committed. It keeps a few read transactions
//! open between questions, with the tables they have mapped, so that a server's or a notebook's next question
//! maps nothing again; one is renewed when an append has committed since it began. Many questions with the same
//! options go faster still through a [`Session`] (from [`Index::reader`]), which also keeps its search's scratch
//! space between them: a batch, an evaluation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use anyhow::anyhow;
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::audio::EXAMPLE_SECONDS;
use crate::audio::source::Embedded;
use crate::clip;
use crate::error::{Result, UsageError, not_found};
use crate::explain::{Asked, Explainer};
use crate::hit::Hit;
use crate::index::plan::SearchPlan;
pub use crate::index::plan::{QueryOptions, SearchMethod};
use crate::index::projection::{ClipForm, QueryVector};
use crate::index::records::Records;
use crate::index::search::{Searcher, Target};
use crate::index::store::{Settings, Store, with_distance};
use crate::index::tables::{Tables, held_or_load};
use crate::index::vector::Metric;
use crate::labels;

mod searcher;
mod windows;
use searcher::AnySearcher;
use windows::{audio_window_starts, audio_windows};

/// An open index: a handle on its directory's LMDB environment, opened once and shared by every question and
/// thread. Opening checks the index's format, its settings and that its data file is whole.
pub struct Index {
    store: Arc<Store>,
    /// The data file's (device, inode) when the handle was opened, to notice a rebuild swapping in another.
    data_file: Option<(u64, u64)>,
    /// Readers kept between questions (see [`Index::with_reader`]), at most [`KEPT_READERS`].
    kept: Mutex<Vec<Reader>>,
    /// The process that began the readers in `kept`: in a child forked since, another (see [`Index::adopt`]).
    kept_by: AtomicU32,
}

/// The read transactions an [`Index`] keeps open between questions: one per question asked at once, up to
/// this many (a server's queries in flight, a notebook's threads). Each holds one of LMDB's 126 reader slots,
/// which other processes reading the index share.
const KEPT_READERS: usize = 16;

/// What to find neighbours of.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A clip of the index, by its video_id (it is never among its own neighbours).
    Id(String),
    /// An embedding's rows (128 values of 0 to 255 each, one per 0.96 s), used from row `start` on: as many
    /// rows as the index's clips have frames (later rows are ignored), for mean vectors as for flat ones.
    Embedding { rows: Vec<Vec<f32>>, start: usize },
    /// An embedded audio file ([`crate::audio::source::Source::embed_file`]), from its window's start on
    /// (`audio.start`). Each window of the index's frames (10 of 0.96 s: about 10 s) is asked and the answers
    /// merged, a clip scoring its best window, whose start in the file each hit's `matched_at` says. The file's
    /// own clip (`file`'s `file:PATH` id, if `embed` made a clip of it and it was indexed) is left out.
    Audio {
        audio: Embedded,
        file: Option<PathBuf>,
    },
}

/// The kinds of [`Query`], for a client's check of what its caller gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Id,
    Embedding,
    Audio,
}

/// Why a client's arguments are not one query: none given, or several (the first two, in the order given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOneQuery {
    Nothing,
    Several(QueryKind, QueryKind),
}

impl QueryKind {
    /// The one kind a caller gave, from each kind and whether it was given, in the client's order: the one
    /// check of "exactly one query" that every client makes (each words the refusal in its own terms, and a
    /// client may choose to take the first of several).
    pub fn one_given(given: &[(QueryKind, bool)]) -> std::result::Result<QueryKind, NotOneQuery> {
        let mut kinds = given.iter().filter(|(_, g)| *g).map(|(kind, _)| *kind);
        match (kinds.next(), kinds.next()) {
            (None, _) => Err(NotOneQuery::Nothing),
            (Some(kind), None) => Ok(kind),
            (Some(first), Some(second)) => Err(NotOneQuery::Several(first, second)),
        }
    }
}

impl Query {
    /// A query as one line of text: a JSON embedding (a clip, a 2-D array, a MAX service's answer) or a
    /// video_id. `start` is the first embedding row to use.
    pub fn parse(text: &str, start: usize) -> Result<Query> {
        let text = text.trim();
        if text.is_empty() {
            return Err(anyhow!("an empty line").into());
        }
        if text.starts_with('{') || text.starts_with('[') {
            let rows = clip::embedding_rows(text)?;
            return Ok(Query::Embedding { rows, start });
        }
        Ok(Query::Id(text.to_string()))
    }

    /// The first embedding row `start` names, when it is one: a whole number from 0 to 2^32 - 1 (clients that
    /// take one number for an audio file's seconds and an embedding's row read it as a float).
    pub fn start_row(start: f64) -> Option<usize> {
        (start >= 0.0 && start.fract() == 0.0 && start <= f64::from(u32::MAX))
            .then_some(start as usize)
    }

    pub fn kind(&self) -> QueryKind {
        match self {
            Query::Id(_) => QueryKind::Id,
            Query::Embedding { .. } => QueryKind::Embedding,
            Query::Audio { .. } => QueryKind::Audio,
        }
    }

    /// Neighbours a search finds beyond those asked, for an answer that may drop some: an audio file's own clip.
    fn spare(&self) -> usize {
        match self {
            Query::Audio { .. } => 1,
            _ => 0,
        }
    }
}

/// What an index holds, as `info` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub index: PathBuf,
    pub settings: Settings,
    pub size_bytes: u64,
    /// The ten most common labels: (class index, clips carrying it), most common first.
    pub top_labels: Vec<(u16, u64)>,
}

impl Info {
    /// What `info --json` writes and the Python package's `Index.info()` returns: the settings a user can act on
    /// (the next item number to give out is the index's own business), the size, and the top labels with their
    /// names. One form, so that every client shows the same.
    pub fn to_json(&self) -> serde_json::Value {
        let top: Vec<serde_json::Value> = self
            .top_labels
            .iter()
            .map(|&(label, clips)| {
                serde_json::json!({"label": label, "name": labels::class_name(label.into()), "clips": clips})
            })
            .collect();
        // Plain numbers and strings: serializing them cannot fail.
        let mut settings = serde_json::to_value(&self.settings).unwrap_or_default();
        if let Some(fields) = settings.as_object_mut() {
            fields.remove("next_item");
        }
        serde_json::json!({
            "index": self.index,
            "settings": settings,
            "size_bytes": self.size_bytes,
            "top_labels": top,
        })
    }
}

impl Index {
    /// Opens the index in `dir` (a directory made by `soundalike index` or [`crate::IndexBuilder`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        // Taken before the environment is opened: a rebuild swapping its index in between would otherwise be
        // recorded as the file this handle reads, and never noticed; taken first, it is at worst noticed once
        // too often.
        let data_file = data_file_id(dir.as_ref());
        let (store, _) = Store::open(dir.as_ref())?;
        Ok(Index::of(store, data_file))
    }

    /// A handle on an opened store, keeping no read transactions yet.
    fn of(store: Store, data_file: Option<(u64, u64)>) -> Index {
        Index {
            store: Arc::new(store),
            data_file,
            kept: Mutex::new(Vec::new()),
            kept_by: AtomicU32::new(std::process::id()),
        }
    }

    /// Checks the index in `dir` as a host should before it answers from it, and says what it holds: its data
    /// file against its contents and its settings (as [`Index::open`] checks them), then [`Index::check`]. The
    /// environment is opened read-only and without LMDB's lock file, so the check changes nothing that another
    /// process reading the index uses, and reads the newest commit the data file itself names even where a lock
    /// file left from another data file lies beside it (a data file moved in by hand). A damaged page can still
    /// fault the process that reads it (SIGBUS): a server checks a replaced index in a child process
    /// (`soundalike info --check`) before it gives up the handle it answers from.
    pub fn check_dir(dir: impl AsRef<Path>) -> Result<Info> {
        let dir = dir.as_ref();
        let data_file = data_file_id(dir);
        let (store, _) = Store::open_to_check(dir)?;
        let index = Index::of(store, data_file);
        index.check()?;
        index.info()
    }

    /// Reads what a question reads, through the same checked paths, and says how many clips the index holds:
    /// the tables a question with the default options maps (each block checked against the data file's end and
    /// the settings' count of clips), the first clip's record, and one question by that clip's id (one search
    /// over the codes, lists or vectors, and its answer's records). Its error is the index's damage where it is
    /// damaged, which a server's health check answers with: an index whose settings read well but whose
    /// tables do not fails every question, and fails here. Cheap on a handle that has answered before: the
    /// question's read transaction is a kept one, its tables mapped already (a fraction of a question; a first
    /// check maps them, as a first question does).
    pub fn check(&self) -> Result<u64> {
        // Mapped as a default question maps them (the frames' codes too, on an angular index), but asked
        // without the re-rank, which costs four times the walk and reads only blocks the mapping checked.
        let mapped = QueryOptions {
            count: 1,
            ..QueryOptions::default()
        };
        let asked = QueryOptions {
            rerank: Some(0),
            ..mapped.clone()
        };
        self.within(|| {
            self.with_reader(&mapped, |reader| {
                let mut session = reader.session(&asked)?;
                if reader.settings().next_item > 0 {
                    let first = session.records().get(0)?;
                    session.recommend(&Query::Id(first.video_id))?;
                }
                Ok(reader.settings().clips)
            })
        })
    }

    /// Whether the directory now holds another index than the one this handle reads: a rebuild swapped a new
    /// one in (or the index was removed). An append is seen by this handle's next question; a rebuild only
    /// through a new handle, which can be opened once this one is dropped (LMDB opens a path once per process,
    /// so [`Index::open`] refuses while an old handle lives). A long-running host (a server) asks this now and
    /// then, drops its handle and opens the index again. A cheap check: one `stat` of the data file.
    pub fn replaced(&self) -> bool {
        data_file_id(&self.store.dir) != self.data_file
    }

    /// Runs `work`, its errors said to be the index's damage where LMDB or arroy found damage.
    fn within<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        work().map_err(|e| e.in_index(&self.store.dir))
    }

    /// The directory it was opened from.
    pub fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// The settings as now committed (an append may have changed them since the index was opened).
    pub fn settings(&self) -> Result<Settings> {
        self.within(|| {
            let rtxn = self.store.env.read_txn().map_err(anyhow::Error::from)?;
            Ok(self.store.read_settings(&rtxn)?)
        })
    }

    /// How many clips it holds.
    pub fn len(&self) -> Result<u64> {
        Ok(self.settings()?.clips)
    }

    /// Whether it holds no clip (an index is never built empty, so only a damaged one would).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Its settings, size on disk and most common labels.
    pub fn info(&self) -> Result<Info> {
        self.within(|| {
            let rtxn = self.store.env.read_txn().map_err(anyhow::Error::from)?;
            let settings = self.store.read_settings(&rtxn)?;
            let mut counts = self.store.label_counts(&rtxn)?;
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            counts.truncate(10);
            Ok(Info {
                index: self.store.dir.clone(),
                settings,
                size_bytes: self.store.disk_size(),
                top_labels: counts,
            })
        })
    }

    /// A read view of the index as now committed, for many questions (see [`Reader::session`]).
    pub fn reader(&self) -> Result<Reader> {
        self.within(|| Reader::open(&self.store))
    }

    /// `work` on a reader of the index as last committed, mapping the tables `options` read: a kept one when
    /// one is free and no append has committed since it began, else a new one, kept afterwards.
    fn with_reader<T>(
        &self,
        options: &QueryOptions,
        work: impl FnOnce(&Reader) -> Result<T>,
    ) -> Result<T> {
        if !self.adopt() {
            // A forked child whose list another thread holds: this question reads alone.
            let mut reader = Reader::open(&self.store)?;
            reader.load(options)?;
            return work(&reader);
        }
        // The last commit is read from LMDB's meta page: no transaction, no lock.
        let last = self.store.env.info().last_txn_id;
        let kept = {
            let mut kept = lock(&self.kept);
            // A reader that began before the last commit would not see it; so would its others.
            kept.retain(|reader| reader.txn_id() == last);
            kept.pop()
        };
        let mut reader = match kept {
            Some(reader) => reader,
            None => Reader::open(&self.store)?,
        };
        reader.load(options)?;
        let answer = work(&reader);
        let mut kept = lock(&self.kept);
        if kept.len() < KEPT_READERS {
            kept.push(reader);
        }
        answer
    }

    /// Whether this process may take and keep readers in `kept`: always in the process that opened the index;
    /// in a child forked from it (a `multiprocessing` worker), once the child has made the list its own.
    ///
    /// The parent's readers are then forgotten, neither used nor ended: a read transaction's slot in LMDB's
    /// reader table lives in the lock file the processes share, so ending the parent's transaction here would
    /// end it under the parent, whose snapshot an append could then overwrite. The child's own readers begin in
    /// its copy of the environment, as LMDB's readers of one process do. The list's lock is only tried: a
    /// thread of the parent may have held it at the fork, and that thread does not exist here to release it.
    fn adopt(&self) -> bool {
        let pid = std::process::id();
        if self.kept_by.load(Ordering::Acquire) == pid {
            return true;
        }
        let mut kept = match self.kept.try_lock() {
            Ok(kept) => kept,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        if self.kept_by.load(Ordering::Acquire) != pid {
            kept.drain(..).for_each(std::mem::forget);
            self.kept_by.store(pid, Ordering::Release);
        }
        true
    }

    /// The `options.count` nearest clips to `query`, nearest first.
    pub fn recommend(&self, query: &Query, options: &QueryOptions) -> Result<Vec<Hit>> {
        self.within(|| {
            self.with_reader(options, |reader| {
                let mut session = reader.open_session(options, query.spare())?;
                session.recommend(query)
            })
        })
    }

    /// Each query's answer, in order; a query that cannot be asked (an unknown id, a malformed embedding) gets
    /// its own error in its place. The outer error is the index's (damaged, unreadable).
    pub fn recommend_batch(
        &self,
        queries: &[Query],
        options: &QueryOptions,
    ) -> Result<Vec<Result<Vec<Hit>>>> {
        self.within(|| {
            self.with_reader(options, |reader| {
                let mut session = reader.session(options)?;
                session.recommend_many(queries)
            })
        })
    }
}

impl Drop for Index {
    /// In a forked child that never asked a question, the kept readers are still the parent's: forgotten, not
    /// ended (see [`Index::adopt`]).
    fn drop(&mut self) {
        if *self.kept_by.get_mut() != std::process::id() {
            let kept = self.kept.get_mut().unwrap_or_else(|p| p.into_inner());
            kept.drain(..).for_each(std::mem::forget);
        }
    }
}

/// The (device, inode) of the data file in `dir`, following links as opening it does.
fn data_file_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join("data.mdb"))
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// The list behind `mutex`.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Whatever panicked while holding it left a list of whole readers.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a [`Reader`] reads from: a read transaction on the index, and what it says once.
struct Snapshot {
    store: Arc<Store>,
    rtxn: heed::RoTxn<'static, heed::WithoutTls>,
    settings: Settings,
    form: ClipForm,
}

self_cell::self_cell!(
    /// A snapshot and the tables mapped from it so far, which borrow its transaction.
    struct Mapped {
        owner: Snapshot,
        #[covariant]
        dependent: Tables,
    }
);

/// A read transaction on an index: a consistent view of it (a concurrent append is seen by the next reader),
/// with the tables its sessions have needed mapped once. It may move between threads (not be shared by them).
pub struct Reader(Mapped);

impl Reader {
    /// A view of the index as now committed; no table mapped yet.
    fn open(store: &Arc<Store>) -> Result<Reader> {
        let rtxn = heed::Env::clone(&store.env)
            .static_read_txn()
            .map_err(anyhow::Error::from)?;
        let settings = store.read_settings(&rtxn)?;
        let form = store.clip_form(&rtxn, &settings)?;
        let snapshot = Snapshot {
            store: Arc::clone(store),
            rtxn,
            settings,
            form,
        };
        Ok(Reader(Mapped::new(snapshot, |_| Tables::default())))
    }

    /// Maps the tables a session with `options` reads, if they are not yet: its sessions then borrow them.
    fn load(&mut self, options: &QueryOptions) -> Result<()> {
        self.0.with_dependent_mut(|snapshot, tables| {
            // An impossible plan reads nothing: the session refuses it.
            let Ok(plan) = SearchPlan::resolve(options, &snapshot.settings, 0) else {
                return Ok(());
            };
            tables.load(
                &snapshot.store,
                &snapshot.rtxn,
                &snapshot.settings,
                plan.needs(),
            )?;
            Ok(())
        })
    }

    /// The commit it reads.
    fn txn_id(&self) -> usize {
        self.snapshot().rtxn.id()
    }

    fn snapshot(&self) -> &Snapshot {
        self.0.borrow_owner()
    }

    pub fn settings(&self) -> &Settings {
        &self.snapshot().settings
    }

    pub(crate) fn store(&self) -> &Store {
        &self.snapshot().store
    }

    pub(crate) fn rtxn(&self) -> &heed::RoTxn<'_> {
        &self.snapshot().rtxn
    }

    pub(crate) fn form(&self) -> &ClipForm {
        &self.snapshot().form
    }

    /// A session answering questions with `options`. The tables its search reads are mapped here if this
    /// reader has not mapped them before.
    pub fn session(&self, options: &QueryOptions) -> Result<Session<'_>> {
        self.open_session(options, 0)
            .map_err(|e| e.in_index(&self.store().dir))
    }

    /// A session whose searches find `spare` more than asked, for answers that may drop some.
    fn open_session(&self, options: &QueryOptions, spare: usize) -> Result<Session<'_>> {
        let snapshot = self.snapshot();
        let (store, rtxn, settings) = (&*snapshot.store, &*snapshot.rtxn, &snapshot.settings);
        let plan = SearchPlan::resolve(options, settings, spare)?;
        let tables = self.0.borrow_dependent();
        let labels = if options.labels.is_empty() {
            None
        } else {
            let mut items = RoaringBitmap::new();
            for &label in &options.labels {
                items |= store.label_items(rtxn, label)?;
            }
            Some(items)
        };
        let searcher = with_distance!(settings.metric, D => AnySearcher::from(
            Searcher::<D>::open(store, rtxn, tables, settings, plan, labels)?
        ));
        let records = held_or_load(tables.records.as_ref(), || {
            store.load_records(rtxn, settings)
        })?;
        let explainer = if plan.explain {
            let frames =
                held_or_load(tables.frames.as_ref(), || store.load_frames(rtxn, settings))?;
            let vectors = held_or_load(tables.vectors.as_ref(), || {
                store.load_vectors(rtxn, settings)
            })?;
            Some(Explainer::new(
                frames,
                vectors,
                &snapshot.form,
                settings.metric,
                plan.rerank > 0,
            ))
        } else {
            None
        };
        Ok(Session {
            snapshot,
            searcher,
            records,
            plan,
            explainer,
        })
    }
}

/// Seconds into a query of the first frame it is asked with: an embedding's rows from `start` on, as `embed`
/// makes them (0.96 s each); a clip of the index from its start.
fn query_first_at(query: &Query) -> f64 {
    match query {
        Query::Embedding { start, .. } => *start as f64 * EXAMPLE_SECONDS,
        _ => 0.0,
    }
}

/// One query as resolved against the index: a clip of it, or a vector in its terms.
#[derive(Clone)]
pub(crate) enum Resolved {
    Item(u32),
    Vector(QueryVector),
}

impl Resolved {
    pub(crate) fn target(&self) -> Target<'_> {
        match self {
            Resolved::Item(item) => Target::Item(*item),
            Resolved::Vector(vector) => Target::Vector(vector),
        }
    }
}

/// Questions asked with one set of options on one thread.
pub struct Session<'r> {
    snapshot: &'r Snapshot,
    searcher: AnySearcher<'r>,
    records: Cow<'r, Records<'r>>,
    plan: SearchPlan,
    /// What explains each hit, when the options ask for it.
    explainer: Option<Explainer<'r>>,
}

impl<'r> Session<'r> {
    /// The `count` nearest clips to `query`, nearest first.
    pub fn recommend(&mut self, query: &Query) -> Result<Vec<Hit>> {
        if let Query::Audio { audio, file } = query {
            return self.recommend_audio(audio, file.as_deref());
        }
        let resolved = self.resolve(query)?;
        let found = self.nearest(std::slice::from_ref(&resolved))?;
        let first_at = query_first_at(query);
        self.hits(found.into_iter().next().unwrap_or_default(), None, |_| {
            Some((&resolved, first_at))
        })
        .map_err(|e| e.in_index(&self.snapshot.store.dir))
    }

    /// Each query's answer, in order, a query that cannot be asked getting its error in its place. Asked
    /// together, so that the exact scan shares its passes over the vectors among them.
    pub fn recommend_many(&mut self, queries: &[Query]) -> Result<Vec<Result<Vec<Hit>>>> {
        let resolved: Vec<Result<Resolved>> = queries.iter().map(|q| self.resolve(q)).collect();
        let targets: Vec<Target> = resolved
            .iter()
            .filter_map(|r| r.as_ref().ok().map(Resolved::target))
            .collect();
        let mut found = self
            .searcher
            .nearest(&targets)
            .map_err(|e| crate::Error::from(e).in_index(&self.snapshot.store.dir))?
            .into_iter();
        let mut answers = Vec::with_capacity(queries.len());
        for (query, resolved) in queries.iter().zip(resolved) {
            answers.push(match resolved {
                Ok(resolved) => {
                    let first_at = query_first_at(query);
                    Ok(self.hits(found.next().unwrap_or_default(), None, |_| {
                        Some((&resolved, first_at))
                    })?)
                }
                Err(error) => Err(error),
            });
        }
        Ok(answers)
    }

    /// An audio query's answer ([`Query::Audio`]). In a session that finds one spare neighbour per window
    /// ([`Index::recommend`] opens one) the file's own clip, when among them, is dropped and leaves no gap.
    fn recommend_audio(&mut self, audio: &Embedded, file: Option<&Path>) -> Result<Vec<Hit>> {
        let windows = audio_windows(audio, &self.snapshot.form).map_err(|e| match file {
            Some(path) => anyhow!("{}: {e}", path.display()),
            None => e,
        })?;
        let resolved: Vec<Resolved> = windows
            .into_iter()
            .map(|(_, v)| Resolved::Vector(v))
            .collect();
        let starts = audio_window_starts(audio, &self.snapshot.form);
        let answers = self.nearest(&resolved)?;
        // The file's own clip, made by `embed`, is the file itself: not a recommendation.
        let own = match file.map(clip::file_id) {
            Some(Ok(id)) => self
                .snapshot
                .store
                .ids
                .get(&self.snapshot.rtxn, &id)
                .map_err(anyhow::Error::from)?,
            _ => None,
        };
        // Each clip at its best window: (distance, the window's index).
        let mut best: HashMap<u32, (f32, usize)> = HashMap::new();
        for (window, hits) in answers.into_iter().enumerate() {
            for (item, distance) in hits {
                let entry = best.entry(item).or_insert((distance, window));
                if distance < entry.0 {
                    *entry = (distance, window);
                }
            }
        }
        let mut merged: Vec<(u32, f32, usize)> = best
            .into_iter()
            .filter(|(item, _)| Some(*item) != own)
            .map(|(item, (distance, window))| (item, distance, window))
            .collect();
        merged.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        merged.truncate(self.plan.count);
        let at: Vec<f64> = merged.iter().map(|&(.., w)| starts[w]).collect();
        let found = merged.iter().map(|&(i, d, _)| (i, d)).collect();
        self.hits(found, Some(&at), |rank| {
            let window = merged.get(rank)?.2;
            Some((resolved.get(window)?, *starts.get(window)?))
        })
    }

    /// The query in the index's terms: its clip, or its rows made into a vector as the index makes its own.
    pub(crate) fn resolve(&self, query: &Query) -> Result<Resolved> {
        let reader = self.snapshot;
        match query {
            Query::Id(video_id) => {
                clip::check_id(video_id).map_err(|problem| anyhow!("not a video_id: {problem}"))?;
                let item = reader
                    .store
                    .ids
                    .get(&reader.rtxn, video_id)
                    .map_err(anyhow::Error::from)?
                    .ok_or_else(|| {
                        not_found(format!(
                            "no clip '{}' in index {}",
                            clip::shortened(video_id),
                            reader.store.dir.display()
                        ))
                    })?;
                Ok(Resolved::Item(item))
            }
            Query::Embedding { rows, start } => {
                Ok(Resolved::Vector(reader.form.query(rows, *start)?))
            }
            // Many windows, merged: not one vector to ask among others.
            Query::Audio { .. } => Err(anyhow::Error::new(UsageError::new(
                "an audio file is asked on its own (Index::recommend), not in a batch",
            ))
            .into()),
        }
    }

    /// The searcher's answers (item, distance) for resolved queries, `count` each (one more for an audio
    /// window, whose own clip may be dropped).
    pub(crate) fn nearest(&mut self, resolved: &[Resolved]) -> Result<Vec<Vec<(u32, f32)>>> {
        let targets: Vec<Target> = resolved.iter().map(Resolved::target).collect();
        self.searcher
            .nearest(&targets)
            .map_err(|e| crate::Error::from(e).in_index(&self.snapshot.store.dir))
    }

    /// Answers as owned hits, their records read from the index; explained when the options ask, hit `rank`
    /// (from 0) as the answer to `asked(rank)`: the query resolved, and the seconds into it of its first frame.
    fn hits<'q>(
        &self,
        found: Vec<(u32, f32)>,
        matched_at: Option<&[f64]>,
        asked: impl Fn(usize) -> Option<(&'q Resolved, f64)>,
    ) -> Result<Vec<Hit>> {
        let metric = self.snapshot.settings.metric;
        // The query side of the explanations, made once per query rather than per hit.
        let mut explaining: Option<(*const Resolved, Asked)> = None;
        found
            .into_iter()
            .take(self.plan.count)
            .enumerate()
            .map(|(rank, (item, distance))| {
                let meta = self.records.get(item)?;
                // Float rounding can put a clip's own rows a hair past identical (similarity 1.0004): the
                // angular scale is [0, 1], cosine [-1, 1].
                let distance = if metric == Metric::Angular {
                    distance.clamp(0.0, 1.0)
                } else {
                    distance
                };
                let explanation = match (&self.explainer, asked(rank)) {
                    (Some(explainer), Some((query, first_at))) => {
                        let made = match explaining.take() {
                            Some((made_for, asked)) if std::ptr::eq(made_for, query) => asked,
                            _ => self.asked(explainer, query, first_at)?,
                        };
                        let explained = explainer.explain(&made, item, &meta.video_id)?;
                        explaining = Some((query, made));
                        Some(explained)
                    }
                    _ => None,
                };
                Ok(Hit {
                    video_id: meta.video_id,
                    distance,
                    similarity: (metric == Metric::Angular).then_some(1.0 - 2.0 * distance),
                    labels: meta.labels,
                    start_time: meta.start_time,
                    end_time: meta.end_time,
                    matched_at: matched_at.and_then(|at| at.get(rank).copied()),
                    explanation,
                })
            })
            .collect()
    }

    /// `query`, whose first frame is `first_at` seconds into it, as its hits' explanations see it.
    fn asked<'e>(
        &self,
        explainer: &'e Explainer,
        query: &'e Resolved,
        first_at: f64,
    ) -> Result<Asked<'e>> {
        Ok(match query {
            Resolved::Item(asked) => {
                let asked_id = self.records.get(*asked)?.video_id;
                explainer.for_item(*asked, &asked_id)?
            }
            Resolved::Vector(vector) => explainer.for_vector(vector, first_at),
        })
    }

    /// How this session searches: the plan its options made on this index.
    pub fn plan(&self) -> &SearchPlan {
        &self.plan
    }

    pub(crate) fn records(&self) -> &Records<'r> {
        &self.records
    }
}
