//! Skips that a run reports (issue 34): a test that cannot run here for want of data, a tool or a user says so
//! by name instead of passing in silence. Each skip prints `skipped: <test>: needs <what> (<why>)` and appends
//! the same line to `skipped.txt` in the target directory's temporary folder, which `.ci/run` empties before the
//! tests and prints, with the count, after them. Where `$SOUNDALIKE_REQUIRE` (comma-separated) names the need, a
//! skip is a failure instead: `.ci/run` names there what it installs, so that CI cannot go green without them.
//! docs/development.md lists the needs.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file the skips of a run are appended to.
pub fn skip_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt")
}

/// Whether `$SOUNDALIKE_REQUIRE` names `need`.
fn required(need: &str) -> bool {
    std::env::var("SOUNDALIKE_REQUIRE")
        .is_ok_and(|list| list.split(',').any(|item| item.trim() == need))
}

/// Reports that the running test (or a part of it, which `why` then says) did not run for want of `need`, or
/// fails it where `$SOUNDALIKE_REQUIRE` names `need`. The caller returns (or skips the part) afterwards.
pub fn skip(need: &str, why: impl Display) {
    // libtest names each test's thread after the test, so no test repeats its own name here.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let what = format!("{test}: needs {need} ({why})");
    assert!(
        !required(need),
        "{what}, which SOUNDALIKE_REQUIRE says this machine provides"
    );
    let line = format!("skipped: {what}");
    // Straight to stderr, past libtest's capture (which holds a passing test's output back): a skip is seen in
    // `cargo test`'s output, not only in the file.
    let _ = writeln!(std::io::stderr(), "{line}");
    // One short write to a file opened for appending: the lines of tests skipping at once do not interleave.
    let log = skip_log();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        panic!(
            "{line}; and it could not be recorded in {}: {e}",
            log.display()
        );
    }
}

/// Whether this process reads files whatever their permissions (root, or CAP_DAC_OVERRIDE), tried on a file
/// made in `dir` with no permissions at all: there a test of a refused read cannot fail as it would for a user.
pub fn permissions_are_bypassed(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join(".permission-probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let bypassed = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    bypassed
}
