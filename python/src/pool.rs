//! The threads the engine works on, this process's own, so that a process forked from a notebook (a
//! `multiprocessing` or DataLoader worker) can ask everything its parent could.
//!
//! The library runs its parallel work (the exact scan of a batch, the graph's build, decoding, VGGish) on
//! rayon's current pool. Left to rayon's global pool, a forked child inherits the pool's bookkeeping but none of
//! its threads, and its first parallel work waits for them for ever. So the package owns a pool made in the
//! process that uses it, and runs every call into the library inside it ([`install`]); a child finds the
//! parent's pool marked with the parent's process id and makes its own. The global pool is never started.
//!
//! Fork safety is only as good as its locks: a lock a parent's thread held at the fork stays held in the child,
//! where no thread will release it. So what a child must find usable ([`PerProcess`]) is reached through one
//! atomic pointer, never a lock.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rayon::{ThreadPool, ThreadPoolBuilder};

/// A value of each process: the process that made it uses it; a process forked since makes its own, from the
/// parent's if it can use that. The parent's copy is left as the fork left it, never dropped: dropping a pool
/// would signal threads that do not exist, and its memory is the parent's pages anyway.
pub struct PerProcess<T: 'static> {
    current: AtomicPtr<Owned<T>>,
}

struct Owned<T> {
    pid: u32,
    value: T,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    pub const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, made by `make` the first time this process asks, given the value of the process it
    /// was forked from (if any).
    pub fn get<E>(
        &'static self,
        make: impl FnOnce(Option<&T>) -> Result<T, E>,
    ) -> Result<&'static T, E> {
        let pid = std::process::id();
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: a pointer stored here comes from `Box::into_raw` below and is never freed once stored.
        let inherited = unsafe { current.as_ref() };
        if let Some(owned) = inherited
            && owned.pid == pid
        {
            return Ok(&owned.value);
        }
        let made = Box::into_raw(Box::new(Owned {
            pid,
            value: make(inherited.map(|owned| &owned.value))?,
        }));
        match self
            .current
            .compare_exchange(current, made, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: stored, so never freed.
            Ok(_) => Ok(unsafe { &(*made).value }),
            Err(winner) => {
                // Another thread of this process made its value first: that one is used, this one dropped.
                // SAFETY: `made` was never stored, so nothing else refers to it; `winner` is stored.
                drop(unsafe { Box::from_raw(made) });
                Ok(unsafe { &(*winner).value })
            }
        }
    }
}

static POOL: PerProcess<ThreadPool> = PerProcess::new();

/// This process's pool, started the first time this process asks. Its threads are as many as the global
/// pool's would be (`RAYON_NUM_THREADS`, else one per core).
fn pool() -> soundalike::Result<&'static ThreadPool> {
    POOL.get(|_| {
        ThreadPoolBuilder::new()
            .thread_name(|i| format!("soundalike-{i}"))
            .build()
    })
    .map_err(|e| {
        let e = std::io::Error::other(format!("cannot start the engine's threads: {e}"));
        soundalike::Error::from(anyhow::Error::new(e))
    })
}

/// Runs `work` on this process's pool (the library's parallel work inside it runs there, as on rayon's
/// current pool), the caller waiting for it.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> soundalike::Result<R> {
    Ok(pool()?.install(work))
}

/// [`install`], the calling thread calling `watch` every tenth of a second while `work` runs: a build reading
/// a Python iterable runs there, and only the calling thread (the interpreter's main thread) sees Ctrl-C.
/// A panic of `work` is the caller's, as from [`install`].
pub fn install_watched<R: Send>(
    work: impl FnOnce() -> R + Send,
    mut watch: impl FnMut(),
) -> soundalike::Result<R> {
    let (done, finished) = mpsc::channel();
    let answer = pool()?.in_place_scope(|scope| {
        scope.spawn(move |_| {
            let _ = done.send(work());
        });
        loop {
            match finished.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => return Some(answer),
                Err(RecvTimeoutError::Timeout) => watch(),
                // `work` panicked: the scope's end raises its panic here.
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    });
    answer.ok_or_else(|| anyhow::anyhow!("internal error: the work ended without an answer").into())
}
