//! Waiting on an event rather than for a fixed time (issue 34): a fixed sleep is too short on a loaded machine
//! and too long on an idle one. Each wait polls what the test needs to have happened, with a deadline far past
//! any machine's slowness, and names what it waited for when it gives up.

use std::time::{Duration, Instant};

/// How long a wait lasts before the test fails: long enough for a build machine shared by several builders.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Polls `done` until it holds; fails the test, naming `what`, after [`PATIENCE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A line of `/proc/PID/status` by its name, such as `SigCgt`.
fn status_field(pid: u32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Whether process `pid` has a handler for `signal` installed: until then the signal would end it by the default
/// disposition, with none of what its handler does.
pub fn catches_signal(pid: u32, signal: libc::c_int) -> bool {
    status_field(pid, "SigCgt")
        .and_then(|mask| u64::from_str_radix(&mask, 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// The CPU time process `pid` has used so far, all its threads together (utime + stime of /proc/PID/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, field 2, may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after the name.
    let ticks: u64 = fields.get(11..13).map_or(0, |both| {
        both.iter().filter_map(|f| f.parse::<u64>().ok()).sum()
    });
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// The bytes written into `pipe` (either end) that its reader has not read yet.
pub fn unread(pipe: &impl std::os::fd::AsRawFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, the count of bytes in the pipe, to the pointer given.
    let ok = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut bytes) } == 0;
    assert!(ok, "FIONREAD: {}", std::io::Error::last_os_error());
    bytes as usize
}
