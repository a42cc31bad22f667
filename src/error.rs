//! The library's one error type, and the kinds that let a caller tell bad input, a damaged index, a request
//! that cannot be made, and the system's own failures apart: the command line maps them to exit codes, a server
//! to status codes, the Python package to exception classes.
//!
//! Inside the library errors are `anyhow` chains with context ("ingest.jsonl: line 3: clip x: ..."); a chain
//! gets its kind from the first marker in it ([`UsageError`], [`DamagedIndex`], [`NotFound`]), or from the
//! error it started as (an I/O error, LMDB's own report of a damaged file). The public functions convert at
//! their boundary, so a caller sees [`Error`] only.

use std::fmt;
use std::io;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is impossible (an unknown label name, a re-rank on a metric that has none, an
    /// option that needs another): the caller must ask differently. The command line's exit code 2.
    Usage,
    /// What was given cannot be read as what it should be (a corrupt record, a malformed clip or embedding, an
    /// audio file that cannot be decoded or is too long).
    BadInput,
    /// The thing asked for does not exist: no index at the path, no clip with the id, no weight file.
    NotFound,
    /// An index's files are damaged (cut short, overwritten): it must be rebuilt.
    DamagedIndex,
    /// The system failed: a read or write error, a full disk, no memory.
    Io,
}

/// A failure, with one line of message that says what went wrong and where (file, line, record, index).
pub struct Error {
    kind: ErrorKind,
    inner: anyhow::Error,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The kind of the I/O error this failure started as, if it was one: a caller writing to a pipe tells a
    /// closed reader (`BrokenPipe`) from a real failure by it.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.inner.chain().find_map(io_kind)
    }
}

fn io_kind(cause: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    if let Some(e) = cause.downcast_ref::<io::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = cause.downcast_ref::<Error>() {
        return e.io_kind();
    }
    // serde_json wraps the io error of a writer in its own; heed wraps LMDB's and the system's.
    if let Some(e) = cause.downcast_ref::<serde_json::Error>() {
        return e.io_error_kind();
    }
    if let Some(heed::Error::Io(e)) = cause.downcast_ref::<heed::Error>() {
        return Some(e.kind());
    }
    None
}

impl Error {
    /// This error, from work on the index in `dir`: LMDB's or arroy's report of damage is said to be the index's
    /// (see [`in_index`]).
    pub(crate) fn in_index(self, dir: &std::path::Path) -> Error {
        Error::from(in_index(dir, self.inner))
    }
}

impl From<UsageError> for Error {
    fn from(usage: UsageError) -> Error {
        Error::from(anyhow::Error::new(usage))
    }
}

impl From<anyhow::Error> for Error {
    fn from(inner: anyhow::Error) -> Error {
        let kind = classify(&inner);
        Error { kind, inner }
    }
}

/// The kind of a chain: its outermost marker, else what it started as.
fn classify(error: &anyhow::Error) -> ErrorKind {
    for cause in error.chain() {
        // A public function's error that a caller inside the crate passed on: it was classified already, and
        // hides the chain it was made from.
        if let Some(error) = cause.downcast_ref::<Error>() {
            return error.kind;
        }
        if cause.is::<UsageError>() {
            return ErrorKind::Usage;
        }
        if cause.is::<DamagedIndex>() {
            return ErrorKind::DamagedIndex;
        }
        if cause.is::<NotFound>() {
            return ErrorKind::NotFound;
        }
        if is_damage(cause) {
            return ErrorKind::DamagedIndex;
        }
    }
    match error.chain().find_map(io_kind) {
        Some(io::ErrorKind::NotFound) => ErrorKind::NotFound,
        Some(io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof) => ErrorKind::BadInput,
        Some(_) => ErrorKind::Io,
        None => ErrorKind::BadInput,
    }
}

/// Whether `cause` is LMDB's or arroy's report of data that cannot be what it should: a damaged index.
fn is_damage(cause: &(dyn std::error::Error + 'static)) -> bool {
    fn heed_damage(error: &heed::Error) -> bool {
        use heed::MdbError::*;
        match error {
            heed::Error::Mdb(mdb) => matches!(
                mdb,
                Corrupted
                    | PageNotFound
                    | Invalid
                    | VersionMismatch
                    | BadValSize
                    | BadTxn
                    // A B-tree deeper than LMDB ever makes one, and a table whose flags are not its own: what
                    // overwritten pages read as (a reader never changes a table).
                    | CursorFull
                    | Incompatible
            ),
            heed::Error::Decoding(_) => true,
            _ => false,
        }
    }
    if let Some(error) = cause.downcast_ref::<heed::Error>() {
        return heed_damage(error);
    }
    match cause.downcast_ref::<arroy::Error>() {
        Some(arroy::Error::Heed(error)) => heed_damage(error),
        Some(arroy::Error::Io(_) | arroy::Error::DatabaseFull | arroy::Error::BuildCancelled) => {
            false
        }
        Some(_) => true,
        None => false,
    }
}

/// `error` from reading or writing the index in `dir`, said to be its damage when LMDB or arroy found damage
/// that no message of ours names yet ("MDB_PAGE_NOTFOUND" alone names neither the index nor what to do).
pub(crate) fn in_index(dir: &std::path::Path, error: anyhow::Error) -> anyhow::Error {
    let marked = error.chain().any(|cause| {
        cause.is::<DamagedIndex>()
            || cause
                .downcast_ref::<Error>()
                .is_some_and(|e| e.kind == ErrorKind::DamagedIndex)
    });
    if !marked && error.chain().any(is_damage) {
        return damaged(dir, format!("{error:#}"));
    }
    error
}

impl fmt::Display for Error {
    /// The whole chain on one line, outermost first: "cannot read x.jsonl: line 3: ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.kind, self.inner)
    }
}

/// The message already holds the whole chain, so no `source` repeats it.
impl std::error::Error for Error {}

/// Marks a chain as a request that cannot be made ([`ErrorKind::Usage`]). Its message names what to change in
/// the library's terms (a label, a re-rank depth); front ends word it for their own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Marks a chain as a damaged index ([`ErrorKind::DamagedIndex`]).
#[derive(Debug)]
pub(crate) struct DamagedIndex(String);

impl fmt::Display for DamagedIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DamagedIndex {}

/// "index DIR is damaged: DETAIL", marked as such. What to do is the host's to say (the command line's
/// `soundalike index`, Python's `build_index`): the kind tells it the index must be rebuilt.
pub(crate) fn damaged(dir: &std::path::Path, detail: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(DamagedIndex(format!(
        "index {} is damaged: {detail}",
        dir.display()
    )))
}

/// Marks a chain as something asked for that does not exist ([`ErrorKind::NotFound`]).
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

pub(crate) fn not_found(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(NotFound(message.into()))
}
