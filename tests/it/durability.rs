//! Nothing is lost when a run is killed, and readers are never shown a half-written index: `ingest -o` and
//! `index --append` are SIGKILLed at several points (each check then finds the old state whole, or the complete
//! new one), and `recommend` processes run against an index while appends commit.
//!
//! Kill points are spread over the measured length of a complete run, so the tests adapt to the machine's speed;
//! where a point must fall inside the run whatever the speed, the input is fed through a pipe and the kill comes
//! once the run has visibly started writing.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Kills `child` with SIGKILL (what `Child::kill` sends on Unix) and reaps it.
fn kill(mut child: Child) -> ExitStatus {
    // The child may have finished already; then there is nothing to kill, and `wait` gives its status.
    let _ = child.kill();
    child.wait().unwrap()
}

fn was_killed(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// Entries of `dir` other than `keep`, by name.
fn others(dir: &Path, keep: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep)
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------------------------
// ingest -o

#[test]
fn a_killed_ingest_leaves_the_output_file_whole() {
    let temp = tempfile::tempdir().unwrap();
    let out_dir = temp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("clips.jsonl");
    // The file a user would hate to lose: an earlier run's output.
    run(&[
        Path::new("ingest"),
        Path::new("-q"),
        Path::new("-o"),
        &out,
        &fixture_data().join("eval"),
    ])
    .assert_ok();
    let before = std::fs::read(&out).unwrap();

    // A run long enough to be killed in the middle: every clip of the fixtures, given 12 times (about 40 MB in,
    // 100 MB out).
    let args = |dest: &Path| {
        let mut args: Vec<PathBuf> = ["ingest", "-q", "--music", "all", "-o"]
            .iter()
            .map(PathBuf::from)
            .collect();
        args.push(dest.to_path_buf());
        args.extend(std::iter::repeat_n(fixture_data(), 12));
        args
    };
    let complete = temp.path().join("complete.jsonl");
    let started = Instant::now();
    run(&args(&complete)).assert_ok();
    let duration = started.elapsed();
    let after = std::fs::read(&complete).unwrap();
    std::fs::remove_file(&complete).unwrap();

    let mut killed_running = 0;
    for fraction in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9] {
        let child = soundalike()
            .args(args(&out))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // A fixed wait on purpose: the kill lands at a fraction of a whole run, wherever the run then is.
        std::thread::sleep(duration.mul_f64(fraction));
        let status = kill(child);
        let now = std::fs::read(&out).unwrap();
        if was_killed(status) {
            killed_running += 1;
            // Killed before the rename: the old file; between the rename and the exit: the whole new one.
            assert!(
                now == before || now == after,
                "killed at {fraction} of the run: {} bytes, neither the old file nor the new one",
                now.len()
            );
        } else {
            assert!(status.success(), "{status}");
            assert!(now == after, "a finished run wrote its whole output");
        }
        // A temporary file may be left by the kill: it must be hidden and say what it is.
        for name in others(&out_dir, "clips.jsonl") {
            assert!(
                name.starts_with(".clips.jsonl.") && name.ends_with(".partial"),
                "unexpected file beside the output: {name}"
            );
            std::fs::remove_file(out_dir.join(name)).unwrap();
        }
        std::fs::write(&out, &before).unwrap();
    }
    eprintln!("{killed_running} of 6 kills came while a {duration:?} ingest ran");
    assert!(
        killed_running >= 2,
        "only {killed_running} kills came while ingest was running ({duration:?} for a whole run)"
    );

    // Killed while the temporary file already holds part of the output, whatever the machine's speed: the input
    // comes through a pipe, and the kill waits until output has been written.
    let mut stream = Vec::new();
    for split in ["bal_train", "eval"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_data().join(split))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            stream.extend(std::fs::read(file).unwrap());
        }
    }
    let mut child = soundalike()
        .args(["ingest", "-q", "--music", "all", "-o"])
        .arg(&out)
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let partial_size = || -> u64 {
        others(&out_dir, "clips.jsonl")
            .iter()
            .map(|n| std::fs::metadata(out_dir.join(n)).map_or(0, |m| m.len()))
            .sum()
    };
    let mut written = 0;
    while partial_size() == 0 {
        assert!(
            written < 40,
            "no output after {written} copies of the fixtures"
        );
        pipe.write_all(&stream).unwrap();
        written += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    let status = kill(child);
    drop(pipe);
    assert!(was_killed(status), "{status}");
    assert!(
        std::fs::read(&out).unwrap() == before,
        "the old file is whole"
    );
    let left = others(&out_dir, "clips.jsonl");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".clips.jsonl.") && left[0].ends_with(".partial"),
        "{left:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// index --append, and readers during appends

/// A clip line with a new video_id (`prefix` + the old one) and every value moved by -1, 0 or +1: a clip near the
/// original but not equal to it, so that answers have no ties.
fn variant(line: &str, prefix: &str, seed: usize) -> String {
    let mut clip: Value = serde_json::from_str(line).unwrap();
    let id = format!("{prefix}{}", clip["video_id"].as_str().unwrap());
    clip["video_id"] = id.into();
    for (r, row) in clip["embedding"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        for (j, value) in row.as_array_mut().unwrap().iter_mut().enumerate() {
            let v = value.as_i64().unwrap() + ((r + j + seed) % 3) as i64 - 1;
            *value = v.clamp(0, 255).into();
        }
    }
    clip.to_string()
}

/// `copies` variants of each of `lines`, as JSON Lines.
fn variants(lines: &[String], copies: usize, tag: &str) -> String {
    let mut text = String::new();
    for copy in 0..copies {
        for line in lines {
            text.push_str(&variant(line, &format!("{tag}{copy}-"), copy));
            text.push('\n');
        }
    }
    text
}

fn jsonl(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The queries the index is asked: one clip of the first half, by the exact scan and through the trees.
const QUERIES: [&[&str]; 3] = [&["--exact"], &["--search-k", "50"], &["--ef", "10"]];

fn query_id() -> String {
    let clip: Value = serde_json::from_str(&fixture_clip_lines()[10]).unwrap();
    clip["video_id"].as_str().unwrap().to_string()
}

/// `recommend --id id --json` on the index, searching `how` (one of [`QUERIES`]).
fn ask(dir: &Path, id: &str, how: &[&str]) -> Run {
    let mut args = vec![
        "recommend",
        "--index",
        dir.to_str().unwrap(),
        "--id",
        id,
        "--json",
    ];
    args.extend_from_slice(how);
    run(&args)
}

/// What the index answers to each of [`QUERIES`], and its clip count.
fn answers(dir: &Path) -> Vec<Vec<u8>> {
    let id = query_id();
    let mut all = Vec::new();
    for how in QUERIES {
        let run = ask(dir, &id, how);
        run.assert_ok();
        all.push(run.stdout);
    }
    let info = run(&["info", "--json", "--index", dir.to_str().unwrap()]);
    info.assert_ok();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    all.push(info["settings"]["clips"].to_string().into_bytes());
    all
}

/// A new index of the first half of the fixture clips.
fn first_half_index(dir: &Path) {
    let lines = fixture_clip_lines();
    run_with_stdin(
        &["index", "-q", "--index", dir.to_str().unwrap()],
        jsonl(&lines[..lines.len() / 2]).as_bytes(),
    )
    .assert_ok();
}

fn append_args(dir: &Path, input: &Path) -> Vec<PathBuf> {
    ["index", "-q", "--append", "--index"]
        .iter()
        .map(PathBuf::from)
        .chain([dir.to_path_buf(), input.to_path_buf()])
        .collect()
}

#[test]
fn a_killed_append_leaves_the_index_as_before_or_as_after() {
    let temp = tempfile::tempdir().unwrap();
    let pristine = temp.path().join("pristine.idx");
    first_half_index(&pristine);
    let before = answers(&pristine);
    // The append: the other half, and variants of every clip (about 1,950 clips in all).
    let lines = fixture_clip_lines();
    let mut text = jsonl(&lines[lines.len() / 2..]);
    text.push_str(&variants(lines, 2, "v"));
    let input = temp.path().join("more.jsonl");
    std::fs::write(&input, &text).unwrap();

    let copy_of_pristine = |name: &str| {
        let dir = temp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(pristine.join("data.mdb"), dir.join("data.mdb")).unwrap();
        dir
    };
    // A complete append: what the index answers after one.
    let complete = copy_of_pristine("complete.idx");
    let started = Instant::now();
    run(&append_args(&complete, &input)).assert_ok();
    let duration = started.elapsed();
    let after = answers(&complete);
    assert_ne!(before, after, "the append changes the answers");

    let check_recovers = |dir: &Path, status: ExitStatus, when: &str| {
        let now = answers(dir);
        if now == before {
            assert!(was_killed(status), "{when}: {status}");
            // The killed writer's lock is recovered: the same append now runs to the end.
            run(&append_args(dir, &input)).assert_ok();
            assert_eq!(answers(dir), after, "{when}: the append after a killed one");
            true
        } else {
            assert_eq!(
                now, after,
                "{when}: the old index or the new one, never a mix"
            );
            false
        }
    };
    let mut killed_before_commit = 0;
    for (i, fraction) in [0.0, 0.15, 0.4, 0.65, 0.9].into_iter().enumerate() {
        let dir = copy_of_pristine(&format!("killed-{i}.idx"));
        let child = soundalike()
            .args(append_args(&dir, &input))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // A fixed wait on purpose: the kill lands at a fraction of a whole append, wherever it then is.
        std::thread::sleep(duration.mul_f64(fraction));
        let status = kill(child);
        if check_recovers(&dir, status, &format!("killed at {fraction} of the append")) {
            killed_before_commit += 1;
        }
        assert_eq!(others(&dir, "data.mdb"), ["lock.mdb"]);
    }
    eprintln!("{killed_before_commit} of 5 kills came before the commit of a {duration:?} append");
    assert!(
        killed_before_commit >= 2,
        "only {killed_before_commit} kills came before the commit ({duration:?} for an append)"
    );

    // Killed with the write transaction open, whatever the machine's speed: the input comes through a pipe,
    // and the kill comes while half of it has been read.
    let dir = copy_of_pristine("piped.idx");
    let mut child = soundalike()
        .args(["index", "-q", "--append", "--index"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(&text.as_bytes()[..text.len() / 2]).unwrap();
    wait_until("index reads the half written", || wait::unread(&pipe) == 0);
    let status = kill(child);
    drop(pipe);
    assert!(check_recovers(&dir, status, "killed while reading"));
}

#[test]
fn readers_see_the_index_before_or_after_an_append_never_between() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("music.idx");
    first_half_index(&dir);
    // Three appends in a row: the other half, then variants of every clip, twice over.
    let lines = fixture_clip_lines();
    let batches = [
        jsonl(&lines[lines.len() / 2..]),
        variants(lines, 2, "a"),
        variants(lines, 2, "b"),
    ];
    let mut states = vec![answers(&dir)];

    let writing = AtomicBool::new(true);
    let reads = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|reader| {
                let (dir, writing) = (&dir, &writing);
                scope.spawn(move || {
                    let id = query_id();
                    let mut seen = Vec::new();
                    let mut last = false;
                    // Until the writer is done, and once more after that.
                    while !last {
                        last = !writing.load(Ordering::SeqCst);
                        let how = QUERIES[(seen.len() + reader) % QUERIES.len()];
                        let run = ask(dir, &id, how);
                        assert!(
                            run.code == 0 && run.stderr.is_empty(),
                            "a reader failed during the appends: {}",
                            run.stderr
                        );
                        seen.push((how, run.stdout));
                    }
                    seen
                })
            })
            .collect();
        for batch in &batches {
            run_with_stdin(
                &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
                batch.as_bytes(),
            )
            .assert_ok();
            // Only this thread writes, so the index holds this state until the next append.
            states.push(answers(&dir));
        }
        writing.store(false, Ordering::SeqCst);
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });

    for pair in states.windows(2) {
        assert_ne!(pair[0][0], pair[1][0], "each append changes the answer");
    }
    let mut seen_states = std::collections::BTreeSet::new();
    for (how, stdout) in &reads {
        let q = QUERIES.iter().position(|q| q == how).unwrap();
        let state = states.iter().position(|s| &s[q] == stdout);
        assert!(
            state.is_some(),
            "a reader got an answer of no committed state: {}",
            String::from_utf8_lossy(stdout)
        );
        seen_states.extend(state);
    }
    eprintln!(
        "{} reads during {} appends saw states {seen_states:?}",
        reads.len(),
        batches.len()
    );
    assert!(reads.len() >= 10, "too few reads: {}", reads.len());
}
