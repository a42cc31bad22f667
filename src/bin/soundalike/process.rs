//! What the program that owns the process sets: the allocator's settings for audio, and what SIGHUP (a closed
//! ssh session), SIGINT and SIGTERM do to a run that writes: the library registers the hidden paths it makes while they
//! exist (`soundalike::fs::cleanup`); a thread of ours receives the signals (signal-hook's), has them removed
//! and exits with 129, 130 or 143, the codes a shell gives a run those signals ended. The removal is ordinary code
//! on that thread rather than a signal handler's few allowed calls. Only writers install it: a reader
//! interrupted dies of the signal as before.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Whether clips are being written to a stream (stdout, a FIFO) that a consumer reads as they come.
static STREAMING_CLIPS: AtomicBool = AtomicBool::new(false);

/// Says that clips are (`true`) or are no longer being written to a stream: an interrupt meanwhile ends the
/// stream with the incomplete mark (`soundalike::clip::incomplete_line`), so that `ingest | index` interrupted
/// leaves the old index rather than swapping in a part. Installs the signal thread.
pub fn streaming_clips(streaming: bool) {
    if streaming {
        remove_on_interrupt();
    }
    STREAMING_CLIPS.store(streaming, Ordering::SeqCst);
}

/// Starts the signal thread, once; called before a run creates anything an interrupt must remove, or waits
/// for another writer (so that an interrupt while waiting also ends with 130 or 143).
pub fn remove_on_interrupt() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Best effort: without the thread, an interrupt kills the process as it always did, and the next run
        // removes what it left.
        let Ok(mut signals) = Signals::new([SIGHUP, SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                if STREAMING_CLIPS.load(Ordering::SeqCst) {
                    let mark = soundalike::clip::incomplete_line(&format!(
                        "interrupted by signal {signal}"
                    ));
                    // Straight to the descriptor: the writing thread may hold stdout's lock, and what it
                    // buffered is lost either way; a line cut short before the mark is refused as well.
                    // SAFETY: a plain write of an owned buffer to descriptor 1.
                    unsafe {
                        libc::write(1, mark.as_ptr().cast(), mark.len());
                    }
                }
                soundalike::fs::cleanup::remove_registered();
                std::process::exit(128 + signal);
            }
        });
    });
}

/// Keeps freed blocks of up to 32 MB in the heap for reuse, for the runs that embed audio. By default glibc
/// gives every freed block over its mmap threshold back to the kernel, and a VGGish forward pass allocates and
/// frees about a GB in such blocks: the kernel then zeroes fresh pages for every pass, a large share of an
/// embedding's time (docs/bench-log.md, "Audio in: `embed` against torchvggish", the page-fault row of its
/// table). Process-wide, so set here by the program that owns the process, not by the library.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; glibc serialises it with allocation, and the values are
    // within its documented ranges (the mmap threshold's maximum is 32 MB on 64-bit systems).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Gives the heap's free memory back to the kernel, for a server once a burst is over: with the trim threshold
/// [`keep_freed_memory`] sets, glibc would keep up to 1 GiB of it for ever (idle RSS grew with each burst).
/// Called when nothing is in flight, so the embedding's reuse of freed blocks within a burst is kept; and by
/// `index` when the build says its clips are released (`BuildEvent::ClipsReleased`).
pub fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; glibc serialises it with allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
