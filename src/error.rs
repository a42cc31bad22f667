//! Errors that decide the exit code: usage errors exit 2, everything else 1.

use std::fmt;

/// A command line that asks for something impossible (an unknown label name, `-k 0`), detected after clap's own
/// checks. `main` maps it to exit code 2, like clap's usage errors.
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

/// Exit codes, as documented in README.md and docs/errors.md.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
}

/// True when the error, somewhere in its chain, is a closed output pipe (`soundalike ingest ... | head`):
/// the reader has all it wanted, so the run ends quietly and successfully.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    error.chain().any(|cause| {
        // serde_json wraps the io error of a writer in its own.
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
    })
}
