//! Writers that run at once, outputs that are not plain files, and interrupted runs: nothing is lost and nothing
//! the tool did not write is touched (issue 10).
//!
//! Where two runs must overlap whatever the machine's speed, the tests make them: a rebuild reads its input from
//! a pipe the test holds open, or the test itself holds an index's writer lock (by the protocol documented in
//! `src/lock.rs`), and a waiting writer is known to wait by the line it prints. Loops of plain races come on top.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::common::*;
use serde_json::Value;

const WAITING: &str = "waiting for another `index` run on";

/// A running `soundalike`, its stderr read line by line as it comes.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: JoinHandle<String>,
}

/// `index -q --index DIR INPUT`: a rebuild of `dir` from `input` (`-` for stdin).
fn index_args<'a>(dir: &'a Path, input: &'a OsStr) -> [&'a OsStr; 5] {
    [
        OsStr::new("index"),
        OsStr::new("-q"),
        OsStr::new("--index"),
        dir.as_os_str(),
        input,
    ]
}

fn start<S: AsRef<OsStr>>(args: &[S], stdin: Stdio) -> Running {
    let mut child = soundalike()
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let pipe = child.stderr.take().unwrap();
    let (sender, lines) = mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let line = line.unwrap();
            all.push_str(&line);
            all.push('\n');
            let _ = sender.send(line);
        }
        all
    });
    Running {
        child,
        lines,
        stderr,
    }
}

impl Running {
    fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin is piped")
    }

    /// Waits until a line of stderr contains `part`.
    fn wait_for_line(&self, part: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(part) => return,
                Ok(_) => {}
                Err(_) => panic!("no line with {part:?} on stderr"),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sends a signal to our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        (status, self.stderr.join().unwrap())
    }
}

/// Whether a process holds the flock of the file at `path`. (If none does, this takes it for a moment.)
fn is_held(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| {
        // SAFETY: flock on a valid open descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
    })
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file and directory under `dir` with its contents (links as their targets): to check that a refused run
/// left a folder exactly as it was.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                stack.push(path.clone());
                b"<dir>".to_vec()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                std::fs::read(&path).unwrap()
            };
            all.insert(path.strip_prefix(dir).unwrap().to_path_buf(), content);
        }
    }
    all
}

fn jsonl(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn video_id(line: &str) -> String {
    let clip: Value = serde_json::from_str(line).unwrap();
    clip["video_id"].as_str().unwrap().to_string()
}

/// The fixture clips cut in three: a small first index, then two batches to add.
struct Parts {
    temp: tempfile::TempDir,
    base: PathBuf,
    a: PathBuf,
    b: PathBuf,
    /// `base` and `a` in one file: what a rebuild indexes.
    base_and_a: PathBuf,
}

impl Parts {
    fn new() -> Parts {
        let temp = tempfile::tempdir().unwrap();
        let lines = fixture_clip_lines();
        let write = |name: &str, lines: &[String]| {
            let path = temp.path().join(name);
            std::fs::write(&path, jsonl(lines)).unwrap();
            path
        };
        Parts {
            base: write("base.jsonl", &lines[..30]),
            a: write("a.jsonl", &lines[30..400]),
            b: write("b.jsonl", &lines[400..]),
            base_and_a: write("base_and_a.jsonl", &lines[..400]),
            temp,
        }
    }

    /// A new index of `input` in the scratch directory.
    fn index(&self, name: &str, input: &Path) -> PathBuf {
        let dir = self.temp.path().join(name);
        run(&index_args(&dir, input.as_os_str())).assert_ok();
        dir
    }
}

fn append_args(dir: &Path, input: &Path) -> Vec<PathBuf> {
    ["index", "-q", "--append", "--index"]
        .iter()
        .map(PathBuf::from)
        .chain([dir.to_path_buf(), input.to_path_buf()])
        .collect()
}

fn append(dir: &Path, input: &Path) {
    run(&append_args(dir, input)).assert_ok();
}

/// What the index answers for two clips of the first part (in every index here), by the exact scan, the trees and the graph, and its clip
/// count: equal for two indexes that hold the same clips written in the same order.
fn answers(dir: &Path) -> Vec<Vec<u8>> {
    let lines = fixture_clip_lines();
    let mut all = Vec::new();
    for line in [&lines[10], &lines[20]] {
        let id = video_id(line);
        for how in [&["--exact"][..], &["--search-k", "50"], &["--ef", "10"]] {
            let mut args = vec!["--id", id.as_str(), "--json"];
            args.extend_from_slice(how);
            let run = recommend(dir, &args);
            run.assert_ok();
            all.push(run.stdout);
        }
    }
    all.push(clip_count(dir).to_string().into_bytes());
    all
}

fn clip_count(dir: &Path) -> u64 {
    let info = run(&[
        OsStr::new("info"),
        OsStr::new("--json"),
        OsStr::new("--index"),
        dir.as_os_str(),
    ]);
    info.assert_ok();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    info["settings"]["clips"].as_u64().unwrap()
}

/// Asserts that a writer ended well, having said at most that it waited for another.
fn assert_ok_maybe_waited((status, stderr): (ExitStatus, String)) {
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.is_empty() || (stderr.lines().count() == 1 && stderr.contains(WAITING)),
        "{stderr}"
    );
}

/// The writer lock of the index `dir`, taken by the test as a writer takes it.
struct HeldLock {
    path: PathBuf,
    file: File,
}

impl HeldLock {
    fn take(dir: &Path) -> HeldLock {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let path = dir.parent().unwrap().join(format!(".{name}.lock"));
        let file = File::create(&path).unwrap();
        // SAFETY: flock on a valid open descriptor.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        HeldLock { path, file }
    }

    /// Lets the waiting writers go: the file is removed before it is unlocked, as a writer does.
    fn release(self) {
        std::fs::remove_file(&self.path).unwrap();
        drop(self.file);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One writer at a time per index

#[test]
fn two_appends_at_once_keep_every_clip() {
    let parts = Parts::new();
    // The two orders a serial run may take.
    let serial = |name: &str, first: &Path, second: &Path| {
        let dir = parts.index(name, &parts.base);
        append(&dir, first);
        append(&dir, second);
        answers(&dir)
    };
    let a_then_b = serial("ab.idx", &parts.a, &parts.b);
    let b_then_a = serial("ba.idx", &parts.b, &parts.a);
    assert!(a_then_b.last() == Some(&b"779".to_vec()));

    // Both appends surely at once: they start while the test holds the index's writer lock, both say they wait,
    // and then run one after the other.
    let dir = parts.index("queued.idx", &parts.base);
    let held = HeldLock::take(&dir);
    let appends = [&parts.a, &parts.b].map(|input| start(&append_args(&dir, input), Stdio::null()));
    for append in &appends {
        append.wait_for_line(WAITING);
    }
    held.release();
    for append in appends {
        let (status, stderr) = append.finish();
        assert!(status.success(), "{stderr}");
        assert_eq!(
            stderr,
            format!("index: {WAITING} {} to finish\n", dir.display()),
            "said once that it waits, even with -q"
        );
    }
    let now = answers(&dir);
    assert!(
        now == a_then_b || now == b_then_a,
        "answers as after the appends in one order"
    );
    assert_eq!(
        names(parts.temp.path())
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0
    );

    // Plain races, as a user starts them.
    for round in 0..6 {
        let dir = parts.index(&format!("race-{round}.idx"), &parts.base);
        let appends =
            [&parts.a, &parts.b].map(|input| start(&append_args(&dir, input), Stdio::null()));
        for append in appends {
            assert_ok_maybe_waited(append.finish());
        }
        assert_eq!(clip_count(&dir), 779, "round {round}: every clip kept");
        let now = answers(&dir);
        assert!(
            now == a_then_b || now == b_then_a,
            "round {round}: answers as after the appends in one order"
        );
    }
}

#[test]
fn an_append_started_during_a_rebuild_lands_in_the_rebuilt_index() {
    let parts = Parts::new();
    let rebuilt_then_b = {
        let dir = parts.index("serial.idx", &parts.base_and_a);
        append(&dir, &parts.b);
        answers(&dir)
    };
    let rebuild_input = std::fs::read(&parts.base_and_a).unwrap();

    // The append starts while the rebuild is surely running: it reads its input from a pipe held open, at
    // several points of reading it.
    for (round, fed) in [0, 1, 2, 3].into_iter().enumerate() {
        let dir = parts.index(&format!("during-{round}.idx"), &parts.base);
        let mut rebuild = start(
            &["index", "-q", "--index", dir.to_str().unwrap(), "-"],
            Stdio::piped(),
        );
        let mut pipe = rebuild.stdin();
        let split = rebuild_input.len() * fed / 4;
        pipe.write_all(&rebuild_input[..split]).unwrap();
        let building = format!(".during-{round}.idx.building-");
        wait_until("the rebuild's directory", || {
            names(parts.temp.path())
                .iter()
                .any(|n| n.starts_with(&building))
        });
        let appending = start(&append_args(&dir, &parts.b), Stdio::null());
        appending.wait_for_line(WAITING);
        pipe.write_all(&rebuild_input[split..]).unwrap();
        drop(pipe);
        let (status, stderr) = rebuild.finish();
        assert!(status.success() && stderr.is_empty(), "{status}: {stderr}");
        assert_ok_maybe_waited(appending.finish());
        assert_eq!(
            clip_count(&dir),
            779,
            "round {round}: the appended clips are kept"
        );
        assert_eq!(answers(&dir), rebuilt_then_b, "round {round}");
    }

    // Plain races: whichever writer comes first, the index ends as after the two in one order (an append that
    // wins the race is replaced by the rebuild, as it would be run before it).
    let b_then_rebuilt = {
        let dir = parts.index("serial-2.idx", &parts.base);
        append(&dir, &parts.b);
        run(&index_args(&dir, parts.base_and_a.as_os_str())).assert_ok();
        answers(&dir)
    };
    for round in 0..6 {
        let dir = parts.index(&format!("race-{round}.idx"), &parts.base);
        let rebuild = start(
            &index_args(&dir, parts.base_and_a.as_os_str()),
            Stdio::null(),
        );
        let appending = start(&append_args(&dir, &parts.b), Stdio::null());
        assert_ok_maybe_waited(rebuild.finish());
        assert_ok_maybe_waited(appending.finish());
        let now = answers(&dir);
        assert!(
            now == rebuilt_then_b || now == b_then_rebuilt,
            "round {round}: as after the two writers in one order"
        );
    }
    let hidden: Vec<String> = names(parts.temp.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        hidden.is_empty(),
        "nothing left beside the indexes: {hidden:?}"
    );
}

#[test]
fn readers_never_wait_for_a_writer() {
    let parts = Parts::new();
    let dir = parts.index("music.idx", &parts.base);
    let before = answers(&dir);
    let held = HeldLock::take(&dir);
    // With the writer lock held, every reader answers at once.
    assert_eq!(answers(&dir), before);
    run(&[
        OsStr::new("evaluate"),
        OsStr::new("--index"),
        dir.as_os_str(),
        OsStr::new("--queries"),
        OsStr::new("5"),
    ])
    .assert_ok();
    held.release();
}

// ---------------------------------------------------------------------------------------------------------------
// Never delete what the tool did not write

/// Runs a rebuild of `dir` from the fixture's first clips.
fn rebuild(parts: &Parts, dir: &Path) -> Run {
    run(&index_args(dir, parts.base.as_os_str()))
}

/// Asserts that a rebuild of `dir` is refused, naming each of `parts`, and that nothing there or beside it changed.
fn assert_rebuild_refused(parts: &Parts, dir: &Path, named: &[&str]) {
    let before = snapshot(parts.temp.path());
    let mut expected = vec![dir.to_str().unwrap(), "refusing to replace it"];
    expected.extend_from_slice(named);
    rebuild(parts, dir).assert_error(1, &expected);
    assert!(snapshot(parts.temp.path()) == before, "nothing touched");
}

#[test]
fn a_rebuild_replaces_only_a_soundalike_index_and_nothing_else() {
    let parts = Parts::new();

    // The folder: a project that happens to hold a file named data.mdb.
    let project = parts.temp.path().join("proj");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(project.join("thesis.tex"), "\\chapter{One}\n").unwrap();
    std::fs::write(project.join("data.mdb"), "junk\n").unwrap();
    assert_rebuild_refused(
        &parts,
        &project,
        &[
            "is not a soundalike index",
            "data.mdb (not a soundalike index's: MDB_INVALID",
            "src/",
            "thesis.tex",
        ],
    );

    // Another program's LMDB environment: a real data.mdb, but no settings of ours.
    let other = parts.temp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    {
        // SAFETY: opened once in this process, by no one else.
        let env = unsafe { heed::EnvOpenOptions::new().max_dbs(2).open(&other) }.unwrap();
        let notes: heed::Database<heed::types::Str, heed::types::Str> = env
            .create_databases_and_commit(env.write_txn().unwrap(), |dbo, wtxn| -> heed::Result<_> {
                Ok(heed::CommitOrAbort::<_, ()>::Commit(
                    dbo.create_database(wtxn, Some("notes"))?,
                ))
            })
            .unwrap()
            .unwrap_commit();
        let mut wtxn = env.write_txn().unwrap();
        notes.put(&mut wtxn, "todo", "write chapter two").unwrap();
        wtxn.commit().unwrap();
    }
    assert_rebuild_refused(
        &parts,
        &other,
        &["data.mdb", "no settings table", "lock.mdb"],
    );

    // A real index with the user's files beside its own.
    let dir = parts.index("music.idx", &parts.base_and_a);
    let before = answers(&dir);
    std::fs::write(dir.join("NOTES.txt"), "which clips I liked\n").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/keep.txt"), "keep\n").unwrap();
    assert_rebuild_refused(
        &parts,
        &dir,
        &["holds more than a soundalike index: NOTES.txt, sub/"],
    );
    assert_eq!(answers(&dir), before, "the index answers as before");
    // Moved out, the rebuild goes ahead.
    std::fs::remove_file(dir.join("NOTES.txt")).unwrap();
    std::fs::remove_dir_all(dir.join("sub")).unwrap();
    rebuild(&parts, &dir).assert_ok();
    assert_eq!(clip_count(&dir), 30);

    // A partial copy of an index: its settings cannot be read, but its data file names soundalike's tables, so
    // it is ours, and rebuilt (the errors say to rebuild it). One cut so short that nothing shows it is ours is
    // refused, saying how to go ahead (serve_health::index_rebuilds_over_a_damaged_index_...).
    let cut = parts.temp.path().join("cut.idx");
    std::fs::create_dir(&cut).unwrap();
    let data = std::fs::read(dir.join("data.mdb")).unwrap();
    std::fs::write(cut.join("data.mdb"), &data[..data.len() / 2]).unwrap();
    rebuild(&parts, &cut).assert_ok();
    assert_eq!(clip_count(&cut), 30);
    std::fs::write(cut.join("data.mdb"), &data[..8192]).unwrap();
    assert_rebuild_refused(&parts, &cut, &["data.mdb", "cut short", "rm -f "]);

    // A file where the index would go.
    let file = parts.temp.path().join("file.idx");
    std::fs::write(&file, "mine\n").unwrap();
    assert_rebuild_refused(&parts, &file, &["is not a directory"]);

    // An empty directory may be used.
    let empty = parts.temp.path().join("empty.idx");
    std::fs::create_dir(&empty).unwrap();
    rebuild(&parts, &empty).assert_ok();
    assert_eq!(clip_count(&empty), 30);
    assert_eq!(names(&empty), ["data.mdb", "lock.mdb"]);

    // An index of another format version is still ours: rebuilding it is how it is brought up to date.
    let old = parts.index("old.idx", &parts.base_and_a);
    set_format_version(&old, 1);
    run(&["info", "--index", old.to_str().unwrap()]).assert_error(1, &["format version 1"]);
    rebuild(&parts, &old).assert_ok();
    assert_eq!(clip_count(&old), 30);

    let hidden: Vec<String> = names(parts.temp.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "nothing left beside: {hidden:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Output paths as `sort -o` treats them

fn eval_dir() -> PathBuf {
    fixture_data().join("eval")
}

/// What `ingest -q eval/` writes to stdout.
fn eval_output() -> Vec<u8> {
    let run = run(&[
        OsStr::new("ingest"),
        OsStr::new("-q"),
        eval_dir().as_os_str(),
    ]);
    run.assert_ok();
    assert!(!run.stdout.is_empty());
    run.stdout
}

fn ingest_to(output: &Path) -> Run {
    run(&[
        OsStr::new("ingest"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        output.as_os_str(),
        eval_dir().as_os_str(),
    ])
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn outputs_that_are_not_regular_files_are_written_in_place_and_links_are_kept() {
    let expected = eval_output();
    let temp = tempfile::tempdir().unwrap();

    // Devices: written, not replaced. (Checked only on a device that is one: a run of an older soundalike, or of
    // anything that replaces its output, turns /dev/null into a plain file for the whole machine.)
    for device in ["/dev/null", "/dev/zero"] {
        let inode = |path: &str| {
            std::fs::metadata(path)
                .ok()
                .filter(|m| m.file_type().is_char_device())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        let Some(before) = inode(device) else {
            skip(
                "devices",
                format_args!("{device} is not a character device here; that part was not checked"),
            );
            continue;
        };
        ingest_to(Path::new(device)).assert_ok();
        assert_eq!(inode(device), Some(before), "{device} is still the device");
    }
    // /dev/stdout, here a pipe.
    let run = run(&[
        OsStr::new("ingest"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        OsStr::new("/dev/stdout"),
        eval_dir().as_os_str(),
    ]);
    run.assert_ok();
    assert!(run.stdout == expected, "/dev/stdout gets the output");

    // A FIFO: streamed to its reader, and still a FIFO.
    let fifo = temp.path().join("clips.fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            File::open(&fifo).unwrap().read_to_end(&mut got).unwrap();
            got
        })
    };
    ingest_to(&fifo).assert_ok();
    assert!(
        reader.join().unwrap() == expected,
        "the FIFO's reader gets the output"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // Symlinks: the target is replaced, the link kept; relative links lead from their own directory.
    let elsewhere = temp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("clips.jsonl"), "old\n").unwrap();
    let links = temp.path().join("links");
    std::fs::create_dir(&links).unwrap();
    symlink("../elsewhere/clips.jsonl", links.join("relative")).unwrap();
    symlink(links.join("relative"), links.join("chained")).unwrap();
    symlink("../elsewhere/new.jsonl", links.join("dangling")).unwrap();
    for (link, target) in [
        ("relative", "clips.jsonl"),
        ("chained", "clips.jsonl"),
        ("dangling", "new.jsonl"),
    ] {
        let link = links.join(link);
        ingest_to(&link).assert_ok();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(std::fs::read(elsewhere.join(target)).unwrap() == expected);
        std::fs::write(elsewhere.join(target), "old\n").unwrap();
    }
    assert_eq!(names(&links), ["chained", "dangling", "relative"]);
    assert_eq!(names(&elsewhere), ["clips.jsonl", "new.jsonl"]);

    // evaluate --save-queries through a link, and to a device.
    let parts = Parts::new();
    let dir = parts.index("music.idx", &parts.base_and_a);
    let saved = temp.path().join("queries.txt");
    symlink(&saved, temp.path().join("queries.link")).unwrap();
    for to in [temp.path().join("queries.link"), PathBuf::from("/dev/null")] {
        run_evaluate_saving(&dir, &to).assert_ok();
    }
    assert!(std::fs::read_to_string(&saved).unwrap().lines().count() > 0);
    assert!(
        std::fs::symlink_metadata(temp.path().join("queries.link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

fn run_evaluate_saving(dir: &Path, to: &Path) -> Run {
    run(&[
        OsStr::new("evaluate"),
        OsStr::new("-q"),
        OsStr::new("--index"),
        dir.as_os_str(),
        OsStr::new("--queries"),
        OsStr::new("5"),
        OsStr::new("--save-queries"),
        to.as_os_str(),
    ])
}

#[test]
fn an_output_that_is_an_input_or_inside_an_index_is_a_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("40.tfrecord");
    std::fs::copy(eval_dir().join("40.tfrecord"), &input).unwrap();
    let link = temp.path().join("link.tfrecord");
    symlink(&input, &link).unwrap();
    let before = snapshot(temp.path());
    for output in [&input, &link] {
        run(&[
            OsStr::new("ingest"),
            OsStr::new("-q"),
            OsStr::new("-o"),
            output.as_os_str(),
            input.as_os_str(),
        ])
        .assert_error(2, &["refusing to write", "it is the input"]);
    }
    // The input on stdin, redirected from the file.
    let mut child = soundalike()
        .args([
            OsStr::new("ingest"),
            OsStr::new("-q"),
            OsStr::new("-o"),
            input.as_os_str(),
            OsStr::new("-"),
        ])
        .stdin(File::open(&input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: refusing to write") && stderr.contains("it is the input"));

    // A directory as output.
    run(&[
        OsStr::new("ingest"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        temp.path().as_os_str(),
        input.as_os_str(),
    ])
    .assert_error(2, &["it is a directory"]);
    assert!(snapshot(temp.path()) == before, "nothing written");

    // Inside an index, from ingest and from evaluate.
    let parts = Parts::new();
    let dir = parts.index("music.idx", &parts.base);
    // (lock.mdb changes with every reader: LMDB keeps its reader table there.)
    let data_before = std::fs::read(dir.join("data.mdb")).unwrap();
    ingest_to(&dir.join("clips.jsonl")).assert_error(2, &["inside the index"]);
    run_evaluate_saving(&dir, &dir.join("queries.txt")).assert_error(2, &["inside the index"]);
    assert_eq!(
        names(&dir),
        ["data.mdb", "lock.mdb"],
        "nothing written into the index"
    );
    assert!(std::fs::read(dir.join("data.mdb")).unwrap() == data_before);
}

#[test]
fn a_symlinked_index_is_rebuilt_where_it_points() {
    let parts = Parts::new();
    let real = parts.index("real.idx", &parts.base);
    let link = parts.temp.path().join("music.idx");
    symlink("real.idx", &link).unwrap();
    run(&index_args(&link, parts.base_and_a.as_os_str())).assert_ok();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(clip_count(&real), 400);
    append(&link, &parts.b);
    assert_eq!(clip_count(&real), 779);
    let hidden: Vec<String> = names(parts.temp.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Interrupted runs clean up

#[test]
fn sigint_and_sigterm_remove_the_hidden_files_and_exit_130_and_143() {
    let parts = Parts::new();
    let tfrecords: Vec<u8> = std::fs::read_dir(eval_dir())
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let out_dir = parts.temp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("clips.jsonl");
    std::fs::write(&out, "earlier\n").unwrap();
    let index = parts.index("music.idx", &parts.base);
    let before = answers(&index);

    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        // ingest -o, killed with part of its output in the hidden file.
        let mut ingest = start(
            &[
                OsStr::new("ingest"),
                OsStr::new("-q"),
                OsStr::new("-o"),
                out.as_os_str(),
                OsStr::new("-"),
            ],
            Stdio::piped(),
        );
        let mut pipe = ingest.stdin();
        let partial = || {
            names(&out_dir)
                .into_iter()
                .find(|n| n.ends_with(".partial"))
                .is_some_and(|n| std::fs::metadata(out_dir.join(n)).is_ok_and(|m| m.len() > 0))
        };
        // Fed until the output has reached the hidden file (the writer buffers 1 MiB).
        let deadline = Instant::now() + PATIENCE;
        while !partial() {
            assert!(Instant::now() < deadline, "no output");
            pipe.write_all(&tfrecords).unwrap();
        }
        ingest.signal(signal);
        let (status, stderr) = ingest.finish();
        drop(pipe);
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert_eq!(
            names(&out_dir),
            ["clips.jsonl"],
            "the hidden file is removed"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"earlier\n");

        // A rebuild, killed while it builds.
        let mut rebuild = start(&index_args(&index, OsStr::new("-")), Stdio::piped());
        let mut pipe = rebuild.stdin();
        pipe.write_all(&std::fs::read(&parts.a).unwrap()).unwrap();
        // Its store created: by then the directory is registered for removal.
        wait_until("the rebuild's store", || {
            names(parts.temp.path()).iter().any(|n| {
                n.starts_with(".music.idx.building-")
                    && parts.temp.path().join(n).join("data.mdb").exists()
            })
        });
        rebuild.signal(signal);
        let (status, stderr) = rebuild.finish();
        drop(pipe);
        assert_eq!(status.code(), Some(code), "{stderr}");

        // An append, killed while it reads.
        let mut appending = start(
            &[
                OsStr::new("index"),
                OsStr::new("-q"),
                OsStr::new("--append"),
                OsStr::new("--index"),
                index.as_os_str(),
            ],
            Stdio::piped(),
        );
        let mut pipe = appending.stdin();
        pipe.write_all(&std::fs::read(&parts.a).unwrap()).unwrap();
        wait_until("the append's lock", || {
            is_held(&parts.temp.path().join(".music.idx.lock"))
        });
        appending.signal(signal);
        let (status, stderr) = appending.finish();
        drop(pipe);
        assert_eq!(status.code(), Some(code), "{stderr}");

        // And a writer interrupted while it waits for another.
        let held = HeldLock::take(&index);
        let waiting = start(&append_args(&index, &parts.a), Stdio::null());
        waiting.wait_for_line(WAITING);
        waiting.signal(signal);
        let (status, stderr) = waiting.finish();
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(
            held.path.exists(),
            "the lock of the writer it waited for is left alone"
        );
        held.release();

        let hidden: Vec<String> = names(parts.temp.path())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            hidden.is_empty(),
            "nothing left beside the index: {hidden:?}"
        );
        assert_eq!(names(&index), ["data.mdb", "lock.mdb"]);
        assert_eq!(answers(&index), before, "the index answers as before");
    }
}

#[test]
fn what_a_killed_run_leaves_is_removed_by_the_next_run_once_no_one_holds_it() {
    let parts = Parts::new();
    let tfrecords: Vec<u8> = std::fs::read_dir(eval_dir())
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let out_dir = parts.temp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("clips.jsonl");
    let age = |path: &Path| {
        let aged = std::process::Command::new("touch")
            .args(["-d", "1 minute ago"])
            .arg(path)
            .status()
            .unwrap();
        assert!(aged.success());
    };
    let hidden = |dir: &Path| -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    // An ingest writing into its hidden file, until the test closes its input.
    let live_ingest = || {
        // Listed before the run starts, which may create its file at once.
        let before = hidden(&out_dir);
        let mut ingest = start(
            &[
                OsStr::new("ingest"),
                OsStr::new("-q"),
                OsStr::new("-o"),
                out.as_os_str(),
                OsStr::new("-"),
            ],
            Stdio::piped(),
        );
        let mut pipe = ingest.stdin();
        // Fed until its new file holds output: by then the run has locked it.
        let written = || {
            hidden(&out_dir).iter().any(|n| {
                !before.contains(n) && std::fs::metadata(out_dir.join(n)).is_ok_and(|m| m.len() > 0)
            })
        };
        let deadline = Instant::now() + PATIENCE;
        while !written() {
            assert!(Instant::now() < deadline, "no output in a hidden file");
            pipe.write_all(&tfrecords).unwrap();
        }
        (ingest, pipe)
    };

    // A run that is still writing holds its hidden file; a SIGKILLed one leaves its own.
    let (live, live_pipe) = live_ingest();
    let (killed, pipe) = live_ingest();
    killed.signal(libc::SIGKILL);
    killed.finish();
    drop(pipe);
    let left = hidden(&out_dir);
    assert_eq!(left.len(), 2, "{left:?}");
    for name in &left {
        age(&out_dir.join(name));
    }
    // The next run removes the abandoned one only.
    ingest_to(&out).assert_ok();
    let now = hidden(&out_dir);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(left.contains(&now[0]));
    drop(live_pipe);
    let (status, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(names(&out_dir), ["clips.jsonl"]);

    // A SIGKILLed rebuild leaves its directory and the index's lock file; the next writer takes the lock (no
    // one holds it), and the next rebuild removes the directory.
    let index = parts.index("music.idx", &parts.base);
    let mut killed = start(&index_args(&index, OsStr::new("-")), Stdio::piped());
    let mut pipe = killed.stdin();
    pipe.write_all(&std::fs::read(&parts.a).unwrap()).unwrap();
    wait_until("the rebuild's directory", || {
        hidden(parts.temp.path())
            .iter()
            .any(|n| n.starts_with(".music.idx.building-"))
    });
    killed.signal(libc::SIGKILL);
    killed.finish();
    drop(pipe);
    let left = hidden(parts.temp.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&".music.idx.lock".to_string()));
    append(&index, &parts.a);
    assert_eq!(clip_count(&index), 400);
    for name in &left {
        if parts.temp.path().join(name).exists() {
            age(&parts.temp.path().join(name));
        }
    }
    rebuild(&parts, &index).assert_ok();
    assert_eq!(hidden(parts.temp.path()), Vec::<String>::new());
}
