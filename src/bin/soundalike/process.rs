//! What the program that owns the process sets: the allocator's settings for audio, and what SIGINT and SIGTERM
//! do to a run that writes: the library registers the hidden paths it makes while they
//! exist (`soundalike::fs::cleanup`); a thread of ours receives the signals (signal-hook's), has them removed
//! and exits with 130 or 143, the codes a shell gives a run those signals ended. The removal is ordinary code
//! on that thread rather than a signal handler's few allowed calls. Only writers install it: a reader
//! interrupted dies of the signal as before.

use std::sync::Once;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts the signal thread, once; called before a run creates anything an interrupt must remove, or waits
/// for another writer (so that an interrupt while waiting also ends with 130 or 143).
pub fn remove_on_interrupt() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Best effort: without the thread, an interrupt kills the process as it always did, and the next run
        // removes what it left.
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                soundalike::fs::cleanup::remove_registered();
                std::process::exit(128 + signal);
            }
        });
    });
}

/// Keeps freed blocks of up to 32 MB in the heap for reuse, for the runs that embed audio. By default glibc
/// gives every freed block over its mmap threshold back to the kernel, and a VGGish forward pass allocates and
/// frees about a GB in such blocks: the kernel then zeroes fresh pages for every pass, which was a quarter of
/// the system and user time in a trial (sys 4.5 s of 14 for a 3.5-minute song). Process-wide, so set here by
/// the program that owns the process, not by the library.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; glibc serialises it with allocation, and the values are
    // within its documented ranges (the mmap threshold's maximum is 32 MB on 64-bit systems).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
