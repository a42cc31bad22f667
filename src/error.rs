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

/// Exit codes, as documented in README.md.
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

/// The line printed when reading an index's memory map faults (SIGBUS): LMDB maps the data file, and a file cut
/// short (a partial copy) faults where a page is missing instead of returning an error. Set when an index is
/// opened, so the line can name it; written by the signal handler, which may only use what is already prepared.
static BUS_ERROR_LINE: std::sync::atomic::AtomicPtr<Vec<u8>> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Makes a SIGBUS while reading the index in `dir` end the process with one `error:` line naming it and exit
/// code 1, rather than "Bus error" and code 135.
pub fn report_bus_errors_for(dir: &std::path::Path) {
    let line = format!(
        // Not "rebuild it": a rebuild replaces only a directory whose settings say it is an index, and these
        // cannot be read.
        "error: index {} is damaged: its data file is shorter than its contents (a partial copy?); delete it \
         and build it again with `soundalike index`\n",
        dir.display()
    );
    // Leaked on purpose: the handler may run at any moment until the process ends.
    let line = Box::into_raw(Box::new(line.into_bytes()));
    BUS_ERROR_LINE.store(line, std::sync::atomic::Ordering::Release);
    extern "C" fn on_bus_error(_: libc::c_int) {
        let line = BUS_ERROR_LINE.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: `line` is null or a leaked, never freed Vec; write and _exit are async-signal-safe.
        unsafe {
            if let Some(line) = line.as_ref() {
                libc::write(2, line.as_ptr().cast(), line.len());
            }
            libc::_exit(i32::from(exit::ERROR));
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bus_error as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}
