//! A SIGBUS while reading an index's memory map, as one error line: LMDB maps the data file, and a file cut short
//! (a partial copy) faults where a page is missing instead of returning an error.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::exit;

/// The line the handler prints. Set when an index is opened, so the line can name it; read by the signal
/// handler, which may only use what is already prepared.
static LINE: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

/// The writers' lock file this process holds, as a NUL-terminated path, for the handler to remove: the process
/// ends without unwinding, and a lock file left behind would say a writer is at work.
static HELD_LOCK: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

/// Has a SIGBUS also remove `lock` (a writer's lock file of the index, held by this process).
pub fn also_remove(lock: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = lock.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    // Leaked on purpose, as the line is.
    HELD_LOCK.store(Box::into_raw(Box::new(bytes)), Ordering::Release);
}

/// Makes a SIGBUS while reading the index in `dir` end the process with one `error:` line naming it and exit
/// code 1, rather than "Bus error" and code 135.
pub fn report_for(dir: &Path) {
    let line = format!(
        // Not "rebuild it": a rebuild replaces only a directory whose settings say it is an index, and these
        // cannot be read.
        "error: index {} is damaged: its data file is shorter than its contents (a partial copy?); delete it \
         and build it again with `soundalike index`\n",
        dir.display()
    );
    // Leaked on purpose: the handler may run at any moment until the process ends. An index opened later
    // replaces the line; the one before stays leaked (a few per process at most).
    LINE.store(
        Box::into_raw(Box::new(line.into_bytes())),
        Ordering::Release,
    );
    extern "C" fn on_bus_error(_: libc::c_int) {
        let line = LINE.load(Ordering::Acquire);
        let lock = HELD_LOCK.load(Ordering::Acquire);
        // SAFETY: `line` and `lock` are null or point to leaked Vecs that are never freed or changed (`lock`
        // NUL-terminated); write, unlink and _exit are async-signal-safe.
        unsafe {
            if let Some(lock) = lock.as_ref() {
                libc::unlink(lock.as_ptr().cast());
            }
            if let Some(line) = line.as_ref() {
                libc::write(2, line.as_ptr().cast(), line.len());
            }
            libc::_exit(i32::from(exit::ERROR));
        }
    }
    // SAFETY: the handler only calls async-signal-safe functions, and `action` is fully initialised (zeroed,
    // then an empty mask and the handler).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bus_error as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}
